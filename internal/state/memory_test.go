package state_test

import (
	"context"
	"testing"

	"github.com/kvwatch/kvwatch/internal/state"
)

// A block the memory store pruned stays closed: a late update to it (a
// record redelivered from an old checkpoint) neither re-creates it nor is
// returned, as the Table journal's views do.
func TestMemoryPrunedBlockClosed(t *testing.T) {
	ctx := context.Background()
	m := state.NewMemory()
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
}
