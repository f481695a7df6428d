package detect_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/demo/demotest"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/host"
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

// BenchmarkDefaultPack runs the whole default pack through ingest and
// detection with in-memory state and, in the same run, body by body, the
// same bodies through ingest alone, on two shapes of traffic, one
// sub-benchmark each. It reports both throughputs and their ratio (goal ≥
// 0.75: rules cost no more than a quarter of ingest throughput), and the
// same ratio of the process's CPU time (cpu-ratio, with the rules' CPU per
// record): on a busy machine wall time measures the neighbours too.
//
//   - demo: at least a million records of demo traffic (7 demo days
//     repeated, shifted a week each time, so the engine sees 9+ weeks of
//     new traffic): few callers, few groups.
//   - tenant-N: demo.Tenant's realistic traffic, N application identities
//     over 20 vaults, 2 partitions, 1,000-record batches (KVWATCH_BENCH_RECORDS
//     records, 300,000 by default, at KVWATCH_BENCH_RATE records a second of
//     event time, 40 by default: two hours): many groups per batch.
func BenchmarkDefaultPack(b *testing.B) {
	rs, s := defaultPack(b)
	b.Run("demo", func(b *testing.B) {
		bodies, n := demotest.Invocations(b, 7)
		benchPack(b, bodies, (1_000_000+n-1)/n, func() packDetector { return newEngineDetector(rs, s) })
	})
	for _, callers := range []int{300, 3000} {
		b.Run(fmt.Sprintf("tenant-%d", callers), func(b *testing.B) {
			benchPack(b, tenantBodies(b, benchTenant(callers, 300_000)), 1, func() packDetector { return newEngineDetector(rs, s) })
		})
	}
}

// benchTenant is the tenant traffic of the pack's benchmarks: callers
// application identities over 20 vaults, 2 partitions,
// KVWATCH_BENCH_RECORDS records (records by default) at
// KVWATCH_BENCH_RATE records a second of event time (demo.Tenant's 40 by
// default).
func benchTenant(callers, records int) demo.TenantOptions {
	o := demo.TenantOptions{Callers: callers, Vaults: 20, Partitions: 2, Records: benchRecords(records)}
	if v, err := strconv.ParseFloat(os.Getenv("KVWATCH_BENCH_RATE"), 64); err == nil && v > 0 {
		o.Rate = v
	}
	return o
}

// benchRecords is KVWATCH_BENCH_RECORDS, or def when it is not set.
func benchRecords(def int) int {
	if v, err := strconv.Atoi(os.Getenv("KVWATCH_BENCH_RECORDS")); err == nil && v > 0 {
		return v
	}
	return def
}

// tenantBodies turns a tenant's traffic into host invocation bodies of 100
// events (of 10 records) of one partition each, the partitions' batches
// interleaved as they fill.
func tenantBodies(tb testing.TB, o demo.TenantOptions) [][]byte {
	tb.Helper()
	s := demo.Tenant(o)
	parts := make([]host.Batch, s.Options().Partitions)
	seqs := make([]int64, len(parts))
	var bodies [][]byte
	flush := func(p int) {
		if len(parts[p].Events) == 0 {
			return
		}
		b, err := host.Body(parts[p], host.StringOfObjects)
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, b)
		parts[p].Events = nil
	}
	for {
		e, ok := s.Next()
		if !ok {
			break
		}
		p := e.Partition
		parts[p].Partition = strconv.Itoa(p)
		parts[p].Events = append(parts[p].Events, host.Event{Body: demo.EventBody(e.Records), Sequence: seqs[p], Enqueued: time.Unix(0, 0)})
		seqs[p]++
		if len(parts[p].Events) == 100 {
			flush(p)
		}
	}
	for p := range parts {
		flush(p)
	}
	return bodies
}

// packDetector is what benchPack measures against ingest alone: the
// engine with the default pack, or BenchmarkDefaultPackFloor's floor.
type packDetector interface {
	consume(tb testing.TB, events []audit.Event)
	// report reports the detector's own metrics after its run.
	report(b *testing.B)
}

// engineDetector is the engine with in-memory state.
type engineDetector struct {
	en       *detect.Engine
	store    *state.Memory
	findings int
}

func newEngineDetector(rs []*rules.Rule, s *rules.Settings) *engineDetector {
	store := state.NewMemory()
	return &engineDetector{store: store, en: detect.New(rs, s, detect.Options{Store: store, Log: zerolog.Nop(),
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error { return nil })})}
}

func (d *engineDetector) consume(tb testing.TB, events []audit.Event) {
	res, err := d.en.Consume(context.Background(), events)
	if err != nil {
		tb.Fatal(err)
	}
	d.findings += res.Findings
}

func (d *engineDetector) report(b *testing.B) {
	b.ReportMetric(float64(d.findings), "findings")
	b.ReportMetric(float64(d.store.Len()), "entities-at-end")
}

// benchPack puts the bodies, reps times (moved a week each time), through
// ingest alone and through ingest and a fresh detector, body by body, and
// reports both throughputs and their ratio, in wall time and in process
// CPU time.
func benchPack(b *testing.B, bodies [][]byte, reps int, newDetector func() packDetector) {
	var tIngest, tFull time.Duration
	var cIngest, cFull time.Duration // process CPU: less sensitive to a busy machine than wall time
	var det packDetector
	total := 0
	for b.Loop() {
		total = 0
		var d ingest.Decoder
		det = newDetector()
		// Interleaved body by body, so the machine's noise falls on both alike.
		for rep := 0; rep < reps; rep++ {
			for _, body := range bodies {
				c0, t0 := cpuTime(), time.Now()
				batch := d.Invocation(body)
				move(batch, rep)
				c1, t1 := cpuTime(), time.Now()
				batch = d.Invocation(body)
				move(batch, rep)
				det.consume(b, batch.Events)
				c2, t2 := cpuTime(), time.Now()
				tIngest += t1.Sub(t0)
				tFull += t2.Sub(t1)
				cIngest += c1 - c0
				cFull += c2 - c1
				total += len(batch.Events)
			}
		}
	}
	ingestRate := float64(total*b.N) / tIngest.Seconds()
	fullRate := float64(total*b.N) / tFull.Seconds()
	b.ReportMetric(float64(total), "records")
	b.ReportMetric(ingestRate, "ingest-records/s")
	b.ReportMetric(fullRate, "ingest+rules-records/s")
	b.ReportMetric(fullRate/ingestRate, "ratio")
	if cFull > 0 {
		b.ReportMetric(float64(cIngest)/float64(cFull), "cpu-ratio")
		b.ReportMetric(float64(cFull-cIngest)/1e3/float64(total*b.N), "rules-cpu-µs/record")
	}
	det.report(b)
	b.ReportMetric(0, "ns/op")
}

// move shifts a batch by rep weeks and gives it fresh sequence numbers, so
// repetitions are new traffic, not redeliveries.
func move(b *ingest.Batch, rep int) {
	if rep == 0 {
		return
	}
	d := time.Duration(rep) * 7 * 24 * time.Hour
	for i := range b.Events {
		b.Events[i].Time = b.Events[i].Time.Add(d)
		b.Events[i].Source.Sequence += int64(rep) << 32
	}
}

// BenchmarkDefaultPackByRule runs each rule of the default pack alone,
// with in-memory state, over a tenant's traffic (demo.Tenant: 300
// application identities over 20 vaults, 2 partitions, KVWATCH_BENCH_RECORDS
// records, 100,000 by default), one sub-benchmark a rule, and reports the
// process CPU time of detection per record (rule-cpu-µs/record: decoding
// is done before and not counted) and the findings: where the pack's cost
// on many groups goes (docs/performance.md, "Detection").
func BenchmarkDefaultPackByRule(b *testing.B) {
	rs, s := defaultPack(b)
	bodies := tenantBodies(b, demo.TenantOptions{Callers: 300, Vaults: 20, Partitions: 2, Records: benchRecords(100_000)})
	for _, r := range rs {
		if r.Off != "" {
			continue
		}
		b.Run(r.ID, func(b *testing.B) {
			var cpu time.Duration
			total, findings := 0, 0
			for b.Loop() {
				total, findings = 0, 0
				en := detect.New([]*rules.Rule{r}, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
					Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error { return nil })})
				for _, body := range bodies {
					var d ingest.Decoder
					batch := d.Invocation(body)
					c0 := cpuTime()
					res, err := en.Consume(context.Background(), batch.Events)
					cpu += cpuTime() - c0
					if err != nil {
						b.Fatal(err)
					}
					findings += res.Findings
					total += len(batch.Events)
				}
			}
			b.ReportMetric(float64(cpu)/1e3/float64(total*b.N), "rule-cpu-µs/record")
			b.ReportMetric(float64(findings), "findings")
			b.ReportMetric(0, "ns/op")
		})
	}
}
