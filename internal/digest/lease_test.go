package digest_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A claim carries a lease: a run that claims and crashes before sending
// (neither Done nor Release) holds the period only until the lease runs
// out; then the next run claims it and sends. A digest marked done is
// never claimed again, and Release does not undo Done.
func TestOnceLease(t *testing.T) {
	for name, store := range map[string]state.Store{"memory": state.NewMemory(), "retrying": &retrying{Memory: state.NewMemory()}} {
		ctx := context.Background()
		ps := day(2026, 11, 23)
		at := ps.Add(32 * time.Hour) // 08:00 the next day
		claim := func(now time.Time) bool {
			t.Helper()
			first, err := digest.OnceAt(ctx, store, digest.Daily, ps, now, 30*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return first
		}
		if !claim(at) {
			t.Fatalf("%s: first claim refused", name)
		}
		// The claimer crashes. Within the lease, nobody else sends.
		if claim(at.Add(29 * time.Minute)) {
			t.Fatalf("%s: claimed again within the lease", name)
		}
		// The next hourly run, the lease over: claimed again, once.
		if !claim(at.Add(time.Hour)) {
			t.Fatalf("%s: the crashed run's period was lost", name)
		}
		if claim(at.Add(time.Hour + time.Minute)) {
			t.Fatalf("%s: claimed twice after the lease ran out", name)
		}
		if err := digest.Done(ctx, store, digest.Daily, ps); err != nil {
			t.Fatal(err)
		}
		if err := digest.Release(ctx, store, digest.Daily, ps); err != nil {
			t.Fatal(err)
		}
		if claim(at.Add(48 * time.Hour)) {
			t.Fatalf("%s: a digest sent was claimed again", name)
		}
	}
}

// A marker written before claims had leases (a token alone) counts as sent.
func TestOnceOldMarker(t *testing.T) {
	store := state.NewMemory()
	ps := day(2026, 11, 23)
	if _, err := store.Update(context.Background(), []state.Key{{Rule: "_digest", Group: "daily", Block: ps.Unix()}},
		func(_ state.Key, e *state.Entity) bool {
			e.Tally = map[string]int64{"claim:0123": 1}
			return true
		}); err != nil {
		t.Fatal(err)
	}
	if first, _ := digest.OnceAt(context.Background(), store, digest.Daily, ps, ps.Add(1000*time.Hour), time.Minute); first {
		t.Fatal("an old claim was taken again")
	}
}
