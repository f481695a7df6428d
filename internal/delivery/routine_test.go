package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// A finding marked routine (its group fires routinely: the rule's
// routine:) is recorded as such, handed on as often as may be, and alerts
// no one; it leaves the group's cooldown alone. The same finding handed on
// above its routine (Routine false) is alerted.
func TestRoutineFindingsAreRecordedNotAlerted(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, nil)
	found := func(fs ...finding.Finding) {
		t.Helper()
		if err := d.Found(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	told := fnd("burst", "app", t0)
	told.Summary += "; seen in 3 different hours since 2026-11-23T07:00Z; routine from now on: alerted again only above 2× count 30"
	found(told)
	quiet := fnd("burst", "app", t0.Add(2*time.Hour))
	quiet.Routine = true
	for range 3 { // handed on again: a retry, a count that grew
		found(quiet)
	}
	if got := r.got(); len(got) != 1 || got[0].Findings[0].ID != told.ID {
		t.Fatalf("alerts %+v, want the one that says routine from now on", got)
	}
	dec, ok, err := out.Decision(context.Background(), quiet.ID)
	if err != nil || !ok || !dec.Routine || dec.Alert != "" || dec.Suppressed {
		t.Fatalf("decision %+v %v %v, want routine", dec, ok, err)
	}
	c, err := out.Cooldown(context.Background(), "burst|vault=kv1 caller=app")
	if err == nil && !c.Last.IsZero() && !c.Last.Equal(t0) {
		t.Errorf("the routine finding moved the cooldown: %+v", c)
	}
	above := quiet
	above.Routine, above.Count = false, 90
	above.Summary += "; above its routine: count 90 is more than 2× the learned 30"
	found(above)
	found(above) // a retry: the cooldown knows it
	got := r.got()
	if len(got) != 2 || got[1].Findings[0].ID != above.ID || got[1].Findings[0].Count != 90 {
		t.Fatalf("alerts %d, want the finding above its routine alerted: %+v", len(got), got)
	}
}

// Routine findings are reported, not invisible: each routine decision says
// what was not alerted (rule, vault, group, caller, count), and the outbox
// lists those made in a time range, newest first, for the digests and
// `kvwatch alerts list`. Decisions that are not routine are not listed.
func TestRoutineDecisionsListed(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, nil)
	ctx := context.Background()
	var quiet []finding.Finding
	for h := range 3 {
		if h > 0 {
			clk.Add(time.Hour)
		}
		f := fnd("burst", "app", t0.Add(time.Duration(h)*time.Hour))
		f.Routine = true
		f.Example = &audit.Event{Caller: audit.Caller{Key: "app", ObjectID: "app", AppID: "orders-api", Name: "orders-api"}}
		quiet = append(quiet, f)
		other := fnd("burst", fmt.Sprintf("person%d", h), t0.Add(time.Duration(h)*time.Hour))
		if err := d.Found(ctx, []finding.Finding{f, other}); err != nil {
			t.Fatal(err)
		}
	}
	var lister delivery.RoutineLister = out
	got, truncated, err := lister.RoutineDecisions(ctx, t0, t0.Add(24*time.Hour), 10)
	if err != nil || truncated || len(got) != 3 {
		t.Fatalf("%d routine decisions (truncated %v, %v), want 3: %+v", len(got), truncated, err, got)
	}
	for i, rd := range got {
		want := quiet[2-i] // newest first
		b := rd.Of
		if rd.Finding != want.ID || !rd.Routine || rd.Alert != "" || b == nil || b.Rule != "burst" || b.Vault != "kv1" ||
			b.Caller != "app" || b.CallerName != "orders-api" || b.Count != 30 || !b.Period.Equal(want.Period) ||
			finding.GroupString(b.Group) != "vault=kv1 caller=app" {
			t.Errorf("routine decision %d: %+v %+v, want finding %s", i, rd, b, want.ID)
		}
	}
	// [from, to) by when it was decided; a limit says it cut.
	if got, _, _ := lister.RoutineDecisions(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), 10); len(got) != 1 || got[0].Finding != quiet[1].ID {
		t.Errorf("decided in [1h, 2h): %+v", got)
	}
	if got, truncated, _ := lister.RoutineDecisions(ctx, t0, t0.Add(24*time.Hour), 2); len(got) != 2 || !truncated || got[0].Finding != quiet[2].ID {
		t.Errorf("limit 2: %d, truncated %v", len(got), truncated)
	}
}

// The finding that makes a group routine reaches the user even when the
// group's last alert is within its cooldown: an update saying "routine
// from now on", after which the group goes quiet. Without it a group
// alerted at 10:40 and learned at 11:10 would fall silent unannounced.
func TestRoutineFromNowOnIsToldWithinTheCooldown(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	d := newDispatcher(t, delivery.NewMemory(), clk, map[string]string{"hook": r.srv.URL}, nil)
	found := func(fs ...finding.Finding) {
		t.Helper()
		if err := d.Found(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	first := fnd("burst", "app", t0.Add(40*time.Minute))
	found(first)
	learned := fnd("burst", "app", t0.Add(70*time.Minute))
	learned.Learned = true
	learned.Summary += "; seen in 3 different hours since 2026-11-23T07:00Z; routine from now on: alerted again only above 2× count 30"
	found(learned)
	found(learned) // a retry: told once
	got := r.got()
	if len(got) != 2 || got[1].Version != 2 || len(got[1].Changes) != 1 || got[1].Changes[0] != "routine from now on" ||
		got[1].Findings[0].ID != learned.ID {
		t.Fatalf("alerts %d: %+v, want the first and an update saying routine from now on", len(got), got)
	}
}
