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
