package digest_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

// fakeDigestReceiver takes digests (and alerts); fail makes the next
// sends fail.
type fakeDigestReceiver struct {
	mu      sync.Mutex
	reports []*digest.Report
	fail    int // fail this many sends
}

func (f *fakeDigestReceiver) Notify(context.Context, *alert.Alert) error { return nil }

func (f *fakeDigestReceiver) SendDigest(_ context.Context, r *digest.Report) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return notify.Temporary(errors.New("HTTP 503: try later"), 0)
	}
	f.reports = append(f.reports, r)
	return nil
}

func (f *fakeDigestReceiver) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reports {
		out = append(out, digest.ID(r))
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func at(s string, z *time.Location) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, z)
	if err != nil {
		panic(err)
	}
	return t
}

// seeded is a store holding a day of traffic on two vaults, 22–23
// November 2026.
func seeded(t *testing.T) state.Store {
	t.Helper()
	st := state.NewMemory()
	var evs []audit.Event
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for i := range 48 * 6 {
		vault := "kv-payments-prod"
		if i%3 == 0 {
			vault = "kv-shared-dev"
		}
		e := audit.Event{Time: start.Add(time.Duration(i) * 10 * time.Minute), Vault: vault, Operation: "SecretGet",
			Family: audit.FamilySecret, Kind: audit.KindRead, Outcome: audit.OutcomeSuccess, HTTPStatus: 200,
			ObjectType: "secret", ObjectName: "db-password", DurationMs: 7, CallerIP: "10.1.2.3",
			Caller: audit.Caller{Key: "app-" + vault, KeyFrom: "oid", ObjectID: "app-" + vault},
			Source: audit.Source{File: "seed", Line: i + 1}}
		if i%17 == 0 {
			e.Outcome, e.HTTPStatus = audit.OutcomeDenied, 403
		}
		evs = append(evs, e)
	}
	if err := stats.New(st).Collect(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return st
}

// timer is the Digest timer as serve wires it, on a settable clock.
func timer(st state.Store, outbox delivery.Outbox, receivers map[string]delivery.Notifier, zone *time.Location, now func() time.Time) *digest.Timer {
	return &digest.Timer{Store: st, Outbox: outbox, Receivers: receivers, Zone: zone, Now: now, Log: zerolog.Nop()}
}

func runTimer(t *testing.T, tm *digest.Timer) ([]string, error) {
	t.Helper()
	return tm.Run(context.Background())
}

func TestDigestTimerTwoTimersSendOnce(t *testing.T) {
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{t: at("2026-11-24 09:00", time.UTC)} // a Tuesday: the daily digest only
	var wg sync.WaitGroup
	for range 2 {
		// Two instances, each with its own timer, one shared store.
		fn := timer(st, delivery.NewMemory(), receivers, time.UTC, clk.Now)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := fn.Run(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if got := rcv.sent(); !slices.Equal(got, []string{"daily-2026-11-23"}) {
		t.Fatalf("sent %v, want the daily digest of 23 November once", got)
	}
	r := rcv.reports[0]
	if r.Overall.Requests != 144 || len(r.Vaults) != 2 {
		t.Errorf("digest of %d requests on %d vaults, want 144 on 2", r.Overall.Requests, len(r.Vaults))
	}
	// An hour later: already sent.
	clk.Add(time.Hour)
	lines, err := runTimer(t, timer(st, nil, receivers, time.UTC, clk.Now))
	if err != nil || len(rcv.sent()) != 1 || !strings.Contains(strings.Join(lines, "\n"), "daily-2026-11-23: already sent (or being sent") {
		t.Errorf("second run: %v %v, %d sent", lines, err, len(rcv.sent()))
	}
}

func TestDigestTimerRetriesFailedSend(t *testing.T) {
	st := seeded(t)
	ok, flaky := &fakeDigestReceiver{}, &fakeDigestReceiver{fail: 2}
	receivers := map[string]delivery.Notifier{"ok": ok, "flaky": flaky}
	clk := &clock{t: at("2026-11-24 08:00", time.UTC)}
	fn := timer(st, nil, receivers, time.UTC, clk.Now)

	lines, err := runTimer(t, fn)
	if err == nil || !strings.Contains(err.Error(), "flaky") {
		t.Fatalf("a failed send is not reported: %v", err)
	}
	if retry, _ := notify.Retryable(err); !retry {
		t.Errorf("the failure lost its class: %v", err)
	}
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "sent to ok") || !strings.Contains(all, "sending to flaky failed") {
		t.Errorf("lines:\n%s", all)
	}
	if len(ok.sent()) != 1 || len(flaky.sent()) != 0 {
		t.Fatalf("after run 1: ok %v, flaky %v", ok.sent(), flaky.sent())
	}

	clk.Add(time.Hour) // 09:00: fails again
	if _, err := runTimer(t, fn); err == nil {
		t.Fatal("second failure not reported")
	}
	clk.Add(time.Hour) // 10:00: goes through
	lines, err = runTimer(t, fn)
	if err != nil {
		t.Fatalf("run 3: %v", err)
	}
	all = strings.Join(lines, "\n")
	if !strings.Contains(all, "already sent to ok") || !strings.Contains(all, "sent to flaky") {
		t.Errorf("lines:\n%s", all)
	}
	if !slices.Equal(flaky.sent(), []string{"daily-2026-11-23"}) || len(ok.sent()) != 1 {
		t.Fatalf("flaky got %v, ok got %v: the retry must reach flaky once and not resend to ok", flaky.sent(), ok.sent())
	}
	clk.Add(time.Hour)
	if _, err := runTimer(t, fn); err != nil || len(flaky.sent()) != 1 || len(ok.sent()) != 1 {
		t.Errorf("after success: %v, flaky %v, ok %v", err, flaky.sent(), ok.sent())
	}
}

func TestDigestTimerNotBefore8Local(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{t: at("2026-11-24 00:00", berlin)}
	fn := timer(st, nil, receivers, berlin, clk.Now)
	for h := range 8 { // 00:00 .. 07:00 Berlin (07:00 UTC is already 08:00 there)
		clk.Set(at("2026-11-24 00:00", berlin).Add(time.Duration(h) * time.Hour))
		lines, err := runTimer(t, fn)
		if err != nil || len(rcv.sent()) != 0 {
			t.Fatalf("at %s Berlin: sent %v (%v)", clk.Now().In(berlin).Format("15:04"), rcv.sent(), err)
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "nothing due") {
			t.Errorf("lines %v", lines)
		}
	}
	clk.Set(at("2026-11-24 07:59", berlin))
	runTimer(t, fn)
	clk.Set(at("2026-11-24 08:00", berlin))
	if _, err := runTimer(t, fn); err != nil {
		t.Fatal(err)
	}
	if got := rcv.sent(); !slices.Equal(got, []string{"daily-2026-11-23"}) {
		t.Fatalf("at 08:00 Berlin sent %v", got)
	}
	r := rcv.reports[0]
	if !r.Start.Equal(at("2026-11-23 00:00", berlin)) || !r.End.Equal(at("2026-11-24 00:00", berlin)) || r.Zone != "Europe/Berlin" {
		t.Errorf("period %s – %s %s, want the Berlin day of 23 November", r.Start, r.End, r.Zone)
	}
}

func TestDigestTimerWeeklyAndMonthly(t *testing.T) {
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{}
	fn := timer(st, nil, receivers, time.UTC, clk.Now)
	for _, step := range []struct {
		now  string
		want []string
	}{
		{"2026-11-23 07:00", nil}, // Monday before 08:00
		{"2026-11-23 15:00", []string{"daily-2026-11-22", "weekly-2026-11-16"}}, // missed 08:00: catches up
		{"2026-11-23 16:00", nil},
		{"2026-11-24 08:30", []string{"daily-2026-11-23"}}, // Tuesday: no weekly
		{"2026-12-01 08:00", []string{"daily-2026-11-30", "monthly-2026-11-01"}},
		{"2026-12-02 08:00", []string{"daily-2026-12-01"}},
	} {
		before := len(rcv.sent())
		clk.Set(at(step.now, time.UTC))
		if _, err := runTimer(t, fn); err != nil {
			t.Fatal(err)
		}
		if got := rcv.sent()[before:]; !slices.Equal(got, step.want) {
			t.Errorf("at %s sent %v, want %v", step.now, got, step.want)
		}
	}
}

// alertOnly takes alerts but not digests.
type alertOnly struct{}

func (alertOnly) Notify(context.Context, *alert.Alert) error { return nil }

func TestDigestRouting(t *testing.T) {
	a, b, c := &fakeDigestReceiver{}, &fakeDigestReceiver{}, &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"a": a, "b": b, "c": c, "pager": alertOnly{}}
	names := func(ts []digest.Target) (out []string) {
		for _, t := range ts {
			out = append(out, t.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		routes  []delivery.Route
		want    []string
		skipped []string
	}{
		{"no routes: every receiver", nil, []string{"a", "b", "c"}, []string{"pager"}},
		{"tags: [digest]", []delivery.Route{
			{Receivers: []string{"pager"}, MinSeverity: finding.High},
			{Receivers: []string{"b"}, Tags: []string{"digest"}},
			{Receivers: []string{"a"}},
		}, []string{"b"}, nil},
		{"rules: [digest], continue", []delivery.Route{
			{Receivers: []string{"c"}, Rules: []string{"digest"}, Continue: true},
			{Receivers: []string{"a", "pager"}, Tags: []string{"digest"}},
		}, []string{"c", "a"}, []string{"pager"}},
		{"severity and vault routes do not take digests", []delivery.Route{
			{Receivers: []string{"a"}, MinSeverity: finding.Low},
			{Receivers: []string{"b"}, Vaults: []string{"kv-*"}},
			{Receivers: []string{"c"}, Rules: []string{"mass-*"}},
		}, nil, nil},
		{"a catch-all route takes them", []delivery.Route{
			{Receivers: []string{"a"}, MinSeverity: finding.High, Continue: true},
			{Receivers: []string{"c"}},
		}, []string{"c"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, skipped := digest.Targets(tc.routes, receivers)
			if got := names(ts); !slices.Equal(got, tc.want) || !slices.Equal(skipped, tc.skipped) {
				t.Errorf("targets %v skipped %v, want %v and %v", got, skipped, tc.want, tc.skipped)
			}
		})
	}

	// The timer says what it skipped, and keeps the claim when nothing
	// takes digests (no retry every hour).
	st := seeded(t)
	clk := &clock{t: at("2026-11-24 09:00", time.UTC)}
	lines, err := runTimer(t, timer(st, nil, map[string]delivery.Notifier{"pager": alertOnly{}}, time.UTC, clk.Now))
	all := strings.Join(lines, "\n")
	if err != nil || !strings.Contains(all, "receiver pager does not take digests, skipped") || !strings.Contains(all, "no receiver takes digests") {
		t.Errorf("lines %v err %v", lines, err)
	}
	if first, _ := digest.Once(context.Background(), st, digest.Daily, at("2026-11-23 00:00", time.UTC)); first {
		t.Error("the claim was released with nothing to send")
	}
}

func TestDigestJSONSeverities(t *testing.T) {
	day := at("2026-11-23 00:00", time.UTC)
	r := &digest.Report{Period: digest.Daily, Start: day, End: day.AddDate(0, 0, 1), Zone: "UTC"}
	r.Overall.FindingsBySeverity[finding.High] = 2
	r.Overall.FindingsBySeverity[finding.Critical] = 1
	r.Findings = []digest.Finding{{Raised: day, Severity: finding.High, Rule: "r", Summary: "s",
		Delivery: []digest.Delivery{{Receiver: "x", State: delivery.Pending, Attempts: 2}}}}
	b, err := digest.JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"findingsBySeverity":{"critical":1,"high":2}`, `"severity":"high"`, `"state":"pending"`, `"vaults":[]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
}

// A run that claims a period's digest and dies before sending it (no
// Done, no Release) holds the period only for the claim's lease: a run
// within it leaves it alone, the next run after it sends the digest.
func TestDigestTimerCrashBetweenClaimAndSend(t *testing.T) {
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{t: at("2026-11-24 08:05", time.UTC)} // a Tuesday: the daily digest only
	start, _ := digest.Bounds(digest.Daily, clk.Now(), time.UTC)
	// The run that crashed: it claimed, and nothing more.
	if first, err := digest.OnceAt(context.Background(), st, digest.Daily, start, clk.Now(), digest.DefaultLease); err != nil || !first {
		t.Fatalf("claim: %v %v", first, err)
	}
	fn := timer(st, delivery.NewMemory(), receivers, time.UTC, clk.Now)
	clk.Add(10 * time.Minute)
	lines, err := runTimer(t, fn)
	if err != nil || len(rcv.sent()) != 0 || !strings.Contains(strings.Join(lines, "\n"), "being sent by another run") {
		t.Fatalf("within the lease: %v %v, sent %v", lines, err, rcv.sent())
	}
	clk.Add(time.Hour) // the next hourly run
	if _, err := runTimer(t, fn); err != nil {
		t.Fatal(err)
	}
	if got := rcv.sent(); !slices.Equal(got, []string{"daily-2026-11-23"}) {
		t.Fatalf("after the lease: sent %v, want the daily digest of 23 November", got)
	}
	// Sent and marked done: later runs, past any lease, send nothing more.
	clk.Add(3 * time.Hour)
	if _, err := runTimer(t, fn); err != nil {
		t.Fatal(err)
	}
	if got := rcv.sent(); len(got) != 1 {
		t.Fatalf("sent %v, want once", got)
	}
}
