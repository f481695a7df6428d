package handlers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStartingAnswersReadinessAndHoldsInvocations(t *testing.T) {
	s := NewStarting()
	srv := httptest.NewServer(s)
	defer srv.Close()

	// Readiness is answered before the runtime is wired.
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ready") {
		t.Fatalf("GET / while starting: %d %s", resp.StatusCode, body)
	}

	// An invocation waits for the runtime, then is served by it.
	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/AuditEvents", "application/json", strings.NewReader(`{}`))
		if err != nil {
			got <- result{status: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, string(b)}
	}()
	select {
	case r := <-got:
		t.Fatalf("invocation answered before the runtime was ready: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	s.Ready(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "runtime "+r.URL.Path)
	}))
	if r := <-got; r.status != http.StatusTeapot || r.body != "runtime /AuditEvents" {
		t.Fatalf("held invocation: %+v, want it served by the runtime", r)
	}
	// From now on everything, GET / included, goes to the runtime.
	resp, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("GET / after Ready: %d, want the runtime's answer", resp.StatusCode)
	}
}

func TestStartingFailed(t *testing.T) {
	s := NewStarting()
	srv := httptest.NewServer(s)
	defer srv.Close()
	s.Fail()
	resp, err := http.Post(srv.URL+"/AuditEvents", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("invocation after a failed start: %d, want 503", resp.StatusCode)
	}
}

func TestStartingGivesUpWithTheRequest(t *testing.T) {
	s := NewStarting()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest(http.MethodPost, "/AuditEvents", strings.NewReader(`{}`)).WithContext(ctx)
	req.RemoteAddr = "127.0.0.1:5000"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("invocation whose request ended while starting: %d, want 503", w.Code)
	}
}

func TestStartingRefusesNonLoopback(t *testing.T) {
	s := NewStarting()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "10.0.0.7:5000"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Fatalf("GET / from 10.0.0.7: %d, want 403", w.Code)
	}
}
