// Package e2e drives the real kvwatch binary the way Azure does — through
// a double of the Functions host and the Event Hubs trigger, with Azurite
// for Table Storage and a real HTTP server standing in for the webhook —
// and checks that every scenario ends with exactly the alerts it should.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvwatch-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "kvwatch")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/kvwatch").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	azuritetest.Main(m)
}

// catcher is the webhook receiver: it can be told to fail for a while.
type catcher struct {
	srv    *httptest.Server
	mu     sync.Mutex
	fail   []int // statuses to answer first
	alerts []alert.Alert
	ids    map[string]int
}

func newCatcher(t *testing.T) *catcher {
	c := &catcher{ids: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.fail) > 0 {
			st := c.fail[0]
			c.fail = c.fail[1:]
			if st == 429 {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(st)
			return
		}
		var a alert.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			w.WriteHeader(400)
			return
		}
		c.ids[a.ID]++
		c.alerts = append(c.alerts, a)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// summary is what a scenario is judged on: one line per finding the
// receiver got (rule, vault, group), sorted, and the findings that arrived
// in more than one first message. (How findings are grouped into alerts
// depends on how batches were cut, which differs between scenarios by
// design; so do updates of an incident, which say what a later batch
// added: each must say what changed, and none may arrive twice.)
func (c *catcher) summary() (lines []string, dups []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]int{}
	for _, a := range c.alerts {
		if a.IsUpdate() {
			if len(a.Changes) == 0 || a.Incident == "" {
				dups = append(dups, "update "+a.ID+" says nothing new")
			}
			continue
		}
		for _, f := range a.Findings {
			var pairs []string
			for _, p := range f.Group {
				pairs = append(pairs, p.Field+"="+p.Value)
			}
			line := a.Rule + " " + strings.Join(pairs, ",") + " " + f.Period.Format(time.RFC3339)
			seen[line]++
			if seen[line] == 1 {
				lines = append(lines, line)
			}
		}

	}
	slices.Sort(lines)
	for l, n := range seen {
		if n > 1 {
			dups = append(dups, l)
		}
	}
	for id, n := range c.ids {
		if n > 1 {
			dups = append(dups, "alert "+id)
		}
	}
	return lines, dups
}

type env struct {
	t      *testing.T
	conn   string
	prefix string
	cfg    string
	hook   *catcher
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, conn: azuritetest.Start(t), hook: newCatcher(t)}
	e.prefix = fmt.Sprintf("e%d", time.Now().UnixNano()%1_000_000_000)
	e.cfg = filepath.Join(t.TempDir(), "kvwatch.yaml")
	// The demo day's tenant: its receiver and its exceptions (demo.Config,
	// as kvwatch replay and kvwatch dev run the day).
	os.WriteFile(e.cfg, append([]byte(fmt.Sprintf(`
receivers:
  - name: hook
    webhook: {url: %q, timeout: 2s}
delivery: {max_backoff: 2s, inhibit_wait: 3s}
`, e.hook.srv.URL+"/alerts")), demo.Config...), 0o644)
	return e
}

func (e *env) start(name string) *host.Process {
	e.t.Helper()
	out := &bytes.Buffer{}
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("%s output:\n%s", name, tail(out.String(), 4000))
		}
	})
	p, err := host.Start(context.Background(), binary, []string{"serve"}, []string{
		"KVWATCH_TABLE_CONNECTION_STRING=" + e.conn, "KVWATCH_TABLE_PREFIX=" + e.prefix,
		"KVWATCH_CONFIG=" + e.cfg, "KVWATCH_LOG_LEVEL=warn",
		"KVWATCH_DEADLETTER_FILE=" + filepath.Join(e.t.TempDir(), name+"-dl.jsonl"),
	}, &syncWriter{w: out}, 30*time.Second)
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", name, err, out.String())
	}
	e.t.Cleanup(p.Kill)
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// demoHub puts the demo day on a hub as the live stream would carry it:
// every vault's records in one time order, 10 records per event, events
// dealt to the partitions round robin.
func demoHub(partitions int) *host.Hub {
	recs := demo.Stream(demo.Options{})
	h := host.NewHub()
	for i := 0; i*10 < len(recs); i++ {
		h.Append(fmt.Sprint(i%partitions), demo.EventBody(recs[i*10:min(i*10+10, len(recs))]))
	}
	return h
}

var retry = host.Retry{MaxRetryCount: -1, Min: 50 * time.Millisecond, Max: time.Second}

// drain delivers every partition to its process, one batch at a time,
// round robin, so partitions stay close in event time.
func drain(t *testing.T, h *host.Hub, owner func(partition string) *host.Process, batch int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		busy := false
		for _, p := range sortedPartitions(h) {
			n, _, err := h.Deliver(ctx, http.DefaultClient, owner(p).BaseURL, p, batch, host.StringOfStrings, retry)
			if err != nil {
				t.Fatal(err)
			}
			busy = busy || n > 0
		}
		if !busy {
			return
		}
	}
}

func sortedPartitions(h *host.Hub) []string {
	ps := h.Partitions()
	slices.Sort(ps)
	return ps
}

// housekeeping waits until no alert in the outbox waits for a receiver
// any more: delivery is off the ingest path (the process's sender loop
// sends), so it fires the Housekeeping timer — at least rounds times, as
// the host's schedule would — and reads the outbox (kvwatch alerts list)
// until nothing there is pending, for up to two minutes.
func (e *env) housekeeping(t *testing.T, p *host.Process, rounds int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		now := time.Now().UTC()
		r, err := host.Invoke(context.Background(), http.DefaultClient, p.BaseURL, "Housekeeping",
			host.TimerBody("Housekeeping", now.Add(-10*time.Minute), now.Add(10*time.Minute), false))
		if err != nil || r.Status != 200 {
			t.Fatalf("housekeeping: %v %+v", err, r)
		}
		time.Sleep(300 * time.Millisecond)
		if i+1 < rounds {
			continue
		}
		pending, err := e.pending()
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d alerts still wait for a receiver after two minutes", pending)
		}
	}
}

// pending counts the alerts of the outbox that a receiver still waits for.
func (e *env) pending() (int, error) {
	cmd := exec.Command(binary, "alerts", "list", "-n", "100000")
	cmd.Env = append(os.Environ(), "KVWATCH_TABLE_CONNECTION_STRING="+e.conn, "KVWATCH_TABLE_PREFIX="+e.prefix,
		"KVWATCH_CONFIG="+e.cfg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("alerts list: %v\n%s", err, out)
	}
	return strings.Count(string(out), ":pending"), nil
}

var reference struct {
	once   sync.Once
	lines  []string
	folded []string
}

// folded is one line per rule that fired on the same evidence as an alert
// the receiver got and was folded into it (inhibition): "rule group period
// (in source-rule)". Which batch raises a rule decides whether it is
// folded into its source's message or recorded as inhibited by one sent
// before, so scenarios are not compared on it.
func (c *catcher) folded() (lines []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.alerts {
		for _, r := range a.Related {
			var pairs []string
			for _, p := range r.Group {
				pairs = append(pairs, p.Field+"="+p.Value)
			}
			lines = append(lines, r.Rule+" "+strings.Join(pairs, ",")+" "+r.Period.Format(time.RFC3339)+" (in "+a.Rule+")")
		}
	}
	slices.Sort(lines)
	return lines
}

// want is the alerts of the demo day delivered through one handler and one
// partition: the reference every other scenario must reproduce exactly.
func want(t *testing.T) []string {
	reference.once.Do(func() {
		e := newEnv(t)
		p := e.start("ref")
		drain(t, demoHub(1), func(string) *host.Process { return p }, 100)
		e.housekeeping(t, p, 2)
		lines, dups := e.hook.summary()
		if len(dups) > 0 {
			t.Fatalf("reference run sent alerts twice: %v", dups)
		}
		reference.lines, reference.folded = lines, e.hook.folded()
	})
	if len(reference.lines) == 0 {
		t.Fatal("the reference run raised no alerts")
	}
	return reference.lines
}

func check(t *testing.T, e *env) {
	t.Helper()
	got, dups := e.hook.summary()
	if len(dups) > 0 {
		t.Errorf("alerts received more than once: %v", dups)
	}
	if w := want(t); !slices.Equal(got, w) {
		t.Errorf("alerts differ from the reference run\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
}

// Every planted incident is found: alerted, or named in the alert of the
// rule it fired beside (the mass read and the burst of the 13:37 sweep in
// the listing's alert).
func TestDemoDayFindsThePlantedIncidents(t *testing.T) {
	w := want(t)
	joined := strings.Join(append(slices.Clone(w), reference.folded...), "\n")
	for _, rule := range []string{"mass-secret-retrieval", "object-destroyed", "vault-protection-weakened",
		"object-exfiltration-prone", "denied-burst-caller", "denied-across-vaults", "listing-then-read-burst"} {
		if !strings.Contains(joined, rule+" ") {
			t.Errorf("no %s alert:\n%s", rule, joined)
		}
	}
}

func TestFourPartitionsTwoHandlers(t *testing.T) {
	e := newEnv(t)
	a, b := e.start("a"), e.start("b")
	drain(t, demoHub(4), func(p string) *host.Process {
		if p == "0" || p == "1" {
			return a
		}
		return b
	}, 100)
	e.housekeeping(t, a, 2)
	check(t, e)
}

// A handler killed in the middle of the day; the host redelivers from the
// last checkpoint (more than a batch back) to a fresh process.
func TestCrashAndRedelivery(t *testing.T) {
	e := newEnv(t)
	h := demoHub(2)
	p := e.start("first")
	ctx := context.Background()
	for i := 0; i < 12; i++ { // about half the day
		for _, part := range sortedPartitions(h) {
			if _, _, err := h.Deliver(ctx, http.DefaultClient, p.BaseURL, part, 40, host.StringOfStrings, retry); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Kill()
	for _, part := range sortedPartitions(h) {
		h.Rewind(part, 150) // the checkpoint was lost: events since are delivered again
	}
	q := e.start("second")
	drain(t, h, func(string) *host.Process { return q }, 100)
	e.housekeeping(t, q, 2)
	check(t, e)
}

// Table Storage goes away for a while: the handler answers 500, the host
// retries the batch (holding the partition), and once it is back nothing
// is lost or doubled.
func TestStorageOutage(t *testing.T) {
	e := newEnv(t)
	h := demoHub(1)
	p := e.start("h")
	ctx := context.Background()
	for i := 0; i < 20; i++ { // part of the day
		if _, _, err := h.Deliver(ctx, http.DefaultClient, p.BaseURL, "0", 40, host.StringOfStrings, retry); err != nil {
			t.Fatal(err)
		}
	}
	azuritetest.Stop()
	restarted := make(chan struct{})
	go func() {
		time.Sleep(8 * time.Second)
		azuritetest.Start(t)
		close(restarted)
	}()
	n, attempts, err := h.Deliver(ctx, http.DefaultClient, p.BaseURL, "0", 100, host.StringOfStrings, retry)
	<-restarted
	// The handler retries Table Storage within its budget (about 45 s)
	// inside the invocation, then answers 500 and the host retries: either
	// way the batch must get through once storage is back.
	if err != nil || n == 0 {
		t.Fatalf("delivery during the outage: %d events, %d attempts, %v", n, attempts, err)
	}
	t.Logf("the batch sent during the outage went through after %d attempt(s)", attempts)
	drain(t, h, func(string) *host.Process { return p }, 100)
	e.housekeeping(t, p, 2)
	check(t, e)
}

// The receiver refuses for a while (429, then 500s): alerts wait in the
// outbox and arrive once each when it recovers.
func TestReceiverDownForAWhile(t *testing.T) {
	e := newEnv(t)
	e.hook.fail = []int{429, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500}
	p := e.start("h")
	drain(t, demoHub(1), func(string) *host.Process { return p }, 100)
	e.housekeeping(t, p, 12)
	check(t, e)
}

// A partition moves from one handler to another mid-burst; the new owner
// starts from an older checkpoint, and for a while both hold it.
func TestPartitionMove(t *testing.T) {
	e := newEnv(t)
	h := demoHub(1)
	a, b := e.start("a"), e.start("b")
	ctx := context.Background()
	for i := 0; i < 20; i++ { // into the kv-payments-prod day
		if _, _, err := h.Deliver(ctx, http.DefaultClient, a.BaseURL, "0", 30, host.StringOfStrings, retry); err != nil {
			t.Fatal(err)
		}
	}
	h.Rewind("0", 120)
	// For a while both hold the partition: the same batches go to the old
	// owner and the new one at the same time.
	for i := 0; i < 5; i++ {
		var wg sync.WaitGroup
		for _, p := range []*host.Process{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := h.Deliver(ctx, http.DefaultClient, p.BaseURL, "0", 100, host.StringOfStrings, retry); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	drain(t, h, func(string) *host.Process { return b }, 100)
	e.housekeeping(t, b, 2)
	check(t, e)
}
