package delivery_test

import (
	"context"
	"testing"
	"time"

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
