package detect_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/groupkey"
	"github.com/kvwatch/kvwatch/internal/state"
)

// One process reads two partitions at once (serve with memory state): the
// engine consumes their batches concurrently, over the same groups, and
// each partition's batches are delivered twice. The state counts every
// record once and the findings are those of the same batches consumed one
// at a time (run it with -race too: what one batch reads of the state must
// not change under it while the other writes).
func TestPartitionsAtOnceCountOnce(t *testing.T) {
	callers := []string{"a", "b", "c", "d", "e", "f"}
	r := rand.New(rand.NewPCG(3, 4))
	var parts [2][]audit.Event
	at := t0
	for range 1200 {
		at = at.Add(time.Duration(r.IntN(6)) * time.Second)
		p := r.IntN(2)
		e := ev(callers[r.IntN(len(callers))], at, int64(len(parts[p])))
		e.Source.Partition = fmt.Sprint(p)
		e.ObjectName = fmt.Sprintf("s%d", r.IntN(15))
		if r.IntN(25) == 0 {
			e.Operation, e.Kind, e.ObjectName = "SecretList", audit.KindList, ""
		}
		parts[p] = append(parts[p], e)
	}
	batches := func(p int) [][]audit.Event {
		var out [][]audit.Event
		for i := 0; i < len(parts[p]); i += 40 {
			out = append(out, parts[p][i:min(i+40, len(parts[p]))])
		}
		return out
	}

	type run struct {
		store *state.Memory
		en    *detect.Engine
		mu    sync.Mutex
		ids   map[string]bool
	}
	newRun := func() *run {
		rs, s := compile(t, windowsPack)
		x := &run{store: state.NewMemory(), ids: map[string]bool{}}
		x.en = detect.New(rs, s, detect.Options{Store: x.store, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
			Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
				x.mu.Lock()
				defer x.mu.Unlock()
				for _, f := range fs {
					x.ids[f.Rule+"|"+finding.GroupString(f.Group)+"|"+f.Period.Format(time.RFC3339)] = true
				}
				return nil
			})})
		return x
	}
	consume := func(x *run, b []audit.Event) error {
		_, err := x.en.Consume(context.Background(), slices.Clone(b))
		return err
	}
	// What the state holds: the reads counted per caller (burst, every
	// vault-and-caller block), and the names seen per caller and bucket
	// (sweep).
	held := func(x *run) string {
		var keys []state.Key
		for _, c := range callers {
			for b := t0.Unix()/3600 - 1; b <= at.Unix()/3600+1; b++ {
				keys = append(keys,
					state.Key{Rule: "burst", Group: groupkey.Join("kv1", c), Block: b},
					state.Key{Rule: "sweep", Group: groupkey.Join(c), Block: b})
			}
		}
		got, err := x.store.Get(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, k := range keys {
			if e := got[k]; e != nil {
				out += fmt.Sprintln(k, e.Counts, e.Values)
			}
		}
		return out
	}
	ids := func(x *run) []string {
		var out []string
		for id := range x.ids {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}

	one := newRun()
	b0, b1 := batches(0), batches(1)
	for i := range max(len(b0), len(b1)) {
		for _, bs := range [][][]audit.Event{b0, b1} {
			if i < len(bs) {
				if err := consume(one, bs[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	want, wantIDs := held(one), ids(one)
	if len(wantIDs) < 4 || len(want) < 1000 {
		t.Fatalf("the scenario should raise several findings and hold state, got %v and\n%s", wantIDs, want)
	}

	both := newRun()
	errs := make(chan error, 2)
	for _, bs := range [][][]audit.Event{b0, b1} {
		go func() {
			for range 2 { // every batch delivered twice
				for _, b := range bs {
					if err := consume(both, b); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := held(both); got != want {
		t.Fatalf("state after both partitions at once:\n%s\nwant, as one at a time:\n%s", got, want)
	}
	if got := ids(both); !slices.Equal(got, wantIDs) {
		t.Fatalf("findings\n%v\nwant\n%v", got, wantIDs)
	}
}
