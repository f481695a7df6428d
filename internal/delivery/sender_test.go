package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
	"github.com/kvwatch/kvwatch/internal/finding"
)

func TestHungReceiverHoldsUpNothing(t *testing.T) {
	deliverytest.HungReceiverScenario(t, delivery.NewMemory())
}

// A Flush (the Housekeeping timer) gives a hung receiver one send
// deadline, not one per alert: the rest of its alerts are put off to its
// next attempt; the other receivers are served meanwhile.
func TestFlushDeadlinePerReceiver(t *testing.T) {
	hung := deliverytest.NewHungReceiver(t)
	teams := newReceiver(t)
	out := delivery.NewMemory()
	d := delivery.New(delivery.Options{Outbox: out, Log: zerolog.Nop(), SendTimeout: 300 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond, Receivers: deliverytest.Webhooks(t, map[string]string{"hook": hung.Srv.URL, "teams": teams.srv.URL})})
	ctx := context.Background()
	now := time.Now().UTC()
	for _, rule := range []string{"a", "b", "c"} {
		if err := d.Found(ctx, []finding.Finding{fnd(rule, "alice", now)}); err != nil {
			t.Fatal(err)
		}
	}
	if hung.Calls.Load()+teams.calls.Load() != 0 {
		t.Fatal("Found sent")
	}
	rep, err := d.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Delivered != 3 || rep.Retrying != 3 || hung.Calls.Load() != 1 || len(teams.got()) != 3 {
		t.Fatalf("flush %+v; the hung webhook was called %d times (want 1), teams got %d (want 3)", rep, hung.Calls.Load(), len(teams.got()))
	}
	es, _ := out.Recent(ctx, 10)
	for _, e := range es {
		a := e.Receivers["hook"]
		if a.State != delivery.Pending || !a.Next.After(now) {
			t.Errorf("alert %s: webhook %+v, want pending with a later attempt", e.Alert.Rule, a)
		}
		if a.Attempts == 1 && a.LastError == "" {
			t.Errorf("no error recorded for the timed-out send")
		}
	}
	hung.Recover()
	deliverytest.WaitFor(t, "the webhook gets all three after it recovers", func() bool {
		if _, err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return len(hung.Got()) == 3
	})
}

// Stop ends a sender at once, also while a send is under way; the alert
// it was sending stays pending (at least once).
func TestSenderStopsPromptly(t *testing.T) {
	hung := deliverytest.NewHungReceiver(t)
	out := delivery.NewMemory()
	d := delivery.New(delivery.Options{Outbox: out, Log: zerolog.Nop(), Receivers: deliverytest.Webhooks(t, map[string]string{"hook": hung.Srv.URL})})
	s := d.NewSender(delivery.SenderOptions{})
	done := make(chan struct{})
	go func() { s.Run(context.Background()); close(done) }()
	if err := d.Found(context.Background(), []finding.Finding{fnd("burst", "alice", time.Now())}); err != nil {
		t.Fatal(err)
	}
	<-hung.Entered
	s.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	es, _ := out.Recent(context.Background(), 1)
	if a := es[0].Receivers["hook"]; a.State != delivery.Pending {
		t.Fatalf("after a cancelled send: %+v, want pending", a)
	}
}

// A silence added while an alert waits for a receiver that is down mutes
// it: it is not sent when the receiver is back.
func TestSilenceAddedLaterMutesWaitingAlert(t *testing.T) {
	r := newReceiver(t, 503)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	var silences []delivery.Silence
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) {
		o.SilenceSource = func() []delivery.Silence { return silences }
	})
	ctx := context.Background()
	d.Found(ctx, []finding.Finding{fnd("burst", "alice", t0)})
	if rep, _ := d.Flush(ctx); rep.Retrying != 1 {
		t.Fatalf("first flush %+v", rep)
	}
	clk.Add(time.Minute)
	silences = []delivery.Silence{{ID: "abc123", Vaults: []string{"kv1"}, Starts: t0.Add(30 * time.Second), Comment: "maintenance"}}
	if rep, _ := d.Flush(ctx); rep.Muted != 1 {
		t.Fatalf("flush after the silence %+v", rep)
	}
	es, _ := out.Recent(ctx, 1)
	if es[0].MutedBy != "silence abc123: maintenance" || es[0].Receivers["hook"].State != delivery.Muted || len(r.got()) != 0 {
		t.Fatalf("entry %+v, sent %d", es[0], len(r.got()))
	}
	// A new alert while the silence is active is muted when recorded.
	d.Found(ctx, []finding.Finding{fnd("other", "bob", t0.Add(2*time.Hour))})
	es, _ = out.Recent(ctx, 1)
	if es[0].Receivers["hook"].State != delivery.Muted {
		t.Fatalf("new alert under an open-ended silence: %+v", es[0].Receivers["hook"])
	}
}

// Prune deletes, past the retention, entries no receiver waits for and
// old decisions and cooldowns, and keeps an entry still waiting however
// old.
func TestPrune(t *testing.T) {
	down := newReceiver(t, 503, 503, 503, 503, 503, 503, 503, 503)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	ok := newReceiver(t)
	d := newDispatcher(t, out, clk, map[string]string{"hook": ok.srv.URL}, func(o *delivery.Options) { o.Retention = 24 * time.Hour })
	dDown := newDispatcher(t, out, clk, map[string]string{"down": down.srv.URL}, func(o *delivery.Options) {
		o.Retention, o.GiveUp = 24*time.Hour, 100*24*time.Hour
	})
	ctx := context.Background()
	d.Found(ctx, []finding.Finding{fnd("sent", "alice", t0)})
	d.Flush(ctx)
	dDown.Found(ctx, []finding.Finding{fnd("waiting", "bob", t0)})
	dDown.Flush(ctx)
	if p, _ := d.Prune(ctx); p != (delivery.Pruned{}) {
		t.Fatalf("pruned within the retention: %+v", p)
	}
	clk.Add(25 * time.Hour)
	p, err := d.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Entries != 1 || p.Decisions != 2 || p.Cooldowns != 2 {
		t.Fatalf("pruned %+v, want the delivered entry, both decisions and both cooldowns", p)
	}
	es, _ := out.Recent(ctx, 10)
	if len(es) != 1 || es[0].Alert.Rule != "waiting" {
		t.Fatalf("left %d entries, want only the one still waiting", len(es))
	}
}

func TestHungReceiverStaleRoundSendsOnce(t *testing.T) {
	deliverytest.StaleRoundScenario(t, delivery.NewMemory())
}

func TestHungReceiverFlushDuringSendSendsOnce(t *testing.T) {
	deliverytest.FlushDuringSendScenario(t, delivery.NewMemory())
}
