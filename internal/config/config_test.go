package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"
)

// env is a fake environment.
func env(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// fsOptions reads includes from files, a fake file system.
func fsOptions(files map[string]string, vars map[string]string) Options {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return Options{
		Getenv:   env(vars),
		ReadFile: func(name string) ([]byte, error) { return fs.ReadFile(fsys, name) },
		Glob:     func(pattern string) ([]string, error) { return fs.Glob(fsys, pattern) },
	}
}

// parseFiles parses files["kvwatch.yaml"], the rest of files being what it
// may include.
func parseFiles(files map[string]string, vars map[string]string) (*File, error) {
	return Parse("kvwatch.yaml", []byte(files["kvwatch.yaml"]), fsOptions(files, vars))
}

func parseString(src string) (*File, error) {
	return parseFiles(map[string]string{"kvwatch.yaml": src}, nil)
}

// errorLines returns every error's text, checking err is an *Errors.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, not *Errors: %v", err, err)
	}
	if len(errs.List) == 0 {
		t.Fatal("*Errors with no errors")
	}
	var lines []string
	for _, e := range errs.List {
		lines = append(lines, e.Error())
	}
	if got := strings.Join(lines, "\n"); got != err.Error() {
		t.Errorf("Error() = %q, want the errors one per line: %q", err.Error(), got)
	}
	return lines
}

// expectErrors checks that err holds exactly one error per want, in order;
// each want is the error's beginning ("file:line:col: path: ") followed by
// a part of its message.
func expectErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	got := errorLines(t, err)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		prefix, part, _ := strings.Cut(want[i], "|")
		ok = strings.HasPrefix(got[i], prefix) && strings.Contains(got[i][len(prefix):], part)
	}
	if !ok {
		t.Errorf("errors:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestLoadFull(t *testing.T) {
	f, err := Load("../../testdata/config/kvwatch.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range f.Rules {
		ids = append(ids, r.ID)
	}
	wantIDs := []string{"secret-purge", "secret-read-burst", "denied-distinct-secrets", "read-spike",
		"new-caller-ip", "delete-then-purge", "vault-weakened", "after-hours-admin",
		"auth-failures", "key-crypto-burst", "key-backup"}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("rule ids %v, want %v", ids, wantIDs)
	}
	rule := func(id string) *RuleSpec {
		for i := range f.Rules {
			if f.Rules[i].ID == id {
				return &f.Rules[i]
			}
		}
		t.Fatalf("no rule %s", id)
		return nil
	}
	dur := func(d time.Duration) Duration { return Duration{Duration: d, Set: true} }
	yes, no := true, false

	wantSettings := Settings{
		Lateness: dur(20 * time.Minute),
		Bucket:   dur(time.Minute),
		BusinessHours: BusinessHours{Zone: "Europe/Berlin", Days: []string{"mon", "tue", "wed", "thu", "fri"},
			Start: "07:30", End: "19:00"},
		TrustedNetworks: []string{"10.0.0.0/8", "192.168.10.0/24", "2001:db8::/32"},
	}
	if !reflect.DeepEqual(f.Settings, wantSettings) {
		t.Errorf("settings\n%+v, want\n%+v", f.Settings, wantSettings)
	}
	if want := []string{"rules/*.yaml"}; !slices.Equal(f.Include, want) {
		t.Errorf("include %v, want %v", f.Include, want)
	}

	wantBurst := RuleSpec{
		ID: "secret-read-burst", Title: "Many secret reads by one caller", Severity: "high", Enabled: &yes,
		Match: MatchSpec{Families: []string{"secret"}, Kinds: []string{"read", "list"}},
		Except: []MatchSpec{
			{Callers: []string{"00000000-0000-0000-0000-000000000000"}}, // ${KVWATCH_BACKUP_APP:-...}
			{IPIn: []string{"trusted_networks"}},
			{ // merged from &prod-purge, outcomes overridden
				Vaults:     []string{"kv-prod-*"},
				Operations: []string{"SecretPurge", "KeyPurge", "CertificatePurge"},
				Outcomes:   []string{"denied"},
			},
		},
		GroupBy: []string{"caller", "vault"}, Kind: "threshold",
		Window: dur(10 * time.Minute), Count: 200, Cooldown: dur(time.Hour), UpdateOn: defaultUpdateOn("threshold"),
	}
	if got := rule("secret-read-burst"); !reflect.DeepEqual(*got, wantBurst) {
		t.Errorf("secret-read-burst\n%+v, want\n%+v", *got, wantBurst)
	}

	wantWeakened := RuleSpec{
		ID: "vault-weakened", Title: "Vault protection weakened", Severity: "high", Enabled: &yes, Kind: "each",
		Match: MatchSpec{Operations: []string{"VaultPut", "VaultPatch"}, Config: &ConfigMatch{
			Weakened: &yes, NetworkDefaultAction: []string{"Allow"}, PublicNetworkAccess: []string{"Enabled"},
			PurgeProtection: &no, RetentionBelow: 90,
		}},
		Cooldown: dur(0), // given as 0: kept
		UpdateOn: defaultUpdateOn("each"),
	}
	if got := rule("vault-weakened"); !reflect.DeepEqual(*got, wantWeakened) {
		t.Errorf("vault-weakened\n%+v, want\n%+v", *got, wantWeakened)
	}

	// Defaults.
	for _, c := range []struct {
		id   string
		what string
		got  any
		want any
	}{
		{"secret-purge", "cooldown", rule("secret-purge").Cooldown, dur(time.Hour)},
		{"secret-purge", "vaults (alias)", rule("secret-purge").Match.Vaults, []string{"kv-prod-*"}},
		{"after-hours-admin", "vaults (alias)", rule("after-hours-admin").Match.Vaults, []string{"kv-prod-*"}},
		{"denied-distinct-secrets", "severity", rule("denied-distinct-secrets").Severity, "medium"},
		{"denied-distinct-secrets", "cooldown", rule("denied-distinct-secrets").Cooldown, dur(time.Hour)},
		{"denied-distinct-secrets", "status", rule("denied-distinct-secrets").Match.Status, []int{401, 403}},
		{"read-spike", "baseline", *rule("read-spike").Baseline, Baseline{Days: 14, K: 3.5, Ratio: 3, MinCount: 50}},
		{"read-spike", "learning", rule("read-spike").Learning, dur(7 * Day)},
		{"new-caller-ip", "enabled", *rule("new-caller-ip").Enabled, false},
		{"new-caller-ip", "horizon", rule("new-caller-ip").Horizon, dur(2 * Week)},
		{"new-caller-ip", "cooldown", rule("new-caller-ip").Cooldown, dur(time.Hour)},
		{"new-caller-ip", "ip_not_in", rule("new-caller-ip").Match.IPNotIn, []string{"trusted_networks", "203.0.113.7"}},
		{"delete-then-purge", "count", rule("delete-then-purge").Count, 1},
		{"delete-then-purge", "then", *rule("delete-then-purge").Then, MatchSpec{Kinds: []string{"purge"}}},
		{"delete-then-purge", "cooldown", rule("delete-then-purge").Cooldown, dur(30 * time.Minute)},
		{"after-hours-admin", "outside_business_hours", *rule("after-hours-admin").Match.OutsideBusinessHours, true},
		{"key-crypto-burst", "window", rule("key-crypto-burst").Window, dur(90 * time.Minute)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %s = %+v, want %+v", c.id, c.what, c.got, c.want)
		}
	}

	// Written out and read back, the file is the same.
	g := *f
	g.Include = nil // its rules are already in
	out, err := yaml.Marshal(&g)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("written.yaml", out, Options{Getenv: env(nil)})
	if err != nil {
		t.Fatalf("%v\nin\n%s", err, out)
	}
	back.name, back.meta, g.name, g.meta = "", nil, "", nil // where each was read from
	if !reflect.DeepEqual(*back, g) {
		t.Errorf("read back differently:\n%+v\nwant\n%+v\nfrom\n%s", *back, g, out)
	}
}

func TestParseDefaults(t *testing.T) {
	f, err := parseString(`
rules:
  - id: a
    kind: each
  - id: b
    kind: threshold
    window: 10m
    count: 5
  - id: c
    kind: spike
    window: 1h
  - id: d
    kind: new_value
    fields: [caller]
  - id: e
    kind: sequence
    window: 5m
    then: {kinds: [purge]}
`)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Settings
	if s.Lateness != (Duration{15 * time.Minute, true}) || s.Bucket != (Duration{time.Minute, true}) {
		t.Errorf("lateness %v, bucket %v", s.Lateness, s.Bucket)
	}
	want := BusinessHours{Zone: "UTC", Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "08:00", End: "18:00"}
	if !reflect.DeepEqual(s.BusinessHours, want) {
		t.Errorf("business hours %+v, want %+v", s.BusinessHours, want)
	}
	for _, r := range f.Rules {
		if r.Severity != "medium" || r.Enabled == nil || !*r.Enabled {
			t.Errorf("%s: severity %q, enabled %v", r.ID, r.Severity, r.Enabled)
		}
	}
	cooldowns := []time.Duration{time.Hour, 10 * time.Minute, time.Hour, time.Hour, 5 * time.Minute}
	for i, r := range f.Rules {
		if r.Cooldown != (Duration{cooldowns[i], true}) {
			t.Errorf("%s: cooldown %v, want %v", r.ID, r.Cooldown, cooldowns[i])
		}
	}
	if b := f.Rules[2].Baseline; b == nil || *b != (Baseline{Days: 7, K: 3, Ratio: 3, MinCount: 20}) {
		t.Errorf("spike baseline %+v", b)
	}
	if h := f.Rules[3].Horizon; h != (Duration{30 * Day, true}) {
		t.Errorf("new_value horizon %v", h)
	}
	if c := f.Rules[4].Count; c != 1 {
		t.Errorf("sequence count %d", c)
	}
	// Applying them again changes nothing; neither does validating.
	g := *f
	g.Rules = slices.Clone(f.Rules)
	g.ApplyDefaults()
	if !reflect.DeepEqual(&g, f) {
		t.Error("ApplyDefaults is not idempotent")
	}
	if err := f.Validate(); err != nil {
		t.Errorf("Validate after ApplyDefaults: %v", err)
	}
}

// A file with ten different mistakes yields exactly those ten errors, in
// order, each at the key (or list item) at fault.
func TestParseManyMistakes(t *testing.T) {
	src := `settings:
  bucket: 1m
  latenes: 10m
  business_hours:
    days: [mon, funday]
rules:
  - id: Bad_ID
    kind: threshold
    window: 90s
    count: abc
    group_by: vault
  - id: ok-rule
    kind: each
    severity: urgent
    match:
      families: [secrets]
      status: [200, 700]
    runbook: ${RUNBOOK_URL}
    kind: each
`
	_, err := parseFiles(map[string]string{"kvwatch.yaml": src}, map[string]string{"OTHER": "x"})
	expectErrors(t, err,
		`kvwatch.yaml:3:3: settings.latenes: |unknown key "latenes" (did you mean "lateness"?); allowed keys: lateness, bucket, business_hours, trusted_networks`,
		`kvwatch.yaml:5:17: settings.business_hours.days[1]: |unknown day "funday"`,
		`kvwatch.yaml:7:5: rules[0].id: |id "Bad_ID" must be lower-case`,
		`kvwatch.yaml:9:5: rules[0].window: |window 1m30s is not a whole number of buckets (settings.bucket is 1m)`,
		`kvwatch.yaml:10:5: rules[0].count: |expected an integer, got "abc"`,
		`kvwatch.yaml:11:5: rules[0].group_by: |expected a list, got a string (write [vault] for a list of one)`,
		`kvwatch.yaml:14:5: rules[1].severity: |unknown severity "urgent"; one of info, low, medium, high, critical`,
		`kvwatch.yaml:16:18: rules[1].match.families[0]: |unknown family "secrets" (did you mean "secret"?)`,
		`kvwatch.yaml:17:21: rules[1].match.status[1]: |"700" is not an HTTP status`,
		`kvwatch.yaml:18:5: rules[1].runbook: |environment variable RUNBOOK_URL is not set`,
		`kvwatch.yaml:19:5: rules[1].kind: |duplicate key (first at line 13 column 5)`,
	)
}

func TestUnknownKey(t *testing.T) {
	_, err := parseString(`rules:
  - id: a
    kind: each
    matchh: {vaults: [x]}
`)
	lines := errorLines(t, err)
	if len(lines) != 1 {
		t.Fatalf("errors: %q", lines)
	}
	var keys []string
	for i := range reflect.TypeFor[RuleSpec]().NumField() {
		if k, _, _ := strings.Cut(reflect.TypeFor[RuleSpec]().Field(i).Tag.Get("yaml"), ","); k != "" {
			keys = append(keys, k)
		}
	}
	want := `kvwatch.yaml:4:5: rules[0].matchh: unknown key "matchh" (did you mean "match"?); allowed keys: ` + strings.Join(keys, ", ")
	if lines[0] != want {
		t.Errorf("got  %s\nwant %s", lines[0], want)
	}

	// Every level is strict, and a key too far from any is suggested nothing.
	_, err = parseString("version: 2\nrules: [{id: a, kind: spike, window: 1h, baseline: {days: 7, mean: 3}, match: {config: {weakend: true}}}]\n")
	expectErrors(t, err,
		`kvwatch.yaml:1:1: version: |unknown key "version"; allowed keys: settings, include, rules, default_pack, delivery, receivers, routes, silences, mute_intervals`,
		`kvwatch.yaml:2:62: rules[0].baseline.mean: |unknown key "mean"; allowed keys: days, k, ratio, min_count`,
		`kvwatch.yaml:2:89: rules[0].match.config.weakend: |unknown key "weakend" (did you mean "weakened"?)`,
	)
}

func TestEnvExpansion(t *testing.T) {
	secrets := map[string]string{
		"HOOK":    "https://hooks.example.com/s3cr3t-token",
		"COUNT":   "25",
		"BADNUM":  "pa55w0rd-not-a-number",
		"SEV":     "hunter2-severity",
		"ZONE":    "Mars/Olympus-secret",
		"BADDUR":  "tenminutes-secret",
		"NET":     "10.1.2.3/8",
		"EMPTY":   "",
		"PREFIX":  "kv-",
		"DOLLARS": "$$",
	}
	for _, c := range []struct {
		name  string
		yaml  string // a rule's extra keys, or settings when it starts with "settings:"
		check func(*File) any
		want  any
		errs  []string
	}{
		{name: "plain", yaml: "runbook: ${HOOK}", check: func(f *File) any { return f.Rules[0].Runbook }, want: secrets["HOOK"]},
		{name: "inside text", yaml: `title: "vault ${PREFIX}prod ($$5)"`, check: func(f *File) any { return f.Rules[0].Title }, want: "vault kv-prod ($5)"},
		{name: "default unused", yaml: "runbook: ${HOOK:-none}", check: func(f *File) any { return f.Rules[0].Runbook }, want: secrets["HOOK"]},
		{name: "default", yaml: "runbook: ${UNSET:-https://example.com/a:b}", check: func(f *File) any { return f.Rules[0].Runbook }, want: "https://example.com/a:b"},
		{name: "empty default", yaml: "runbook: x${UNSET:-}y", check: func(f *File) any { return f.Rules[0].Runbook }, want: "xy"},
		{name: "empty is unset", yaml: "runbook: ${EMPTY:-dflt}", check: func(f *File) any { return f.Rules[0].Runbook }, want: "dflt"},
		{name: "dollar dollar", yaml: "runbook: $${HOOK} costs $$$$ and $5", check: func(f *File) any { return f.Rules[0].Runbook }, want: "${HOOK} costs $$ and $5"},
		{name: "not expanded twice", yaml: "runbook: ${DOLLARS}{HOOK}", check: func(f *File) any { return f.Rules[0].Runbook }, want: "$${HOOK}"},
		{name: "lone dollar", yaml: "title: $HOOK $", check: func(f *File) any { return f.Rules[0].Title }, want: "$HOOK $"},
		{name: "before conversion", yaml: "kind: threshold\n    window: 5m\n    count: ${COUNT}", check: func(f *File) any { return f.Rules[0].Count }, want: 25},
		{name: "in a list", yaml: "match: {vaults: [\"${PREFIX}*\"]}", check: func(f *File) any { return f.Rules[0].Match.Vaults }, want: []string{"kv-*"}},
		{name: "duration", yaml: "cooldown: ${UNSET:-2h}", check: func(f *File) any { return f.Rules[0].Cooldown }, want: Duration{2 * time.Hour, true}},

		{name: "missing", yaml: "runbook: ${MISSING}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].runbook: environment variable MISSING is not set (write ${MISSING:-default} to give a default)`}},
		{name: "missing twice", yaml: "runbook: ${A1}/${A2}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].runbook: environment variable A1 is not set`,
			`kvwatch.yaml:4:5: rules[0].runbook: environment variable A2 is not set`}},
		{name: "unterminated", yaml: "runbook: ${HOOK", errs: []string{
			`kvwatch.yaml:4:5: rules[0].runbook: unterminated ${ (write $$ for a literal $)`}},
		{name: "bad name", yaml: "runbook: ${9LIVES}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].runbook: invalid variable name "9LIVES" in ${...}`}},
		{name: "empty name", yaml: "runbook: ${}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].runbook: invalid variable name "" in ${...}`}},
		{name: "not a number", yaml: "kind: threshold\n    window: 5m\n    count: ${BADNUM}", errs: []string{
			`kvwatch.yaml:5:5: rules[0].count: expected an integer, got the value of ${BADNUM}`}},
		{name: "not a duration", yaml: "cooldown: ${BADDUR}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].cooldown: duration the value of ${BADDUR} is not a duration`}},
		{name: "bad severity", yaml: "severity: ${SEV}", errs: []string{
			`kvwatch.yaml:4:5: rules[0].severity: unknown severity the value of ${SEV}; one of`}},
		{name: "two variables", yaml: "match: {families: [\"${SEV}${PREFIX}\"]}", errs: []string{
			`kvwatch.yaml:4:24: rules[0].match.families[0]: unknown family the value made from ${SEV}, ${PREFIX}; one of`}},
		{name: "bad network", yaml: "match: {ip_in: [\"${NET}\"]}", errs: []string{
			`kvwatch.yaml:4:21: rules[0].match.ip_in[0]: the value of ${NET} has bits set beyond the prefix length (did you mean the network address?)`}},
		{name: "bad zone", yaml: "settings:\n  business_hours: {zone: '${ZONE}'}", errs: []string{
			`kvwatch.yaml:2:20: settings.business_hours.zone: unknown time zone the value of ${ZONE}`}},
		{name: "keys are not expanded", yaml: "${HOOK}: x", errs: []string{
			`kvwatch.yaml:4:5: rules[0].${HOOK}: unknown key "${HOOK}"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "rules:\n  - id: a\n    kind: each\n    " + c.yaml + "\n"
			if strings.HasPrefix(c.yaml, "kind:") {
				src = "rules:\n  - id: a\n    " + c.yaml + "\n"
			}
			if strings.HasPrefix(c.yaml, "settings:") {
				src = c.yaml + "\nrules:\n  - id: a\n    kind: each\n"
			}
			f, err := parseFiles(map[string]string{"kvwatch.yaml": src}, secrets)
			if c.errs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.check(f); !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %#v, want %#v", got, c.want)
				}
				return
			}
			lines := errorLines(t, err)
			if len(lines) != len(c.errs) {
				t.Fatalf("errors:\n%s\nwant %d", strings.Join(lines, "\n"), len(c.errs))
			}
			for i, want := range c.errs {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("got  %s\nwant %s...", lines[i], want)
				}
			}
			// No message shows a variable's value.
			for _, line := range lines {
				for name, value := range secrets {
					if len(value) > 3 && strings.Contains(line, value) {
						t.Errorf("%s shows the value of %s", line, name)
					}
				}
			}
		})
	}
}

func TestIncludes(t *testing.T) {
	rule := func(id string) string { return "  - id: " + id + "\n    kind: each\n" }
	for _, c := range []struct {
		name  string
		files map[string]string
		ids   []string
		errs  []string
	}{
		{
			name: "glob, in order, after the main file's rules",
			files: map[string]string{
				"kvwatch.yaml":      "include: [rules/*.yaml, extra.yaml]\nrules:\n" + rule("main"),
				"rules/20-b.yaml":   "rules:\n" + rule("b1") + rule("b2"),
				"rules/10-a.yaml":   "rules:\n" + rule("a"),
				"rules/notes.txt":   "not yaml: [",
				"extra.yaml":        "rules:\n" + rule("extra"),
				"rules/empty.yaml":  "# nothing yet\n",
				"other/kvwatch.yml": "rules:\n" + rule("never"),
			},
			ids: []string{"main", "a", "b1", "b2", "extra"},
		},
		{
			name: "a file matched twice is read once; the main file is skipped",
			files: map[string]string{
				"kvwatch.yaml": "include: ['*.yaml', b.yaml]\n",
				"a.yaml":       "rules:\n" + rule("a"),
				"b.yaml":       "rules:\n" + rule("b"),
			},
			ids: []string{"a", "b"},
		},
		{
			name: "error inside an included file",
			files: map[string]string{
				"kvwatch.yaml":  "include: [rules/*.yaml]\n",
				"rules/a.yaml":  "rules:\n" + rule("a"),
				"rules/b.yaml":  "rules:\n  - id: b\n    kind: threshold\n    window: 5m\n    count: -1\n    group_by: [caller, nobody]\n",
				"rules/c.yaml":  "rules:\n  - id: c\n    kind: each\n    severity: HIGH\n",
				"rules/d.yaml":  "rules:\n  - id: [d]\n    kind: each\n",
				"rules/e.yaml":  "rules:\n  - id: e\n    kind: each\n    foo: 1\n",
				"rules/f.yaml":  "settings: {bucket: 1m}\ninclude: [x]\nrules: []\n",
				"rules/g.yaml":  "rules:\n  - id: g\n    kind: each\n   bad indent: [\n",
				"rules/h.yaml":  "- id: h\n",
				"rules/ok.yaml": "rules:\n" + rule("ok"),
			},
			errs: []string{
				`rules/b.yaml:5:5: rules[0].count: count must be at least 1`,
				`rules/b.yaml:6:24: rules[0].group_by[1]: unknown field "nobody"`,
				`rules/c.yaml:4:5: rules[0].severity: unknown severity "HIGH" (did you mean "high"?)`,
				`rules/d.yaml:2:5: rules[0].id: expected a single value, got a list`,
				`rules/e.yaml:4:5: rules[0].foo: unknown key "foo"`,
				`rules/f.yaml:1:1: settings: unknown key "settings": settings belongs in the main config file; an included file holds only rules`,
				`rules/f.yaml:2:1: include: unknown key "include": include belongs in the main config file`,
				`rules/g.yaml:2: invalid YAML: did not find expected '-' indicator`,
				`rules/h.yaml:1:1: expected a mapping (keys: rules), got a list`,
			},
		},
		{
			name: "duplicate ids across files name the first",
			files: map[string]string{
				"conf/kvwatch.yaml":   "include: [rules/*.yaml]\nrules:\n" + rule("x") + rule("y"),
				"conf/rules/one.yaml": "\nrules:\n" + rule("z") + rule("y"),
				"conf/rules/two.yaml": "rules:\n" + rule("x") + rule("z"),
			},
			errs: []string{
				`conf/rules/one.yaml:5:5: rules[1].id: duplicate rule id "y" (first defined at conf/kvwatch.yaml:5:5)`,
				`conf/rules/two.yaml:2:5: rules[0].id: duplicate rule id "x" (first defined at conf/kvwatch.yaml:3:5)`,
				`conf/rules/two.yaml:4:5: rules[1].id: duplicate rule id "z" (first defined at conf/rules/one.yaml:3:5)`,
			},
		},
		{
			name: "patterns that match nothing, or are malformed",
			files: map[string]string{
				"dir/sub/x.yaml": "rules: []\n",
				"kvwatch.yaml":   "include:\n  - dir/*\n  - rules/*.yaml\n  - kvwatch.yaml\n  - '[x'\n  - ''\n  - ${RULES_DIR:-missing}/*.yml\n  - ${RULES_DIR}\n",
			},
			errs: []string{
				`kvwatch.yaml:2:5: include[0]: included file dir/sub: cannot read: `,
				`kvwatch.yaml:3:5: include[1]: "rules/*.yaml" matches no files`,
				`kvwatch.yaml:4:5: include[2]: "kvwatch.yaml" matches no files`,
				`kvwatch.yaml:5:5: include[3]: bad pattern "[x": syntax error in pattern`,
				`kvwatch.yaml:6:5: include[4]: empty include pattern`,
				`kvwatch.yaml:7:5: include[5]: the value of ${RULES_DIR} matches no files`,
				`kvwatch.yaml:8:5: include[6]: environment variable RULES_DIR is not set`,
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			main := "kvwatch.yaml"
			if _, ok := c.files[main]; !ok {
				main = "conf/kvwatch.yaml"
			}
			f, err := Parse(main, []byte(c.files[main]), fsOptions(c.files, nil))
			if c.errs == nil {
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range f.Rules {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(ids, c.ids) {
					t.Errorf("rules %v, want %v", ids, c.ids)
				}
				return
			}
			lines := errorLines(t, err)
			if len(lines) != len(c.errs) {
				t.Fatalf("errors:\n%s\nwant %d", strings.Join(lines, "\n"), len(c.errs))
			}
			for i, want := range c.errs {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("got  %s\nwant %s...", lines[i], want)
				}
			}
		})
	}
}

func TestLoadIncludesFromDisk(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kvwatch.yaml", "include: [rules/*.yaml]\n")
	write("rules/a.yaml", "rules:\n  - id: a\n    kind: each\n    runbook: ${RB}\n")
	f, err := Load(filepath.Join(dir, "kvwatch.yaml"), env(map[string]string{"RB": "https://x"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 1 || f.Rules[0].Runbook != "https://x" {
		t.Errorf("rules %+v", f.Rules)
	}

	_, err = Load(filepath.Join(dir, "kvwatch.yaml"), env(nil))
	expectErrors(t, err, filepath.Join(dir, "rules/a.yaml")+":4:5: rules[0].runbook: |environment variable RB is not set")

	_, err = Load(filepath.Join(dir, "nope.yaml"), nil)
	expectErrors(t, err, filepath.Join(dir, "nope.yaml")+": |no such file")
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "90s", want: 90 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "2w", want: 14 * 24 * time.Hour},
		{in: "1w2d12h", want: (7+2)*24*time.Hour + 12*time.Hour},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "0.5d", want: 12 * time.Hour},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "0s", want: 0},
		{in: "-5m", err: "must not be negative"},
		{in: "-0", err: "not a duration"},
		{in: "-0s", err: "not a duration"},
		{in: "5", err: "missing a unit"},
		{in: "1h30", err: "missing a unit"},
		{in: "abc", err: "not a duration"},
		{in: "", err: "not a duration"},
		{in: "5x", err: "not a duration"},
		{in: "5 m", err: "not a duration"},
		{in: " 5m", err: "not a duration"},
		{in: "1h-5m", err: "not a duration"},
		{in: "+5m", err: "not a duration"},
		{in: "5D", err: "not a duration"},
		{in: ".", err: "not a duration"},
		{in: "d", err: "not a duration"},
		{in: "99999999999w", err: "too long"},
		{in: "9223372036s", want: 9223372036 * time.Second},
		{in: "9223372037s", err: "too long"},
		{in: "15250w1w", err: "too long"},
	} {
		got, err := ParseDuration(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ParseDuration(%q): %v", c.in, err)
		case c.err == "" && got != c.want:
			t.Errorf("ParseDuration(%q) = %v, want %v", c.in, got, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseDuration(%q) = %v, %v; want an error containing %q", c.in, got, err, c.err)
		}
		if err == nil {
			if back, err := ParseDuration(FormatDuration(got)); err != nil || back != got {
				t.Errorf("FormatDuration(%v) = %q reads back as %v, %v", got, FormatDuration(got), back, err)
			}
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0", 90 * time.Second: "1m30s", 36 * time.Hour: "1d12h", 15 * Day: "2w1d", 1500 * time.Millisecond: "1.5s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}

	// In a file: Set says whether it was given.
	f, err := parseString("rules:\n  - {id: a, kind: each, cooldown: 0}\n  - {id: b, kind: new_value, fields: [ip], horizon: 7d, learning: ~}\n")
	if err != nil {
		t.Fatal(err)
	}
	if c := f.Rules[0].Cooldown; c != (Duration{0, true}) {
		t.Errorf("cooldown: 0 gave %+v", c)
	}
	if h, l := f.Rules[1].Horizon, f.Rules[1].Learning; h != (Duration{7 * Day, true}) || l.Set {
		t.Errorf("horizon %+v, learning %+v", h, l)
	}
	_, err = parseString("settings:\n  lateness: -5m\n  bucket: [1m]\nrules:\n  - {id: a, kind: threshold, count: 1, window: 10}\n")
	expectErrors(t, err,
		`kvwatch.yaml:2:3: settings.lateness: |duration "-5m" must not be negative`,
		`kvwatch.yaml:3:3: settings.bucket: |expected a single value, got a list`,
		`kvwatch.yaml:5:40: rules[0].window: |duration "10" is missing a unit`,
	)

	// yaml.Unmarshal directly works too.
	var d struct{ D, E Duration }
	if err := yaml.Unmarshal([]byte("d: 1d\ne: ~"), &d); err != nil || d.D != (Duration{Day, true}) || d.E.Set {
		t.Errorf("yaml.Unmarshal: %+v, %v", d, err)
	}
	if err := yaml.Unmarshal([]byte("d: 1 day"), &d); err == nil {
		t.Error("yaml.Unmarshal accepted 1 day")
	}
}

// Each case is one rule (or settings) with its mistakes.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		errs []string // "line:col: path: |message part"
	}{
		{"valid minimal", "rules:\n  - id: a.b_c-1\n    kind: each\n", nil},
		{"empty file", "", nil},
		{"comments only", "# nothing\n", nil},
		{"null rules", "rules:\nsettings: ~\n", nil},
		{"id required", "rules:\n  - kind: each\n  - {title: x, kind: each}\n", []string{
			"2:5: rules[0].id: |id is required",
			"3:5: rules[1].id: |id is required"}},
		{"null rule", "rules:\n  -\n", []string{
			"2:4: rules[0].id: |id is required",
			"2:4: rules[0].kind: |kind is required"}},
		{"bad ids", "rules:\n  - {id: -a, kind: each}\n  - {id: a b, kind: each}\n  - {id: Ab, kind: each}\n", []string{
			"2:6: rules[0].id: |must be lower-case",
			"3:6: rules[1].id: |must be lower-case",
			"4:6: rules[2].id: |must be lower-case"}},
		{"duplicate id", "rules:\n  - {id: a, kind: each}\n  - {id: a, kind: each}\n", []string{
			`3:6: rules[1].id: |duplicate rule id "a" (first defined at kvwatch.yaml:2:6)`}},
		{"kind", "rules:\n  - {id: a}\n  - {id: b, kind: counter}\n", []string{
			"2:5: rules[0].kind: |kind is required: one of each, threshold, distinct, spike, new_value, sequence",
			`3:13: rules[1].kind: |unknown kind "counter"`}},
		{"each takes no window", "rules:\n  - {id: a, kind: each, window: 5m, count: 3, field: ip, baseline: {}}\n", []string{
			"2:25: rules[0].window: |each rules take no window (only threshold, distinct, spike, sequence and access_grant rules do)",
			"2:37: rules[0].count: |each rules take no count",
			"2:47: rules[0].field: |each rules take no field (only distinct rules do)",
			"2:58: rules[0].baseline: |each rules take no baseline (only spike rules do)"}},
		{"threshold", "rules:\n  - id: a\n    kind: threshold\n  - id: b\n    kind: threshold\n    window: 0\n    count: 0\n    fields: [ip]\n", []string{
			"2:5: rules[0].window: |threshold rules need a window",
			"2:5: rules[0].count: |threshold rules need a count",
			"6:5: rules[1].window: |window must be positive",
			"7:5: rules[1].count: |count must be at least 1",
			"8:5: rules[1].fields: |threshold rules take no fields (only new_value rules do)"}},
		{"distinct", "rules:\n  - id: a\n    kind: distinct\n    window: 1h\n    count: 1\n  - id: b\n    kind: distinct\n    window: 1h\n    count: 5\n    field: secret\n", []string{
			"2:5: rules[0].field: |distinct rules need a field",
			"5:5: rules[0].count: |count must be at least 2 distinct values",
			`10:5: rules[1].field: |unknown field "secret"`}},
		{"spike", "rules:\n  - id: a\n    kind: spike\n    window: 7m\n    baseline: {days: 0, k: -1, ratio: 0.5, min_count: ~}\n  - id: b\n    kind: spike\n", []string{
			"4:5: rules[0].window: |a spike window must divide a day evenly (like 5m, 1h or 6h), not 7m",
			"5:16: rules[0].baseline.days: |must be positive",
			"5:25: rules[0].baseline.k: |must be positive",
			"6:5: rules[1].window: |spike rules need a window"}},
		{"new_value", "rules:\n  - id: a\n    kind: new_value\n    horizon: 0\n  - id: b\n    kind: new_value\n    fields: [caller, callers]\n    window: 1h\n", []string{
			"2:5: rules[0].fields: |new_value rules need fields",
			"4:5: rules[0].horizon: |horizon must be positive",
			`7:22: rules[1].fields[1]: |unknown field "callers" (did you mean "caller"?)`,
			"8:5: rules[1].window: |new_value rules take no window"}},
		{"sequence", "rules:\n  - id: a\n    kind: sequence\n    count: 0\n", []string{
			"2:5: rules[0].window: |sequence rules need a window",
			"2:5: rules[0].then: |sequence rules need then",
			"4:5: rules[0].count: |count must be at least 1"}},
		{"then is checked", "rules:\n  - {id: a, kind: sequence, window: 1m, then: {kinds: [purged]}}\n", []string{
			`2:56: rules[0].then.kinds[0]: |unknown kind "purged" (did you mean "purge"?)`}},
		{"group_by", "rules:\n  - {id: a, kind: each, group_by: [vault, user]}\n", []string{
			`2:43: rules[0].group_by[1]: |unknown field "user"; fields are vault, subscription`}},
		{"match", `rules:
  - id: a
    kind: each
    match:
      operations: [SecretGet, ""]
      families: [Secret]
      kinds: [read, write, nope]
      outcomes: [success, forbidden]
      status: [99, 100, 599, 600]
      vaults: [""]
      callers: [""]
      app_ids: [""]
      objects: [""]
      client_info: [""]
      object_types: [secret, secrets]
      ip_in: [10.0.0.0/8, 10.1.2.3, "::1", trusted_networks, 10.0.0.1/8, 10.0.0.0/33, fe80::1%eth0, nowhere]
      ip_not_in: [2001:db8::/32, 2001:db8::1/32]
      config:
        network_default_action: [allow, Deny, Open]
        public_network_access: [Enabled, disabled, maybe]
        retention_below_days: -1
    except:
      - families: [vaults]
`, []string{
			"5:31: rules[0].match.operations[1]: |must not be empty",
			`6:18: rules[0].match.families[0]: |unknown family "Secret" (did you mean "secret"?)`,
			`7:28: rules[0].match.kinds[2]: |unknown kind "nope"`,
			`8:27: rules[0].match.outcomes[1]: |unknown outcome "forbidden"`,
			`9:16: rules[0].match.status[0]: |"99" is not an HTTP status (100 to 599)`,
			`9:30: rules[0].match.status[3]: |"600" is not an HTTP status`,
			"10:16: rules[0].match.vaults[0]: |must not be empty",
			"11:17: rules[0].match.callers[0]: |must not be empty",
			"12:17: rules[0].match.app_ids[0]: |must not be empty",
			"13:17: rules[0].match.objects[0]: |must not be empty",
			"14:21: rules[0].match.client_info[0]: |must not be empty",
			`15:30: rules[0].match.object_types[1]: |unknown object type "secrets" (did you mean "secret"?)`,
			`16:62: rules[0].match.ip_in[4]: |"10.0.0.1/8" has bits set beyond the prefix length (did you mean "10.0.0.0/8"?)`,
			`16:74: rules[0].match.ip_in[5]: |"10.0.0.0/33" is not a CIDR`,
			`16:87: rules[0].match.ip_in[6]: |"fe80::1%eth0" is not a CIDR`,
			`16:101: rules[0].match.ip_in[7]: |"nowhere" is not a CIDR`,
			`17:34: rules[0].match.ip_not_in[1]: |"2001:db8::1/32" has bits set`,
			`19:47: rules[0].match.config.network_default_action[2]: |"Open" is not Allow or Deny`,
			`20:52: rules[0].match.config.public_network_access[2]: |"maybe" is not Enabled or Disabled`,
			"21:9: rules[0].match.config.retention_below_days: |must not be negative",
			`23:20: rules[0].except[0].families[0]: |unknown family "vaults" (did you mean "vault"?)`}},
		{"types", `rules:
  - id: a
    kind: each
    enabled: yes
    tags: {a: b}
    match: [x]
    except: {vaults: [x]}
    then: 5
    runbook: [a, b]
    title: {a: 1}
  - id: b
    kind: spike
    window: 1h
    baseline: {days: 7.5, k: three, ratio: .inf, min_count: 99999999999999999999}
    match:
      status: ["abc"]
      outside_business_hours: 1
`, []string{
			`4:5: rules[0].enabled: |expected true or false, got "yes"`,
			"5:5: rules[0].tags: |expected a list, got a mapping",
			"6:5: rules[0].match: |expected a mapping (keys: operations, families",
			"7:5: rules[0].except: |expected a list, got a mapping",
			"8:5: rules[0].then: |expected a mapping",
			"9:5: rules[0].runbook: |expected a single value, got a list",
			"10:5: rules[0].title: |expected a single value, got a mapping",
			`14:16: rules[1].baseline.days: |expected an integer, got "7.5"`,
			`14:27: rules[1].baseline.k: |expected a number, got "three"`,
			`14:37: rules[1].baseline.ratio: |expected a number, got ".inf"`,
			`14:50: rules[1].baseline.min_count: |integer "99999999999999999999" is out of range`,
			`16:16: rules[1].match.status[0]: |expected an integer, got "abc"`,
			`17:7: rules[1].match.outside_business_hours: |expected true or false, got "1"`}},
		{"root", "- a\n- b\n", []string{"1:1: |expected a mapping (keys: settings, include, rules, default_pack, delivery, receivers, routes, silences, mute_intervals, overrides, except, inhibit), got a list"}},
		{"scalar root", "hello\n", []string{"1:1: |expected a mapping"}},
		{"rules not a list", "rules: {id: a}\n", []string{"1:1: rules: |expected a list, got a mapping"}},
		{"duplicate keys", "settings: {}\nrules: []\nsettings: {bucket: 2m}\n", []string{
			"3:1: settings: |duplicate key (first at line 1 column 1)"}},
		{"non-string key", "rules:\n  - {id: a, kind: each, [x]: 1}\n", []string{
			"2:25: rules[0]: |a key must be a string, got a list"}},
		{"syntax error", "rules:\n  - id: a\n   kind: each\n", []string{"2: |invalid YAML: did not find expected '-' indicator"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"2:1: |a second YAML document (---) is not allowed"}},
		{"unknown anchor", "rules: *nope\n", []string{"|invalid YAML: unknown anchor 'nope' referenced"}},
		{"settings", `settings:
  lateness: 0
  bucket: 0
  business_hours:
    zone: Europe/Berln
    days: [mon, Tue, mon, holiday]
    start: "8:00"
    end: "24:00"
  trusted_networks: [10.0.0.0/8, 10.0.0.1, 300.0.0.0/8, trusted_networks]
rules:
  - {id: a, kind: threshold, window: 90s, count: 1}
`, []string{
			"2:3: settings.lateness: |must be positive",
			"3:3: settings.bucket: |must be positive",
			`5:5: settings.business_hours.zone: |unknown time zone "Europe/Berln"`,
			`6:17: settings.business_hours.days[1]: |unknown day "Tue" (did you mean "tue"?); days are mon, tue, wed, thu, fri, sat, sun`,
			`6:22: settings.business_hours.days[2]: |"mon" is listed twice`,
			`6:27: settings.business_hours.days[3]: |unknown day "holiday"`,
			`7:5: settings.business_hours.start: |time of day "8:00" must be written "HH:MM"`,
			`8:5: settings.business_hours.end: |time of day "24:00" must be written "HH:MM"`,
			`9:44: settings.trusted_networks[2]: |"300.0.0.0/8" is not a CIDR`,
			`9:57: settings.trusted_networks[3]: |trusted_networks cannot name itself`}},
		{"hours", "settings:\n  business_hours: {start: '18:00', end: '08:00'}\n", []string{
			"2:36: settings.business_hours.end: |business hours must start before they end (start 18:00, end 08:00)"}},
		{"hours default end", "settings:\n  business_hours: {zone: Local, start: '19:00'}\n", []string{
			`2:20: settings.business_hours.zone: |"Local" depends on the machine`,
			"2:33: settings.business_hours.start: |business hours must start before they end (start 19:00, end 18:00)"}},
		{"bucket divides windows", "settings: {bucket: 5m}\nrules:\n  - {id: a, kind: threshold, window: 12m, count: 1}\n  - {id: b, kind: distinct, window: 1h, count: 2, field: ip}\n", []string{
			"3:30: rules[0].window: |window 12m is not a whole number of buckets (settings.bucket is 5m)"}},
		{"anchors, aliases and merges", `rules:
  - &base
    id: a
    kind: threshold
    window: &w 10m
    count: 5
    match: &m {families: [secret]}
  - <<: *base
    id: b
    window: *w
    match: *m
  - <<: [*base]
    id: c
`, nil},
		{"merge keeps errors in place", "rules:\n  - &base {id: a, kind: each, severity: hgih}\n  - <<: *base\n    id: b\n  - <<: 5\n    id: c\n    kind: each\n", []string{
			`2:31: rules[0].severity: |unknown severity "hgih" (did you mean "high"?)`,
			`2:31: rules[1].severity: |unknown severity "hgih"`, // merged into b
			"5:5: rules[2].<<: |a merge (<<) takes a mapping or a list of mappings, got an integer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseString(c.yaml)
			var want []string
			for _, e := range c.errs {
				if strings.HasPrefix(e, "|") {
					want = append(want, "kvwatch.yaml: "+e)
				} else {
					want = append(want, "kvwatch.yaml:"+e)
				}
			}
			if want == nil && err != nil {
				t.Fatal(err)
			}
			if want != nil {
				expectErrors(t, err, want...)
			}
		})
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	f := &File{Rules: []RuleSpec{
		{ID: "a", Kind: "threshold", Window: Duration{Duration: 5 * time.Minute}, Count: 3},
		{ID: "a", Kind: "each", Cooldown: Duration{Duration: -time.Minute}},
	}}
	expectErrors(t, f.Validate(),
		`rules[1].id: |duplicate rule id "a" (first defined at rules[0].id)`,
		`rules[1].cooldown: |must not be negative`,
	)
	f.Rules = f.Rules[:1]
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	f.ApplyDefaults()
	if r := f.Rules[0]; r.Window != (Duration{5 * time.Minute, false}) || r.Cooldown != (Duration{5 * time.Minute, true}) {
		t.Errorf("window %+v, cooldown %+v", r.Window, r.Cooldown)
	}
}

func TestErrors(t *testing.T) {
	_, err := parseString("rules:\n  - {id: B, kind: each}\n  - {id: c, kind: nope}\nfoo: 1\n")
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 3 {
		t.Fatalf("%v", err)
	}
	var first *Error
	if !errors.As(err, &first) || first != errs.List[0] {
		t.Errorf("errors.As(*Error) = %v", first)
	}
	want := Error{File: "kvwatch.yaml", Line: 2, Column: 6, Path: "rules[0].id"}
	if got := *errs.List[0]; got.File != want.File || got.Line != want.Line || got.Column != want.Column || got.Path != want.Path {
		t.Errorf("first error %+v, want %+v", got, want)
	}
	for i := 1; i < len(errs.List); i++ {
		if a, b := errs.List[i-1], errs.List[i]; a.Line > b.Line || a.Line == b.Line && a.Column > b.Column {
			t.Errorf("not sorted: %v before %v", a, b)
		}
	}
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 1, Column: 2, Path: "p", Msg: "m"}, "f:1:2: p: m"},
		{Error{File: "f", Line: 1, Msg: "m"}, "f:1: m"},
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{Path: "p", Msg: "m"}, "p: m"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

// Aliases that expand into each other stop early instead of eating the
// machine, and so does a flood of mistakes.
func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("settings:\n  trusted_networks: &a0 [x, x, x, x, x, x, x, x, x, x]\nrules:\n")
	b.WriteString("  - &r0 {id: a, kind: each, except: [&m0 {vaults: *a0, callers: *a0}, *m0, *m0, *m0, *m0, *m0, *m0, *m0, *m0, *m0]}\n")
	b.WriteString("  - &r1 [*r0, *r0, *r0, *r0, *r0, *r0, *r0, *r0, *r0, *r0]\n")
	for i := 0; i < 12000; i++ {
		b.WriteString("  - *r0\n")
	}
	start := time.Now()
	_, err := parseString(b.String())
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	if !strings.Contains(err.Error(), "too many nodes (aliases expanding into each other?)") {
		t.Error("the alias limit was not reached")
	}
	lines := errorLines(t, err)
	if len(lines) != maxErrors+1 || !strings.Contains(lines[maxErrors], "too many errors") {
		t.Errorf("%d errors, the last %q", len(lines), lines[len(lines)-1])
	}

	// The classic alias bomb.
	bomb := `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
rules: [*g, *g, *g]
settings: {trusted_networks: *g}
`
	start = time.Now()
	_, err = parseString(bomb)
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	// A merge of the mapping it is in ends, whatever the parser makes of it.
	if _, err := parseString("rules:\n  - &x {id: a, kind: each, <<: *x}\n"); err != nil {
		t.Log(err)
	}
}

// Every field of the schema has a yaml key and a type the decoder knows,
// so a field added later cannot be silently impossible to set.
func TestSchemaDecodable(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(t2 reflect.Type, where string)
	check = func(typ reflect.Type, where string) {
		switch {
		case typ == durationType, scalarKind(typ.Kind()):
		case typ.Kind() == reflect.Pointer, typ.Kind() == reflect.Slice:
			check(typ.Elem(), where)
		case typ.Kind() == reflect.Map && typ.Key().Kind() == reflect.String:
			check(typ.Elem(), where)
		case typ.Kind() == reflect.Struct:
			if seen[typ] {
				return
			}
			seen[typ] = true
			for i := range typ.NumField() {
				sf := typ.Field(i)
				if !sf.IsExported() {
					continue // the decoder leaves it alone
				}
				name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
				if name == "" && sf.IsExported() {
					t.Errorf("%s.%s has no yaml key", typ, sf.Name)
				}
				check(sf.Type, typ.String()+"."+sf.Name)
			}
		default:
			t.Errorf("%s: the decoder cannot decode a %s", where, typ)
		}
	}
	check(reflect.TypeFor[File](), "File")
	check(reflect.TypeFor[RulesFile](), "RulesFile")
}

// The decoder handles types the schema does not use yet.
func TestDecodeOtherTypes(t *testing.T) {
	type other struct {
		Labels map[string]int `yaml:"labels"`
		Small  int8           `yaml:"small"`
		Count  uint           `yaml:"count"`
		Ratio  float32        `yaml:"ratio"`
		Chan   chan int       `yaml:"chan"`
	}
	decode := func(src string) (other, error) {
		var v other
		p := &loader{opts: Options{Getenv: env(map[string]string{"N": "7"})}, errs: newCollector(), meta: newMeta()}
		p.decodeFile("x.yaml", []byte(src), reflect.ValueOf(&v).Elem())
		return v, p.errs.err()
	}
	v, err := decode("labels: {a: 1, b: '${N}'}\nsmall: -5\ncount: 3\nratio: 0.5\n")
	if err != nil || !reflect.DeepEqual(v, other{Labels: map[string]int{"a": 1, "b": 7}, Small: -5, Count: 3, Ratio: 0.5}) {
		t.Errorf("%+v, %v", v, err)
	}
	_, err = decode("labels: {a: x, a: 2}\nsmall: 300\ncount: -1\nratio: 1e50\nchan: 1\n")
	expectErrors(t, err,
		`x.yaml:1:10: labels.a: |expected an integer, got "x"`,
		`x.yaml:1:16: labels.a: |duplicate key (first at line 1 column 10)`,
		`x.yaml:2:1: small: |integer "300" is out of range`,
		`x.yaml:3:1: count: |expected a whole number (0 or more), got "-1"`,
		`x.yaml:4:1: ratio: |expected a number, got "1e50"`,
		`x.yaml:5:1: chan: |cannot be decoded into a chan int`,
	)
}
