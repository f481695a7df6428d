package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

func rec(corr string, seq int64) audit.Event {
	return audit.Event{Time: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), Operation: "SecretGet", Vault: "kv1",
		CorrelationID: corr, Caller: audit.Caller{Key: "a"}, HTTPStatus: 200,
		Source: audit.Source{Partition: "0", Sequence: seq, HasSequence: true}}
}

func TestDedup(t *testing.T) {
	d := pipeline.NewDedup(4)
	for _, tc := range []struct {
		name    string
		in      []audit.Event
		kept    int
		dropped int
	}{
		{"new records pass", []audit.Event{rec("a", 1), rec("b", 2)}, 2, 0},
		{"the same record at another position is a duplicate", []audit.Event{rec("a", 7)}, 0, 1},
		{"the same record at the same position is a redelivery and passes", []audit.Event{rec("a", 1), rec("b", 2)}, 2, 0},
		{"duplicates within one batch", []audit.Event{rec("c", 3), rec("c", 4), rec("c", 5)}, 1, 2},
		{"a different record with the same correlation id passes", []audit.Event{func() audit.Event { e := rec("c", 6); e.HTTPStatus = 403; return e }()}, 1, 0},
	} {
		out, dropped := d.Filter(tc.in)
		if len(out) != tc.kept || dropped != tc.dropped {
			t.Errorf("%s: kept %d dropped %d, want %d and %d", tc.name, len(out), dropped, tc.kept, tc.dropped)
		}
	}
	// Memory is bounded: after 4 more records, "a" is forgotten.
	for i := 0; i < 4; i++ {
		d.Filter([]audit.Event{rec(string(rune('p'+i)), int64(100+i))})
	}
	if out, _ := d.Filter([]audit.Event{rec("a", 99)}); len(out) != 1 {
		t.Errorf("a forgotten record must pass again")
	}
	var nilD *pipeline.Dedup
	if out, n := nilD.Filter([]audit.Event{rec("x", 1)}); len(out) != 1 || n != 0 {
		t.Errorf("a nil Dedup passes everything")
	}
}

// at returns rec(corr, seq) as the host's invocation numbers it: event
// index ev within the invocation, in partition part of hub hub.
func at(corr string, hub, part string, seq int64, ev int) audit.Event {
	e := rec(corr, seq)
	e.Source.Namespace, e.Source.Hub, e.Source.Partition, e.Source.Event = "ns.servicebus.windows.net", hub, part, ev
	return e
}

func TestDedupCheckThenRecord(t *testing.T) {
	d := pipeline.NewDedup(100)
	// A batch of sequence numbers 10..12 fails: nothing is remembered.
	first := []audit.Event{at("a", "h", "0", 10, 0), at("b", "h", "0", 11, 1), at("c", "h", "0", 12, 2)}
	out, n, c := d.Check(first)
	if len(out) != 3 || n != 0 {
		t.Fatalf("first attempt: kept %d dropped %d", len(out), n)
	}
	d.Release(c)
	// The host delivers again from sequence number 8: every event's index
	// within the invocation moved by two. All of it passes.
	again := []audit.Event{at("x", "h", "0", 8, 0), at("y", "h", "0", 9, 1),
		at("a", "h", "0", 10, 2), at("b", "h", "0", 11, 3), at("c", "h", "0", 12, 4)}
	out, n, c = d.Check(again)
	if len(out) != 5 || n != 0 {
		t.Fatalf("redelivery from an earlier sequence number: kept %d dropped %d, want 5 and 0", len(out), n)
	}
	d.Record(c)
	// Applied; delivered once more, cut differently again: still a
	// redelivery (same positions), not duplicates.
	out, n, c = d.Check([]audit.Event{at("b", "h", "0", 11, 0), at("c", "h", "0", 12, 1)})
	if len(out) != 2 || n != 0 {
		t.Fatalf("redelivery after it was applied: kept %d dropped %d, want 2 and 0", len(out), n)
	}
	d.Record(c)
	// The same record at another position is a true duplicate: on
	// another partition, another hub, or another sequence number.
	for _, e := range []audit.Event{at("a", "h", "1", 10, 0), at("a", "other", "0", 10, 0), at("a", "h", "0", 40, 0)} {
		if out, n, _ := d.Check([]audit.Event{e}); len(out) != 0 || n != 1 {
			t.Errorf("%+v: kept %d dropped %d, want a duplicate", e.Source, len(out), n)
		}
	}
	// Another record of the same event (record index) is not a position
	// the first one was seen at.
	e := at("a", "h", "0", 10, 2)
	e.Source.Record = 1
	if out, n, _ := d.Check([]audit.Event{e}); len(out) != 0 || n != 1 {
		t.Errorf("the same record as another record of the event: kept %d dropped %d, want a duplicate", len(out), n)
	}
}

func TestDedupInFlight(t *testing.T) {
	d := pipeline.NewDedup(100)
	// Partition 0's batch is in flight when partition 1's, holding a copy
	// of one of its records, is checked: the copy is dropped.
	_, _, c0 := d.Check([]audit.Event{at("a", "h", "0", 1, 0), at("b", "h", "0", 2, 1)})
	out, n, c1 := d.Check([]audit.Event{at("b", "h", "1", 7, 0), at("z", "h", "1", 8, 1)})
	if len(out) != 1 || n != 1 || out[0].CorrelationID != "z" {
		t.Fatalf("copy of an in-flight record: kept %v dropped %d", out, n)
	}
	d.Record(c1)
	// Partition 0's batch fails and comes again: the record is applied
	// there, once.
	d.Release(c0)
	out, n, c0 = d.Check([]audit.Event{at("a", "h", "0", 1, 0), at("b", "h", "0", 2, 1)})
	if len(out) != 2 || n != 0 {
		t.Fatalf("redelivered batch: kept %d dropped %d, want 2 and 0", len(out), n)
	}
	d.Record(c0)
}

// failOnce is a stage that fails its first call and keeps what it applied.
type failOnce struct {
	calls   int
	applied []audit.Event
}

func (f *failOnce) Consume(_ context.Context, evs []audit.Event) (pipeline.Result, error) {
	f.calls++
	if f.calls == 1 {
		return pipeline.Result{}, errors.New("table storage unavailable")
	}
	f.applied = append(f.applied, evs...)
	return pipeline.Result{}, nil
}

func TestProcessRecordsOnlyAppliedBatches(t *testing.T) {
	next := &failOnce{}
	p := &pipeline.Pipeline{Dedup: pipeline.NewDedup(100), Next: next, Log: zerolog.Nop()}
	ctx := context.Background()
	b := &ingest.Batch{Events: []audit.Event{at("a", "h", "0", 10, 0), at("b", "h", "0", 11, 1)}}
	if _, err := p.Process(ctx, b); err == nil {
		t.Fatal("the failing stage did not fail the batch")
	}
	b = &ingest.Batch{Events: []audit.Event{at("x", "h", "0", 9, 0), at("a", "h", "0", 10, 1), at("b", "h", "0", 11, 2)}}
	sum, err := p.Process(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.applied) != 3 || sum.Duplicates != 0 {
		t.Fatalf("redelivery from an earlier sequence number: applied %d, %d duplicates; want 3 and 0", len(next.applied), sum.Duplicates)
	}
	// Once applied, a copy elsewhere is a duplicate.
	sum, _ = p.Process(ctx, &ingest.Batch{Events: []audit.Event{at("a", "h", "1", 3, 0)}})
	if sum.Duplicates != 1 || len(next.applied) != 3 {
		t.Fatalf("copy of an applied record: %d duplicates, %d applied", sum.Duplicates, len(next.applied))
	}
}
