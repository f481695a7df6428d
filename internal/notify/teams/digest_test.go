package teams_test

// An external test package: internal/digest imports this package (through
// delivery and config), so only a _test package can use both.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/digest"
	"github.com/kvwatch/kvwatch/internal/notify"
	"github.com/kvwatch/kvwatch/internal/notify/teams"
)

const digestSecret = "DIGESTSIG456"

func digestHook(base string) string {
	return base + "/workflows/abc/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=" + digestSecret
}

// bigReport is a daily digest with far more than a card can show.
func bigReport() *digest.Report {
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	r := &digest.Report{Period: digest.Daily, Start: day, End: day.AddDate(0, 0, 1), Zone: "UTC", Generated: day.AddDate(0, 0, 1)}
	long := strings.Repeat("very-long-name-", 12)
	for i := range 300 {
		s := digest.Summary{Vault: fmt.Sprintf("kv-%03d-%s", i, long), Requests: int64(i * 1000)}
		r.Vaults = append(r.Vaults, s)
		r.Overall.NewIdentities = append(r.Overall.NewIdentities, digest.Identity{Vault: s.Vault, Key: long + long, First: day})
		r.Overall.Changes = append(r.Overall.Changes, digest.Change{Vault: s.Vault, Time: day, Operation: "VaultPatch", Caller: long,
			Details: []string{long, long, long}})
		r.Findings = append(r.Findings, digest.Finding{Raised: day, FirstEvent: day, Rule: "rule-" + long, Vault: s.Vault,
			Summary: long + long + long + " sig=" + digestSecret, Delivery: []digest.Delivery{{Receiver: "a", State: "delivered"}}})
	}
	r.Overall.NewIdentitiesCount, r.Overall.ChangesCount = 300, 300
	return r
}

func digestOf(r *digest.Report) teams.Digest {
	return teams.Digest{ID: string(r.Period) + "-" + r.Start.Format(time.DateOnly), Card: digest.Card(r)}
}

func newDigestNotifier(t *testing.T, url string) *teams.Notifier {
	t.Helper()
	n, err := teams.New("teams:digests", teams.Config{URL: url, RatePerSecond: 1000}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSendDigestPayload(t *testing.T) {
	r := bigReport()
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Query().Get("sig") != digestSecret {
			t.Errorf("%s %s", req.Method, req.URL.Path)
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		b, _ := io.ReadAll(req.Body)
		bodies = append(bodies, b)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	n := newDigestNotifier(t, digestHook(srv.URL))
	if err := n.SendDigest(context.Background(), digestOf(r)); err != nil {
		t.Fatalf("SendDigest: %v", err)
	}
	if len(bodies) != 1 {
		t.Fatalf("%d requests, want 1", len(bodies))
	}
	body := bodies[0]
	if len(body) > 28*1024 || len(body) > teams.DigestMaxBytes {
		t.Errorf("message of %d bytes: over Teams' 28 KB", len(body))
	}
	t.Logf("message of %d bytes", len(body))

	// The envelope Workflows expects, exactly.
	var env struct {
		Type        string                       `json:"type"`
		Attachments []map[string]json.RawMessage `json:"attachments"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if env.Type != "message" || len(env.Attachments) != 1 {
		t.Fatalf("envelope type %q with %d attachments", env.Type, len(env.Attachments))
	}
	att := env.Attachments[0]
	if len(att) != 3 {
		t.Errorf("attachment keys %v, want contentType, contentUrl, content", keys(att))
	}
	if string(att["contentType"]) != `"application/vnd.microsoft.card.adaptive"` {
		t.Errorf("contentType %s", att["contentType"])
	}
	if u, ok := att["contentUrl"]; !ok || string(u) != "null" {
		t.Errorf("contentUrl %q present %v, want null", u, ok)
	}
	want, _ := json.Marshal(digest.Card(r))
	var got, wantV any
	_ = json.Unmarshal(att["content"], &got)
	_ = json.Unmarshal(want, &wantV)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(wantV)
	if !bytes.Equal(gb, wb) {
		t.Errorf("content is not digest.Card(r):\n%.300s", att["content"])
	}
	var card struct {
		Type    string `json:"type"`
		Version string `json:"version"`
	}
	_ = json.Unmarshal(att["content"], &card)
	if card.Type != "AdaptiveCard" {
		t.Errorf("card type %q", card.Type)
	}
	// The card is compact JSON, "<" and "&" not turned into \u003c.
	if bytes.Contains(body, []byte(`\u003c`)) || bytes.Contains(body, []byte("\n")) {
		t.Error("body not compact, or HTML-escaped")
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSendDigestErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		header map[string]string
		retry  bool
		after  time.Duration
	}{
		{status: 429, header: map[string]string{"Retry-After": "11"}, retry: true, after: 11 * time.Second},
		{status: 503, retry: true},
		{status: 400},
		{status: 404},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				io.Copy(io.Discard, req.Body)
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, `{"error":{"message":"bad request to sig=`+digestSecret+`"}}`)
			}))
			defer srv.Close()
			err := newDigestNotifier(t, digestHook(srv.URL)).SendDigest(context.Background(), digestOf(bigReport()))
			var ne *notify.Error
			if !errors.As(err, &ne) {
				t.Fatalf("want *notify.Error, got %T %v", err, err)
			}
			if ne.Retry != tc.retry || ne.After != tc.after {
				t.Errorf("retry %v after %v, want %v after %v (%v)", ne.Retry, ne.After, tc.retry, tc.after, err)
			}
			if strings.Contains(err.Error(), digestSecret) {
				t.Errorf("error quotes the signature: %v", err)
			}
			if !strings.Contains(err.Error(), "teams:digests") {
				t.Errorf("error does not name the receiver: %v", err)
			}
		})
	}
}

func TestSendDigestConnectionFailureIsTemporary(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := digestHook(srv.URL)
	srv.Close()
	err := newDigestNotifier(t, url).SendDigest(context.Background(), digestOf(bigReport()))
	if retry, _ := notify.Retryable(err); !retry || err == nil {
		t.Fatalf("want a temporary error, got %v", err)
	}
	if strings.Contains(err.Error(), digestSecret) {
		t.Errorf("error quotes the signature: %v", err)
	}
}

func TestSendDigestTooLargeIsPermanent(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { calls++ }))
	defer srv.Close()
	n := newDigestNotifier(t, digestHook(srv.URL))
	huge := teams.Digest{ID: "daily-2026-11-23", Card: map[string]any{"type": "AdaptiveCard", "body": strings.Repeat("x", 30<<10)}}
	err := n.SendDigest(context.Background(), huge)
	if retry, _ := notify.Retryable(err); retry || err == nil {
		t.Fatalf("a card over the limit is permanent, got %v", err)
	}
	if err := n.SendDigest(context.Background(), teams.Digest{ID: "x"}); err == nil {
		t.Error("a digest without a card was sent")
	}
	if calls != 0 {
		t.Errorf("%d requests for cards that cannot be sent", calls)
	}
}
