package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// record returns one realistic data-plane SecretGet record.
func record(i int, status int, sig string) string {
	return fmt.Sprintf(`{"time":"2026-11-23T09:%02d:%02d.1234567Z","resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":%q,"resultDescription":"","durationMs":"7","callerIpAddress":"20.50.1.%d","correlationId":"a1b2c3d4-0000-4000-8000-%012d","identity":{"claim":{"oid":"11111111-2222-3333-4444-555555555555","appid":"04b07795-8ddb-461a-bbee-02f9e1bf7b46","upn":"alice@contoso.com","tid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}},"properties":{"id":"https://kv-payments-prod.vault.azure.net/secrets/db-password/0123456789abcdef0123456789abcdef","requestUri":"https://kv-payments-prod.vault.azure.net/secrets/db-password?api-version=7.4","httpStatusCode":%d,"clientInfo":"azsdk-go-azsecrets/v1.3.0","isRbacAuthorized":true,"tlsVersion":"TLS1_2"}}`,
		i/60%60, i%60, sig, i%250, i, status)
}

func envelope(recs ...string) []byte {
	return []byte(`{"records":[` + strings.Join(recs, ",") + `]}`)
}

// recorder is a pipeline stage that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   error
	delay  time.Duration
}

func (r *recorder) Consume(ctx context.Context, events []audit.Event) (pipeline.Result, error) {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if r.fail != nil {
		return pipeline.Result{}, r.fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
	return pipeline.Result{}, nil
}

type fixture struct {
	srv     *httptest.Server
	stage   *recorder
	letters *deadletter.Memory
}

func newFixture(t *testing.T, maxBody int64) *fixture {
	t.Helper()
	f := &fixture{stage: &recorder{}, letters: &deadletter.Memory{}}
	proc := &pipeline.Pipeline{Letters: f.letters, Next: f.stage, Log: zerolog.Nop()}
	h := handlers.New(handlers.Config{MaxBody: maxBody, Letters: f.letters}, proc, zerolog.Nop())
	f.srv = httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) invoke(t *testing.T, body []byte) *host.Response {
	t.Helper()
	resp, err := host.Invoke(context.Background(), f.srv.Client(), f.srv.URL, "AuditEvents", body)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	return resp
}

func batchOf(bodies ...[]byte) host.Batch {
	b := host.Batch{Namespace: "ns.servicebus.windows.net", Hub: "insights-logs-auditevent", ConsumerGroup: "kvwatch", Partition: "2"}
	for i, body := range bodies {
		b.Events = append(b.Events, host.Event{Body: body, Sequence: int64(1000 + i), Offset: int64(4096 * i),
			Enqueued: time.Date(2026, 11, 23, 9, 0, i, 0, time.UTC)})
	}
	return b
}

func assertOK(t *testing.T, r *host.Response) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.Status, r.Raw)
	}
	if !strings.HasPrefix(r.ContentType, "application/json") {
		t.Fatalf("content type %q, want application/json", r.ContentType)
	}
	if r.Outputs == nil || len(r.Outputs) != 0 {
		t.Fatalf("Outputs = %v, want {}", r.Outputs)
	}
	if r.ReturnValue != nil || !strings.Contains(string(r.Raw), `"ReturnValue":null`) {
		t.Fatalf("ReturnValue must be null: %s", r.Raw)
	}
	if len(r.Logs) == 0 || !strings.HasPrefix(r.Logs[0], "kvwatch: ") {
		t.Fatalf("Logs must start with the summary line: %q", r.Logs)
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t, 0)
	resp, err := f.srv.Client().Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET / = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestEveryBodyShape(t *testing.T) {
	for _, shape := range host.Shapes {
		t.Run(shape.String(), func(t *testing.T) {
			f := newFixture(t, 0)
			var bodies [][]byte
			for e := 0; e < 5; e++ {
				var recs []string
				for r := 0; r < 4; r++ {
					recs = append(recs, record(e*4+r, 200, "OK"))
				}
				bodies = append(bodies, envelope(recs...))
			}
			body, err := host.Body(batchOf(bodies...), shape)
			if err != nil {
				t.Fatal(err)
			}
			r := f.invoke(t, body)
			assertOK(t, r)
			want := "kvwatch: partition 2: 5 events, 20 records, 20 accepted, 0 skipped, 0 dead-lettered, 0 findings"
			if !strings.HasPrefix(r.Logs[0], want) {
				t.Fatalf("summary %q, want prefix %q", r.Logs[0], want)
			}
			if len(f.stage.events) != 20 {
				t.Fatalf("pipeline got %d events, want 20", len(f.stage.events))
			}
			for i, e := range f.stage.events {
				src := e.Source
				if src.Partition != "2" || !src.HasSequence || src.Sequence != int64(1000+i/4) ||
					src.Event != i/4 || src.Record != i%4 {
					t.Fatalf("event %d source %+v", i, src)
				}
				if want := time.Date(2026, 11, 23, 9, 0, i/4, 0, time.UTC); !src.Enqueued.Equal(want) {
					t.Fatalf("event %d enqueued %v, want %v", i, src.Enqueued, want)
				}
			}
			if n := len(f.letters.Letters()); n != 0 {
				t.Fatalf("%d dead letters, want 0", n)
			}
		})
	}
}

func TestMalformedEventIsDeadLetteredAndRestProcessed(t *testing.T) {
	good1 := envelope(record(1, 200, "OK"), record(2, 403, "Forbidden"))
	bad := []byte(`{"records":[{"time":"2026-11-23T09:00:00Z","operationName":`) // truncated
	good2 := envelope(record(3, 404, "Not Found"))
	for _, shape := range []host.Shape{host.StringOfStrings, host.StringOfBase64} {
		t.Run(shape.String(), func(t *testing.T) {
			f := newFixture(t, 0)
			body, err := host.Body(batchOf(good1, bad, good2), shape)
			if err != nil {
				t.Fatal(err)
			}
			r := f.invoke(t, body)
			assertOK(t, r)
			if !strings.Contains(r.Logs[0], "3 events, 3 records, 3 accepted, 0 skipped, 1 dead-lettered") {
				t.Fatalf("summary %q", r.Logs[0])
			}
			if len(r.Logs) < 2 || !strings.Contains(r.Logs[1], "partition 2 sequence 1001") {
				t.Fatalf("the problem must say where: %q", r.Logs)
			}
			letters := f.letters.Letters()
			if len(letters) != 1 {
				t.Fatalf("%d letters, want 1", len(letters))
			}
			l := letters[0]
			if l.Partition != "2" || !l.HasSequence || l.Sequence != 1001 || string(l.Bytes()) != string(bad) {
				t.Fatalf("letter %+v", l)
			}
			if len(f.stage.events) != 3 || f.stage.events[1].Outcome != audit.OutcomeDenied || f.stage.events[2].Outcome != audit.OutcomeNotFound {
				t.Fatalf("events %+v", f.stage.events)
			}
		})
	}
}

func TestBadInputNeverFailsTheBatch(t *testing.T) {
	cases := map[string]string{
		"not json":       `this is not json`,
		"empty":          ``,
		"null data":      `{"Data":null,"Metadata":{}}`,
		"no binding":     `{"Data":{},"Metadata":{}}`,
		"number events":  `{"Data":{"events":42},"Metadata":{}}`,
		"bad string":     `{"Data":{"events":"[{\"records\":"},"Metadata":{}}`,
		"wrong metadata": `{"Data":{"events":"[]"},"Metadata":{"SequenceNumberArray":{"a":1},"PartitionContext":7}}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 0)
			r := f.invoke(t, []byte(body))
			assertOK(t, r)
		})
	}
}

func TestOversizedBody(t *testing.T) {
	f := newFixture(t, 4096)
	var recs []string
	for i := 0; i < 40; i++ {
		recs = append(recs, record(i, 200, "OK"))
	}
	body, err := host.Body(batchOf(envelope(recs...)), host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r := f.invoke(t, body)
	assertOK(t, r)
	if !strings.Contains(r.Logs[0], "exceeds the limit of 4096 bytes") {
		t.Fatalf("Logs %q must name the limit", r.Logs)
	}
	letters := f.letters.Letters()
	if len(letters) != 1 || !letters[0].Truncated || len(letters[0].Bytes()) == 0 {
		t.Fatalf("oversized body must leave one truncated letter: %+v", letters)
	}
	if len(f.stage.events) != 0 {
		t.Fatalf("no events may be processed from a cut body")
	}
}

func TestDependencyFailureAsksForRetry(t *testing.T) {
	f := newFixture(t, 0)
	f.stage.fail = errors.New("table storage unavailable")
	body, err := host.Body(batchOf(envelope(record(1, 200, "OK"))), host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r := f.invoke(t, body)
	if r.Status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500 so the host's retry policy re-runs the batch", r.Status)
	}
	if strings.Contains(string(r.Raw), "table storage unavailable") {
		t.Fatalf("error details must not leak into the answer: %s", r.Raw)
	}
}

func TestRetryContextIsReported(t *testing.T) {
	f := newFixture(t, 0)
	b := batchOf(envelope(record(1, 200, "OK")))
	b.RetryCount = 7
	body, err := host.Body(b, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r := f.invoke(t, body)
	assertOK(t, r)
	found := false
	for _, l := range r.Logs {
		found = found || strings.Contains(l, "retry 7 of this batch")
	}
	if !found {
		t.Fatalf("Logs %q must mention the retry", r.Logs)
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t, 0)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"POST", "/OtherFunction", 404},
		{"GET", "/AuditEvents", 405},
		{"HEAD", "/", 200},
	} {
		req, _ := http.NewRequest(tc.method, f.srv.URL+tc.path, nil)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if tc.method != "HEAD" && resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s content type %q, want JSON", tc.method, tc.path, resp.Header.Get("Content-Type"))
		}
	}
}

func TestRejectsNonLoopback(t *testing.T) {
	proc := &pipeline.Pipeline{Log: zerolog.Nop()}
	h := handlers.New(handlers.Config{}, proc, zerolog.Nop())
	for remote, want := range map[string]int{
		"10.1.2.3:5555": 403, "192.168.0.1:80": 403, "[2001:db8::1]:443": 403,
		"127.0.0.1:5555": 200, "[::1]:5555": 200,
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("request from %s = %d, want %d", remote, w.Code, want)
		}
	}
}

func TestPortFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		port    int
		wantErr string
	}{
		{map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "7071"}, 7071, ""},
		{map[string]string{"FUNCTIONS_HTTPWORKER_PORT": "5001"}, 5001, ""},
		{map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "7071", "FUNCTIONS_HTTPWORKER_PORT": "5001"}, 7071, ""},
		{map[string]string{}, 0, "neither FUNCTIONS_CUSTOMHANDLER_PORT nor FUNCTIONS_HTTPWORKER_PORT"},
		{map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "http"}, 0, "not a port number"},
	} {
		p, err := handlers.PortFromEnv(func(k string) string { return tc.env[k] })
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err %v, want %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil || p != tc.port {
			t.Errorf("%v: %d %v, want %d", tc.env, p, err, tc.port)
		}
	}
}

type panicker struct{}

func (panicker) Consume(context.Context, []audit.Event) (pipeline.Result, error) {
	panic("boom")
}

func TestPanicIsContainedAndDeadLettered(t *testing.T) {
	letters := &deadletter.Memory{}
	var logged bytes.Buffer
	proc := &pipeline.Pipeline{Letters: letters, Next: panicker{}, Log: zerolog.Nop()}
	srv := httptest.NewServer(handlers.New(handlers.Config{Letters: letters}, proc, zerolog.New(&logged)))
	defer srv.Close()
	body, err := host.Body(batchOf(envelope(record(1, 200, "OK"))), host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r, err := host.Invoke(context.Background(), srv.Client(), srv.URL, "AuditEvents", body)
	if err != nil {
		t.Fatal(err)
	}
	assertOK(t, r)
	if !strings.Contains(r.Logs[0], "internal error") {
		t.Fatalf("Logs %q", r.Logs)
	}
	ls := letters.Letters()
	if len(ls) != 1 || string(ls[0].Bytes()) != string(body) {
		t.Fatalf("the whole body must be dead-lettered: %d letters", len(ls))
	}
	// The log carries the stack where the panic happened, not where it
	// was reported: that is what finds the bug.
	if !strings.Contains(logged.String(), "panicker.Consume") {
		t.Errorf("the logged stack does not show the panicking function:\n%s", logged.String())
	}
	// The server survives.
	resp, err := srv.Client().Get(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("not serving after a panic: %v", err)
	}
	resp.Body.Close()
}

func TestTimerContract(t *testing.T) {
	var got []handlers.TimerInfo
	proc := &pipeline.Pipeline{Log: zerolog.Nop()}
	h := handlers.New(handlers.Config{Timers: map[string]handlers.TimerFunc{
		"Housekeeping": func(_ context.Context, info handlers.TimerInfo) ([]string, error) {
			got = append(got, info)
			return []string{"kvwatch: housekeeping: 3 alerts retried"}, nil
		},
		"Digest": func(context.Context, handlers.TimerInfo) ([]string, error) {
			return nil, errors.New("state unavailable")
		},
	}}, proc, zerolog.Nop())
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, body := range []string{
		`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-24T08:00:00.0013+00:00","Next":"2026-11-24T08:10:00+00:00","LastUpdated":"2026-11-24T08:00:00.0013+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"Housekeeping"}}}`,
		`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}`,
	} {
		r, err := host.Invoke(context.Background(), srv.Client(), srv.URL, "Housekeeping", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 200 || len(r.Logs) < 2 || r.Logs[0] != "kvwatch: housekeeping: 3 alerts retried" {
			t.Fatalf("answer %d %s", r.Status, r.Raw)
		}
	}
	if len(got) != 2 || got[0].ScheduleStatus == nil || got[0].ScheduleStatus.Next.Hour() != 8 || got[1].ScheduleStatus != nil || !got[1].IsPastDue {
		t.Fatalf("timer info %+v", got)
	}
	r, err := host.Invoke(context.Background(), srv.Client(), srv.URL, "Digest", []byte(`{"Data":{"timer":{}}}`))
	if err != nil || r.Status != 500 || strings.Contains(string(r.Raw), "state unavailable") {
		t.Fatalf("a failing timer answers 500 without details: %v %d %s", err, r.Status, r.Raw)
	}
}

// TestRegionRoutes: every Event Hubs trigger function, one per region,
// reaches the same pipeline, and its records keep their own stream (the
// namespace, hub and partition the host names).
func TestRegionRoutes(t *testing.T) {
	f := newFixture(t, 0)
	regions := map[string]string{
		handlers.AuditFunction:                   "kvwatch-westeurope.servicebus.windows.net",
		handlers.RegionFunction("northeurope"):   "kvwatch-northeurope.servicebus.windows.net",
		handlers.RegionFunction("swedencentral"): "kvwatch-swedencentral.servicebus.windows.net",
	}
	for fn, ns := range regions {
		b := batchOf(envelope(record(1, 200, "OK")))
		b.Namespace = ns
		body, err := host.Body(b, host.StringOfStrings)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := host.Invoke(context.Background(), f.srv.Client(), f.srv.URL, fn, body)
		if err != nil {
			t.Fatal(err)
		}
		assertOK(t, resp)
	}
	streams := map[string]bool{}
	for _, e := range f.stage.events {
		s, _ := e.Source.Position()
		streams[s] = true
	}
	if len(f.stage.events) != 3 || len(streams) != 3 {
		t.Fatalf("%d events on streams %v, want one per region on three streams", len(f.stage.events), streams)
	}
	for fn, want := range map[string]int{
		"AuditEvents_northeurope":  405, // GET
		"AuditEvents_NorthEurope":  404,
		"AuditEvents_":             404,
		"AuditEvents_north-europe": 404,
	} {
		method := "POST"
		if want == 405 {
			method = "GET"
		}
		req, _ := http.NewRequest(method, f.srv.URL+"/"+fn, strings.NewReader("{}"))
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s /%s = %d, want %d", method, fn, resp.StatusCode, want)
		}
	}
}
