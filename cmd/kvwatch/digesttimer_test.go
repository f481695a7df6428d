package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/notify/email"
	stdoutnotify "github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
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
		out = append(out, digestID(r))
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

func runTimer(t *testing.T, fn handlers.TimerFunc) ([]string, error) {
	t.Helper()
	return fn(context.Background(), handlers.TimerInfo{})
}

func TestDigestTimerTwoTimersSendOnce(t *testing.T) {
	st := seeded(t)
	rcv := &fakeDigestReceiver{}
	receivers := map[string]delivery.Notifier{"ops": rcv}
	clk := &clock{t: at("2026-11-24 09:00", time.UTC)} // a Tuesday: the daily digest only
	var wg sync.WaitGroup
	for range 2 {
		// Two instances, each with its own timer, one shared store.
		fn := digestTimer(st, delivery.NewMemory(), receivers, nil, time.UTC, clk.Now, zerolog.Nop())
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := fn(context.Background(), handlers.TimerInfo{}); err != nil {
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
	lines, err := runTimer(t, digestTimer(st, nil, receivers, nil, time.UTC, clk.Now, zerolog.Nop()))
	if err != nil || len(rcv.sent()) != 1 || !strings.Contains(strings.Join(lines, "\n"), "daily-2026-11-23: already sent (or being sent") {
		t.Errorf("second run: %v %v, %d sent", lines, err, len(rcv.sent()))
	}
}

func TestDigestTimerRetriesFailedSend(t *testing.T) {
	st := seeded(t)
	ok, flaky := &fakeDigestReceiver{}, &fakeDigestReceiver{fail: 2}
	receivers := map[string]delivery.Notifier{"ok": ok, "flaky": flaky}
	clk := &clock{t: at("2026-11-24 08:00", time.UTC)}
	fn := digestTimer(st, nil, receivers, nil, time.UTC, clk.Now, zerolog.Nop())

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
	fn := digestTimer(st, nil, receivers, nil, berlin, clk.Now, zerolog.Nop())
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
	fn := digestTimer(st, nil, receivers, nil, time.UTC, clk.Now, zerolog.Nop())
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
	names := func(ts []digestTarget) (out []string) {
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
			ts, skipped := digestTargets(tc.routes, receivers)
			if got := names(ts); !slices.Equal(got, tc.want) || !slices.Equal(skipped, tc.skipped) {
				t.Errorf("targets %v skipped %v, want %v and %v", got, skipped, tc.want, tc.skipped)
			}
		})
	}

	// The timer says what it skipped, and keeps the claim when nothing
	// takes digests (no retry every hour).
	st := seeded(t)
	clk := &clock{t: at("2026-11-24 09:00", time.UTC)}
	lines, err := runTimer(t, digestTimer(st, nil, map[string]delivery.Notifier{"pager": alertOnly{}}, nil, time.UTC, clk.Now, zerolog.Nop()))
	all := strings.Join(lines, "\n")
	if err != nil || !strings.Contains(all, "receiver pager does not take digests, skipped") || !strings.Contains(all, "no receiver takes digests") {
		t.Errorf("lines %v err %v", lines, err)
	}
	if first, _ := digest.Once(context.Background(), st, digest.Daily, at("2026-11-23 00:00", time.UTC)); first {
		t.Error("the claim was released with nothing to send")
	}
}

// --- the real receivers -------------------------------------------------

// smtpSink is a loopback SMTP server that keeps what it is sent.
type smtpSink struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s}, nil }

type sinkSession struct{ s *smtpSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, b)
	ss.s.mu.Unlock()
	return err
}

func startSMTPSink(t *testing.T) (*smtpSink, int) {
	t.Helper()
	sink := &smtpSink{}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sink, l.Addr().(*net.TCPAddr).Port
}

// inlinePNG finds the part of a mail whose Content-ID is cid, and checks
// the HTML refers to it.
func inlinePNG(t *testing.T, data []byte, cid string) (html string, chart []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(h map[string][]string, body io.Reader)
	walk = func(h map[string][]string, body io.Reader) {
		get := func(k string) string {
			if v := h[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		mt, params, err := mime.ParseMediaType(get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header, p)
			}
		}
		b, _ := io.ReadAll(body)
		switch {
		case get("Content-Id") == "<"+cid+">":
			chart, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
		case mt == "text/html":
			html = string(b)
		}
	}
	walk(msg.Header, msg.Body)
	return html, chart
}

func TestDigestThroughRealReceivers(t *testing.T) {
	st := seeded(t)
	now := at("2026-11-24 08:00", time.UTC)

	var hookBody []byte
	var hookHeader http.Header
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookBody, _ = io.ReadAll(r.Body)
		hookHeader = r.Header.Clone()
	}))
	defer hook.Close()
	var teamsBody []byte
	teamsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		teamsBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer teamsSrv.Close()
	sink, port := startSMTPSink(t)

	wh, err := webhook.New("siem", webhook.Config{URL: hook.URL + "/digest?token=SECRET"}, hook.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := teams.New("channel", teams.Config{URL: teamsSrv.URL + "/flow?sig=SECRET"}, teamsSrv.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	em, err := email.New("mail", email.Config{From: "kvwatch@contoso.com", To: []string{"secops@contoso.com"},
		SMTP: email.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: email.TLSNone}}, email.Deps{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	so := stdoutnotify.New(stdoutnotify.Config{}, &out)
	receivers := map[string]delivery.Notifier{"siem": wh, "channel": tm, "mail": em, "console": so}

	lines, err := runTimer(t, digestTimer(st, delivery.NewMemory(), receivers, nil, time.UTC, func() time.Time { return now }, zerolog.Nop()))
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(lines, "\n"))
	}
	for _, name := range []string{"channel", "console", "mail", "siem"} {
		if !slices.Contains(lines, "kvwatch: digest daily-2026-11-23: sent to "+name) {
			t.Errorf("no line for %s: %v", name, lines)
		}
	}
	r, err := digest.Compute(context.Background(), st, nil, digest.Daily, now, time.UTC)
	if err != nil {
		t.Fatal(err)
	}

	// webhook: the JSON form.
	var doc map[string]any
	if err := json.Unmarshal(hookBody, &doc); err != nil {
		t.Fatalf("webhook body: %v", err)
	}
	if doc["schema"] != "kvwatch.digest/v1" || doc["id"] != "daily-2026-11-23" || doc["period"] != "daily" || doc["zone"] != "UTC" ||
		doc["start"] != "2026-11-23T00:00:00Z" || doc["end"] != "2026-11-24T00:00:00Z" {
		t.Errorf("webhook body head: %.300s", hookBody)
	}
	overall, _ := doc["overall"].(map[string]any)
	if overall["requests"] != float64(144) || overall["denied"] != float64(r.Overall.Denied) {
		t.Errorf("overall %v", overall)
	}
	if vs, _ := doc["vaults"].([]any); len(vs) != 2 {
		t.Errorf("vaults %v", doc["vaults"])
	}
	if ch, _ := doc["chart"].(map[string]any); ch["unit"] != "hour" || len(ch["slots"].([]any)) != 24 {
		t.Errorf("chart %v", doc["chart"])
	}
	if hookHeader.Get("X-Kvwatch-Schema") != webhook.DigestSchemaVersion || hookHeader.Get("X-Kvwatch-Digest-Id") != "daily-2026-11-23" {
		t.Errorf("webhook headers %v", hookHeader)
	}

	// teams: the card in its envelope, within 28 KB.
	var env struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string         `json:"contentType"`
			Content     map[string]any `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(teamsBody, &env); err != nil || env.Type != "message" || len(env.Attachments) != 1 ||
		env.Attachments[0].ContentType != teams.ContentType || env.Attachments[0].Content["type"] != "AdaptiveCard" {
		t.Errorf("teams body (%v): %.300s", err, teamsBody)
	}
	if len(teamsBody) > 28*1024 {
		t.Errorf("teams message of %d bytes", len(teamsBody))
	}

	// email: the HTML refers to the chart, which is an inline PNG.
	sink.mu.Lock()
	msgs := sink.msgs
	sink.mu.Unlock()
	if len(msgs) != 1 {
		t.Fatalf("%d mails", len(msgs))
	}
	html, chart := inlinePNG(t, msgs[0], digest.ChartCID)
	if !strings.Contains(html, `src="cid:`+digest.ChartCID+`"`) {
		t.Error("the HTML part does not show the chart by cid")
	}
	img, err := png.Decode(bytes.NewReader(chart))
	if err != nil {
		t.Fatalf("inline chart: %v", err)
	}
	if b := img.Bounds(); b.Dx() != digest.ChartWidth || b.Dy() != digest.ChartHeight {
		t.Errorf("chart %v", b)
	}
	if m, _ := mail.ReadMessage(bytes.NewReader(msgs[0])); m != nil {
		s, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if s != "[kvwatch] Daily digest — Monday 23 November 2026" {
			t.Errorf("subject %q", s)
		}
	}

	// stdout: the text.
	if out.String() != digest.Text(r) {
		t.Errorf("stdout wrote:\n%.300s", out.String())
	}
}

func TestDigestJSONSeverities(t *testing.T) {
	day := at("2026-11-23 00:00", time.UTC)
	r := &digest.Report{Period: digest.Daily, Start: day, End: day.AddDate(0, 0, 1), Zone: "UTC"}
	r.Overall.FindingsBySeverity[finding.High] = 2
	r.Overall.FindingsBySeverity[finding.Critical] = 1
	r.Findings = []digest.Finding{{Raised: day, Severity: finding.High, Rule: "r", Summary: "s",
		Delivery: []digest.Delivery{{Receiver: "x", State: delivery.Pending, Attempts: 2}}}}
	b, err := digestJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"findingsBySeverity":{"critical":1,"high":2}`, `"severity":"high"`, `"state":"pending"`, `"vaults":[]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
}

func TestDigestCmdSend(t *testing.T) {
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
	}))
	defer hook.Close()
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(cfg, []byte(`
receivers:
  - name: siem
    webhook: {url: "${HOOK}/x?token=SECRETTOKEN"}
  - name: pager
    webhook: {url: "${HOOK}/pager?token=SECRETTOKEN"}
routes:
  - receivers: [pager]
    min_severity: high
  - receivers: [siem]
    tags: [digest]
`), 0o644)
	env := map[string]string{"HOOK": hook.URL}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"digest", "--config", cfg, "--send"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "digest daily-2026-11-23: sent to siem") || strings.Contains(stderr.String(), "pager") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("--send printed the digest too:\n%.200s", stdout.String())
	}
	if len(bodies) != 1 || !strings.Contains(bodies[0], `"schema":"kvwatch.digest/v1"`) {
		t.Fatalf("webhook got %d bodies: %.200v", len(bodies), bodies)
	}
	var doc struct {
		Overall struct{ Requests int64 } `json:"overall"`
	}
	json.Unmarshal([]byte(bodies[0]), &doc)
	if doc.Overall.Requests < 16000 {
		t.Errorf("the demo day's digest counts %d requests", doc.Overall.Requests)
	}
	if strings.Contains(stdout.String()+stderr.String(), "SECRETTOKEN") {
		t.Error("a secret leaked")
	}

	// A failing receiver: exit 1, said on stderr.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	env["HOOK"] = down.URL
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"digest", "--config", cfg, "--send"}, func(k string) string { return env[k] }, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "sending to siem failed") || strings.Contains(stderr.String(), "SECRETTOKEN") {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}
}
