package detect_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/detect"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A window that stays over its threshold batch after batch is handed on
// once per period with its count, and again only when its count has grown
// to twice what was handed on; a batch retried after the sink failed hands
// its findings on again; the next period is a new finding.
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
	at := t0
	// next returns n more reads by caller a, a tenth of a second apart, in
	// the first minute of the period.
	next := func(n int) []audit.Event {
		evs := series("a", at, n, 100*time.Millisecond, seq)
		seq += int64(n)
		at = at.Add(time.Duration(n) * 100 * time.Millisecond)
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

	must(next(12))
	want("over the threshold", 12)
	for range 11 { // 13 … 23: the same facts, below twice 12
		must(next(1))
	}
	want("still over the threshold for 11 batches", 12)
	must(next(1))
	want("the count reached twice what was handed on", 12, 24)

	// The sink fails on the batch that doubles the count again: the batch
	// fails, and its retry hands the finding on again, with its count.
	fail = true
	batch := next(24)
	if err := consume(batch); err == nil {
		t.Fatal("a sink failure must fail the batch")
	}
	fail = false
	must(batch)
	want("retried after the sink failed", 12, 24, 48)
	must(batch) // delivered again after success: nothing new to hand on
	must(next(1))
	want("after the retry", 12, 24, 48)

	// The next cooldown period is a new finding.
	at, got = t0.Add(time.Hour), nil
	must(next(10))
	must(next(5))
	if len(got) != 1 || got[0].count != 10 {
		t.Fatalf("next period: handed on %v, want one finding with count 10", got)
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
