package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/notify"
)

const hookSecret = "SECRETSIG789"

func TestSendDigest(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	body := []byte(`{"schema":"kvwatch.digest/v1","id":"daily-2026-11-23","period":"daily"}`)
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	n, err := New("siem", Config{URL: srv.URL + "/hook?sig=" + hookSecret, Secret: "shared", Headers: map[string]string{"X-Api-Key": "k"}},
		srv.Client(), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if err := n.SendDigest(context.Background(), Digest{ID: "daily-2026-11-23", JSON: body}); err != nil {
		t.Fatalf("SendDigest: %v", err)
	}
	if got == nil || got.Method != http.MethodPost || got.URL.Path != "/hook" {
		t.Fatalf("request %v", got)
	}
	if !bytes.Equal(gotBody, body) {
		t.Errorf("body %s, want %s", gotBody, body)
	}
	for k, want := range map[string]string{
		"Content-Type":        "application/json; charset=utf-8",
		"X-Kvwatch-Schema":    "kvwatch.digest/v1",
		"X-Kvwatch-Digest-Id": "daily-2026-11-23",
		"X-Api-Key":           "k",
		"X-Kvwatch-Timestamp": strconv.FormatInt(now.Unix(), 10),
		"X-Kvwatch-Signature": Sign("shared", now.Unix(), body),
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("%s %q, want %q", k, v, want)
		}
	}
	if got.Header.Get("X-Kvwatch-Alert-Id") != "" {
		t.Error("a digest carries an alert id")
	}
}

func TestSendDigestErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		retry  bool
		after  time.Duration
	}{
		{429, true, 9 * time.Second},
		{500, true, 0},
		{400, false, 0},
		{401, false, 0},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tc.after > 0 {
					w.Header().Set("Retry-After", "9")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, "rejected https://x.example/?sig="+hookSecret)
			}))
			defer srv.Close()
			n, err := New("siem", Config{URL: srv.URL + "/hook?sig=" + hookSecret}, srv.Client(), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = n.SendDigest(context.Background(), Digest{ID: "weekly-2026-11-16", JSON: []byte(`{}`)})
			retry, after := notify.Retryable(err)
			if err == nil || retry != tc.retry || after != tc.after {
				t.Errorf("err %v: retry %v after %v, want %v after %v", err, retry, after, tc.retry, tc.after)
			}
			if err != nil && strings.Contains(err.Error(), hookSecret) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}

	// Unreachable: temporary, and the URL's secret is not quoted.
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/hook?sig=" + hookSecret
	srv.Close()
	n, err := New("siem", Config{URL: u, Timeout: "2s"}, http.DefaultClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = n.SendDigest(context.Background(), Digest{ID: "monthly-2026-10-01", JSON: []byte(`{}`)})
	if retry, _ := notify.Retryable(err); !retry || err == nil {
		t.Errorf("unreachable endpoint: %v, want a temporary error", err)
	}
	if err != nil && strings.Contains(err.Error(), hookSecret) {
		t.Errorf("error quotes the secret: %v", err)
	}
	if err := n.SendDigest(context.Background(), Digest{ID: "x"}); err == nil {
		t.Error("a digest without a body was sent")
	} else if retry, _ := notify.Retryable(err); retry {
		t.Errorf("no body is permanent: %v", err)
	}
}
