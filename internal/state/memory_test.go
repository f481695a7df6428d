package state_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/state"
)

// countOne counts one event in bucket 1 of an entity.
func countOne(_ state.Key, e *state.Entity) bool {
	if e.Counts == nil {
		e.Counts = map[int64]int64{}
	}
	e.Counts[1]++
	return true
}

// A block the memory store pruned stays closed: a late update to it (a
// record redelivered from an old checkpoint) neither re-creates it nor is
// returned, as the Table journal's views do.
func TestMemoryPrunedBlockClosed(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	m := state.NewMemory()
	m.Now = func() time.Time { return now }
	k := state.Key{Rule: "burst", Group: "g", Block: 10}
	live := state.Key{Rule: "burst", Group: "g", Block: 11}
	if _, err := m.Update(ctx, []state.Key{k, live}, countOne); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.Prune(ctx, func(key state.Key) bool { return key == k }); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	got, err := m.Update(ctx, []state.Key{k, live}, countOne)
	if err != nil {
		t.Fatal(err)
	}
	if got[k] != nil || m.Len() != 1 {
		t.Fatalf("the pruned block came back: %+v (%d entities)", got[k], m.Len())
	}
	if got[live] == nil || got[live].Counts[1] != 2 {
		t.Fatalf("the live block: %+v", got[live])
	}
	// Closed for state.ClosedFor: past it, a block so late is re-created.
	now = now.Add(state.ClosedFor + time.Second)
	m.Prune(ctx, func(state.Key) bool { return false })
	if got, _ := m.Update(ctx, []state.Key{k}, countOne); got[k] == nil || got[k].Counts[1] != 1 {
		t.Fatalf("an hour later, the block: %+v", got[k])
	}
}

// The memory store lives as long as its process (serve without Table
// Storage, a month's replay): the findings it remembers are bounded, a
// finding recorded is not new again while it is remembered, and one
// forgotten is recorded again.
func TestMemoryFindingsBounded(t *testing.T) {
	ctx := context.Background()
	m := state.NewMemory()
	id := func(i int) string { return fmt.Sprintf("f%07d", i) }
	total := state.MaxFindings + state.MaxFindings/5
	for i := range total {
		if added, _ := m.AddFinding(ctx, id(i), []byte(`{"id":"`+id(i)+`"}`)); !added {
			t.Fatalf("finding %d: not added the first time", i)
		}
	}
	if added, _ := m.AddFinding(ctx, id(total-1), nil); added {
		t.Error("the last finding recorded: added again")
	}
	if added, _ := m.AddFinding(ctx, id(total-state.MaxFindings*9/10), nil); added {
		t.Error("a finding among the last nine tenths of the bound: added again")
	}
	if added, _ := m.AddFinding(ctx, id(0), []byte(`{"id":"again"}`)); !added {
		t.Error("the first finding, past the bound: still remembered")
	}
	bodies := m.Findings()
	if len(bodies) > state.MaxFindingBodies || len(bodies) < state.MaxFindingBodies*9/10 {
		t.Fatalf("%d bodies kept, want %d to %d", len(bodies), state.MaxFindingBodies*9/10, state.MaxFindingBodies)
	}
	if got := string(bodies[len(bodies)-1]); got != `{"id":"again"}` {
		t.Errorf("last body %s, want the finding recorded last", got)
	}
	if got, want := string(bodies[len(bodies)-2]), `{"id":"`+id(total-1)+`"}`; got != want {
		t.Errorf("body before it %s, want %s", got, want)
	}
}

// An InPlace update changes the stored entity itself only while no one
// holds it: what a batch read under a lease, or anything handed out
// without one, reads the same until it is let go, whatever other batches
// change meanwhile; an entity no one holds is changed without a copy.
func TestMemoryInPlaceLeavesHeldEntities(t *testing.T) {
	bg := context.Background()
	m := state.NewMemory()
	k := state.Key{Rule: "burst", Group: "g", Block: 10}
	// update changes k as a batch does: under a lease of its own, let go
	// of at once (what it returns is only looked at, not read as state).
	update := func() *state.Entity {
		t.Helper()
		var l state.Lease
		defer l.Release()
		got, err := m.Update(state.InPlace(state.WithLease(bg, &l)), []state.Key{k}, countOne)
		if err != nil {
			t.Fatal(err)
		}
		return got[k]
	}
	get := func(ctx context.Context) *state.Entity {
		t.Helper()
		got, err := m.Get(ctx, []state.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		return got[k]
	}
	update() // 1

	var l state.Lease
	held := get(state.WithLease(bg, &l))
	update() // 2, while held
	if held.Counts[1] != 1 {
		t.Fatalf("an entity held under a lease changed under its holder: %v", held.Counts)
	}
	if now := get(bg); now.Counts[1] != 2 { // pins it
		t.Fatalf("the update was lost: %v", now.Counts)
	}
	l.Release()

	pinned := get(bg) // without a lease: held for good
	update()          // 3
	update()          // 4
	if pinned.Counts[1] != 2 {
		t.Fatalf("an entity handed out without a lease changed: %v", pinned.Counts)
	}

	// No one holds it: the next update changes it in place.
	e := update() // 5, copied (the pinned one was replaced at 3; the copy is no one's)
	e2 := update()
	if e2 != e || e2.Counts[1] != 6 {
		t.Fatalf("an entity no one held was copied (or miscounted): same %v, counts %v", e2 == e, e2.Counts)
	}

	// Without InPlace, a change the ApplyFunc does not report is dropped.
	if _, err := m.Update(bg, []state.Key{k}, func(_ state.Key, e *state.Entity) bool { e.First = 7; return false }); err != nil {
		t.Fatal(err)
	}
	if got := get(bg); got.First != 0 || got.Counts[1] != 6 {
		t.Fatalf("an unreported change was kept without InPlace: %+v", got)
	}
}

// Batches updating and reading shared entities at once, each under its
// own lease, count every update once and never see an entity they hold
// change (run it with -race too).
func TestMemoryInPlaceConcurrent(t *testing.T) {
	bg := context.Background()
	m := state.NewMemory()
	shared := state.Key{Rule: "burst", Group: "g", Block: 10}
	const workers, rounds = 4, 400
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			own := state.Key{Rule: "burst", Group: fmt.Sprint("w", w), Block: 10}
			for i := range rounds {
				var l state.Lease
				ctx := state.WithLease(bg, &l)
				got, err := m.Update(state.InPlace(ctx), []state.Key{shared, own}, countOne)
				if err != nil {
					errs <- err
					return
				}
				read, err := m.Get(ctx, []state.Key{shared})
				if err != nil {
					errs <- err
					return
				}
				s, o, r := got[shared].Counts[1], got[own].Counts[1], read[shared].Counts[1]
				if o != int64(i+1) || r < s {
					errs <- fmt.Errorf("worker %d round %d: own count %d, shared %d then %d", w, i, o, s, r)
					return
				}
				for range 10 {
					if got[shared].Counts[1] != s || read[shared].Counts[1] != r {
						errs <- fmt.Errorf("worker %d round %d: a held entity changed", w, i)
						return
					}
				}
				l.Release()
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got, _ := m.Get(bg, []state.Key{shared})
	if got[shared].Counts[1] != workers*rounds {
		t.Fatalf("shared count %d, want %d", got[shared].Counts[1], workers*rounds)
	}
}
