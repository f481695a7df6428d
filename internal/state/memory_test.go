package state_test

import (
	"context"
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
