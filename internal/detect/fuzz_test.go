package detect_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/detect/detectfuzz"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// fuzzEvents turns bytes into events (detectfuzz.Events).
func fuzzEvents(data []byte) []audit.Event { return detectfuzz.Events(data) }

// FuzzEngine feeds arbitrary event sequences through the default pack with
// memory state, as one batch and cut into several: no panic, and the same
// findings whatever the batching.
func FuzzEngine(f *testing.F) {
	f.Add([]byte("\x01\x00\x01\x01\x01\x00\x01\x02\x01\x01\x01\x02\x00\x01\x02\x0b\x01\x01\x05\x00\x01"), uint8(3))
	f.Add(slices.Repeat([]byte{1, 0, 2, 3, 9, 1, 4, 0, 1, 2, 3, 10, 0, 4, 200, 2, 5, 1, 7, 2, 1}, 40), uint8(7))
	f.Add(slices.Repeat([]byte{30, 10, 1, 1, 0, 0, 0, 30, 11, 1, 1, 1, 0, 0, 255, 9, 1, 1, 3, 0, 0}, 10), uint8(2))
	rnd := make([]byte, 2100)
	x := uint32(7)
	for i := range rnd {
		x = x*1664525 + 1013904223
		rnd[i] = byte(x >> 24)
	}
	f.Add(rnd, uint8(5))
	fuzzRules, fuzzSettings = fuzzPack(f)
	f.Fuzz(func(t *testing.T, data []byte, cuts uint8) { runFuzzBody(t, data, cuts) })
}

// fuzzPack is the default pack with every rule on.
func fuzzPack(tb testing.TB) ([]*rules.Rule, *rules.Settings) { return detectfuzz.Pack(tb) }

var fuzzRules []*rules.Rule
var fuzzSettings *rules.Settings

func runFuzzBody(t *testing.T, data []byte, cuts uint8) {
	rs, s := fuzzRules, fuzzSettings
	{
		evs := fuzzEvents(data)
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("slow: %s for %d events", d, len(evs))
			}
		}()
		run := func(n int) []string {
			got := map[string]string{}
			en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
				Now: func() time.Time { return time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) },
				Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
					for _, f := range fs {
						got[f.ID] = f.Rule + " " + finding.GroupString(f.Group) + " " + f.Period.Format(time.RFC3339) + " " + f.Value
					}
					return nil
				})})
			per := max((len(evs)+n-1)/n, 1)
			for i := 0; i < len(evs); i += per {
				batch := slices.Clone(evs[i:min(i+per, len(evs))])
				if _, err := en.Consume(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			ids := make([]string, 0, len(got))
			for _, d := range got {
				ids = append(ids, d)
			}
			slices.Sort(ids)
			return ids
		}
		one, many := run(1), run(int(cuts%8)+2)
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
			t.Fatalf("one batch: %d findings, %d batches: %d findings\nonly in one batch: %q\nonly in batches: %q", len(one), int(cuts%8)+2, len(many), only1, onlyN)
		}
	}
}
