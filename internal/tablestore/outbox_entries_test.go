package tablestore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// An instance lists the same due entries round after round and keeps them
// decoded; what it lists is still what the table holds: another
// instance's change shows at once, and a sender's change to a listed copy
// that it did not write shows nowhere.
func TestOutboxDueKeptDecodedStaysCurrent(t *testing.T) {
	ctx := context.Background()
	prefix := testPrefix()
	a, b := newStore(t, prefix, Options{}).Outbox(), newStore(t, prefix, Options{}).Outbox()
	now := t0.Add(time.Hour)
	al := testAlert("burst", 3, t0)
	if _, err := a.Add(ctx, &delivery.Entry{Alert: al, Receivers: map[string]*delivery.Attempt{
		"teams": {State: delivery.Pending, Next: t0}, "mail": {State: delivery.Pending, Next: t0}}}); err != nil {
		t.Fatal(err)
	}
	due := func(o *Outbox) *delivery.Entry {
		t.Helper()
		es, err := o.Due(ctx, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > 1 {
			t.Fatalf("%d entries due, want at most 1", len(es))
		}
		if len(es) == 0 {
			return nil
		}
		return es[0]
	}
	first := due(a)
	if first == nil || first.Receivers["teams"].State != delivery.Pending || first.Alert.ID != al.ID {
		t.Fatalf("due: %+v", first)
	}
	// A sender changes its copy and writes nothing.
	first.Receivers["teams"].State, first.Receivers["teams"].Attempts = delivery.Delivered, 9
	again := due(a)
	if again == nil || again.Receivers["teams"].State != delivery.Pending || again.Receivers["teams"].Attempts != 0 {
		t.Fatalf("due again after a copy was changed: %+v", again.Receivers["teams"])
	}
	if len(again.Alert.Findings) != 3 || again.Version == "" || again.Version != first.Version {
		t.Fatalf("due again: %d findings, version %q (was %q)", len(again.Alert.Findings), again.Version, first.Version)
	}
	// Twice, the second time on a copy listed from what was kept.
	again.Receivers["teams"].State, again.Receivers["teams"].Attempts = delivery.Delivered, 9
	if third := due(a); third == nil || third.Receivers["teams"].State != delivery.Pending || third.Receivers["teams"].Attempts != 0 {
		t.Fatalf("due a third time after two copies were changed: %+v", third.Receivers["teams"])
	}

	// The other instance records a failed attempt: the first lists it so.
	e, err := b.Get(ctx, al.ID)
	if err != nil || e == nil {
		t.Fatalf("get: %v", err)
	}
	e.Receivers["teams"].Attempts, e.Receivers["teams"].LastError = 1, "502 from the webhook"
	if err := b.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	got := due(a)
	if got == nil || got.Receivers["teams"].Attempts != 1 || got.Receivers["teams"].LastError != "502 from the webhook" || got.Version != e.Version {
		t.Fatalf("due after the other instance's attempt: %+v (version %q, want %q)", got.Receivers["teams"], got.Version, e.Version)
	}
	// A write with the version listed before that change is refused.
	if err := a.Put(ctx, first); err == nil {
		t.Fatal("a write with the version read before another instance's change was accepted")
	}

	// Delivered to both by the other instance: not due any more.
	e.Receivers["teams"].State, e.Receivers["mail"].State = delivery.Delivered, delivery.Delivered
	e.Receivers["teams"].Done, e.Receivers["mail"].Done = now, now
	if err := b.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := due(a); got != nil {
		t.Fatalf("due after delivery: %+v", got.Receivers)
	}
	if got, err := a.Get(ctx, al.ID); err != nil || got == nil || got.Receivers["mail"].State != delivery.Delivered {
		t.Fatalf("get after delivery: %+v, %v", got, err)
	}
}

// The decoded entries kept are bounded; the newest are kept.
func TestEntryCacheBounded(t *testing.T) {
	c := newEntryCache()
	const size = 100 << 10
	n := 3 * entryCacheBytes / size
	for i := range n {
		row := fmt.Sprintf("o1/a-%d", i)
		c.put(row, "W/1", &delivery.Entry{Alert: testAlert("burst", 1, t0), Receivers: map[string]*delivery.Attempt{}}, size)
		c.put(row, "W/2", &delivery.Entry{Alert: testAlert("burst", 1, t0), Receivers: map[string]*delivery.Attempt{}}, size)
		if c.c.bytes > entryCacheBytes || c.c.len()*size != c.c.bytes {
			t.Fatalf("after %d entries: %d bytes kept for %d entries (bound %d)", i+1, c.c.bytes, c.c.len(), entryCacheBytes)
		}
	}
	if _, ok := c.get(fmt.Sprintf("o1/a-%d", n-1), "W/2"); !ok {
		t.Fatal("the newest entry was not kept")
	}
	if _, ok := c.get(fmt.Sprintf("o1/a-%d", n-1), "W/1"); ok {
		t.Fatal("an entry was found under an ETag it no longer has")
	}
	if _, ok := c.get("o1/a-0", "W/2"); ok {
		t.Fatal("the oldest entry was kept past the bound")
	}
	// One too large for the budget is not kept, and forgets what the row held.
	c.put("o1/a-big", "W/1", &delivery.Entry{Alert: testAlert("burst", 1, t0)}, size)
	c.put("o1/a-big", "W/2", &delivery.Entry{Alert: testAlert("burst", 1, t0)}, entryCacheBytes)
	if _, ok := c.get("o1/a-big", "W/1"); ok {
		t.Fatal("a row's older entry was kept when its newer one was too large to keep")
	}
}
