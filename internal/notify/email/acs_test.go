package email

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"

	"github.com/kvwatch/kvwatch/internal/notify"
)

var testKey = base64.StdEncoding.EncodeToString([]byte("an ACS access key of 32 bytes!!!"))

// acsReply is one scripted answer.
type acsReply struct {
	status  int
	headers map[string]string
	body    string
}

// fakeACS is the Email REST API as far as kvwatch uses it. It checks every
// request's authentication the way the service does: for HMAC it
// recomputes the content hash and the signature from the request as
// received; for a bearer token it compares with the token it expects.
type fakeACS struct {
	t      *testing.T
	srv    *httptest.Server
	key    []byte
	bearer string
	now    func() time.Time

	mu        sync.Mutex
	sends     []recordedSend
	polls     int
	pollPaths []string
	sendResp  []acsReply // one per POST, the last repeats
	pollResp  []acsReply // one per GET, the last repeats
	authErrs  []string
}

type recordedSend struct {
	Header http.Header
	Query  url.Values
	Body   acsMessage
	Raw    []byte
}

func newFakeACS(t *testing.T) *fakeACS {
	f := &fakeACS{t: t, now: fixedAt}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeACS) opLocation(id string) string {
	return f.srv.URL + "/emails/operations/" + id + "?api-version=2025-09-01"
}

func (f *fakeACS) checkAuth(r *http.Request, body []byte) string {
	auth := r.Header.Get("Authorization")
	if f.bearer != "" {
		if auth != "Bearer "+f.bearer {
			return "bad bearer: " + auth
		}
		return ""
	}
	date := r.Header.Get("x-ms-date")
	d, err := http.ParseTime(date)
	if err != nil {
		return "x-ms-date " + date + ": " + err.Error()
	}
	if skew := f.now().Sub(d); skew > 15*time.Minute || skew < -15*time.Minute {
		return "x-ms-date too far off"
	}
	sum := sha256.Sum256(body)
	hash := base64.StdEncoding.EncodeToString(sum[:])
	if got := r.Header.Get("x-ms-content-sha256"); got != hash {
		return "x-ms-content-sha256 " + got + ", body hashes to " + hash
	}
	// String to sign: VERB \n path?query \n date;host;content-hash, with
	// the path and query as they came over the wire and the Host header.
	sts := r.Method + "\n" + r.RequestURI + "\n" + date + ";" + r.Host + ";" + hash
	mac := hmac.New(sha256.New, f.key)
	mac.Write([]byte(sts))
	want := "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if auth != want {
		return fmt.Sprintf("Authorization %q, want %q (string to sign %q)", auth, want, sts)
	}
	return ""
}

func (f *fakeACS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if msg := f.checkAuth(r, body); msg != "" {
		f.authErrs = append(f.authErrs, msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"code":"Denied","message":"Denied by the resource provider."}}`)
		return
	}
	if r.URL.Query().Get("api-version") != "2025-09-01" {
		http.Error(w, `{"error":{"code":"BadApiVersion"}}`, http.StatusBadRequest)
		return
	}
	var reply acsReply
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/emails:send":
		var m acsMessage
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, `{"error":{"code":"BadRequest"}}`, http.StatusBadRequest)
			return
		}
		f.sends = append(f.sends, recordedSend{Header: r.Header.Clone(), Query: r.URL.Query(), Body: m, Raw: body})
		reply = f.sendResp[min(len(f.sends), len(f.sendResp))-1]
	case r.Method == http.MethodGet && strings.HasPrefix("/"+strings.TrimLeft(r.URL.Path, "/"), "/emails/operations/"):
		f.pollPaths = append(f.pollPaths, r.RequestURI)
		f.polls++
		reply = f.pollResp[min(f.polls, len(f.pollResp))-1]
	default:
		http.NotFound(w, r)
		return
	}
	for k, v := range reply.headers {
		w.Header().Set(k, strings.ReplaceAll(v, "{server}", f.srv.URL))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.status)
	io.WriteString(w, reply.body)
}

func acsConfig(endpoint string) Config {
	return Config{
		Transport: TransportACS,
		From:      "DoNotReply@alerts.contoso.com",
		To:        []string{"secops@contoso.com", "oncall@contoso.com"}, CC: []string{"audit@contoso.com"},
		ACS: ACSConfig{Endpoint: endpoint, AccessKey: testKey, PollInterval: "1s", PollTimeout: "30s"},
	}
}

func newACSNotifier(t *testing.T, f *fakeACS, cfg Config, cred azcore.TokenCredential) (*Notifier, *[]time.Duration) {
	t.Helper()
	n, err := New("secops-acs", cfg, Deps{HTTPClient: f.srv.Client(), Now: fixedAt, Credential: cred})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	n.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return n, &waits
}

func running(id string) string   { return `{"id":"` + id + `","status":"Running"}` }
func succeeded(id string) string { return `{"id":"` + id + `","status":"Succeeded"}` }

func TestACSSendPollSucceeded(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	a := realisticAlert()
	opID := OperationID("secops-acs", a.ID)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation(opID), "retry-after": "3"}, running(opID)}}
	f.pollResp = []acsReply{
		{200, map[string]string{"retry-after": "2"}, running(opID)},
		{200, nil, succeeded(opID)},
	}
	n, waits := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if len(f.authErrs) > 0 {
		t.Fatalf("signature rejected: %v", f.authErrs)
	}
	if len(f.sends) != 1 || f.polls != 2 {
		t.Fatalf("%d sends, %d polls; want 1 and 2", len(f.sends), f.polls)
	}
	// retry-after 3 on the 202, then 2 on the Running poll.
	if want := []time.Duration{3 * time.Second, 2 * time.Second}; fmt.Sprint(*waits) != fmt.Sprint(want) {
		t.Errorf("waited %v, want %v (retry-after honoured)", *waits, want)
	}

	s := f.sends[0]
	if got := s.Header.Get("Operation-Id"); got != opID {
		t.Errorf("Operation-Id %q, want %q", got, opID)
	}
	if _, err := uuid.Parse(opID); err != nil {
		t.Errorf("Operation-Id %q is not a UUID: %v", opID, err)
	}
	if ct := s.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	m := s.Body
	subject, text, html, _ := Render(a)
	if m.SenderAddress != "DoNotReply@alerts.contoso.com" || m.Content.Subject != subject ||
		m.Content.PlainText != text || m.Content.HTML != html {
		t.Errorf("body: sender %q subject %q, text/html equal %v/%v", m.SenderAddress, m.Content.Subject, m.Content.PlainText == text, m.Content.HTML == html)
	}
	if len(m.Recipients.To) != 2 || m.Recipients.To[1].Address != "oncall@contoso.com" ||
		len(m.Recipients.CC) != 1 || m.Recipients.CC[0].Address != "audit@contoso.com" {
		t.Errorf("recipients %+v", m.Recipients)
	}
	if m.Headers["X-Kvwatch-Alert-Id"] != a.ID {
		t.Errorf("headers %v", m.Headers)
	}
	if !m.UserEngagementTrackingDisabled {
		t.Error("click tracking would rewrite the alert's links")
	}
	var raw map[string]any
	_ = json.Unmarshal(s.Raw, &raw)
	for _, k := range []string{"senderAddress", "recipients", "content", "headers"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("request body lacks %q: %s", k, s.Raw[:200])
		}
	}
}

func TestACSOperationIDStable(t *testing.T) {
	a := OperationID("secops-acs", "9487745e1630a2886e96947d")
	if a != OperationID("secops-acs", "9487745e1630a2886e96947d") {
		t.Error("Operation-Id not stable")
	}
	if a == OperationID("secops-acs", "0000745e1630a2886e96947d") || a == OperationID("other-receiver", "9487745e1630a2886e96947d") {
		t.Error("Operation-Id collides")
	}

	// Two attempts for the same alert carry the same Operation-Id.
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	al := realisticAlert()
	f.sendResp = []acsReply{
		{503, map[string]string{"Retry-After": "7"}, `{"error":{"code":"ServiceUnavailable","message":"try later"}}`},
		{202, map[string]string{"Operation-Location": f.opLocation(OperationID("secops-acs", al.ID))}, running("x")},
	}
	f.pollResp = []acsReply{{200, nil, succeeded("x")}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	err := n.Notify(context.Background(), al)
	wantClass(t, err, true, "503")
	if _, after := retryAfterOf(err); after != 7*time.Second {
		t.Errorf("Retry-After %s, want 7s", after)
	}
	if err := n.Notify(context.Background(), al); err != nil {
		t.Fatal(err)
	}
	if len(f.sends) != 2 || f.sends[0].Header.Get("Operation-Id") != f.sends[1].Header.Get("Operation-Id") {
		t.Errorf("resend changed the Operation-Id")
	}
}

func retryAfterOf(err error) (bool, time.Duration) { return notify.Retryable(err) }

func TestACSThrottledIsTemporaryWithRetryAfter(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{429, map[string]string{"Retry-After": "42"}, `{"error":{"code":"TooManyRequests","message":"Rate limit exceeded"}}`}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	err := n.Notify(context.Background(), realisticAlert())
	wantClass(t, err, true, "429", "TooManyRequests")
	if _, after := retryAfterOf(err); after != 42*time.Second {
		t.Errorf("Retry-After %s, want 42s", after)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Error("error quotes the access key")
	}
}

func TestACSThrottledPollKeepsPolling(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation("op1")}, running("op1")}}
	f.pollResp = []acsReply{
		{429, map[string]string{"Retry-After": "5"}, `{"error":{"code":"TooManyRequests"}}`},
		{200, nil, succeeded("op1")},
	}
	n, waits := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	if err := n.Notify(context.Background(), realisticAlert()); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{time.Second, 5 * time.Second}; fmt.Sprint(*waits) != fmt.Sprint(want) {
		t.Errorf("waited %v, want %v", *waits, want)
	}
}

func TestACSFailedIsPermanent(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation("op1")}, running("op1")}}
	f.pollResp = []acsReply{{200, nil, `{"id":"op1","status":"Failed","error":{"code":"EmailDropped","message":"Email was dropped after several attempts to deliver."}}`}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "Failed", "EmailDropped")
}

func TestACSBadRequestIsPermanent(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{400, nil, `{"error":{"code":"InvalidSenderUserName","message":"Sender address is not from a verified domain"}}`}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), false, "400", "InvalidSenderUserName")
}

func TestACSWrongKeyIsPermanent(t *testing.T) {
	f := newFakeACS(t)
	f.key = []byte("the resource's real key")
	f.sendResp = []acsReply{{202, nil, running("x")}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	err := n.Notify(context.Background(), realisticAlert())
	wantClass(t, err, false, "401")
	if strings.Contains(err.Error(), testKey) {
		t.Error("error quotes the access key")
	}
}

func TestACSPollTimeoutIsTemporary(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation("op1")}, running("op1")}}
	f.pollResp = []acsReply{{200, map[string]string{"retry-after": "4"}, running("op1")}}
	cfg := acsConfig(f.srv.URL)
	cfg.ACS.PollTimeout = "10s"
	n, waits := newACSNotifier(t, f, cfg, nil)
	wantClass(t, n.Notify(context.Background(), realisticAlert()), true, "not finished", "Running")
	var total time.Duration
	for _, w := range *waits {
		total += w
	}
	if total != 10*time.Second {
		t.Errorf("waited %s in all (%v), want the 10s poll timeout", total, *waits)
	}
}

func TestACSForeignOperationLocationNotFollowed(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	a := realisticAlert()
	opID := OperationID("secops-acs", a.ID)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": "https://attacker.example/steal?api-version=2025-09-01"}, running(opID)}}
	f.pollResp = []acsReply{{200, nil, succeeded(opID)}}
	n, _ := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if f.polls != 1 {
		t.Errorf("%d polls on the endpoint, want 1 (the documented status route)", f.polls)
	}
}

// TestACSOperationLocationAsDocumented polls the Operation-Location exactly
// as the 2025-09-01 example gives it (host, then "//emails/operations/…"),
// signing the path as sent.
func TestACSOperationLocationAsDocumented(t *testing.T) {
	f := newFakeACS(t)
	f.key, _ = base64.StdEncoding.DecodeString(testKey)
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": "{server}//emails/operations/8540c0de-899f-5cce-acb5-3ec493af3800?api-version=2025-09-01", "retry-after": "20"}, running("8540c0de-899f-5cce-acb5-3ec493af3800")}}
	f.pollResp = []acsReply{{200, nil, succeeded("8540c0de-899f-5cce-acb5-3ec493af3800")}}
	n, waits := newACSNotifier(t, f, acsConfig(f.srv.URL), nil)
	if err := n.Notify(context.Background(), realisticAlert()); err != nil {
		t.Fatalf("Notify: %v (auth errors %v)", err, f.authErrs)
	}
	if len(f.pollPaths) != 1 || f.pollPaths[0] != "//emails/operations/8540c0de-899f-5cce-acb5-3ec493af3800?api-version=2025-09-01" {
		t.Errorf("polled %v", f.pollPaths)
	}
	if len(*waits) != 1 || (*waits)[0] != 20*time.Second {
		t.Errorf("waited %v, want [20s]", *waits)
	}
}

type fakeCred struct {
	mu     sync.Mutex
	scopes [][]string
}

func (c *fakeCred) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, opts.Scopes)
	return azcore.AccessToken{Token: "fake-entra-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestACSBearerToken(t *testing.T) {
	f := newFakeACS(t)
	f.bearer = "fake-entra-token"
	f.sendResp = []acsReply{{202, map[string]string{"Operation-Location": f.opLocation("op1")}, running("op1")}}
	f.pollResp = []acsReply{{200, nil, succeeded("op1")}}
	cfg := acsConfig(f.srv.URL)
	cfg.ACS.AccessKey = ""
	cfg.ACS.UseIdentity = true
	cred := &fakeCred{}
	n, _ := newACSNotifier(t, f, cfg, cred)
	if err := n.Notify(context.Background(), realisticAlert()); err != nil {
		t.Fatalf("Notify: %v (auth errors %v)", err, f.authErrs)
	}
	if len(cred.scopes) != 2 {
		t.Fatalf("%d token requests, want 2 (send and poll)", len(cred.scopes))
	}
	for _, s := range cred.scopes {
		if len(s) != 1 || s[0] != "https://communication.azure.com//.default" {
			t.Errorf("scopes %v", s)
		}
	}
	if h := f.sends[0].Header; h.Get("x-ms-content-sha256") != "" || h.Get("Authorization") != "Bearer fake-entra-token" {
		t.Errorf("headers %v", h)
	}
}

// TestACSSignatureKnownAnswer pins the signature of a fixed request to
// the value computed independently with the Python code of Microsoft's
// "Sign an HTTP request with HMAC" tutorial (hmac.digest over
// "GET\n/emails/operations/op1?api-version=2025-09-01\n<date>;<host>;<hash>").
func TestACSSignatureKnownAnswer(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(testKey)
	empty := sha256.Sum256(nil)
	hash := base64.StdEncoding.EncodeToString(empty[:])
	if hash != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Fatalf("hash of the empty body %s", hash)
	}
	sig := acsSignature(key, "GET", "/emails/operations/op1?api-version=2025-09-01", "Sat, 14 Mar 2026 09:28:53 GMT", "contoso.communication.azure.com", hash)
	if want := "zXn0k5LUpBZgFyABDWn/i+IYWxPUMBRZTrxb+isqQOY="; sig != want {
		t.Errorf("signature %s, want %s", sig, want)
	}
}
