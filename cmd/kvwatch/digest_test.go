package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kvwatch digest --send sends the demo day's digest to the receivers the
// routes pick for digests (the webhook receiver's JSON form), says what
// each answered, and exits 1 when one fails, secrets never shown.
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
