// Package deliverytest holds delivery scenarios that run against any
// outbox (memory here, Table Storage in internal/tablestore), with real
// HTTP servers for receivers.
package deliverytest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

// Finding is a finding of rule by caller on vault kv1 at at.
func Finding(rule, caller string, at time.Time) finding.Finding {
	f := finding.Finding{Rule: rule, Title: rule, Severity: finding.High, Kind: "threshold",
		Group: []finding.Pair{{Field: "vault", Value: "kv1"}, {Field: "caller", Value: caller}},
		Vault: "kv1", FirstEvent: at, LastEvent: at.Add(time.Minute), WindowStart: at, Count: 30,
		Summary: rule + " by " + caller, Period: at.Truncate(time.Hour)}
	f.ID = finding.NewID(rule, "kv1|"+caller, at, "")
	return f
}

// Entry is an outbox entry: the alert of Finding("burst", caller, at) for
// receiver hook, in state st (done at at unless pending, due at at).
func Entry(caller string, at time.Time, st delivery.State) *delivery.Entry {
	a := &delivery.Attempt{State: st, Next: at}
	if st != delivery.Pending {
		a.Done = at
	}
	return &delivery.Entry{Alert: alert.New([]finding.Finding{Finding("burst", caller, at)}, at),
		Receivers: map[string]*delivery.Attempt{"hook": a}}
}

// Fast is a real HTTP server that accepts every alert at once.
type Fast struct {
	Srv *httptest.Server
	mu  sync.Mutex
	got []alert.Alert
}

// NewFast returns a running Fast.
func NewFast(t *testing.T) *Fast {
	f := &Fast{}
	f.Srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert.Alert
		if json.NewDecoder(r.Body).Decode(&a) != nil {
			w.WriteHeader(400)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, a)
		f.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(f.Srv.Close)
	return f
}

// Got returns the alerts it accepted.
func (f *Fast) Got() []alert.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alert.Alert(nil), f.got...)
}

// HungReceiver is a real HTTP server that, until recovered, takes a
// request and answers nothing for a minute (or until the client gives up).
// Once recovered it answers 202 at once, also to the requests it holds.
type HungReceiver struct {
	Srv      *httptest.Server
	Entered  chan struct{} // a request arrived while it hangs
	recover  chan struct{}
	once     sync.Once
	Holding  atomic.Int64 // requests held right now
	Calls    atomic.Int64
	mu       sync.Mutex
	accepted map[string]int
}

func NewHungReceiver(t *testing.T) *HungReceiver {
	h := &HungReceiver{Entered: make(chan struct{}, 100), recover: make(chan struct{}), accepted: map[string]int{}}
	h.Srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		select {
		case <-h.recover:
		default:
			h.Holding.Add(1)
			h.Entered <- struct{}{}
			select {
			case <-h.recover:
			case <-r.Context().Done(): // the sender's deadline
				h.Holding.Add(-1)
				return
			case <-time.After(60 * time.Second):
			}
			h.Holding.Add(-1)
		}
		var a alert.Alert
		if json.Unmarshal(body, &a) != nil {
			w.WriteHeader(400)
			return
		}
		h.mu.Lock()
		h.accepted[a.ID]++
		h.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(func() { h.Recover(); h.Srv.Close() })
	return h
}

// Recover makes it answer at once from now on.
func (h *HungReceiver) Recover() { h.once.Do(func() { close(h.recover) }) }

// Got counts the alerts it accepted, by ID.
func (h *HungReceiver) Got() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.accepted {
		out[k] = v
	}
	return out
}

// Webhooks builds a webhook notifier per name and URL.
func Webhooks(t *testing.T, urls map[string]string) map[string]delivery.Notifier {
	t.Helper()
	rcv := map[string]delivery.Notifier{}
	for name, u := range urls {
		n, err := webhook.New(name, webhook.Config{URL: u + "/hook", Timeout: "2m"}, http.DefaultClient, nil)
		if err != nil {
			t.Fatal(err)
		}
		rcv[name] = n
	}
	return rcv
}

// WaitFor polls cond until it holds, failing the test after 20 s.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HungReceiverScenario runs the scenario of issue 13.1 against an outbox: a
// webhook that hangs for a minute does not hold up recording (Found
// answers while the webhook still holds the first alert), the Teams- and
// email-like receivers get every alert meanwhile, and once the webhook
// recovers it gets each alert, once.
func HungReceiverScenario(t *testing.T, out delivery.Outbox) {
	hung := NewHungReceiver(t)
	teams, mail := NewFast(t), NewFast(t)
	d := delivery.New(delivery.Options{Outbox: out, Log: zerolog.Nop(), MaxBackoff: 200 * time.Millisecond,
		Receivers: Webhooks(t, map[string]string{"hook": hung.Srv.URL, "teams": teams.Srv.URL, "email": mail.Srv.URL})})
	s := d.NewSender(delivery.SenderOptions{Interval: 50 * time.Millisecond})
	ctx := context.Background()
	go s.Run(ctx)
	defer s.Stop()

	now := time.Now().UTC()
	if err := d.Found(ctx, []finding.Finding{Finding("burst", "alice", now)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hung.Entered: // the sender is now stuck on the webhook
	case <-time.After(20 * time.Second):
		t.Fatal("the sender never tried the webhook")
	}
	// The next batch records its alert and answers while the webhook
	// still holds the first one.
	if err := d.Found(ctx, []finding.Finding{Finding("other", "bob", now)}); err != nil {
		t.Fatal(err)
	}
	if hung.Holding.Load() == 0 || len(hung.Got()) != 0 {
		t.Fatal("Found answered only after the hung webhook did")
	}
	// Teams and email do not wait behind the webhook.
	WaitFor(t, "teams and email get both alerts while the webhook hangs", func() bool {
		return len(teams.Got()) == 2 && len(mail.Got()) == 2
	})
	if hung.Holding.Load() == 0 || len(hung.Got()) != 0 {
		t.Fatal("the webhook stopped hanging before the others were served: the test proves nothing")
	}
	hung.Recover()
	WaitFor(t, "the webhook gets both alerts once it recovers", func() bool { return len(hung.Got()) == 2 })
	WaitFor(t, "the outbox records every receiver delivered", func() bool {
		es, err := out.Recent(ctx, 10)
		if err != nil || len(es) != 2 {
			return false
		}
		for _, e := range es {
			for _, a := range e.Receivers {
				if a.State != delivery.Delivered {
					return false
				}
			}
		}
		return true
	})
	for id, n := range hung.Got() {
		if n != 1 {
			t.Errorf("alert %s reached the webhook %d times", id, n)
		}
	}
	if len(teams.Got()) != 2 || len(mail.Got()) != 2 {
		t.Errorf("teams got %d, email %d alerts; want 2 each, once", len(teams.Got()), len(mail.Got()))
	}
}

// heldDue is an outbox whose Due, while hold is set, hands what it read
// to hold before it answers: a test holds a sender round between reading
// the outbox and serving what it read.
type heldDue struct {
	delivery.Outbox
	mu   sync.Mutex
	hold func([]*delivery.Entry)
}

func (h *heldDue) Due(ctx context.Context, now time.Time, limit int) ([]*delivery.Entry, error) {
	es, err := h.Outbox.Due(ctx, now, limit)
	h.mu.Lock()
	hold := h.hold
	h.mu.Unlock()
	if hold != nil && err == nil {
		hold(es)
	}
	return es, err
}

func (h *heldDue) setHold(f func([]*delivery.Entry)) {
	h.mu.Lock()
	h.hold = f
	h.mu.Unlock()
}

// pendingFor reports whether es holds alert id pending for receiver name.
func pendingFor(es []*delivery.Entry, id, name string) bool {
	for _, e := range es {
		if a := e.Receivers[name]; e.Alert.ID == id && a != nil && a.State == delivery.Pending {
			return true
		}
	}
	return false
}

// deliveredTo reports whether the outbox records alert id delivered to
// receiver name.
func deliveredTo(ctx context.Context, out delivery.Outbox, id, name string) bool {
	e, err := out.Get(ctx, id)
	return err == nil && e != nil && e.Receivers[name] != nil && e.Receivers[name].State == delivery.Delivered
}

// heldSender starts a sender loop (rounds every interval) over out, whose
// Due answers the test can hold (heldDue), with one webhook "hook" that
// hangs until it recovers. It returns once the loop's first round read the
// outbox: from then on Found records alerts claimed by the process. The
// loop stops when the test ends.
func heldSender(t *testing.T, out delivery.Outbox, interval time.Duration) (*HungReceiver, *heldDue, *delivery.Dispatcher) {
	hung := NewHungReceiver(t)
	held := &heldDue{Outbox: out}
	d := delivery.New(delivery.Options{Outbox: held, Log: zerolog.Nop(), MaxBackoff: 200 * time.Millisecond,
		Receivers: Webhooks(t, map[string]string{"hook": hung.Srv.URL})})
	running := make(chan struct{})
	var once sync.Once
	held.setHold(func([]*delivery.Entry) { once.Do(func() { close(running) }) })
	s := d.NewSender(delivery.SenderOptions{Interval: interval})
	go s.Run(context.Background())
	t.Cleanup(s.Stop)
	<-running
	return hung, held, d
}

// StaleRoundScenario is the race behind HungReceiverScenario's doubles,
// made certain: a sender round reads the outbox while the receiver's
// worker is still sending an alert (recorded claimed by this process, as
// Found records alerts while a sender runs), and goes on to serve what it
// read only after that worker recorded the alert delivered and finished.
// The alert reaches the receiver once.
func StaleRoundScenario(t *testing.T, out delivery.Outbox) {
	hung, held, d := heldSender(t, out, 20*time.Millisecond)
	ctx := context.Background()
	f := Finding("burst", "alice", time.Now().UTC())
	if err := d.Found(ctx, []finding.Finding{f}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hung.Entered: // the worker is sending it
	case <-time.After(20 * time.Second):
		t.Fatal("the sender never tried the webhook")
	}
	es, err := out.Recent(ctx, 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("recent: %v, %d entries", err, len(es))
	}
	id := es[0].Alert.ID
	read, release := make(chan struct{}), make(chan struct{})
	var held1 sync.Once
	held.setHold(func(es []*delivery.Entry) {
		if pendingFor(es, id, "hook") {
			held1.Do(func() { close(read); <-release })
		}
	})
	select {
	case <-read: // a round read the alert pending, while it is being sent
	case <-time.After(20 * time.Second):
		t.Fatal("no round read the outbox while the webhook hung")
	}
	hung.Recover()
	WaitFor(t, "the worker records the alert delivered", func() bool { return deliveredTo(ctx, out, id, "hook") })
	time.Sleep(100 * time.Millisecond) // the worker is done: the receiver is free for the held round
	held.setHold(nil)
	close(release)
	time.Sleep(300 * time.Millisecond) // the held round serves what it read, and more rounds follow
	if n := hung.Got()[id]; n != 1 || hung.Calls.Load() != 1 {
		t.Fatalf("the alert reached the webhook %d times (%d requests), want once", n, hung.Calls.Load())
	}
}

// FlushDuringSendScenario: the Housekeeping timer's Flush runs in the
// process whose sender loop is sending an alert Found recorded claimed by
// the process; the Flush leaves it to that send, which is once.
func FlushDuringSendScenario(t *testing.T, out delivery.Outbox) {
	hung, held, d := heldSender(t, out, time.Hour)
	held.setHold(nil)
	ctx := context.Background()
	if err := d.Found(ctx, []finding.Finding{Finding("burst", "alice", time.Now().UTC())}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hung.Entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the sender never tried the webhook")
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := d.Flush(fctx)
	if err != nil {
		t.Fatal(err)
	}
	if hung.Calls.Load() != 1 || rep != (delivery.Report{}) {
		t.Fatalf("a Flush while the sender sends: %+v, the webhook called %d times, want once (by the sender)", rep, hung.Calls.Load())
	}
	hung.Recover()
	WaitFor(t, "the webhook gets the alert", func() bool { return len(hung.Got()) == 1 })
	time.Sleep(100 * time.Millisecond)
	for id, n := range hung.Got() {
		if n != 1 || hung.Calls.Load() != 1 {
			t.Fatalf("alert %s reached the webhook %d times (%d requests), want once", id, n, hung.Calls.Load())
		}
	}
}
