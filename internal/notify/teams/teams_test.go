package teams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/notify"
)

// secret is the webhook's signature: it must show in no error.
const secret = "SECRETSIG123"

func hookURL(base string) string {
	return base + "/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=" + secret
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error quotes the signature: %v", err)
	}
}

func newNotifier(t *testing.T, url string, cfg Config, now func() time.Time) *Notifier {
	t.Helper()
	cfg.URL = url
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = 1000
	}
	n, err := New("teams:secops", cfg, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNotifyStatus plays the Workflows webhook's answers.
func TestNotifyStatus(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
		body   string
		retry  bool
		after  time.Duration
		ok     bool
	}{
		{name: "202 accepted", status: 202, ok: true},
		{name: "200", status: 200, ok: true},
		{name: "429 retry-after seconds", status: 429, header: map[string]string{"Retry-After": "7"}, retry: true, after: 7 * time.Second},
		{name: "429 retry-after date", status: 429, header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, retry: true, after: 90 * time.Second},
		{name: "500", status: 500, body: `{"error":{"code":"InternalServerError"}}`, retry: true},
		{name: "502", status: 502, retry: true},
		{name: "503 retry-after", status: 503, header: map[string]string{"Retry-After": "30"}, retry: true, after: 30 * time.Second},
		{name: "400 bad card", status: 400, body: `{"error":{"code":"TriggerInputSchemaMismatch","message":"sig=` + secret + `"}}`},
		{name: "401", status: 401},
		{name: "403 flow disabled", status: 403},
		{name: "404 flow deleted", status: 404},
		{name: "redirect not followed", status: 302, header: map[string]string{"Location": "https://elsewhere.example/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := demoAlert(t)
			want, err := Message(a, DefaultMaxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var calls int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				if r.Method != http.MethodPost || r.URL.Query().Get("sig") != secret {
					t.Errorf("%s %s", r.Method, r.URL)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
				body, _ := io.ReadAll(r.Body)
				if !bytes.Equal(body, want) {
					t.Errorf("body is not Message's:\n%.300s", body)
				}
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			n := newNotifier(t, hookURL(srv.URL), Config{}, func() time.Time { return now })
			err = n.Notify(context.Background(), a)
			noSecret(t, err)
			if calls != 1 {
				t.Errorf("%d requests", calls)
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("want nil, got %v", err)
				}
				return
			}
			var ne *notify.Error
			if !errors.As(err, &ne) {
				t.Fatalf("want *notify.Error, got %T %v", err, err)
			}
			if ne.Retry != tc.retry || ne.After != tc.after {
				t.Errorf("retry %v after %v, want %v after %v (%v)", ne.Retry, ne.After, tc.retry, tc.after, err)
			}
			if !strings.Contains(err.Error(), "teams:secops") {
				t.Errorf("error does not name the notifier: %v", err)
			}
		})
	}
}

func TestNotifyNoAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	n := newNotifier(t, hookURL(srv.URL), Config{Timeout: "200ms"}, nil)
	start := time.Now()
	err := n.Notify(context.Background(), demoAlert(t))
	took := time.Since(start)
	noSecret(t, err)
	if retry, _ := notify.Retryable(err); !retry || err == nil {
		t.Fatalf("want a temporary error, got %v", err)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %v with a 200ms timeout", took)
	}
	if !strings.Contains(err.Error(), "no answer") || !strings.Contains(err.Error(), "?REDACTED") {
		t.Errorf("error %v", err)
	}
}

func TestNotifyConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n := newNotifier(t, hookURL("http://"+addr), Config{Timeout: "2s"}, nil)
	err = n.Notify(context.Background(), demoAlert(t))
	noSecret(t, err)
	if retry, _ := notify.Retryable(err); !retry || err == nil {
		t.Fatalf("want a temporary error, got %v", err)
	}
}

func TestNotifyCancelled(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client going away
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	n := newNotifier(t, hookURL(srv.URL), Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := n.Notify(ctx, demoAlert(t))
	noSecret(t, err)
	if retry, _ := notify.Retryable(err); !retry || err == nil {
		t.Fatalf("want a temporary error, got %v", err)
	}
}

func TestNotifyTooLarge(t *testing.T) {
	n := newNotifier(t, hookURL("https://127.0.0.1:1"), Config{}, nil)
	err := n.Notify(context.Background(), nil)
	if retry, _ := notify.Retryable(err); retry || err == nil {
		t.Fatalf("an alert that cannot render is permanent, got %v", err)
	}
}

// fakeClock is a clock that moves only when the limiter sleeps.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return ctx.Err()
}

// TestPacing sends 5 alerts at 2 per second: the first goes at once, each
// next one 500ms later, so the five take 2s — on a fake clock.
func TestPacing(t *testing.T) {
	var mu sync.Mutex
	var seen []time.Time
	clock := &fakeClock{t: time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, clock.now())
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	n := newNotifier(t, hookURL(srv.URL), Config{RatePerSecond: 2}, nil)
	n.pace.now, n.pace.sleep = clock.now, clock.sleep
	start := clock.now()
	for range 5 {
		if err := n.Notify(context.Background(), demoAlert(t)); err != nil {
			t.Fatal(err)
		}
	}
	if took := clock.now().Sub(start); took < 2*time.Second {
		t.Errorf("5 alerts at 2/s took %v, want >= 2s", took)
	}
	for i := 1; i < len(seen); i++ {
		if d := seen[i].Sub(seen[i-1]); d < 500*time.Millisecond {
			t.Errorf("requests %d and %d %v apart", i-1, i, d)
		}
	}
	if len(clock.sleeps) != 4 {
		t.Errorf("sleeps %v", clock.sleeps)
	}
}

// TestPacingRealClock checks the real sleep, fast: 5 at 20/s take >= 200ms.
func TestPacingRealClock(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }))
	defer srv.Close()
	n := newNotifier(t, hookURL(srv.URL), Config{RatePerSecond: 20}, nil)
	start := time.Now()
	for range 5 {
		if err := n.Notify(context.Background(), demoAlert(t)); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("5 alerts at 20/s took %v", took)
	}
}

func TestPacingCancelled(t *testing.T) {
	l := newLimiter(0.5, time.Now) // one every 2s
	if err := l.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.wait(ctx); err == nil {
		t.Fatal("wait outlived its context")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled wait took %v", took)
	}
	// The slot was given back: the next wait is for the first slot again.
	if d := l.next.Sub(time.Now()); d > 2*time.Second {
		t.Errorf("next slot %v away", d)
	}
}

func TestConfig(t *testing.T) {
	var c Config
	c.Defaults()
	if c.Timeout != "10s" || c.RatePerSecond != 2 || c.MaxBytes != 26000 {
		t.Errorf("defaults %+v", c)
	}
	good := "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=" + secret
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"minimal", Config{URL: good}, ""},
		{"loopback http", Config{URL: "http://127.0.0.1:8080/hook?sig=" + secret}, ""},
		{"localhost http", Config{URL: "http://localhost/hook"}, ""},
		{"missing url", Config{}, "url: missing"},
		{"plain http", Config{URL: "http://prod-12.westeurope.logic.azure.com/workflows?sig=" + secret}, "must be https"},
		{"other scheme", Config{URL: "ftp://example.com/x?sig=" + secret}, "must be https"},
		{"not absolute", Config{URL: "/workflows?sig=" + secret}, "not an absolute URL"},
		{"unparsable", Config{URL: "https://exa mple.com/%zz?sig=" + secret}, "not an absolute URL"},
		{"user info", Config{URL: "https://user:" + secret + "@example.com/x"}, "user info"},
		{"bad timeout", Config{URL: good, Timeout: "ten"}, "timeout"},
		{"negative timeout", Config{URL: good, Timeout: "-1s"}, "timeout"},
		{"negative rate", Config{URL: good, RatePerSecond: -1}, "rate_per_second"},
		{"too large", Config{URL: good, MaxBytes: 28001}, "max_bytes"},
		{"too small", Config{URL: good, MaxBytes: 100}, "max_bytes"},
		{"at the limit", Config{URL: good, MaxBytes: 28000}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			noSecret(t, err)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("want %q, got %v", tc.err, err)
			}
			n, err := New("teams:x", tc.cfg, nil, nil)
			noSecret(t, err)
			if (err == nil) != (tc.err == "") {
				t.Errorf("New: %v", err)
			}
			if n != nil && strings.Contains(n.String(), secret) {
				t.Errorf("String() quotes the signature: %s", n)
			}
		})
	}
}

// TestMessageIsWhatIsSent checks the envelope the webhook receives once
// more, decoded as Workflows would.
func TestMessageIsWhatIsSent(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(202)
	}))
	defer srv.Close()
	n := newNotifier(t, hookURL(srv.URL), Config{}, nil)
	if err := n.Notify(context.Background(), demoAlert(t)); err != nil {
		t.Fatal(err)
	}
	att := got["attachments"].([]any)[0].(map[string]any)
	if got["type"] != "message" || att["contentType"] != ContentType || att["contentUrl"] != nil {
		t.Errorf("envelope %v", got)
	}
	if card := att["content"].(map[string]any); card["version"] != "1.4" || card["type"] != "AdaptiveCard" {
		t.Errorf("card %v", card["version"])
	}
}
