package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
)

// addEntry adds to out the alert of caller app-i at at, for receiver
// hook, in state st, and returns it.
func addEntry(t *testing.T, out *delivery.Memory, i int, at time.Time, st delivery.State) *delivery.Entry {
	t.Helper()
	e := deliverytest.Entry(fmt.Sprint("app-", i), at, st)
	if _, err := out.Add(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return e
}

// A memory-state serve that runs for days through alert storms keeps a
// bounded outbox: the alerts delivered longest ago and the oldest
// decisions are forgotten, an alert a receiver still waits for never is,
// and the due list still lists those, oldest first.
func TestMemoryOutboxBounded(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	out := delivery.NewMemory()
	// Two alerts whose receiver is down, then a storm of delivered ones.
	var waiting []string
	for i := range 2 {
		waiting = append(waiting, addEntry(t, out, i, t0, delivery.Pending).Alert.ID)
	}
	total := delivery.MaxDoneEntries + delivery.MaxDoneEntries/2
	var last *delivery.Entry
	for i := 2; i < 2+total; i++ {
		last = addEntry(t, out, i, t0.Add(time.Duration(i)*time.Second), delivery.Delivered)
	}
	if n := out.Forgotten(); n == 0 || n > total-delivery.MaxDoneEntries*9/10 {
		t.Fatalf("forgot %d delivered alerts of %d, want some and at most %d", n, total, total-delivery.MaxDoneEntries*9/10)
	}
	recent, err := out.Recent(ctx, 3*delivery.MaxDoneEntries)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) > delivery.MaxDoneEntries+2 {
		t.Fatalf("kept %d alerts, want at most %d delivered ones and the 2 waiting", len(recent), delivery.MaxDoneEntries)
	}
	if recent[0].Alert.ID != last.Alert.ID {
		t.Fatalf("newest kept is %s, want the last added %s", recent[0].Alert.ID, last.Alert.ID)
	}
	for _, id := range waiting {
		if e, err := out.Get(ctx, id); err != nil || e == nil {
			t.Fatalf("alert %s, still waiting for its receiver, was forgotten (%v)", id, err)
		}
	}
	due, err := out.Due(ctx, t0.Add(time.Hour), 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].Alert.ID != waiting[0] || due[1].Alert.ID != waiting[1] {
		t.Fatalf("due: %d entries, want the 2 waiting ones oldest first", len(due))
	}

	// Decisions: the oldest are forgotten past the bound, the newest kept.
	for i := range delivery.MaxDecisions + 10 {
		id := fmt.Sprintf("d%07d", i)
		if err := out.Decide(ctx, map[string]delivery.Decision{id: {Alert: "a", At: t0}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := out.Decision(ctx, "d0000000"); ok {
		t.Fatal("the oldest decision is still kept past MaxDecisions")
	}
	if _, ok, _ := out.Decision(ctx, fmt.Sprintf("d%07d", delivery.MaxDecisions+9)); !ok {
		t.Fatal("the newest decision was forgotten")
	}
}

// The due list holds the alerts a receiver waits for whose time has come,
// in the order they were added, at most limit; one delivered leaves it,
// and one put back to wait (a retry) comes back in its place.
func TestMemoryOutboxDueOrder(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	out := delivery.NewMemory()
	var ids []string
	for i := range 5 {
		ids = append(ids, addEntry(t, out, i, t0.Add(time.Duration(i)*time.Minute), delivery.Pending).Alert.ID)
	}
	list := func(now time.Time, limit int) []string {
		t.Helper()
		es, err := out.Due(ctx, now, limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Alert.ID)
		}
		return got
	}
	same := func(got, want []string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("due %v, want %v", got, want)
		}
	}
	same(list(t0.Add(2*time.Minute), 50), ids[:3]) // not yet due: 3 and 4
	same(list(t0.Add(time.Hour), 2), ids[:2])

	// The first is delivered; the second is retried in an hour.
	for i, st := range []delivery.State{delivery.Delivered, delivery.Pending} {
		e, err := out.Get(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		e.Receivers["hook"].State = st
		e.Receivers["hook"].Next = t0.Add(2 * time.Hour)
		if st == delivery.Delivered {
			e.Receivers["hook"].Done = t0.Add(time.Minute)
		}
		if err := out.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	same(list(t0.Add(time.Hour), 50), ids[2:])
	same(list(t0.Add(3*time.Hour), 50), ids[1:])
}
