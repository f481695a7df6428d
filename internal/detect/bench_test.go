package detect_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

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
	b.Run("demo", func(b *testing.B) {
		bodies, n := demotest.Invocations(b, 7)
		benchPack(b, bodies, (1_000_000+n-1)/n)
	})
	records := 300_000
	if v, err := strconv.Atoi(os.Getenv("KVWATCH_BENCH_RECORDS")); err == nil && v > 0 {
		records = v
	}
	rate := 0.0 // demo.Tenant's default: 40 records a second of event time
	if v, err := strconv.ParseFloat(os.Getenv("KVWATCH_BENCH_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	for _, callers := range []int{300, 3000} {
		b.Run(fmt.Sprintf("tenant-%d", callers), func(b *testing.B) {
			benchPack(b, tenantBodies(b, demo.TenantOptions{Callers: callers, Vaults: 20, Partitions: 2, Records: records, Rate: rate}), 1)
		})
	}
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

func benchPack(b *testing.B, bodies [][]byte, reps int) {
	rs, s := defaultPack(b)
	ctx := context.Background()
	var tIngest, tFull time.Duration
	var cIngest, cFull time.Duration // process CPU: less sensitive to a busy machine than wall time
	var findings int
	var entities int
	total := 0
	for b.Loop() {
		total = 0
		var d ingest.Decoder
		store := state.NewMemory()
		count := 0
		en := detect.New(rs, s, detect.Options{Store: store, Log: zerolog.Nop(),
			Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error { return nil })})
		// Interleaved body by body, so the machine's noise falls on both alike.
		for rep := 0; rep < reps; rep++ {
			for _, body := range bodies {
				c0, t0 := cpuTime(), time.Now()
				batch := d.Invocation(body)
				move(batch, rep)
				c1, t1 := cpuTime(), time.Now()
				batch = d.Invocation(body)
				move(batch, rep)
				res, err := en.Consume(ctx, batch.Events)
				if err != nil {
					b.Fatal(err)
				}
				count += res.Findings
				c2, t2 := cpuTime(), time.Now()
				tIngest += t1.Sub(t0)
				tFull += t2.Sub(t1)
				cIngest += c1 - c0
				cFull += c2 - c1
				total += len(batch.Events)
			}
		}
		findings, entities = count, store.Len()
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
	b.ReportMetric(float64(findings), "findings")
	b.ReportMetric(float64(entities), "entities-at-end")
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
	records := 100_000
	if v, err := strconv.Atoi(os.Getenv("KVWATCH_BENCH_RECORDS")); err == nil && v > 0 {
		records = v
	}
	rs, s := defaultPack(b)
	bodies := tenantBodies(b, demo.TenantOptions{Callers: 300, Vaults: 20, Partitions: 2, Records: records})
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
