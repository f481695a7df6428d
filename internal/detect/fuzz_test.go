package detect_test

import (
	"slices"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/detect/detectfuzz"
	"github.com/kvwatch/kvwatch/internal/state"
)

// FuzzEngine feeds arbitrary event sequences (detectfuzz.Events) through
// the default pack with every rule on, with memory state, as one batch and
// cut into several: no panic, no run past 2 s, and the same findings
// whatever the batching. internal/tablestore's TestEngineFuzzTableState
// runs the same inputs with Table state.
func FuzzEngine(f *testing.F) {
	for _, sd := range detectfuzz.Seeds() {
		f.Add(sd.Data, sd.Cuts)
	}
	rs, s := detectfuzz.Pack(f)
	f.Fuzz(func(t *testing.T, data []byte, cuts uint8) {
		evs := detectfuzz.Events(data)
		start := time.Now()
		n := int(cuts%8) + 2
		one := detectfuzz.Findings(t, rs, s, state.NewMemory(), evs, 1)
		many := detectfuzz.Findings(t, rs, s, state.NewMemory(), evs, n)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("slow: %s for %d events", d, len(evs))
		}
		if !slices.Equal(one, many) {
			var only1, onlyN []string
			for _, x := range one {
				if !slices.Contains(many, x) {
					only1 = append(only1, x)
				}
			}
			for _, x := range many {
				if !slices.Contains(one, x) {
					onlyN = append(onlyN, x)
				}
			}
			t.Fatalf("one batch: %d findings, %d batches: %d findings\nonly in one batch: %q\nonly in batches: %q",
				len(one), n, len(many), only1, onlyN)
		}
	})
}
