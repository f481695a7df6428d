package detect_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A caller over the threshold in batch after batch of a period is handed
// on once per period with its count, and again only when the count grows;
// a redelivered batch hands nothing again; a batch retried after the sink
// failed hands its findings on again; the next period is a new finding.
func TestAWindowOverItsThresholdIsHandedOnOncePerPeriod(t *testing.T) {
	rs, s := compile(t, thresholdRule)
	type handing struct {
		id    string
		count int64
	}
	var got []handing
	fail := false
	store := state.NewMemory()
	en := detect.New(rs, s, detect.Options{Store: store, Log: zerolog.Nop(), Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			if fail {
				return errors.New("receiver store unavailable")
			}
			for _, f := range fs {
				got = append(got, handing{f.ID, f.Count})
			}
			return nil
		})})
	seq := int64(0)
	// burst returns n reads by caller a, a second apart, from at on.
	burst := func(at time.Time, n int) []audit.Event {
		evs := series("a", at, n, time.Second, seq)
		seq += int64(n)
		return evs
	}
	consume := func(evs []audit.Event) error {
		_, err := en.Consume(context.Background(), slices.Clone(evs))
		return err
	}
	must := func(evs []audit.Event) {
		t.Helper()
		if err := consume(evs); err != nil {
			t.Fatal(err)
		}
	}
	want := func(step string, w ...int64) {
		t.Helper()
		var counts []int64
		for _, h := range got {
			counts = append(counts, h.count)
		}
		if !slices.Equal(counts, w) {
			t.Fatalf("%s: handed on counts %v, want %v", step, counts, w)
		}
		for _, h := range got[1:] {
			if h.id != got[0].id {
				t.Fatalf("%s: handed on %s and %s, want one finding", step, got[0].id, h.id)
			}
		}
	}

	// Twelve reads every ten minutes: every batch raises the period's
	// finding again, with the same count.
	for i := range 5 {
		must(burst(t0.Add(time.Duration(i)*10*time.Minute), 12))
	}
	want("over the threshold in five batches", 12)
	last := burst(t0.Add(50*time.Minute), 20)
	must(last)
	want("a batch with a higher count", 12, 20)
	must(last) // redelivered: counted once, nothing new to hand on
	want("redelivered", 12, 20)

	// The sink fails on a batch that grows the count: the batch fails, and
	// its retry hands the finding on again, with its count.
	fail = true
	grown := burst(t0.Add(52*time.Minute), 5) // the window from 0:50 holds 25
	if err := consume(grown); err == nil {
		t.Fatal("a sink failure must fail the batch")
	}
	fail = false
	must(grown)
	want("retried after the sink failed", 12, 20, 25)

	// The next cooldown period is a new finding.
	got = nil
	must(burst(t0.Add(70*time.Minute), 12))
	must(burst(t0.Add(80*time.Minute), 12))
	if len(got) != 1 || got[0].count != 12 {
		t.Fatalf("next period: handed on %v, want one finding with count 12", got)
	}
	if n := len(store.Findings()); n != 2 {
		t.Fatalf("%d findings recorded, want 2 (one per period)", n)
	}
}

// A batch retried after its sink failed hands its findings on again, also
// when the engine handed the same finding on before the failure.
func TestARetryAfterASinkFailureHandsOnAgain(t *testing.T) {
	rs, s := compile(t, thresholdRule)
	calls, fail := 0, false
	var ids []string
	en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(),
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			calls++
			if fail {
				return errors.New("down")
			}
			for _, f := range fs {
				ids = append(ids, f.ID)
			}
			return nil
		})})
	evs := series("a", t0, 12, time.Second, 0)
	fail = true
	for range 3 {
		if _, err := en.Consume(context.Background(), slices.Clone(evs)); err == nil {
			t.Fatal("a sink failure must fail the batch")
		}
	}
	fail = false
	if _, err := en.Consume(context.Background(), slices.Clone(evs)); err != nil {
		t.Fatal(err)
	}
	if calls != 4 || len(ids) != 1 {
		t.Fatalf("sink called %d times (want 4: every attempt), handed on %v (want one finding)", calls, ids)
	}
}

// An each finding is handed on again, with its operations, when a later
// batch of its period brings an operation it was not handed on with, even
// with no more events than before: a VaultDelete after the VaultPatch
// that raised the finding is the incident growing, not a repeat. A batch
// that only repeats known operations at the same count is not handed on.
func TestANewOperationHandsTheFindingOnAgain(t *testing.T) {
	rs, s := compile(t, `
rules:
  - id: admin
    kind: each
    match: {families: [vault], kinds: [write, delete, purge]}
    group_by: [vault, caller]
    cooldown: 1h
`)
	var got []finding.Finding
	en := detect.New(rs, s, detect.Options{Store: state.NewMemory(), Log: zerolog.Nop(), Now: func() time.Time { return t0 },
		Sink: detect.SinkFunc(func(_ context.Context, fs []finding.Finding) error {
			got = append(got, fs...)
			return nil
		})})
	seq := int64(0)
	op := func(name string, k audit.Kind, at time.Time) audit.Event {
		seq++
		return ev("alice", at, seq, func(e *audit.Event) {
			e.Operation, e.Family, e.Kind, e.ObjectType, e.ObjectName = name, audit.FamilyVault, k, "", ""
		})
	}
	feed := func(evs ...audit.Event) {
		t.Helper()
		if _, err := en.Consume(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	feed(op("VaultPatch", audit.KindWrite, t0.Add(5*time.Minute)))
	feed(op("VaultPatch", audit.KindWrite, t0.Add(10*time.Minute))) // the same fact again
	feed(op("VaultDelete", audit.KindDelete, t0.Add(30*time.Minute)))
	feed(op("VaultPurge", audit.KindPurge, t0.Add(31*time.Minute)))
	var ops [][]string
	for _, f := range got {
		if f.ID != got[0].ID {
			t.Fatalf("handed on %s and %s: want one finding of the hour", got[0].ID, f.ID)
		}
		ops = append(ops, f.Operations)
	}
	want := [][]string{{"VaultPatch"}, {"VaultDelete"}, {"VaultPurge"}}
	if fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Fatalf("handed on with operations %v, want %v", ops, want)
	}
}
