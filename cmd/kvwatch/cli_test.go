package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/demo"
)

// runIn runs kvwatch with args in dir (the working directory, for
// commands that write relative paths), stdin as standard input and env as
// the environment; it returns the exit code, stdout and stderr.
func runIn(t *testing.T, dir string, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var stdout, stderr bytes.Buffer
	code := runWithInput(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// Every command and group answers -h and --help with its full usage on
// stdout and exit 0, and does nothing else.
func TestHelpExitsZero(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range [][]string{
		{"serve"}, {"replay"}, {"consume"}, {"rules"}, {"rules", "check"}, {"rules", "show"}, {"rules", "test"},
		{"routes"}, {"routes", "test"}, {"alerts"}, {"alerts", "list"}, {"alerts", "show"}, {"alerts", "resend"},
		{"alerts", "test"}, {"digest"}, {"state"}, {"state", "prune"}, {"dev"}, {"demo"}, {"demo", "write"}, {},
	} {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, cmd...), h)
			code, out, errOut := runIn(t, dir, nil, "", args...)
			if code != 0 || !strings.HasPrefix(out, "Usage:") && !strings.HasPrefix(out, "kvwatch watches") || errOut != "" {
				t.Errorf("%q: exit %d, stdout %.60q, stderr %q; want exit 0 and the usage on stdout", args, code, out, errOut)
			}
			if len(cmd) == 2 && !strings.Contains(out, "kvwatch "+strings.Join(cmd, " ")) {
				t.Errorf("%q: usage does not name the command: %q", args, out)
			}
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("--help wrote %v", ents)
	}
}

// No command takes a flag for a path: flags after arguments are flags, an
// unknown one is a usage error before anything is done.
func TestNoFlagTakenForAPath(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"demo", "write", "--help"},
		{"demo", "write", "out", "--bogus"},
		{"demo", "write", "--bogus", "out"},
		{"rules", "test", "tests", "--frobnicate"},
	} {
		code, out, errOut := runIn(t, dir, nil, "", args...)
		want := 2
		if args[len(args)-1] == "--help" {
			want = 0
		}
		if code != want {
			t.Errorf("%q: exit %d, want %d (%s%s)", args, code, want, out, errOut)
		}
		if want == 2 && !strings.Contains(errOut, "flag provided but not defined") {
			t.Errorf("%q: stderr %q does not name the bad flag", args, errOut)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("wrote %v", ents)
	}
}

// Errors name the path or value the user gave.
func TestErrorsNameWhatWasGiven(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("this is not an audit log\n{\"nor\": \"this\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
		code  int
		want  []string
		not   string
	}{
		{args: []string{"rules", "test", "/nonexistent"}, code: 1, want: []string{"/nonexistent", "no such file"}, not: "stat ."},
		{args: []string{"rules", "check", "/nonexistent.yaml"}, code: 1, want: []string{"/nonexistent.yaml"}},
		{args: []string{"state", "prune", "--at", "yesterdy"}, code: 2, want: []string{`"yesterdy"`, "yesterday", "-2h"}, not: "2006"},
		{args: []string{"routes", "test", "--at", "soon"}, code: 2, want: []string{`"soon"`}},
		{args: []string{"routes", "test", "--severity", "hihg"}, code: 2, want: []string{`"hihg"`, "critical"}},
		{args: []string{"replay", "/nonexistent/blobs"}, code: 1, want: []string{"/nonexistent/blobs"}},
		// Input that holds no records at all is an error, not a quiet 0.
		{args: []string{"replay", garbage}, code: 1, want: []string{garbage, "no audit records kvwatch could read", "2 dead-lettered"}},
		{args: []string{"replay", "-"}, stdin: "garbage\n", code: 1, want: []string{"no audit records kvwatch could read in -"}},
		{args: []string{"replay", "-"}, stdin: "", code: 1, want: []string{"no audit records"}},
		{args: []string{"replay", "-", garbage}, code: 2, want: []string{"standard input"}},
		{args: []string{"rules", "show", "vault-admin-operatoin"}, code: 1, want: []string{`"vault-admin-operatoin"`, "vault-admin-operation"}},
	} {
		code, out, errOut := runIn(t, "", nil, c.stdin, c.args...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (%s%s)", c.args, code, c.code, out, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr %q lacks %q", c.args, errOut, w)
			}
		}
		if c.not != "" && strings.Contains(errOut, c.not) {
			t.Errorf("%q: stderr %q shows %q", c.args, errOut, c.not)
		}
	}
}

// "-" reads standard input: a replay of one demo blob finds what the same
// file finds; rules check - checks the file piped in.
func TestDashReadsStandardInput(t *testing.T) {
	blobs := demo.Generate(demo.Options{})
	var all []byte
	for _, b := range blobs {
		all = append(all, b.Data...)
		all = append(all, '\n')
	}
	code, out, errOut := runIn(t, "", nil, string(all), "replay", "-")
	if code != 0 || !strings.Contains(out, "object-destroyed") || !strings.Contains(errOut, "replay: 1 files") {
		t.Errorf("replay -: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runIn(t, "", nil, "routes:\n  - receivers: [nobody]\n", "rules", "check", "-")
	if code != 1 || !strings.Contains(errOut, `<stdin>:2:17: routes[0].receivers[0]: no receiver named "nobody": no receivers are defined`) {
		t.Errorf("rules check -: exit %d, %s", code, errOut)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"2026-03-01T22:00:00Z", time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)},
		{"2026-03-01T22:00:00.5+01:00", time.Date(2026, 3, 1, 21, 0, 0, 5e8, time.UTC)},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-03-01T08:15", time.Date(2026, 3, 1, 8, 15, 0, 0, time.UTC)},
		{"now", now},
		{"today", time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)},
		{"Yesterday", time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)},
		{"-2h", now.Add(-2 * time.Hour)},
		{"2h ago", now.Add(-2 * time.Hour)},
		{"-7d", now.AddDate(0, 0, -7)},
		{"-90m", now.Add(-90 * time.Minute)},
	} {
		got, err := parseTime(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "2h", "-x", "2026-13-01", "ago"} {
		if _, err := parseTime(bad, now); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("parseTime(%q): err %v", bad, err)
		}
	}
}

// rules check accepts exactly the files serve starts with, and reports
// the same errors, each with its position.
func TestRulesCheckAcceptsWhatServeStarts(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, yaml string
		env        map[string]string
		errs       []string // what both must say
	}{
		{"valid", "receivers: [{name: out, stdout: {}}]\nroutes: [{receivers: [out], min_severity: high}]\n", nil, nil},
		{"valid, pack off", "default_pack: false\nrules: [{id: mine, kind: each}]\n", nil, nil},
		{"route to unknown receiver", "receivers: [{name: secops-teams, stdout: {}}]\nroutes:\n  - receivers: [secops-team]\n",
			nil, []string{`:3:17: routes[0].receivers[0]: no receiver named "secops-team" (did you mean "secops-teams"?)`}},
		{"severity typo", "receivers: [{name: a, stdout: {}}]\nroutes: [{receivers: [a], min_severity: hihg}]\n",
			nil, []string{`:2:27: routes[0].min_severity: unknown severity "hihg" (did you mean "high"?)`}},
		{"duplicate receivers", "receivers:\n  - {name: a, stdout: {}}\n  - {name: a, stdout: {}}\n",
			nil, []string{`:3:6: receivers[1].name: duplicate receiver name "a"`}},
		{"silence ends before it starts", "silences:\n  - {vaults: [kv], starts: \"2026-03-02T00:00:00Z\", ends: \"2026-03-01T00:00:00Z\"}\n",
			nil, []string{`:2:52: silences[0].ends: the silence ends`}},
		{"email without to", "receivers:\n  - name: m\n    email: {from: a@example.com, smtp: {host: smtp.example.com}}\n",
			nil, []string{`:3:5: receivers[0].email: to: at least one recipient required`}},
		{"mute interval", "mute_intervals: [{name: x, start: \"09:00\", end: \"08:00\"}]\n",
			nil, []string{`:1:44: mute_intervals[0].end: a mute interval must start before it ends`}},
		{"delivery settings", "delivery: {max_backoff: 0s}\n", nil, []string{`:1:12: delivery.max_backoff: must be positive`}},
		{"override of a rule that does not exist", "overrides:\n  vault-admin-operations: {severity: critical}\n",
			nil, []string{`:2:3: overrides.vault-admin-operations: no rule "vault-admin-operations" to override (did you mean "vault-admin-operation"?)`}},
		{"override a kind does not take", "overrides:\n  vault-admin-operation: {window: 5m}\n",
			nil, []string{`:2:27: overrides.vault-admin-operation.window: rule vault-admin-operation is of kind each, which takes no window`}},
		{"unset variable", "receivers: [{name: t, teams: {url: \"${TEAMS_URL}\"}}]\n",
			nil, []string{`:1:31: receivers[0].teams.url: environment variable TEAMS_URL is not set`}},
		{"several at once", "receivers: [{name: a, webhook: {url: \"ftp://x\"}}]\nroutes: [{receivers: [b]}]\nsilences: [{rules: [x], ends: soon}]\n",
			nil, []string{`:1:33: receivers[0].webhook.url`, `:2:23: routes[0].receivers[0]: no receiver named "b"`, `:3:25: silences[0].ends: "soon" is not an RFC 3339 time`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runIn(t, "", c.env, "", "rules", "check", path)
			_, werr := wireRuntime(context.Background(), path, func(k string) string { return c.env[k] }, &bytes.Buffer{}, zerolog.Nop())
			if c.errs == nil {
				if code != 0 || werr != nil {
					t.Fatalf("rules check exit %d (%s%s); serve: %v", code, out, errOut, werr)
				}
				if !strings.Contains(out, "is valid") {
					t.Errorf("rules check says %q", out)
				}
				return
			}
			if code != 1 || werr == nil {
				t.Fatalf("rules check exit %d (%s); serve: %v; want both to refuse", code, out, werr)
			}
			var serveOut bytes.Buffer
			if code := run(context.Background(), []string{"serve", "--port", "0", "--config", path}, func(string) string { return "" }, &serveOut, &serveOut); code != 1 {
				t.Errorf("serve exit %d, want 1: %s", code, serveOut.String())
			}
			for _, e := range c.errs {
				if !strings.Contains(errOut, path+e) {
					t.Errorf("rules check stderr lacks %q:\n%s", path+e, errOut)
				}
				if !strings.Contains(werr.Error(), path+e) || !strings.Contains(serveOut.String(), path+e) {
					t.Errorf("serve does not report %q the same way:\n%v\n%s", path+e, werr, serveOut.String())
				}
			}
		})
	}
}

// rules show prints the rule as it runs: the pack's, with the override's
// fields and the top-level except.
func TestRulesShow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(path, []byte(`overrides:
  secret-retrieval-burst: {count: 50, severity: high}
except:
  - callers: [backup@contoso.com]
`), 0o644)
	code, out, errOut := runIn(t, "", nil, "", "rules", "show", "--config", path, "secret-retrieval-burst")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"# changed by overrides.secret-retrieval-burst", "id: secret-retrieval-burst", "severity: high",
		"count: 50", "window: 5m", "backup@contoso.com", "kind: threshold"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules show lacks %q:\n%s", want, out)
		}
	}
}

// routes test says which receivers an alert reaches, or what mutes it.
func TestRoutesTest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(path, []byte(`receivers:
  - {name: oncall, stdout: {}}
  - {name: audit, stdout: {}}
  - {name: ops-teams, stdout: {}}
routes:
  - {receivers: [oncall], min_severity: critical, continue: true}
  - {receivers: [ops-teams], tags: [maintenance]}
  - {receivers: [audit]}
silences:
  - {comment: key rotation, vaults: [kv-rotate], starts: "2026-03-01T00:00:00Z", ends: "2026-03-02T00:00:00Z"}
mute_intervals:
  - {name: sunday-patching, days: [sun], start: "02:00", end: "04:00"}
`), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--severity", "critical", "--vault", "kv-a"}, "receivers: oncall, audit\n"},
		{[]string{"--severity", "low", "--vault", "kv-a"}, "receivers: audit\n"},
		{[]string{"--severity", "low", "--tag", "maintenance"}, "receivers: ops-teams\n"},
		{[]string{"--rule", "vault-protection-weakened"}, "severity critical"},
		{[]string{"--rule", "vault-protection-weakened"}, "receivers: oncall, audit\n"},
		{[]string{"--vault", "kv-rotate", "--at", "2026-03-01T10:00:00Z"}, "muted by: silence: key rotation (recorded as muted, sent to no one; unmuted it would go to: audit)"},
		{[]string{"--vault", "kv-rotate", "--at", "2026-03-03"}, "receivers: audit\n"},
		{[]string{"--at", "2026-03-08T03:00:00Z"}, "muted by: mute interval sunday-patching"},
	} {
		// A Wednesday noon unless the case says when: outside the mute interval.
		args := append([]string{"routes", "test", "--config", path, "--at", "2026-03-04T12:00:00Z"}, c.args...)
		code, out, errOut := runIn(t, "", nil, "", args...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("%q: exit %d, stdout %q (stderr %s), want %q", c.args, code, out, errOut, c.want)
		}
	}
}

// The embedded configuration routes to Teams and email as soon as their
// settings are in the environment; with none, serve's log says what to set.
func TestEmbeddedConfigAlertsFromTheEnvironment(t *testing.T) {
	teams := map[string]string{"KVWATCH_TEAMS_WEBHOOK_URL": "https://prod.example.com/workflows/x?sig=s3cret"}
	mail := map[string]string{"KVWATCH_EMAIL_FROM": "kvwatch@contoso.com", "KVWATCH_EMAIL_TO": "secops@contoso.com",
		"KVWATCH_ACS_ENDPOINT": "https://contoso.communication.azure.com"}
	both := map[string]string{}
	for k, v := range teams {
		both[k] = v
	}
	for k, v := range mail {
		both[k] = v
	}
	for _, c := range []struct {
		env      map[string]string
		severity string
		want     string
	}{
		{nil, "critical", "receivers: none: no receiver is on, so alerts go to the log only; to turn one on, receiver teams: set KVWATCH_TEAMS_WEBHOOK_URL; receiver email: set KVWATCH_ACS_ENDPOINT, KVWATCH_EMAIL_FROM, KVWATCH_EMAIL_TO"},
		{teams, "low", "receivers: teams\n"},
		{mail, "low", "receivers: none: no route matches"},
		{mail, "high", "receivers: email\n"},
		{both, "critical", "receivers: teams, email\n"},
	} {
		code, out, errOut := runIn(t, "", c.env, "", "routes", "test", "--severity", c.severity)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("env %v, %s: exit %d, %q (%s), want %q", c.env, c.severity, code, out, errOut, c.want)
		}
		if strings.Contains(out+errOut, "s3cret") {
			t.Errorf("the webhook's signature is shown: %s%s", out, errOut)
		}
	}

	// serve's startup log says exactly what to set.
	var log bytes.Buffer
	if _, err := wireRuntime(context.Background(), "", func(string) string { return "" }, &bytes.Buffer{}, zerolog.New(&log)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no receiver is on", "KVWATCH_TEAMS_WEBHOOK_URL", "KVWATCH_EMAIL_TO", "KVWATCH_SMTP_HOST"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("startup log lacks %q:\n%s", want, log.String())
		}
	}
}

// replay --send says, for each alert, the receivers it went to, or what
// muted it. The file is the demo tenant's (its exceptions for its platform
// identities, demo.Config) with a receiver and a silence.
func TestReplaySendSaysWhereAlertsWent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(path, append([]byte(`receivers: [{name: out, stdout: {format: json}}]
silences: [{comment: planned purge, rules: [object-destroyed]}]
`), demo.Config...), 0o644)
	code, out, errOut := runIn(t, "", nil, "", "replay", "--send", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "alert ") {
			lines = append(lines, l)
		}
	}
	muted, sent, inhibited := 0, 0, 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, " object-destroyed ") && strings.HasSuffix(l, ": muted by silence: planned purge"):
			muted++
		case strings.Contains(l, ": sent to out ("):
			sent++
		case strings.Contains(l, ": inhibited by listing-then-read-burst (alert "),
			strings.Contains(l, " vault-admin-operation ") && strings.Contains(l, ": inhibited by vault-protection-weakened (alert "):
			// the same sweep, the same weakening patch: one message each
			inhibited++
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	if muted != 1 || sent < 10 || inhibited != 4 {
		t.Errorf("%d muted, %d sent, %d inhibited lines:\n%s", muted, sent, inhibited, strings.Join(lines, "\n"))
	}
}
