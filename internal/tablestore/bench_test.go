package tablestore

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/demo/demotest"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

func defaultPack(tb testing.TB) ([]*rules.Rule, *rules.Settings) {
	f, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	rs, s, err := rules.Compile(f)
	if err != nil {
		tb.Fatal(err)
	}
	return rs, s
}

// BenchmarkTableRoundTrips runs demo traffic (KVWATCH_BENCH_DAYS days,
// default 1) through the default pack with state in Table Storage
// (Azurite here) and, body by body in the same run, with state in memory.
// It reports the Table store's round trips per 1,000 records beside the
// naive figure (one read and one write per record per rule it matches)
// and their ratio (goal ≥ 50), and both throughputs.
func BenchmarkTableRoundTrips(b *testing.B) {
	days := 1
	if v, err := strconv.Atoi(os.Getenv("KVWATCH_BENCH_DAYS")); err == nil && v > 0 {
		days = v
	}
	bodies, records := demotest.Invocations(b, days)
	rs, settings := defaultPack(b)

	// Matches: what a naive store would read and write, one entity per
	// record per matching rule.
	var matches int64
	{
		en := detect.New(rs, settings, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop()})
		var d ingest.Decoder
		for _, body := range bodies {
			for _, e := range d.Invocation(body).Events {
				for _, r := range en.Rules() {
					if r.Matches(&e) || (r.Kind == rules.Sequence && r.Then != nil && r.Then.Match(&e)) {
						matches++
					}
				}
			}
		}
	}

	for _, design := range []string{"journal", "entities"} {
		b.Run("design="+design, func(b *testing.B) {
			roundTrips(b, design, bodies, records, matches, rs, settings)
		})
	}
}

func roundTrips(b *testing.B, design string, bodies [][]byte, records int, matches int64, rs []*rules.Rule, settings *rules.Settings) {
	ctx := context.Background()
	nop := detect.SinkFunc(func(context.Context, []finding.Finding) error { return nil })
	var tTable, tMem time.Duration
	var st Stats
	var entities, memEntities int
	for b.Loop() {
		var store state.Store
		var ts *Store
		var count func() int
		if design == "journal" {
			j, _ := newJournal(b, "", JournalOptions{})
			store, ts, count = j, j.s, j.Len
		} else {
			ts = newStore(b, testPrefix(), Options{})
			store, count = ts, func() int { return len(allState(b, ts)) }
		}
		mem := state.NewMemory()
		enT := detect.New(rs, settings, detect.Options{Store: store, Sink: nop, Log: zerolog.Nop()})
		enM := detect.New(rs, settings, detect.Options{Store: mem, Sink: nop, Log: zerolog.Nop()})
		var d ingest.Decoder
		for _, body := range bodies {
			batch := d.Invocation(body)
			t0 := time.Now()
			if _, err := enM.Consume(ctx, batch.Events); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			batch = d.Invocation(body)
			t2 := time.Now()
			if _, err := enT.Consume(ctx, batch.Events); err != nil {
				b.Fatal(err)
			}
			tMem += t1.Sub(t0)
			tTable += time.Since(t2)
		}
		st = ts.Stats()
		entities, memEntities = count(), mem.Len()
	}
	if entities != memEntities {
		b.Errorf("the Table store ends with %d entities, the memory store with %d", entities, memEntities)
	}
	perK := func(n int64) float64 { return float64(n) * 1000 / float64(records) }
	rt := st.RoundTrips()
	naive := 2 * matches
	b.ReportMetric(float64(records), "records")
	b.ReportMetric(perK(rt), "roundtrips/1000rec")
	b.ReportMetric(perK(naive), "naive-roundtrips/1000rec")
	b.ReportMetric(float64(naive)/float64(max(rt, 1)), "ratio")
	b.ReportMetric(perK(st.Reads+st.Queries), "reads/1000rec")
	b.ReportMetric(perK(st.Transactions), "transactions/1000rec")
	b.ReportMetric(perK(st.Writes), "entity-writes/1000rec")
	b.ReportMetric(perK(st.Inserts), "single-writes/1000rec")
	b.ReportMetric(float64(st.Conflicts), "conflicts")
	b.ReportMetric(float64(records*b.N)/tTable.Seconds(), "table-records/s")
	b.ReportMetric(float64(records*b.N)/tMem.Seconds(), "memory-records/s")
	b.ReportMetric(0, "ns/op")
}
