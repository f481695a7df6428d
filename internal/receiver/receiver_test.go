package receiver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"log"
	"maps"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/notify/email"
	"github.com/kvwatch/kvwatch/internal/notify/stdout"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
	"github.com/kvwatch/kvwatch/internal/notify/webhook"
	"github.com/kvwatch/kvwatch/internal/receiver"
	"github.com/kvwatch/kvwatch/internal/state"
	"github.com/kvwatch/kvwatch/internal/stats"
)

func at(s string, z *time.Location) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, z)
	if err != nil {
		panic(err)
	}
	return t
}

// Every kind in the table builds a receiver that takes digests; a
// receiver with no kind is an error naming the kinds, and all errors come
// at once.
func TestBuild(t *testing.T) {
	cfg := &config.File{Receivers: []config.ReceiverSpec{
		{Name: "t", Teams: &teams.Config{URL: "https://example.invalid/flow"}},
		{Name: "e", Email: &email.Config{From: "a@contoso.com", To: []string{"b@contoso.com"}, SMTP: email.SMTPConfig{Host: "smtp.contoso.com"}}},
		{Name: "w", Webhook: &webhook.Config{URL: "https://example.invalid/hook"}},
		{Name: "s", Stdout: &stdout.Config{}},
	}}
	got, err := receiver.Build(cfg, receiver.Deps{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t", "e", "w", "s"} {
		if _, ok := got[name].(digest.Sender); !ok {
			t.Errorf("receiver %s (%T) does not take digests", name, got[name])
		}
	}
	if _, ok := receiver.Stdout(stdout.Config{}, io.Discard).(digest.Sender); !ok {
		t.Error("receiver.Stdout does not take digests")
	}
	bad := &config.File{Receivers: []config.ReceiverSpec{{Name: "none"}, {Name: "hook", Webhook: &webhook.Config{}}}}
	_, err = receiver.Build(bad, receiver.Deps{Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "receiver none: no kind configured (teams, email, webhook or stdout)") || !strings.Contains(err.Error(), "hook") {
		t.Errorf("errors: %v", err)
	}
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

	var out bytes.Buffer
	cfg := &config.File{Receivers: []config.ReceiverSpec{
		{Name: "siem", Webhook: &webhook.Config{URL: hook.URL + "/digest?token=SECRET"}},
		{Name: "channel", Teams: &teams.Config{URL: teamsSrv.URL + "/flow?sig=SECRET"}},
		{Name: "mail", Email: &email.Config{From: "kvwatch@contoso.com", To: []string{"secops@contoso.com"},
			SMTP: email.SMTPConfig{Host: "127.0.0.1", Port: port, TLS: email.TLSNone}}},
		{Name: "console", Stdout: &stdout.Config{}},
		{Name: "pager", Optional: true, Off: "KVWATCH_PAGER_URL is not set", Webhook: &webhook.Config{}},
	}}
	receivers, err := receiver.Build(cfg, receiver.Deps{HTTPClient: hook.Client(), Stdout: &out, Now: func() time.Time { return now }, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(receivers)); !slices.Equal(got, []string{"channel", "console", "mail", "siem"}) {
		t.Fatalf("built %v: the receiver that is off is left out, the others built", got)
	}

	tm := &digest.Timer{Store: st, Outbox: delivery.NewMemory(), Receivers: receivers, Now: func() time.Time { return now }, Log: zerolog.Nop()}
	lines, err := tm.Run(context.Background())
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
