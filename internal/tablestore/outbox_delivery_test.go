package tablestore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
)

// Delivery end to end on the Table outbox: dispatchers of several
// instances, and of a process before and after a restart, share it.

// testClock is a settable clock shared by a test's dispatchers.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hook is a real HTTP server standing in for a webhook receiver: it answers
// with the statuses it is told to, then 202, and records what it accepted.
type hook struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	accepted []alert.Alert
	calls    atomic.Int64
}

func newHook(t testing.TB, statuses ...int) *hook {
	h := &hook{statuses: statuses}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.calls.Add(1)
		body, _ := io.ReadAll(req.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.statuses) > 0 {
			w.WriteHeader(h.statuses[0])
			h.statuses = h.statuses[1:]
			return
		}
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.accepted = append(h.accepted, a)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) got() []alert.Alert {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]alert.Alert(nil), h.accepted...)
}

func newTestDispatcher(t testing.TB, out delivery.Outbox, clk *testClock, h *hook, instance string) *delivery.Dispatcher {
	t.Helper()
	n, err := webhook.New("hook", webhook.Config{URL: h.srv.URL + "/hook?sig=SECRETSIG123", Timeout: "5s"}, http.DefaultClient, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return delivery.New(delivery.Options{Outbox: out, Receivers: map[string]delivery.Notifier{"hook": n},
		Now: clk.Now, Log: zerolog.Nop(), Instance: instance, Cooldowns: map[string]time.Duration{"burst": time.Hour}})
}

func burst(caller string, at time.Time) finding.Finding {
	f := finding.Finding{Rule: "burst", Title: "burst", Severity: finding.High, Kind: "threshold",
		Group: []finding.Pair{{Field: "vault", Value: "kv1"}, {Field: "caller", Value: caller}},
		Vault: "kv1", FirstEvent: at, LastEvent: at.Add(time.Minute), WindowStart: at, Count: 30,
		Summary: "burst by " + caller, Period: at.Truncate(time.Hour)}
	f.ID = finding.NewID("burst", "kv1|"+caller, at, "")
	return f
}

// onlyEntry returns the outbox's one entry.
func onlyEntry(t *testing.T, o delivery.Outbox) *delivery.Entry {
	t.Helper()
	es, err := o.Recent(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 {
		t.Fatalf("the outbox holds %d entries, want 1", len(es))
	}
	return es[0]
}

// Two instances (two stores, two dispatchers) sharing the Table outbox,
// handed the same findings at once, send one alert.
func TestOutboxTwoInstancesSendOnce(t *testing.T) {
	t.Run("one finding", func(t *testing.T) {
		twoInstancesSendOnce(t, []finding.Finding{burst("alice", t0)})
	})
	t.Run("two findings of one alert", func(t *testing.T) {
		// delivery.Dispatcher.Found reads the batch's decisions one by one:
		// an instance that reads alice's as absent and then bob's as
		// written (the other instance decided both in between) alerts alice
		// alone, a second alert for her. Not the outbox's doing: the same
		// happens on delivery.Memory with a little latency. Remove the skip
		// once Found checks the decisions again before adding its alerts.
		if !dispatcherRereadsDecisions {
			t.Skip("known delivery.Dispatcher race (decisions read one by one): a finding can go out in two alerts")
		}
		twoInstancesSendOnce(t, []finding.Finding{burst("alice", t0), burst("bob", t0)})
	})
}

// dispatcherRereadsDecisions is true once delivery.Dispatcher.Found closes
// the race that TestOutboxTwoInstancesSendOnce's second case shows.
const dispatcherRereadsDecisions = true

func twoInstancesSendOnce(t *testing.T, fs []finding.Finding) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h := newHook(t)
	clk := &testClock{t: t0}
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		for _, d := range []*delivery.Dispatcher{da, db} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.Found(ctx, fs); err != nil {
					failed.Add(1) // too many concurrent writers: the host retries
					t.Logf("Found: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	// The host's retries, on both instances.
	for _, d := range []*delivery.Dispatcher{da, db} {
		if err := d.Found(ctx, fs); err != nil {
			t.Fatal(err)
		}
	}
	if h.calls.Load() != 0 {
		t.Fatal("Found sent: recording must not wait for a receiver")
	}
	// Both instances' senders, at once.
	for range 3 {
		for _, d := range []*delivery.Dispatcher{da, db} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := d.Flush(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	got := h.got()
	if len(got) != 1 || len(got[0].Findings) != len(fs) || h.calls.Load() != 1 {
		t.Fatalf("%d alerts in %d calls, want one alert of all %d findings", len(got), h.calls.Load(), len(fs))
	}
	e := onlyEntry(t, a.Outbox())
	if r := e.Receivers["hook"]; r.State != delivery.Delivered || r.Attempts != 1 {
		t.Fatalf("outbox: %+v", r)
	}
	for _, f := range fs {
		d, ok, err := b.Outbox().Decision(ctx, f.ID)
		if err != nil || !ok || d.Alert != got[0].ID {
			t.Fatalf("decision for %s: %+v %v %v", f.ID, d, ok, err)
		}
	}
	t.Logf("%d of 8 concurrent calls failed; conflicts: %d and %d", failed.Load(), a.Stats().Conflicts, b.Stats().Conflicts)
}

// A receiver that is down keeps the alert pending in the table; both
// instances flushing, it is delivered exactly once when it is back.
func TestOutboxReceiverDownThenBack(t *testing.T) {
	p := testPrefix()
	a, b := newStore(t, p, Options{}), newStore(t, p, Options{})
	h := newHook(t, 500, 500, 503)
	clk := &testClock{t: t0}
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	ctx := context.Background()
	if err := da.Found(ctx, []finding.Finding{burst("alice", t0)}); err != nil {
		t.Fatal(err)
	}
	flushBoth := func() {
		t.Helper()
		var wg sync.WaitGroup
		for _, d := range []*delivery.Dispatcher{da, db} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := d.Flush(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	flushBoth() // before the backoff: nothing due
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d calls before the backoff passed, want 1", n)
	}
	for range 8 {
		clk.Add(time.Minute)
		flushBoth()
	}
	if got := h.got(); len(got) != 1 {
		t.Fatalf("%d alerts delivered, want exactly 1", len(got))
	}
	if n := h.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4 (3 failures, 1 success)", n)
	}
	r := onlyEntry(t, b.Outbox()).Receivers["hook"]
	if r.State != delivery.Delivered || r.Attempts != 4 || r.LastError != "" || !r.Lease.IsZero() {
		t.Fatalf("outbox: %+v", r)
	}
	if es, err := a.Outbox().Due(ctx, clk.Now().Add(time.Hour), 10); err != nil || len(es) != 0 {
		t.Fatalf("still due: %d, %v", len(es), err)
	}
}

// A process that stops with an alert pending — refused by a receiver that
// is down, or claimed and never finished — leaves it in the table; the
// process started again (a new store and dispatcher on the same tables)
// delivers it, once, and the same findings handed again make no new alert.
func TestOutboxRestartDeliversPending(t *testing.T) {
	ctx := context.Background()
	p := testPrefix()
	h := newHook(t, 500)
	clk := &testClock{t: t0}
	before := newStore(t, p, Options{})
	d1 := newTestDispatcher(t, before.Outbox(), clk, h, "before")
	fs := []finding.Finding{burst("alice", t0)}
	if err := d1.Found(ctx, fs); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A second alert, claimed by the process just before it stopped.
	carol := []finding.Finding{burst("carol", t0)}
	h.mu.Lock()
	h.statuses = append(h.statuses, 500)
	h.mu.Unlock()
	if err := d1.Found(ctx, carol); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ob := before.Outbox()
	es, err := ob.Recent(ctx, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
	for _, e := range es {
		if e.Alert.Findings[0].ID == carol[0].ID {
			r := e.Receivers["hook"]
			r.Next, r.Lease, r.LeaseBy = t0, clk.Now().Add(time.Minute), "before/99"
			if err := ob.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if h.calls.Load() != 2 || len(h.got()) != 0 {
		t.Fatalf("before the restart: %d calls, %d accepted", h.calls.Load(), len(h.got()))
	}

	// Restart.
	after := newStore(t, p, Options{})
	d2 := newTestDispatcher(t, after.Outbox(), clk, h, "after")
	if err := d2.Found(ctx, fs); err != nil { // the host hands the batch again
		t.Fatal(err)
	}
	if err := d2.Found(ctx, carol); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d calls right after the restart, want none new (backoff, lease)", n)
	}
	clk.Add(30 * time.Second) // alice's backoff passed; carol's lease not yet
	if _, err := d2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.got(); len(got) != 1 || got[0].Findings[0].ID != fs[0].ID {
		t.Fatalf("after alice's backoff: %d alerts", len(got))
	}
	clk.Add(31 * time.Second) // carol's lease expired
	for range 3 {
		if _, err := d2.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Minute)
	}
	got := h.got()
	if len(got) != 2 || got[1].Findings[0].ID != carol[0].ID || h.calls.Load() != 4 {
		t.Fatalf("%d alerts in %d calls, want alice's and carol's, once each", len(got), h.calls.Load())
	}
	for _, e := range mustRecent(t, after.Outbox()) {
		if r := e.Receivers["hook"]; r.State != delivery.Delivered || r.Attempts != 2 {
			t.Fatalf("%s: %+v", e.Alert.Findings[0].Group[1].Value, r)
		}
	}
}

func mustRecent(t *testing.T, o delivery.Outbox) []*delivery.Entry {
	t.Helper()
	es, err := o.Recent(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// flaky is a transport to the Table service that refuses some requests as
// a busy service does (503) and, for some writes, lets the service act and
// then loses the answer (a broken connection): every request is retried,
// and writes must recognise their own earlier try.
type flaky struct {
	n              atomic.Int64
	busy, lost     atomic.Int64
	busyOf, lostOf int64 // every busyOf-th request is refused; every lostOf-th write's answer lost
}

func (f *flaky) Do(req *http.Request) (*http.Response, error) {
	n := f.n.Add(1)
	if f.busyOf > 0 && n%f.busyOf == 1 {
		f.busy.Add(1)
		if req.Body != nil {
			req.Body.Close()
		}
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Server Busy", Request: req,
			Header: http.Header{"X-Ms-Error-Code": {"ServerBusy"}, "Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(`{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}`))}, nil
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method == http.MethodGet || f.lostOf == 0 || n%f.lostOf != 0 {
		return resp, err
	}
	resp.Body.Close()
	f.lost.Add(1)
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

func flakyStore(t *testing.T, prefix string, f *flaky) *Store {
	t.Helper()
	s, _ := storeVia(t, prefix, f, Options{RetryDelay: time.Millisecond, MaxRetryDelay: 20 * time.Millisecond})
	return s
}

// The contract holds when the service is busy now and then and answers
// get lost after writes.
func TestTableOutboxContractFlaky(t *testing.T) {
	var fs []*flaky
	outboxContract(t, func(t *testing.T) delivery.Outbox {
		f := &flaky{busyOf: 5, lostOf: 3}
		fs = append(fs, f)
		return flakyStore(t, testPrefix(), f).Outbox()
	})
	var busy, lost int64
	for _, f := range fs {
		busy, lost = busy+f.busy.Load(), lost+f.lost.Load()
	}
	if busy == 0 || lost == 0 {
		t.Fatalf("%d refusals, %d lost answers: the faults were not exercised", busy, lost)
	}
	t.Logf("%d refusals (503), %d lost answers", busy, lost)
}

// And delivery through it stays exactly once.
func TestOutboxFlakyDeliversOnce(t *testing.T) {
	p := testPrefix()
	fa, fb := &flaky{busyOf: 4, lostOf: 3}, &flaky{busyOf: 5, lostOf: 2}
	a, b := flakyStore(t, p, fa), flakyStore(t, p, fb)
	h := newHook(t, 500)
	clk := &testClock{t: t0}
	da := newTestDispatcher(t, a.Outbox(), clk, h, "a")
	db := newTestDispatcher(t, b.Outbox(), clk, h, "b")
	ctx := context.Background()
	fs := []finding.Finding{burst("alice", t0), burst("bob", t0), burst("carol", t0.Add(time.Minute))}
	for i := range 3 {
		for _, d := range []*delivery.Dispatcher{da, db} {
			if err := d.Found(ctx, fs[:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 3 {
		clk.Add(time.Minute)
		for _, d := range []*delivery.Dispatcher{da, db} {
			if _, err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := h.got()
	seen := map[string]int{}
	for _, a := range got {
		for _, f := range a.Findings {
			seen[f.ID]++
		}
	}
	if len(seen) != 3 || seen[fs[0].ID] != 1 || seen[fs[1].ID] != 1 || seen[fs[2].ID] != 1 {
		t.Fatalf("findings delivered %v in %d alerts, want each once", seen, len(got))
	}
	for _, e := range mustRecent(t, a.Outbox()) {
		if r := e.Receivers["hook"]; r.State != delivery.Delivered {
			t.Fatalf("%s: %+v", e.Alert.ID, r)
		}
	}
	if fa.lost.Load()+fb.lost.Load() == 0 || fa.busy.Load()+fb.busy.Load() == 0 {
		t.Fatal("the faults were not exercised")
	}
	t.Logf("%d alerts; %d refusals, %d lost answers", len(got), fa.busy.Load()+fb.busy.Load(), fa.lost.Load()+fb.lost.Load())
}

// BenchmarkOutboxRoundTrips hands the Table outbox's dispatcher batches
// of findings and sends what they make to one webhook, and reports the
// requests: per batch and per alert, recording (Found: deciding, cooldowns,
// alerts, decisions) and sending (Flush: reading what is due, claiming,
// recording the outcome) apart, beside the time and the memory outbox's.
// In "new" batches every finding opens an incident of its own key (n
// callers over 5 vaults and 2 rules: up to 10 alerts); in "held" batches
// the same keys come back within the cooldown (no alert, every finding
// counted into its key's cooldown).
func BenchmarkOutboxRoundTrips(b *testing.B) {
	for _, kind := range []string{"new", "held"} {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/findings=%d", kind, n), func(b *testing.B) { outboxRoundTrips(b, kind, n) })
		}
	}
}

func outboxRoundTrips(b *testing.B, kind string, n int) {
	s := newStore(b, testPrefix(), Options{})
	h := newHook(b)
	clk := &testClock{t: t0}
	dt := newTestDispatcher(b, s.Outbox(), clk, h, "table")
	dm := newTestDispatcher(b, delivery.NewMemory(), clk, h, "memory")
	ctx := context.Background()
	batch := func(i int, at time.Time) []finding.Finding {
		fs := make([]finding.Finding, n)
		for j := range fs {
			vault, rule := fmt.Sprintf("kv%d", j%5), []string{"burst", "other"}[j/5%2]
			caller := fmt.Sprintf("caller%d-%d", i, j)
			f := finding.Finding{Rule: rule, Title: rule, Severity: finding.High, Kind: "threshold",
				Group: []finding.Pair{{Field: "vault", Value: vault}, {Field: "caller", Value: caller}},
				Vault: vault, FirstEvent: at, LastEvent: at.Add(time.Minute), WindowStart: at, Count: 30,
				Summary: "burst by " + caller, Period: at.Truncate(time.Hour)}
			f.ID = finding.NewID(rule, vault+"|"+caller, at, "")
			fs[j] = f
		}
		return fs
	}
	var tTable, tMem time.Duration
	var record, send Stats
	batches, sent := 0, 0
	for i := 0; b.Loop(); i++ {
		fs := batch(i, t0)
		if kind == "held" { // the keys alerted once, outside the measurement
			b.StopTimer()
			for _, d := range []*delivery.Dispatcher{dm, dt} {
				if err := d.Found(ctx, fs); err != nil {
					b.Fatal(err)
				}
				if _, err := d.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			fs = batch(i, t0.Add(10*time.Minute))
			b.StartTimer()
		}
		before := len(h.got())
		for _, d := range []*delivery.Dispatcher{dm, dt} {
			st0 := s.Stats()
			t1 := time.Now()
			// Recording, then sending (the sender loop's work).
			if err := d.Found(ctx, fs); err != nil {
				b.Fatal(err)
			}
			st1 := s.Stats()
			if _, err := d.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			if d == dt {
				tTable += time.Since(t1)
				record, send = addStats(record, st0, st1), addStats(send, st1, s.Stats())
			} else {
				tMem += time.Since(t1)
			}
		}
		batches++
		sent += (len(h.got()) - before) / 2
	}
	perBatch := func(n int64) float64 { return float64(n) / float64(batches) }
	b.ReportMetric(float64(sent)/float64(batches), "alerts/batch")
	b.ReportMetric(perBatch(record.RoundTrips()+send.RoundTrips()), "roundtrips/batch")
	b.ReportMetric(perBatch(record.RoundTrips()), "record-roundtrips/batch")
	b.ReportMetric(perBatch(send.RoundTrips()), "send-roundtrips/batch")
	if sent > 0 {
		b.ReportMetric(float64(record.RoundTrips()+send.RoundTrips())/float64(sent), "roundtrips/alert")
	}
	b.ReportMetric(float64(tTable.Microseconds())/1000/float64(batches), "table-ms/batch")
	b.ReportMetric(float64(tMem.Microseconds())/1000/float64(batches), "memory-ms/batch")
	b.ReportMetric(0, "ns/op")
}

// addStats adds the requests between two readings of a store's counters.
func addStats(sum, from, to Stats) Stats {
	sum.Reads += to.Reads - from.Reads
	sum.Queries += to.Queries - from.Queries
	sum.Transactions += to.Transactions - from.Transactions
	sum.Writes += to.Writes - from.Writes
	sum.Inserts += to.Inserts - from.Inserts
	sum.Retries += to.Retries - from.Retries
	sum.Conflicts += to.Conflicts - from.Conflicts
	return sum
}
