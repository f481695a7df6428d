package tablestore

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
)

// pruneContract: Prune deletes entries no receiver waits for (delivered,
// muted, given up) done before the cut, with their place in Recent, and
// decisions and cooldowns from before it; an entry still waiting stays
// however old, and so does what is newer than the cut.
func pruneContract(t *testing.T, o delivery.Outbox) {
	ctx := context.Background()
	base := time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC)
	add := func(rule string, created time.Time, st delivery.State, done time.Time) string {
		t.Helper()
		a := testAlert(rule, 1, created)
		e := &delivery.Entry{Alert: a, Receivers: map[string]*delivery.Attempt{"hook": {State: delivery.Pending, Next: created}}}
		if _, err := o.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
		if st != delivery.Pending {
			got, err := o.Get(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			got.Receivers["hook"].State, got.Receivers["hook"].Done = st, done
			if err := o.Put(ctx, got); err != nil {
				t.Fatal(err)
			}
		}
		return a.ID
	}
	oldSent := add("old-sent", base, delivery.Delivered, base.Add(time.Minute))
	oldMuted := add("old-muted", base.Add(time.Second), delivery.Muted, base.Add(time.Second))
	oldWaiting := add("old-waiting", base.Add(2*time.Second), delivery.Pending, time.Time{})
	newSent := add("new-sent", base.Add(48*time.Hour), delivery.Delivered, base.Add(48*time.Hour))
	if err := o.Decide(ctx, map[string]delivery.Decision{
		"f-old": {Alert: oldSent, At: base}, "f-new": {Alert: newSent, At: base.Add(48 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	for key, last := range map[string]time.Time{"old|k": base, "new|k": base.Add(48 * time.Hour)} {
		if err := o.SetCooldown(ctx, key, delivery.Cooldown{Last: last}); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := o.Prune(ctx, base.Add(-time.Hour)); err != nil || p != (delivery.Pruned{}) {
		t.Fatalf("prune before everything: %+v %v", p, err)
	}
	p, err := o.Prune(ctx, base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p != (delivery.Pruned{Entries: 2, Decisions: 1, Cooldowns: 1}) {
		t.Fatalf("pruned %+v, want 2 entries, 1 decision, 1 cooldown", p)
	}
	for id, want := range map[string]bool{oldSent: false, oldMuted: false, oldWaiting: true, newSent: true} {
		e, err := o.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if (e != nil) != want {
			t.Errorf("entry %s: there %v, want %v", id, e != nil, want)
		}
	}
	es, err := o.Recent(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := entryRules(es); !slices.Equal(got, []string{"new-sent", "old-waiting"}) {
		t.Errorf("recent %v after prune", got)
	}
	if _, ok, _ := o.Decision(ctx, "f-old"); ok {
		t.Error("old decision kept")
	}
	if _, ok, _ := o.Decision(ctx, "f-new"); !ok {
		t.Error("new decision pruned")
	}
	if c, _ := o.Cooldown(ctx, "old|k"); !c.Last.IsZero() {
		t.Error("old cooldown kept")
	}
	if c, _ := o.Cooldown(ctx, "new|k"); c.Last.IsZero() {
		t.Error("new cooldown pruned")
	}
	// Pruning again finds nothing more.
	if p, err := o.Prune(ctx, base.Add(24*time.Hour)); err != nil || p != (delivery.Pruned{}) {
		t.Fatalf("second prune: %+v %v", p, err)
	}
}

func TestMemoryOutboxPrune(t *testing.T) { pruneContract(t, delivery.NewMemory()) }

func TestTableOutboxPrune(t *testing.T) {
	pruneContract(t, newStore(t, testPrefix(), Options{}).Outbox())
}

// Issue 13.1 on the Table outbox: a webhook that hangs for a minute holds
// up neither recording nor the other receivers; it gets every alert once
// it recovers.
func TestTableOutboxHungReceiver(t *testing.T) {
	deliverytest.HungReceiverScenario(t, newStore(t, testPrefix(), Options{}).Outbox())
}

// A sender round that read an alert while the process was still sending
// it, and serves what it read after that send was recorded, does not send
// it again; nor does a Flush while the sender sends.
func TestTableOutboxHungReceiverStaleRound(t *testing.T) {
	deliverytest.StaleRoundScenario(t, newStore(t, testPrefix(), Options{}).Outbox())
}

func TestTableOutboxHungReceiverFlushDuringSend(t *testing.T) {
	deliverytest.FlushDuringSendScenario(t, newStore(t, testPrefix(), Options{}).Outbox())
}

// Silences added at run time live in their own table: added, listed,
// expired; a watcher sees a new one on its next read, and drops it once it
// is over.
func TestSilencesTable(t *testing.T) {
	ctx := context.Background()
	prefix := testPrefix()
	s := newStore(t, prefix, Options{})
	c := serviceClient(t)
	t.Cleanup(func() { c.DeleteTable(context.Background(), prefix+SilencesTable, nil) })
	ss, err := s.Silences(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Silences(ctx, c); err != nil || again == nil {
		t.Fatalf("opening the table again: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	w := delivery.NewSilenceWatcher(ss, time.Hour, func() time.Time { return now }, zerolog.Nop())
	if err := w.Refresh(ctx); err != nil || len(w.Active()) != 0 {
		t.Fatalf("empty table: %v %v", w.Active(), err)
	}
	open := delivery.Silence{ID: delivery.NewSilenceID(), Comment: "rotation", Vaults: []string{"kv-*"},
		IPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Starts: now, Created: now, CreatedBy: "ops"}
	timed := delivery.Silence{ID: delivery.NewSilenceID(), Rules: []string{"x"}, Starts: now, Ends: now.Add(time.Hour), Created: now.Add(time.Second)}
	for _, sl := range []delivery.Silence{open, timed} {
		if err := ss.AddSilence(ctx, sl); err != nil {
			t.Fatal(err)
		}
	}
	if err := ss.AddSilence(ctx, open); err == nil {
		t.Error("the same ID added twice")
	}
	all, err := ss.Silences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != open.ID || all[0].Comment != "rotation" || !all[0].Ends.IsZero() ||
		all[0].IPs[0] != open.IPs[0] || !all[1].Ends.Equal(timed.Ends) {
		t.Fatalf("listed %+v", all)
	}
	if err := w.Refresh(ctx); err != nil || len(w.Active()) != 2 {
		t.Fatalf("watcher: %d active, %v", len(w.Active()), err)
	}
	got, ok, err := ss.ExpireSilence(ctx, open.ID, now.Add(time.Minute))
	if err != nil || !ok || !got.Ends.Equal(now.Add(time.Minute)) {
		t.Fatalf("expire: %+v %v %v", got, ok, err)
	}
	if _, ok, err := ss.ExpireSilence(ctx, "nosuch", now); ok || err != nil {
		t.Fatalf("expire of an unknown ID: %v %v", ok, err)
	}
	now = now.Add(2 * time.Minute)
	if err := w.Refresh(ctx); err != nil || len(w.Active()) != 1 || w.Active()[0].ID != timed.ID {
		t.Fatalf("after expiry: %+v %v", w.Active(), err)
	}
}
