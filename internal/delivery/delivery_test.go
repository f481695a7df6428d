package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// clock is a settable clock shared by a test's parts.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fnd(rule, caller string, at time.Time) finding.Finding {
	f := finding.Finding{Rule: rule, Title: rule, Severity: finding.High, Kind: "threshold",
		Group: []finding.Pair{{Field: "vault", Value: "kv1"}, {Field: "caller", Value: caller}},
		Vault: "kv1", FirstEvent: at, LastEvent: at.Add(time.Minute), WindowStart: at, Count: 30,
		Summary: rule + " by " + caller, Period: at.Truncate(time.Hour)}
	f.ID = finding.NewID(rule, "kv1|"+caller, at, "")
	return f
}

// receiver is a real HTTP server standing in for a webhook: it answers
// with the statuses it is told to, then 202, and records what it accepted.
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	accepted []alert.Alert
	calls    atomic.Int64
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.statuses) > 0 {
			st := r.statuses[0]
			r.statuses = r.statuses[1:]
			if st == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "30")
			}
			w.WriteHeader(st)
			return
		}
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			w.WriteHeader(400)
			return
		}
		r.accepted = append(r.accepted, a)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []alert.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alert.Alert(nil), r.accepted...)
}

func newDispatcher(t *testing.T, out delivery.Outbox, clk *clock, urls map[string]string, mod func(*delivery.Options)) *delivery.Dispatcher {
	t.Helper()
	rcv := map[string]delivery.Notifier{}
	for name, u := range urls {
		n, err := webhook.New(name, webhook.Config{URL: u + "/hook?sig=SECRETSIG123", Timeout: "2s"}, http.DefaultClient, clk.Now)
		if err != nil {
			t.Fatal(err)
		}
		rcv[name] = n
	}
	o := delivery.Options{Outbox: out, Receivers: rcv, Now: clk.Now, Log: zerolog.Nop(),
		Cooldowns: map[string]time.Duration{"burst": time.Hour}}
	if mod != nil {
		mod(&o)
	}
	return delivery.New(o)
}

func TestOneAlertPerFindingEvenWhenHandedTwice(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	d := newDispatcher(t, delivery.NewMemory(), clk, map[string]string{"hook": r.srv.URL}, nil)
	fs := []finding.Finding{fnd("burst", "alice", t0), fnd("burst", "bob", t0)}
	for i := 0; i < 3; i++ { // the same batch three times (host retries)
		if err := d.Found(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := r.got()
	if len(got) != 1 || len(got[0].Findings) != 2 || got[0].Count != 60 {
		t.Fatalf("want one alert grouping both callers' findings, got %d: %+v", len(got), got)
	}
	if got[0].Schema != alert.SchemaVersion || got[0].Vault != "kv1" {
		t.Fatalf("payload %+v", got[0])
	}
}

func TestCooldownAndExponentialReminders(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	d := newDispatcher(t, delivery.NewMemory(), clk, map[string]string{"hook": r.srv.URL}, nil)
	send := func(at time.Time) {
		t.Helper()
		if err := d.Found(context.Background(), []finding.Finding{fnd("burst", "alice", at)}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	send(t0)                       // alert
	send(t0.Add(30 * time.Minute)) // within the 1h cooldown: held back
	send(t0.Add(70 * time.Minute)) // persists: reminder 1, next interval 2h
	send(t0.Add(2 * time.Hour))    // within 2h of the reminder: held back
	send(t0.Add(4 * time.Hour))    // reminder 2, interval 4h
	send(t0.Add(20 * time.Hour))   // gone long enough: a new episode
	got := r.got()
	var reps []int
	for _, a := range got {
		reps = append(reps, a.Repeat)
	}
	if fmt.Sprint(reps) != "[0 1 2 0]" {
		t.Fatalf("alerts with repeats %v, want [0 1 2 0]", reps)
	}
	if got[1].Suppressed != 1 || got[2].Suppressed != 1 {
		t.Fatalf("suppressed counts %d %d, want 1 1", got[1].Suppressed, got[2].Suppressed)
	}
}

// A receiver that is down keeps the alert pending; it is delivered once it
// is back, exactly once, honouring Retry-After.
func TestReceiverDownThenBack(t *testing.T) {
	r := newReceiver(t, 500, 429, 503)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, nil)
	if err := d.Found(context.Background(), []finding.Finding{fnd("burst", "alice", t0)}); err != nil {
		t.Fatal(err)
	}
	if r.calls.Load() != 0 {
		t.Fatal("Found sent: recording must not wait for a receiver")
	}
	if rep, err := d.Flush(context.Background()); err != nil || rep.Retrying != 1 {
		t.Fatalf("first flush %+v %v", rep, err)
	}
	if len(r.got()) != 0 {
		t.Fatal("delivered while the receiver answered 500")
	}
	// Nothing is due before the backoff.
	if rep, _ := d.Flush(context.Background()); rep.Delivered+rep.Retrying != 0 {
		t.Fatalf("flush before backoff did %+v", rep)
	}
	clk.Add(6 * time.Second)
	d.Flush(context.Background()) // 429 with Retry-After: 30
	clk.Add(20 * time.Second)
	if rep, _ := d.Flush(context.Background()); rep.Delivered+rep.Retrying != 0 {
		t.Fatalf("Retry-After not honoured: %+v", rep)
	}
	clk.Add(15 * time.Second)
	d.Flush(context.Background()) // 503
	for i := 0; i < 5; i++ {
		clk.Add(time.Minute)
		d.Flush(context.Background())
	}
	if got := r.got(); len(got) != 1 {
		t.Fatalf("%d alerts delivered, want exactly 1", len(got))
	}
	if n := r.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4 (3 failures, 1 success)", n)
	}
	es, _ := out.Recent(context.Background(), 10)
	if a := es[0].Receivers["hook"]; a.State != delivery.Delivered || a.Attempts != 4 {
		t.Fatalf("outbox %+v", a)
	}
}

func TestGiveUpAndPermanentFailures(t *testing.T) {
	down := newReceiver(t, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
	bad := newReceiver(t, 400)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	d := newDispatcher(t, out, clk, map[string]string{"down": down.srv.URL, "bad": bad.srv.URL},
		func(o *delivery.Options) { o.GiveUp = time.Hour })
	d.Found(context.Background(), []finding.Finding{fnd("burst", "alice", t0)})
	for i := 0; i < 10; i++ {
		clk.Add(10 * time.Minute)
		d.Flush(context.Background())
	}
	es, _ := out.Recent(context.Background(), 10)
	for name, want := range map[string]string{"bad": "permanent failure: webhook bad: HTTP 400", "down": "gave up after 1h0m0s"} {
		a := es[0].Receivers[name]
		if a.State != delivery.Undelivered || !strings.Contains(a.LastError, want) {
			t.Errorf("%s: %+v, want undelivered with %q", name, a, want)
		}
		if strings.Contains(a.LastError, "SECRETSIG123") {
			t.Errorf("%s: the webhook secret leaked into the record: %s", name, a.LastError)
		}
	}
}

// Two instances sharing the outbox, handed the same findings at once,
// send one alert.
func TestTwoInstancesSendOnce(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	out := delivery.NewMemory()
	a := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.Instance = "a" })
	b := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.Instance = "b" })
	fs := []finding.Finding{fnd("burst", "alice", t0)}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); a.Found(context.Background(), fs) }()
		go func() { defer wg.Done(); b.Found(context.Background(), fs) }()
	}
	wg.Wait()
	for i := 0; i < 5; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); a.Flush(context.Background()) }()
		go func() { defer wg.Done(); b.Flush(context.Background()) }()
	}
	wg.Wait()
	if n := len(r.got()); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
}

func TestRoutesSilencesAndMuteIntervals(t *testing.T) {
	f, err := config.Parse("kvwatch.yaml", []byte(`
receivers:
  - name: oncall
    webhook: {url: "http://127.0.0.1:1/oncall"}
  - name: audit
    webhook: {url: "http://127.0.0.1:1/audit"}
routes:
  - receivers: [oncall]
    min_severity: high
    continue: true
  - receivers: [audit]
silences:
  - comment: planned key rotation
    rules: [object-*]
    vaults: [kv1]
    starts: "2026-11-23T08:00:00Z"
    ends: "2026-11-23T10:00:00Z"
mute_intervals:
  - name: patch window
    days: [sun]
    start: "02:00"
    end: "04:00"
`), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := delivery.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"audit", "oncall"}
	mk := func(rule string, sev finding.Severity, at time.Time) *alert.Alert {
		fd := fnd(rule, "alice", at)
		fd.Severity = sev
		return alert.New([]finding.Finding{fd}, at)
	}
	if got := delivery.Routes(c.Routes, mk("x", finding.Critical, t0), all); fmt.Sprint(got) != "[oncall audit]" {
		t.Errorf("critical routes to %v", got)
	}
	if got := delivery.Routes(c.Routes, mk("x", finding.Low, t0), all); fmt.Sprint(got) != "[audit]" {
		t.Errorf("low routes to %v", got)
	}
	s := c.Silences[0]
	if !s.Matches(mk("object-destroyed", finding.High, t0)) || s.Matches(mk("object-destroyed", finding.High, t0.Add(2*time.Hour))) ||
		s.Matches(mk("vault-admin-operation", finding.High, t0)) {
		t.Errorf("silence matching wrong")
	}
	sunday := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	if !c.Mutes[0].Contains(sunday) || c.Mutes[0].Contains(sunday.Add(2*time.Hour)) || c.Mutes[0].Contains(t0) {
		t.Errorf("mute interval matching wrong")
	}
	// A muted alert is recorded as muted, not lost, and not sent.
	r := newReceiver(t)
	out := delivery.NewMemory()
	clk := &clock{t: t0}
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.Silences = c.Silences })
	fd := fnd("object-destroyed", "alice", t0)
	d.Found(context.Background(), []finding.Finding{fd})
	d.Flush(context.Background())
	es, _ := out.Recent(context.Background(), 1)
	if len(r.got()) != 0 || len(es) != 1 || es[0].MutedBy != "silence: planned key rotation" || es[0].Receivers["hook"].State != delivery.Muted {
		t.Fatalf("muted alert: sent %d, outbox %+v", len(r.got()), es)
	}

	// config refuses what delivery could not run, with positions.
	_, err = config.Parse("k.yaml", []byte("receivers: [{name: a, webhook: {url: \"http://127.0.0.1:1\"}}]\nroutes: [{receivers: [b]}]\nsilences: [{starts: x, ends: y}]\n"), config.Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), `k.yaml:2:23: routes[0].receivers[0]: no receiver named "b"`) ||
		!strings.Contains(err.Error(), "silences[0].starts") || !strings.Contains(err.Error(), "names at least one") {
		t.Errorf("config errors: %v", err)
	}
}

// With a group wait, findings of one rule and vault arriving within it
// make one alert, sent when the wait is over.
func TestGroupWait(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0}
	d := newDispatcher(t, delivery.NewMemory(), clk, map[string]string{"hook": r.srv.URL},
		func(o *delivery.Options) { o.GroupWait = 30 * time.Second })
	found := func(caller string) {
		t.Helper()
		if err := d.Found(context.Background(), []finding.Finding{fnd("burst", caller, clk.Now())}); err != nil {
			t.Fatal(err)
		}
	}
	found("alice")
	clk.Add(10 * time.Second)
	found("bob")
	found("bob") // handed on again: no change
	if len(r.got()) != 0 {
		t.Fatal("sent before the group wait was over")
	}
	clk.Add(25 * time.Second)
	d.Flush(context.Background())
	got := r.got()
	if len(got) != 1 || len(got[0].Findings) != 2 {
		t.Fatalf("want one alert with both findings, got %d alerts: %+v", len(got), got)
	}
	clk.Add(10 * time.Second)
	found("carol") // the group was sent: a new alert
	clk.Add(31 * time.Second)
	d.Flush(context.Background())
	if got := r.got(); len(got) != 2 || len(got[1].Findings) != 1 {
		t.Fatalf("want a second alert for the late finding, got %d", len(got))
	}
}

// Two instances on one outbox, handed overlapping batches of many findings
// over many keys at once and again: every finding is decided once, and
// every key's cooldown counts its held-back findings once.
func TestBatchTwoInstancesRace(t *testing.T) {
	r := newReceiver(t)
	clk := &clock{t: t0.Add(30 * time.Minute)}
	out := delivery.NewMemory()
	a := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.Instance = "a" })
	b := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.Instance = "b" })
	// 2 rules × 4 callers, three findings a key 10 minutes apart (the
	// first alerted, the others held back by the 1h cooldown).
	var fs []finding.Finding
	for _, rule := range []string{"burst", "other"} {
		for c := range 4 {
			for i := range 3 {
				f := fnd(rule, fmt.Sprintf("caller%d", c), t0.Add(time.Duration(i)*10*time.Minute))
				f.Value = fmt.Sprint(i)
				f.ID = finding.NewID(rule, fmt.Sprintf("kv1|caller%d", c), f.Period, f.Value)
				fs = append(fs, f)
			}
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		for _, d := range []*delivery.Dispatcher{a, b} {
			batch := fs
			if i%2 == 1 {
				batch = nil
				for _, f := range fs {
					if f.Value != "2" {
						batch = append(batch, f)
					}
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Found(context.Background(), batch); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	for _, d := range []*delivery.Dispatcher{a, b} {
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got := r.got()
	seen := map[string]int{}
	for _, al := range got {
		for _, f := range al.Findings {
			seen[f.ID]++
		}
	}
	if len(got) != 2 || len(seen) != 8 {
		t.Fatalf("%d alerts carrying %d findings, want 2 alerts (a rule each) of the 8 keys' first findings", len(got), len(seen))
	}
	for _, f := range fs {
		d, ok, _ := out.Decision(context.Background(), f.ID)
		switch {
		case !ok:
			t.Errorf("%s: no decision", f.ID)
		case f.Value == "0" && (seen[f.ID] != 1 || d.Alert == ""):
			t.Errorf("%s: alerted %d times, decision %+v", f.ID, seen[f.ID], d)
		case f.Value != "0" && (seen[f.ID] != 0 || !d.Suppressed):
			t.Errorf("%s: alerted %d times, decision %+v; want held back", f.ID, seen[f.ID], d)
		}
		if c, _ := out.Cooldown(context.Background(), alert.CooldownKey(&f)); c.Suppressed != 2 {
			t.Errorf("%s: %d held back, want 2", alert.CooldownKey(&f), c.Suppressed)
		}
	}
}

// An alert carries at most 30 findings: more of one rule and vault handed
// on together, or arriving within the group wait, make more alerts.
func TestAlertFindingsBounded(t *testing.T) {
	for _, wait := range []time.Duration{0, time.Minute} {
		r := newReceiver(t)
		clk := &clock{t: t0}
		d := newDispatcher(t, delivery.NewMemory(), clk, map[string]string{"hook": r.srv.URL}, func(o *delivery.Options) { o.GroupWait = wait })
		var fs []finding.Finding
		for i := range 70 {
			fs = append(fs, fnd("burst", fmt.Sprintf("caller%02d", i), t0))
		}
		if wait == 0 {
			if err := d.Found(context.Background(), fs); err != nil {
				t.Fatal(err)
			}
		} else {
			for _, f := range fs { // one at a time, within the wait
				if err := d.Found(context.Background(), []finding.Finding{f}); err != nil {
					t.Fatal(err)
				}
			}
			clk.Add(2 * time.Minute)
		}
		if _, err := d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, a := range r.got() {
			sizes = append(sizes, len(a.Findings))
		}
		slices.Sort(sizes)
		if fmt.Sprint(sizes) != "[10 30 30]" {
			t.Errorf("group wait %s: alerts of %v findings, want [10 30 30]", wait, sizes)
		}
	}
}

// lostAnswers is an outbox whose first writes of entries are made but
// answered as conflicts, as when a write's answer is lost and the write,
// sent again, finds the row changed (by itself).
type lostAnswers struct {
	*delivery.Memory
	lose int
}

func (l *lostAnswers) PutAll(ctx context.Context, es []*delivery.Entry) ([]error, error) {
	errs, err := l.Memory.PutAll(ctx, es)
	if err != nil || l.lose == 0 {
		return errs, err
	}
	l.lose--
	for i := range errs {
		if errs[i] == nil {
			errs[i] = delivery.ErrConflict
		}
	}
	return errs, nil
}

// A sender whose claim was written but not answered reads the entry again,
// finds its own claim, and sends the alert now: it does not wait for its
// own lease to run out as if another sender held the alert.
func TestClaimWhoseAnswerWasLostIsSentAtOnce(t *testing.T) {
	ctx := context.Background()
	r := newReceiver(t)
	clk := &clock{t: t0}
	out := &lostAnswers{Memory: delivery.NewMemory(), lose: 1}
	d := newDispatcher(t, out, clk, map[string]string{"hook": r.srv.URL}, nil)
	if err := d.Found(ctx, []finding.Finding{fnd("burst", "alice", t0)}); err != nil {
		t.Fatal(err)
	}
	rep, err := d.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.got(); len(got) != 1 || rep.Delivered != 1 {
		t.Fatalf("after the first Flush: %d alerts received, report %+v; want the alert sent at once", len(got), rep)
	}
	if out.lose != 0 {
		t.Fatal("no answer was lost: the test did not test")
	}
	clk.Add(5 * time.Minute) // the lease long run out
	if _, err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.got(); len(got) != 1 {
		t.Fatalf("%d alerts received, want 1", len(got))
	}
}
