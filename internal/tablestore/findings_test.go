package tablestore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Findings another instance recorded first (two instances raise the same
// findings of a group their partitions share) cost a query per 14, not a
// request each: the transaction is sent again without them, and they are
// reported not added.
func TestAddFindingsRecordedElsewhere(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	ctx := context.Background()
	period := t0.Truncate(time.Hour)
	var recs []state.FindingRecord
	for i := range 100 {
		recs = append(recs, state.FindingRecord{ID: fmt.Sprintf("%024x", i), Body: []byte(`{}`), Period: period})
	}
	var theirs []state.FindingRecord
	for i := 0; i < len(recs); i += 2 {
		theirs = append(theirs, recs[i])
	}
	if _, err := b.AddFindings(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	before := a.Stats()
	got, err := a.AddFindings(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, added := range got {
		if added != (i%2 == 1) {
			t.Fatalf("finding %d: added %v, want %v", i, added, i%2 == 1)
		}
	}
	if n := a.Stats().RoundTrips() - before.RoundTrips(); n > 1+8+1 {
		t.Errorf("%d round trips, want a refused transaction, 8 queries and the transaction again", n)
	}
	again, err := a.AddFindings(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, added := range again {
		if added {
			t.Fatalf("finding %d added twice", i)
		}
	}
}

// A finding another instance recorded and delivery decided, raised again
// here (both instances share detection state), is not inserted again: an
// instance that decides findings catches its outbox views up before it
// records, and the decision says the finding was recorded: not added, no
// write.
func TestAddFindingsSkipsDecided(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	ctx := context.Background()
	var fs []finding.Finding
	var recs []state.FindingRecord
	for i := range 2 * outboxShards { // enough for a to catch up first
		f := keyed("burst", fmt.Sprintf("kv%d", i), "alice", "v0", t0)
		fs = append(fs, f)
		recs = append(recs, state.FindingRecord{ID: f.ID, Body: []byte(`{}`), Period: f.Period})
	}
	// a decides findings too: its views follow the outbox.
	if err := a.Outbox().Load(ctx, &delivery.Snapshot{}, delivery.Query{Keys: []delivery.Ref{{Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.AddFindings(ctx, recs); err != nil || slices.Contains(got, false) {
		t.Fatalf("b: %v %v", got, err)
	}
	if err := newTestDispatcher(t, b.Outbox(), &testClock{t: t0}, newHook(t), "b").Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	// a catches its views up (one query per shard) before it records:
	// the decisions tell it b recorded the findings.
	st0 := a.Stats()
	got, err := a.AddFindings(ctx, recs)
	if err != nil || slices.Contains(got, true) {
		t.Fatalf("a: %v %v, want none added", got, err)
	}
	if st := addStats(Stats{}, st0, a.Stats()); st.Transactions+st.Inserts != 0 || st.Queries > outboxShards {
		t.Fatalf("a: %+v, want the catch-ups only", st)
	}
}

// A fresh instance (a scale-out, a restart) hands on every finding its
// first batch's windows hold, all decided long ago by the others. Warmed
// when it starts (Outbox.Warm, beside serve's wiring), its outbox views
// know those decisions before that batch: the findings are not inserted
// again, refused and looked up; the batch writes nothing.
func TestAddFindingsFreshInstanceWarmed(t *testing.T) {
	p := testPrefix()
	b := newStore(t, p, Options{})
	ctx := context.Background()
	var fs []finding.Finding
	var recs []state.FindingRecord
	for i := range 3 * outboxShards {
		f := keyed("burst", fmt.Sprintf("kv%d", i), "alice", "v0", t0)
		fs = append(fs, f)
		recs = append(recs, state.FindingRecord{ID: f.ID, Body: []byte(`{}`), Period: f.Period})
	}
	if got, err := b.AddFindings(ctx, recs); err != nil || slices.Contains(got, false) {
		t.Fatalf("b: %v %v", got, err)
	}
	if err := newTestDispatcher(t, b.Outbox(), &testClock{t: t0}, newHook(t), "b").Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	fresh := newStore(t, p, Options{})
	if err := fresh.Outbox().Warm(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if !fresh.Outbox().decided(f.ID) {
			t.Fatalf("the warmed outbox does not know %s was decided", f.ID)
		}
	}
	st0 := fresh.Stats()
	got, err := fresh.AddFindings(ctx, recs)
	if err != nil || slices.Contains(got, true) {
		t.Fatalf("fresh: %v %v, want none added", got, err)
	}
	if st := addStats(Stats{}, st0, fresh.Stats()); st.Transactions+st.Inserts != 0 {
		t.Fatalf("fresh: %+v, want no write", st)
	}
	// Unwarmed, the same batch inserts them again and is refused.
	cold := newStore(t, p, Options{})
	st0 = cold.Stats()
	if got, err := cold.AddFindings(ctx, recs); err != nil || slices.Contains(got, true) {
		t.Fatalf("cold: %v %v, want none added", got, err)
	}
	if st := addStats(Stats{}, st0, cold.Stats()); st.Transactions == 0 {
		t.Fatalf("cold: %+v: the unwarmed instance wrote nothing: the test shows nothing", st)
	}
}
