package config

import (
	"strings"
	"testing"
)

// Every mistake in where findings go is reported with its position, all
// at once, with "did you mean" where there is a near name.
func TestValidateDelivery(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		errs []string // "line:col: path: |message part"
	}{
		{"valid", `
receivers:
  - {name: teams, teams: {url: "https://example.com/hook?sig=x"}}
  - {name: mail, email: {from: a@example.com, to: [b@example.com], smtp: {host: smtp.example.com}}}
routes:
  - {receivers: [teams], min_severity: medium, continue: true}
  - {receivers: [mail], min_severity: high, rules: ["vault-*"]}
silences:
  - {vaults: [kv-test], starts: "2026-03-01T22:00:00Z", ends: "2026-03-02T06:00:00Z"}
  - {rules: [object-near-expiry], comment: open-ended}
mute_intervals:
  - {name: patching, days: [sat], start: "02:00", end: "24:00"}
delivery: {give_up: 12h, group_wait: 30s}
`, nil},
		{"route to unknown receiver", `
receivers:
  - {name: secops-teams, stdout: {}}
routes:
  - receivers: [secops-team]
`, []string{`4:17: routes[0].receivers[0]: |no receiver named "secops-team" (did you mean "secops-teams"?); receivers are secops-teams`}},
		{"route with no receivers defined", "routes:\n  - receivers: [x]\n", []string{
			`2:17: routes[0].receivers[0]: |no receiver named "x": no receivers are defined`}},
		{"route needs receivers", "routes:\n  - min_severity: high\n", []string{
			`2:5: routes[0].receivers: |a route needs receivers`}},
		{"severity typo", "receivers: [{name: a, stdout: {}}]\nroutes:\n  - {receivers: [a], min_severity: hihg}\n", []string{
			`3:22: routes[0].min_severity: |unknown severity "hihg" (did you mean "high"?); one of info, low, medium, high, critical`}},
		{"bad route pattern", "receivers: [{name: a, stdout: {}}]\nroutes:\n  - {receivers: [a], vaults: [\"kv-[\"]}\n", []string{
			`3:31: routes[0].vaults[0]: |bad pattern "kv-["`}},
		{"duplicate receiver names", "receivers:\n  - {name: a, stdout: {}}\n  - {name: a, stdout: {}}\n", []string{
			`3:6: receivers[1].name: |duplicate receiver name "a" (first defined at kvwatch.yaml:2:6)`}},
		{"receiver without name or kind", "receivers:\n  - {}\n  - {name: b, stdout: {}, webhook: {url: \"https://x.example\"}}\n", []string{
			`2:5: receivers[0].name: |name is required`,
			`2:5: receivers[0]: |a receiver needs one of teams, email, webhook and stdout`,
			`3:15: receivers[1].stdout: |a receiver has one kind, and this one also has webhook`}},
		{"email without to", "receivers:\n  - name: mail\n    email:\n      from: a@example.com\n      smtp: {host: smtp.example.com}\n", []string{
			`3:5: receivers[0].email: |to: at least one recipient required`}},
		{"receiver settings at their keys", "receivers:\n  - name: t\n    teams:\n      url: \"http://example.com/x\"\n      max_bytes: 10\n  - name: m\n    email:\n      from: nobody\n      to: [b@example.com]\n      smtp: {host: smtp.example.com, port: 99999}\n", []string{
			`4:7: receivers[0].teams.url: |must be https`,
			`5:7: receivers[0].teams.max_bytes: |10 must be between`,
			`8:7: receivers[1].email.from: |"nobody" is not an email address`,
			`10:38: receivers[1].email.smtp.port: |99999 is not a port`}},
		{"silence ends before it starts", "silences:\n  - vaults: [kv-a]\n    starts: \"2026-03-02T00:00:00Z\"\n    ends: \"2026-03-01T00:00:00Z\"\n", []string{
			`4:5: silences[0].ends: |the silence ends (2026-03-01T00:00:00Z) before it starts (2026-03-02T00:00:00Z)`}},
		{"silence of everything", "silences:\n  - {comment: all, ips: [10.0.0.1/8]}\n  - {comment: none}\n", []string{
			`2:26: silences[0].ips[0]: |"10.0.0.1/8" has bits set beyond the prefix length`,
			`3:5: silences[1]: |a silence names at least one of rules, vaults, callers, ips`}},
		{"mute intervals", "mute_intervals:\n  - {name: a, zone: Mars/Olympus, days: [sunn], start: \"25:00\", end: \"02:00\"}\n  - {name: b, start: \"04:00\", end: \"03:00\"}\n  - {name: c}\n", []string{
			`2:15: mute_intervals[0].zone: |unknown time zone "Mars/Olympus"`,
			`2:42: mute_intervals[0].days[0]: |unknown day "sunn" (did you mean "sun"?)`,
			`2:49: mute_intervals[0].start: |time of day "25:00" must be written "HH:MM"`,
			`3:31: mute_intervals[1].end: |a mute interval must start before it ends`,
			`4:5: mute_intervals[2].start: |start is required`,
			`4:5: mute_intervals[2].end: |end is required`}},
		{"delivery settings", "delivery:\n  give_up: 0s\n  group_wait: -1s\n  inhibit_wait: -1m\n", []string{
			`2:3: delivery.give_up: |must be positive`,
			`3:3: delivery.group_wait: |must not be negative`,
			`4:3: delivery.inhibit_wait: |must not be negative`}},
		{"overrides checked alone", "overrides:\n  secret-retrieval-burst: {count: 0, severity: hi, window: 0s}\n", []string{
			`2:28: overrides.secret-retrieval-burst.count: |count must be at least 1`,
			`2:38: overrides.secret-retrieval-burst.severity: |unknown severity "hi" (did you mean "high"?)`,
			`2:52: overrides.secret-retrieval-burst.window: |window must be positive`}},
		{"empty except", "except:\n  - {}\n  - {callers: [\"\"]}\n", []string{
			`2:5: except[0]: |an empty except entry matches every event`,
			`3:16: except[1].callers[0]: |must not be empty`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseString(strings.TrimPrefix(c.yaml, "\n"))
			if c.errs == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			want := make([]string, len(c.errs))
			for i, e := range c.errs {
				want[i] = "kvwatch.yaml:" + e
			}
			expectErrors(t, err, want...)
		})
	}
}

// An optional receiver whose variables are unset is off, not an error, and
// says what to set; once they are set it is checked like any other.
func TestOptionalReceivers(t *testing.T) {
	src := `receivers:
  - name: teams
    optional: true
    teams: {url: "${KVWATCH_TEAMS_WEBHOOK_URL}"}
  - name: mail
    optional: true
    email:
      from: ${KVWATCH_EMAIL_FROM}
      to: ["${KVWATCH_EMAIL_TO}"]
      smtp: {host: "${KVWATCH_SMTP_HOST}"}
routes:
  - receivers: [teams, mail]
`
	f, err := Parse("kvwatch.yaml", []byte(src), Options{Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Receivers[0].Off; got != "set KVWATCH_TEAMS_WEBHOOK_URL" {
		t.Errorf("teams off = %q", got)
	}
	if got := f.Receivers[1].Off; got != "set KVWATCH_EMAIL_FROM, KVWATCH_EMAIL_TO, KVWATCH_SMTP_HOST" {
		t.Errorf("mail off = %q", got)
	}
	want := "no receiver is on, so alerts go to the log only; to turn one on, receiver teams: set KVWATCH_TEAMS_WEBHOOK_URL; receiver mail: set KVWATCH_EMAIL_FROM, KVWATCH_EMAIL_TO, KVWATCH_SMTP_HOST"
	if got := f.NoReceivers(); got != want {
		t.Errorf("NoReceivers() = %q\nwant %q", got, want)
	}

	f, err = Parse("kvwatch.yaml", []byte(src), Options{Getenv: env(map[string]string{"KVWATCH_TEAMS_WEBHOOK_URL": "https://example.com/x?sig=s"})})
	if err != nil {
		t.Fatal(err)
	}
	if f.Receivers[0].Off != "" || f.NoReceivers() != "" || len(f.Active()) != 1 {
		t.Errorf("with the URL set: off %q, %q", f.Receivers[0].Off, f.NoReceivers())
	}

	// Set but wrong: an error, naming the variable, never its value.
	_, err = Parse("kvwatch.yaml", []byte(src), Options{Getenv: env(map[string]string{"KVWATCH_TEAMS_WEBHOOK_URL": "http://example.com/x?sig=secret"})})
	expectErrors(t, err, "kvwatch.yaml:4:13: receivers[0].teams.url: |must be https")
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the secret: %v", err)
	}

	// Not optional: an unset variable is an error.
	_, err = Parse("kvwatch.yaml", []byte(strings.ReplaceAll(src, "optional: true\n    teams", "teams")), Options{Getenv: env(nil)})
	if err == nil || !strings.Contains(err.Error(), "environment variable KVWATCH_TEAMS_WEBHOOK_URL is not set") {
		t.Errorf("err = %v", err)
	}
}
