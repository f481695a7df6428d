package state_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/state"
)

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
	inc := func(_ state.Key, e *state.Entity) bool {
		if e.Counts == nil {
			e.Counts = map[int64]int64{}
		}
		e.Counts[1]++
		return true
	}
	if _, err := m.Update(ctx, []state.Key{k, live}, inc); err != nil {
		t.Fatal(err)
	}
	if n, _ := m.Prune(ctx, func(key state.Key) bool { return key == k }); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	got, err := m.Update(ctx, []state.Key{k, live}, inc)
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
	if got, _ := m.Update(ctx, []state.Key{k}, inc); got[k] == nil || got[k].Counts[1] != 1 {
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
