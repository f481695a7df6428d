package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/demo"
	"github.com/kvwatch/kvwatch/internal/host"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvwatch-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "kvwatch")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	azuritetest.Main(m)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServe starts `kvwatch serve` the way the Functions host does and
// waits for GET / to answer, as the host's readiness probe does.
func startServe(t *testing.T, extraEnv ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		fmt.Sprintf("FUNCTIONS_HTTPWORKER_PORT=%d", port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID=worker-1",
		"KVWATCH_DEADLETTER_FILE="+filepath.Join(t.TempDir(), "dl.jsonl"),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 30*time.Second { // the host's own limit
			t.Fatalf("not ready within the host's 30 s: %v\n%s", err, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, base, &out
}

const sampleRecord = `{"time":"2026-11-23T09:00:00.1234567Z","resourceId":"/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD","operationName":"SecretGet","category":"AuditEvent","resultType":"Success","resultSignature":"Forbidden","durationMs":"7","callerIpAddress":"20.50.1.7","identity":{"claim":{"oid":"11111111-2222-3333-4444-555555555555"}},"properties":{"id":"https://kv-payments-prod.vault.azure.net/secrets/db/1","httpStatusCode":403}}`

func TestServeAnswersTheHost(t *testing.T) {
	_, base, out := startServe(t)
	body, err := host.Body(host.Batch{Partition: "0", Events: []host.Event{
		{Body: []byte(`{"records":[` + sampleRecord + `]}`), Sequence: 5, Enqueued: time.Now()},
		{Body: []byte(`not json at all`), Sequence: 6, Enqueued: time.Now()},
	}}, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r, err := host.Invoke(context.Background(), http.DefaultClient, base, "AuditEvents", body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || !strings.Contains(r.Logs[0], "2 events, 1 records, 1 accepted, 0 skipped, 1 dead-lettered") {
		t.Fatalf("answer %d %s\n%s", r.Status, r.Raw, out)
	}
}

func TestServeNeedsAPort(t *testing.T) {
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FUNCTIONS_CUSTOMHANDLER_PORT") {
		t.Fatalf("want a clear error naming the variable, got %v: %s", err, out)
	}
}

// TestGracefulShutdownFinishesInFlight sends half a request, signals
// SIGTERM, then sends the rest: the invocation must still be answered and
// the process must exit cleanly.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	cmd, base, out := startServe(t)
	body, err := host.Body(host.Batch{Partition: "1", Events: []host.Event{
		{Body: []byte(`{"records":[` + sampleRecord + `]}`), Sequence: 9, Enqueued: time.Now()},
	}}, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	half := len(body) / 2
	fmt.Fprintf(conn, "POST /AuditEvents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server is now reading the body
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatalf("connection closed before the request finished: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to the in-flight invocation: %v\n%s", err, out)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "1 accepted") {
		t.Fatalf("in-flight answer %d %s", resp.StatusCode, b)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("did not exit after SIGTERM\n%s", out)
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestReplayFilesWithABadLine(t *testing.T) {
	dir := t.TempDir()
	blob := filepath.Join(dir, "sub", "PT1H.json")
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(sampleRecord, "09:00:00.1234567Z", "09:00:02.5Z", 1)
	content := sampleRecord + "\n" + `{"time":"2026-11-23T09:00:01Z","operationName":` + "\n" + second + "\n" + sampleRecord + "\n"
	if err := os.WriteFile(blob, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	dl := filepath.Join(t.TempDir(), "dl.jsonl")
	for _, format := range []string{"text", "json"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"replay", "--events", "--output", format, "--deadletter", dl, dir},
			func(string) string { return "" }, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: %d events printed, want 2:\n%s", format, len(lines), stdout.String())
		}
		if format == "json" && !strings.HasPrefix(lines[0], `{"time":"2026-11-23T09:00:00.1234567Z"`) {
			t.Fatalf("json line %s", lines[0])
		}
		if format == "text" && !strings.Contains(lines[0], "kv-payments-prod SecretGet secret/db denied(403)") {
			t.Fatalf("text line %s", lines[0])
		}
		if !strings.Contains(stderr.String(), "replay: 1 files, 4 events, 3 records, 3 accepted, 1 duplicates, 0 skipped, 1 dead-lettered") {
			t.Fatalf("summary: %s", stderr.String())
		}
	}
	b, err := os.ReadFile(dl)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 2 || !strings.Contains(string(b), `"line":2`) {
		t.Fatalf("dead letters (one per run, line 2):\n%s", b)
	}
}

func TestReplayDemoByDefault(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"replay"}, func(string) string { return "" }, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "0 dead-lettered") || !strings.Contains(stderr.String(), " 19 findings") || !strings.Contains(stderr.String(), " 5 duplicates") {
		t.Fatalf("demo replay: %s", stderr.String())
	}
	for _, rule := range []string{"mass-secret-retrieval", "object-destroyed", "vault-protection-weakened",
		"object-exfiltration-prone", "denied-burst-caller", "denied-across-vaults"} {
		if !strings.Contains(stdout.String(), " "+rule+" ") {
			t.Errorf("demo replay did not find %s:\n%s", rule, stdout.String())
		}
	}
	// The escalation: kv-legacy-archive patched at 16:05, deleted and
	// purged at 16:40 (a later batch), printed as an update of the same
	// incident naming what changed.
	if !strings.Contains(stdout.String(), "T16:40Z UPDATE 2 vault-admin-operation  +VaultDelete, +VaultPurge\n") {
		t.Errorf("demo replay shows no update of the 16:05 VaultPatch:\n%s", stdout.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"replay", "--output", "yaml"}, {"demo"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

func TestAlertsTestSendsThroughRoutes(t *testing.T) {
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer down.Close()
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(cfg, []byte(`
receivers:
  - name: ops
    webhook: {url: "${HOOK}/x?token=SECRETTOKEN"}
  - name: broken
    webhook: {url: "${DOWN}/y?token=SECRETTOKEN"}
  - name: lowonly
    stdout: {}
routes:
  - receivers: [ops, broken]
    min_severity: high
`), 0o644)
	env := map[string]string{"HOOK": hook.URL, "DOWN": down.URL}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"alerts", "test", "--config", cfg}, func(k string) string { return env[k] }, &stdout, &stderr)
	out := stdout.String()
	if code != 1 || !strings.Contains(out, "ops                  accepted") || !strings.Contains(out, "broken               FAILED") ||
		!strings.Contains(out, "lowonly              not routed") {
		t.Fatalf("exit %d:\n%s%s", code, out, stderr.String())
	}
	if strings.Contains(out+stderr.String(), "SECRETTOKEN") {
		t.Fatalf("a secret leaked:\n%s%s", out, stderr.String())
	}
	if len(got) != 1 || !strings.Contains(got[0], `"test":true`) {
		t.Fatalf("webhook got %q", got)
	}
}

// replay --state table against Azurite gives the same findings as memory,
// and replaying the same files again into the same tables adds nothing;
// state prune then empties what no rule needs.
func TestReplayTableMatchesMemoryAndIsIdempotent(t *testing.T) {
	conn := azuritetest.Start(t)
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"demo", "write", dir}, func(string) string { return "" }, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	env := map[string]string{"KVWATCH_TABLE_CONNECTION_STRING": conn, "KVWATCH_TABLE_PREFIX": fmt.Sprintf("r%d", time.Now().UnixNano()%1e9)}
	getenv := func(k string) string { return env[k] }
	replay := func(state string) (string, string) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"replay", "--state", state, "--output", "json", dir}, getenv, &stdout, &stderr); code != 0 {
			t.Fatalf("replay --state %s: %s", state, stderr.String())
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			var f struct{ ID string }
			json.Unmarshal([]byte(l), &f)
			lines = append(lines, f.ID)
		}
		slices.Sort(lines)
		return strings.Join(lines, "\n"), stderr.String()
	}
	mem, _ := replay("memory")
	tab, _ := replay("table")
	if mem != tab || mem == "" {
		t.Fatalf("findings differ between memory and table:\n%s\n--\n%s", mem, tab)
	}
	_, summary := replay("table") // the same files again
	if !strings.Contains(summary, " 0 findings") {
		t.Fatalf("a second replay into the same tables raised findings again: %s", summary)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"state", "prune", "--at", "2026-12-31T00:00:00Z"}, getenv, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "pruned ") {
		t.Fatalf("state prune: %s %s", stdout.String(), stderr.String())
	}
}

func TestAlertsListShowResend(t *testing.T) {
	conn := azuritetest.Start(t)
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	// The demo tenant's file: its receiver, and its exceptions (the AKS
	// CSI driver's rollout is no burst), which a file of one's own replaces.
	os.WriteFile(cfg, append([]byte("receivers:\n  - name: hook\n    webhook: {url: \"${HOOK}\"}\n"), demo.Config...), 0o644)
	env := map[string]string{"KVWATCH_TABLE_CONNECTION_STRING": conn, "KVWATCH_TABLE_PREFIX": fmt.Sprintf("a%d", time.Now().UnixNano()%1e9),
		"HOOK": hook.URL, "KVWATCH_CONFIG": cfg}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if code := run(context.Background(), []string{"replay", "--state", "table", "--send"}, getenv, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	sent := len(got)
	if sent == 0 {
		t.Fatal("replay --send sent nothing")
	}
	var list bytes.Buffer
	if code := run(context.Background(), []string{"alerts", "list", "-n", "100"}, getenv, &list, &out); code != 0 {
		t.Fatal(out.String())
	}
	lines := strings.Split(strings.TrimSpace(list.String()), "\n")
	// The rules that fired on the demo day's sweep and weakening patch
	// besides the one that carries each are listed as inhibited by it,
	// and sent nowhere.
	inhibited := strings.Count(list.String(), "inhibited by ")
	if len(lines) != sent+inhibited || !strings.Contains(lines[0], "hook:delivered") || inhibited == 0 ||
		!strings.Contains(list.String(), "also mass-secret-retrieval") {
		t.Fatalf("%d alerts listed, %d sent, %d inhibited:\n%s", len(lines), sent, inhibited, list.String())
	}
	for _, l := range lines {
		if strings.Contains(l, " secret-retrieval-burst ") && !strings.Contains(l, "inhibited by listing-then-read-burst (alert ") {
			t.Fatalf("the sweep's burst: %s", l)
		}
	}
	if !strings.Contains(out.String(), "inhibited by vault-protection-weakened (alert ") {
		t.Fatalf("replay --send does not say what the admin operation was folded into:\n%s", out.String())
	}
	id := strings.Fields(lines[0])[0]
	var show bytes.Buffer
	if code := run(context.Background(), []string{"alerts", "show", id}, getenv, &show, &out); code != 0 || !strings.Contains(show.String(), `"id": "`+id+`"`) {
		t.Fatalf("show: %s %s", show.String(), out.String())
	}
	var resend bytes.Buffer
	if code := run(context.Background(), []string{"alerts", "resend", id}, getenv, &resend, &out); code != 0 || len(got) != sent+1 {
		t.Fatalf("resend: %s %s (%d sent)", resend.String(), out.String(), len(got))
	}
}
