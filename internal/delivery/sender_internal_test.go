package delivery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// An alert listed twice (read from the outbox and handed on by Found) is
// sent once.
func TestServeSendsAnAlertListedTwiceOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var sent atomic.Int64
	out := NewMemory()
	d := New(Options{Outbox: out, Now: func() time.Time { return now }, Log: zerolog.Nop(),
		Receivers: map[string]Notifier{"hook": NotifierFunc(func(context.Context, *alert.Alert) error { sent.Add(1); return nil })}})
	f := finding.Finding{ID: "f1", Rule: "burst", Title: "burst", Severity: finding.High, Vault: "kv1",
		Group: []finding.Pair{{Field: "vault", Value: "kv1"}}, FirstEvent: now, LastEvent: now, Period: now}
	e := &Entry{Alert: alert.New([]finding.Finding{f}, now), Receivers: map[string]*Attempt{"hook": {State: Pending, Next: now}}}
	if _, err := out.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	cur, err := out.Get(ctx, e.Alert.ID)
	if err != nil || cur == nil {
		t.Fatalf("get: %v", err)
	}
	rep, err := d.serve(ctx, "hook", []*Entry{cur, clone(cur)})
	if err != nil {
		t.Fatal(err)
	}
	if n := sent.Load(); n != 1 || rep.Delivered != 1 {
		t.Fatalf("sent %d times (report %+v), want once", n, rep)
	}
}
