package detect_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/state"
)

// The distinct windows' shortcuts, the long windows' index and the short
// windows' counts read from the end (scanSuffix), count what filling a set
// from every bucket counted: a tenant's traffic over half a day of event
// time (callers reading their secrets all along, so the day-long windows
// fill), in small batches of two interleaved partitions, raises the same
// findings with the same counts and windows either way, and the shortcuts
// answered window counts.
func TestDistinctIndexSameFindings(t *testing.T) {
	bodies := tenantBodies(t, demo.TenantOptions{Callers: 40, Vaults: 6, Partitions: 2, Records: 24_000, Rate: 0.5})
	rs, s := defaultPack(t)
	run := func(index bool) ([]string, int64) {
		var got []string
		en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
			Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
				for _, f := range fs {
					got = append(got, fmt.Sprintf("%s %s count %d window %s-%s value %q",
						f.Rule, f.ID, f.Count, f.WindowStart.Format(time.TimeOnly), f.WindowEnd.Format(time.TimeOnly), f.Value))
				}
				return nil
			})})
		detect.SetDistinctIndex(en, index)
		var d ingest.Decoder
		for _, body := range bodies {
			if _, err := en.Consume(context.Background(), d.Invocation(body).Events); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(got)
		return slices.Compact(got), detect.DistinctIndexAnswers(en)
	}
	want, _ := run(false)
	got, answers := run(true)
	byRule := map[string]int{} // each line starts with its rule
	for _, f := range want {
		rule, _, _ := strings.Cut(f, " ")
		byRule[rule]++
	}
	day := byRule["mass-secret-retrieval-day"]
	short := byRule["mass-secret-retrieval"] + byRule["secrets-read-across-vaults"] // the quarter-hour distinct rules
	if day == 0 || short == 0 {
		t.Fatalf("the traffic raised %d day-long and %d quarter-hour distinct findings (%d in all): the test tests nothing", day, short, len(want))
	}
	if answers == 0 {
		t.Fatal("the index answered no window count")
	}
	if !slices.Equal(got, want) {
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("with the index only: %s", f)
			}
		}
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("without the index only: %s", f)
			}
		}
	}
	t.Logf("%d findings (%d of the day-long rule), %d window counts from the index", len(want), day, answers)
}
