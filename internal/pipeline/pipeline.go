// Package pipeline is the one path every door (serve, replay, consume)
// sends its input through after ingest: dead letters stored, events handed
// to the next stage, a summary returned.
package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/ingest"
)

// Stage consumes the normalized events of one batch. An error means the
// batch should be retried (a dependency failed), never that the data was
// bad: bad data is dead-lettered before it gets here.
type Stage interface {
	Consume(ctx context.Context, events []audit.Event) (Result, error)
}

// Result is what a stage reports about a batch.
type Result struct {
	Findings int // findings raised
}

// StageFunc adapts a function to Stage.
type StageFunc func(ctx context.Context, events []audit.Event) (Result, error)

// Consume implements Stage.
func (f StageFunc) Consume(ctx context.Context, events []audit.Event) (Result, error) {
	return f(ctx, events)
}

// Pipeline processes ingested batches.
type Pipeline struct {
	Letters deadletter.Sink
	// Dedup, when set, drops records delivered twice at different
	// positions; it remembers a batch's records only after Next applied it.
	Dedup *Dedup
	Next  Stage
	Log   zerolog.Logger
	Now   func() time.Time
}

// Summary describes one processed batch.
type Summary struct {
	Partition  string
	Stats      ingest.Stats
	Duplicates int // records dropped as delivered twice
	Result     Result
	Elapsed    time.Duration

	// Isolated counts the records dead-lettered because the store refused
	// their data (they are in Stats.DeadLettered too); the rest of the
	// batch was applied.
	Isolated int
}

// String is the one-line summary the host's Logs and replay print.
func (s Summary) String() string {
	p := ""
	if s.Partition != "" {
		p = "partition " + s.Partition + ": "
	}
	st := s.Stats
	dup := ""
	if s.Duplicates > 0 {
		dup = fmt.Sprintf(" (%d duplicates dropped)", s.Duplicates)
	}
	iso := ""
	if s.Isolated > 0 {
		iso = fmt.Sprintf(" (%d could not be stored)", s.Isolated)
	}
	return fmt.Sprintf("kvwatch: %s%d events, %d records, %d accepted%s, %d skipped, %d dead-lettered%s, %d findings in %s",
		p, st.Events, st.Records, st.Accepted, dup, st.Skipped, st.DeadLettered, iso, s.Result.Findings,
		s.Elapsed.Round(time.Microsecond))
}

// Process stores the batch's dead letters, then hands its events on. It
// returns an error only when a dependency failed and a retry can help.
func (p *Pipeline) Process(ctx context.Context, b *ingest.Batch) (Summary, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	start := now()
	sum := Summary{Partition: b.Partition.PartitionID, Stats: b.Stats}
	if len(b.Letters) > 0 && p.Letters != nil {
		if err := p.Letters.Put(ctx, b.Letters); err != nil {
			return sum, fmt.Errorf("store %d dead letters: %w", len(b.Letters), err)
		}
	}
	// Duplicates are dropped before the batch is applied and its records
	// remembered only once it was: a batch that fails (or panics) is
	// remembered by nothing, so its redelivery is applied in full.
	var checked Checked
	b.Events, sum.Duplicates, checked = p.Dedup.Check(b.Events)
	applied := false
	defer func() {
		if applied {
			p.Dedup.Record(checked)
		} else {
			p.Dedup.Release(checked)
		}
	}()
	if p.Next != nil && len(b.Events) > 0 {
		res, isolated, err := p.consume(ctx, b, b.Events)
		sum.Isolated, sum.Stats = isolated, b.Stats // with the records isolated
		if err != nil {
			return sum, fmt.Errorf("process %d events: %w", len(b.Events), err)
		}
		sum.Result = res
	}
	applied = true
	sum.Elapsed = now().Sub(start)
	if len(b.Problems) > 0 {
		p.Log.Warn().Str("partition", sum.Partition).Strs("problems", b.Problems).Msg("batch had problems")
	}
	st := b.Stats
	p.Log.Info().Str("metric", "ingest").Str("partition", sum.Partition).
		Int("events", st.Events).Int("records", st.Records).Int("accepted", st.Accepted).
		Int("skipped", st.Skipped).Int("skipped_metrics", st.Metrics).
		Int("skipped_categories", st.Categories).Int("skipped_resources", st.Resources).
		Int("dead_lettered", st.DeadLettered).Int("duplicates", sum.Duplicates).Int("findings", sum.Result.Findings).
		Dur("elapsed", sum.Elapsed).Msg("batch processed")
	return sum, nil
}
