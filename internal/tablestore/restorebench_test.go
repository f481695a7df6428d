package tablestore

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// BenchmarkJournalRestore measures a fresh instance's restore of a journal
// shaped like the sweep's (demo.Tenant traffic at KVWATCH_BENCH_CALLERS
// callers, default 3,000, over 4 partitions, through detection and
// statistics): a snapshot of KVWATCH_BENCH_RECORDS records (default
// 60,000), then a log tail of KVWATCH_BENCH_TAIL more (default 30,000)
// written after it. Run it with -cpuprofile to see where restore goes.
func BenchmarkJournalRestore(b *testing.B) {
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	callers, records, tail := env("KVWATCH_BENCH_CALLERS", 3000), env("KVWATCH_BENCH_RECORDS", 60_000), env("KVWATCH_BENCH_TAIL", 30_000)
	const partitions = 4
	ctx := context.Background()
	// The snapshot is written by hand: no compaction on the way.
	w, prefix := newJournal(b, "", JournalOptions{CompactEntries: 1 << 30, CompactBytes: 1 << 30})
	rs, settings := defaultPack(b)
	nop := detect.SinkFunc(func(context.Context, []finding.Finding) error { return nil })
	en := detect.New(rs, settings, detect.Options{Store: w, Sink: nop, Log: zerolog.Nop()})
	stage := stats.New(w).Stage(en)
	s := demo.Tenant(demo.TenantOptions{Callers: callers, Partitions: partitions, Records: records + tail, RecordsPerEvent: 10})
	seqs := make([]int64, partitions)
	pending := make([][]host.Event, partitions)
	var d ingest.Decoder
	fed := 0
	flush := func(p int) {
		batch := host.Batch{Namespace: "double.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch",
			Partition: strconv.Itoa(p), Events: pending[p]}
		body, err := host.Body(batch, host.StringOfObjects)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stage.Consume(ctx, d.Invocation(body).Events); err != nil {
			b.Fatal(err)
		}
		pending[p] = nil
	}
	compacted := false
	enq := time.Now().UTC()
	for {
		e, ok := s.Next()
		if !ok {
			break
		}
		p := e.Partition
		pending[p] = append(pending[p], host.Event{Body: demo.EventBody(e.Records), Sequence: seqs[p], Offset: seqs[p] * 1024,
			Enqueued: enq.Add(time.Duration(seqs[p]) * time.Millisecond)})
		seqs[p]++
		fed += len(e.Records)
		if len(pending[p]) == 100 {
			flush(p)
		}
		if !compacted && fed >= records {
			if _, err := w.Compact(ctx); err != nil {
				b.Fatal(err)
			}
			compacted = true
		}
	}
	for p := range pending {
		if len(pending[p]) > 0 {
			flush(p)
		}
	}
	b.ResetTimer()
	var last *Journal
	var took, cpu []time.Duration
	for b.Loop() {
		j, _ := newJournal(b, prefix, JournalOptions{})
		start, cpu0 := time.Now(), cpuTime()
		if err := j.Restore(ctx); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		cpu = append(cpu, cpuTime()-cpu0)
		last = j
	}
	b.StopTimer()
	slices.Sort(took)
	slices.Sort(cpu)
	b.ReportMetric(float64(took[0].Milliseconds()), "min-ms")
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	// The process's CPU (user and system) during a restore: what a busy
	// machine's wall-clock figures hide.
	b.ReportMetric(float64(cpu[len(cpu)/2].Milliseconds()), "cpu-median-ms")
	last.mu.Lock()
	b.ReportMetric(float64(last.tail.entries), "tail-entries")
	b.ReportMetric(float64(last.tail.bytes), "tail-bytes")
	b.ReportMetric(float64(len(last.view)), "entities")
	last.mu.Unlock()
	sameEntities(b, w, last)
}

// sameEntities fails unless two journals' views hold the same entities.
func sameEntities(tb testing.TB, a, c *Journal) {
	tb.Helper()
	caught := func(j *Journal) map[string]string {
		j.mu.Lock()
		j.listed = time.Time{}
		j.mu.Unlock()
		if err := j.withView(context.Background(), func() error { return j.catchUp(context.Background(), "") }); err != nil {
			tb.Fatal(err)
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		out := map[string]string{}
		for k, e := range j.view {
			out[k.Rule+"\x00"+k.Group+"\x00"+strconv.FormatInt(k.Block, 10)] = canon(e)
		}
		return out
	}
	va, vc := caught(a), caught(c)
	if len(va) != len(vc) {
		tb.Fatalf("views differ: %d entities and %d", len(va), len(vc))
	}
	// Two instances fold the streams' logs in different orders: every
	// delta commutes (statistics tallies too: state.Delta).
	diff := map[string]int{}
	for k, e := range va {
		if vc[k] != e {
			diff[k[:strings.IndexByte(k, 0)]]++
		}
	}
	if len(diff) > 0 {
		tb.Errorf("entities that differ, by rule: %v", diff)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
