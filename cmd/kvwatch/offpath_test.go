package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
	"github.com/kvwatch/kvwatch/internal/host"
)

// vaultPatch is the hostile corpus's VaultPatch record (it raises alerts
// on its own), moved to vault and to time at.
func vaultPatch(t *testing.T, vault string, at time.Time) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/hostile/vault-patch-public.json")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.TrimSpace(string(b))
	r = strings.ReplaceAll(r, "KV-CONTOSO-PROD", strings.ToUpper(vault))
	r = strings.ReplaceAll(r, "kv-contoso-prod", vault)
	return strings.Replace(r, `"2026-11-23T10:00:07Z"`, `"`+at.UTC().Format(time.RFC3339)+`"`, 1)
}

// invokeRecord posts one record as one event of a batch, as the host does.
func invokeRecord(t *testing.T, base string, seq int64, record string) *host.Response {
	t.Helper()
	body, err := host.Body(host.Batch{Partition: "0", Events: []host.Event{
		{Body: []byte(`{"records":[` + record + `]}`), Sequence: seq, Enqueued: time.Now()},
	}}, host.StringOfStrings)
	if err != nil {
		t.Fatal(err)
	}
	r, err := host.Invoke(context.Background(), http.DefaultClient, base, "AuditEvents", body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 {
		t.Fatalf("invocation answered %d: %s", r.Status, r.Raw)
	}
	return r
}

func alertIDs(as []alert.Alert) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return ids
}

func vaultsOf(as []alert.Alert) []string {
	var vs []string
	for _, a := range as {
		if !slices.Contains(vs, a.Vault) {
			vs = append(vs, a.Vault)
		}
	}
	slices.Sort(vs)
	return vs
}

// Issue 13.1 through the real binary, the host's contract and Table
// Storage: with a webhook that hangs for a minute, every invocation still
// answers at once — the second batch answers while the webhook holds the
// first batch's alert — the Teams- and email-like receivers get every
// alert meanwhile, and the webhook gets each alert once it recovers.
func TestServeAnswersWhileAReceiverHangs(t *testing.T) {
	conn := azuritetest.Start(t)
	hung := deliverytest.NewHungReceiver(t)
	teams, mail := deliverytest.NewFast(t), deliverytest.NewFast(t)
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`receivers:
  - name: hook
    webhook: {url: %q, timeout: 2m}
  - name: teams
    webhook: {url: %q}
  - name: email
    webhook: {url: %q}
`, hung.Srv.URL+"/hook", teams.Srv.URL+"/teams", mail.Srv.URL+"/mail")), 0o644)
	_, base, out := startServe(t, "KVWATCH_CONFIG="+cfg, "KVWATCH_TABLE_CONNECTION_STRING="+conn,
		fmt.Sprintf("KVWATCH_TABLE_PREFIX=o%d", time.Now().UnixNano()%1e9), "KVWATCH_LOG_LEVEL=warn")
	at := time.Date(2026, 11, 23, 10, 0, 7, 0, time.UTC)
	invokeRecord(t, base, 1, vaultPatch(t, "kv-one", at))
	select {
	case <-hung.Entered:
	case <-time.After(30 * time.Second):
		t.Fatalf("the webhook was never called\n%s", out)
	}
	invokeRecord(t, base, 2, vaultPatch(t, "kv-two", at.Add(time.Minute)))
	if hung.Holding.Load() == 0 || len(hung.Got()) != 0 {
		t.Fatal("the second invocation answered only after the hung webhook did")
	}
	deliverytest.WaitFor(t, "teams and email get both batches' alerts while the webhook hangs", func() bool {
		return slices.Equal(vaultsOf(teams.Got()), []string{"kv-one", "kv-two"}) &&
			slices.Equal(alertIDs(mail.Got()), alertIDs(teams.Got()))
	})
	if hung.Holding.Load() == 0 {
		t.Fatal("the webhook stopped hanging before the others were served: the test proves nothing")
	}
	hung.Recover()
	want := alertIDs(teams.Got())
	deliverytest.WaitFor(t, "the webhook gets every alert once it recovers", func() bool {
		return len(hung.Got()) == len(want)
	})
	for _, id := range want {
		if n := hung.Got()[id]; n != 1 {
			t.Errorf("alert %s reached the webhook %d times", id, n)
		}
	}
}

// Issue 13.4: a silence added with `kvwatch silence add` while serve runs
// is honoured without a restart (serve reads silences every
// KVWATCH_SILENCE_POLL); it holds only what it names; once expired,
// alerts flow again.
func TestSilenceAddedWhileServing(t *testing.T) {
	conn := azuritetest.Start(t)
	hook := deliverytest.NewFast(t)
	cfg := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("receivers:\n  - name: hook\n    webhook: {url: %q}\n", hook.Srv.URL+"/hook")), 0o644)
	env := map[string]string{"KVWATCH_TABLE_CONNECTION_STRING": conn, "KVWATCH_TABLE_PREFIX": fmt.Sprintf("s%d", time.Now().UnixNano()%1e9),
		"KVWATCH_CONFIG": cfg}
	getenv := func(k string) string { return env[k] }
	var serveEnv []string
	for k, v := range env {
		serveEnv = append(serveEnv, k+"="+v)
	}
	_, base, out := startServe(t, append(serveEnv, "KVWATCH_SILENCE_POLL=200ms", "KVWATCH_LOG_LEVEL=warn")...)
	ctx := context.Background()
	cli := func(args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		if code := run(ctx, args, getenv, &o, &e); code != 0 {
			t.Fatalf("kvwatch %s: exit %d\n%s%s", strings.Join(args, " "), code, o.String(), e.String())
		}
		return o.String()
	}
	added := cli("silence", "add", "--vault", "kv-maint", "--comment", "planned maintenance", "--for", "2h")
	m := regexp.MustCompile(`silence ([0-9a-f]{12}) added`).FindStringSubmatch(added)
	if m == nil {
		t.Fatalf("silence add said %q", added)
	}
	id := m[1]
	if l := cli("silence", "list"); !strings.Contains(l, id) || !strings.Contains(l, "vaults=kv-maint") || !strings.Contains(l, "planned maintenance") {
		t.Fatalf("silence list: %s", l)
	}
	time.Sleep(time.Second) // serve reads the silences again meanwhile
	at := time.Date(2026, 11, 23, 10, 0, 7, 0, time.UTC)
	invokeRecord(t, base, 1, vaultPatch(t, "kv-maint", at))
	invokeRecord(t, base, 2, vaultPatch(t, "kv-other", at))
	deliverytest.WaitFor(t, "the other vault's alerts arrive", func() bool { return len(hook.Got()) > 0 })
	deliverytest.WaitFor(t, "the silenced vault's alerts are recorded muted by the silence", func() bool {
		l := cli("alerts", "list")
		return strings.Contains(l, "kv-maint") && !strings.Contains(l, "kv-maint hook:pending")
	})
	if slices.Contains(vaultsOf(hook.Got()), "kv-maint") {
		t.Fatal("an alert of the silenced vault was sent")
	}
	for _, line := range strings.Split(cli("alerts", "list"), "\n") {
		if strings.Contains(line, "kv-maint") && !strings.Contains(line, "hook:muted") {
			t.Fatalf("not muted: %s", line)
		}
	}
	if e := cli("silence", "expire", id); !strings.Contains(e, "expired") {
		t.Fatalf("silence expire: %s", e)
	}
	if l := cli("silence", "list"); strings.Contains(l, id) {
		t.Fatalf("an expired silence listed as active: %s", l)
	}
	if l := cli("silence", "list", "--all"); !strings.Contains(l, id) || !strings.Contains(l, "over") {
		t.Fatalf("silence list --all: %s", l)
	}
	time.Sleep(time.Second)
	invokeRecord(t, base, 3, vaultPatch(t, "kv-maint", at.Add(48*time.Hour)))
	deliverytest.WaitFor(t, "alerts of the vault flow again once the silence expired", func() bool {
		return slices.Contains(vaultsOf(hook.Got()), "kv-maint")
	})
	_ = out
}

// The command's own checks: a silence must name something, one end at
// most, and the outbox's Table Storage is needed.
func TestSilenceCommandErrors(t *testing.T) {
	ctx := context.Background()
	noTable := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"silence", "add", "--comment", "x"}, 2, "name at least one"},
		{[]string{"silence", "add", "--vault", "v", "--for", "1h", "--until", "2026-12-01"}, 2, "give one"},
		{[]string{"silence", "add", "--vault", "v", "--for", "soon"}, 2, "not a duration"},
		{[]string{"silence", "add", "--ip", "300.1.1.1"}, 2, "not an IP"},
		{[]string{"silence", "add", "--vault", "v", "--starts", "2026-12-02", "--until", "2026-12-01"}, 2, "ends before it starts"},
		{[]string{"silence", "expire"}, 2, "usage"},
		{[]string{"silence", "list"}, 1, "no Table Storage configured"},
		{[]string{"silence", "frobnicate"}, 2, "unknown subcommand"},
		{[]string{"silence", "list", "extra"}, 2, "takes no arguments"},
	} {
		var o, e bytes.Buffer
		code := run(ctx, c.args, noTable, &o, &e)
		if code != c.code || !strings.Contains(o.String()+e.String(), c.want) {
			t.Errorf("kvwatch %s: exit %d (want %d)\n%s%s(want %q)", strings.Join(c.args, " "), code, c.code, o.String(), e.String(), c.want)
		}
	}
	var o bytes.Buffer
	if code := run(ctx, []string{"silence", "--help"}, noTable, &o, io.Discard); code != 0 || !strings.Contains(o.String(), "open-ended") {
		t.Errorf("silence --help: %d %s", code, o.String())
	}
}
