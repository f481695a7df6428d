package tablestore

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect/detectfuzz"
	"github.com/kvwatch/kvwatch/internal/state"
)

// The engine fuzz target (internal/detect FuzzEngine) with Table state:
// its saved seeds, the seeds it adds, and a few hundred generated
// sequences, each run through the default pack over a tablestore.Journal
// on Azurite cut into several batches, give the same findings as memory
// state in one batch. The cases share one journal, each under vaults,
// callers and addresses of its own, so no case sees another's state.
func TestEngineFuzzTableState(t *testing.T) {
	if testing.Short() {
		t.Skip("runs hundreds of sequences against Azurite")
	}
	seeds, err := detectfuzz.Corpus(filepath.Join("..", "detect", "testdata", "fuzz", "FuzzEngine"))
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) == 0 {
		t.Fatal("no saved FuzzEngine seeds")
	}
	seeds = append(seeds, detectfuzz.Seeds()...)
	x := uint32(12)
	for i := 0; len(seeds) < 250; i++ {
		data := make([]byte, 7*(10+i%290))
		for j := range data {
			x = x*1664525 + 1013904223
			data[j] = byte(x >> 24)
		}
		seeds = append(seeds, detectfuzz.Seed{Name: fmt.Sprintf("generated/%d", i), Data: data, Cuts: uint8(x >> 8)})
	}
	rs, s := detectfuzz.Pack(t)
	j, _ := newJournal(t, "", JournalOptions{})
	found, cases := 0, 0
	for n, sd := range seeds {
		evs := isolate(detectfuzz.Events(sd.Data), n)
		if len(evs) == 0 {
			continue
		}
		batches := int(sd.Cuts%8) + 2
		want := detectfuzz.Findings(t, rs, s, state.NewMemory(), evs, 1)
		got := detectfuzz.Findings(t, rs, s, j, evs, batches)
		found, cases = found+len(want), cases+1
		if !slices.Equal(got, want) {
			t.Errorf("%s (%d events): Table state in %d batches found\n  %q\nmemory state in one batch\n  %q", sd.Name, len(evs), batches, got, want)
		}
	}
	t.Logf("%d sequences, %d findings", cases, found)
	if found < cases {
		t.Errorf("%d findings over %d sequences: the sequences raise too little to compare", found, cases)
	}
}

// isolate renames a case's vaults, callers and addresses after n (< 256),
// so cases sharing one store never share a key.
func isolate(evs []audit.Event, n int) []audit.Event {
	tag := fmt.Sprintf("r%d-", n)
	for i := range evs {
		e := &evs[i]
		e.Vault = tag + e.Vault
		var a, b, c, d int
		fmt.Sscanf(e.CallerIP, "%d.%d.%d.%d", &a, &b, &c, &d)
		ip := fmt.Sprintf("10.%d.%d.%d", n%256, c, d)
		if e.Caller.KeyFrom == "ip" {
			e.Caller.Key = ip
		} else {
			e.Caller.Key, e.Caller.ObjectID = tag+e.Caller.Key, tag+e.Caller.ObjectID
			if e.Caller.UPN != "" {
				e.Caller.UPN = tag + e.Caller.UPN
			}
		}
		e.CallerIP = ip
		if e.Config != nil {
			for k, p := range e.Config.PolicyObjectIDs {
				e.Config.PolicyObjectIDs[k] = tag + p
			}
		}
	}
	return evs
}
