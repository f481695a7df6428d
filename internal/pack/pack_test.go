package pack_test

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/pack"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/ruletest"
)

// packRules is the number of rules the default pack ships.
const packRules = 27

func parseDefault(t *testing.T) *config.File {
	t.Helper()
	f, err := config.Parse("kvwatch.yaml", pack.Config, config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("the embedded kvwatch.yaml does not parse: %v", err)
	}
	return f
}

func TestDefaultConfigIsValid(t *testing.T) {
	f := parseDefault(t)
	if len(f.Rules) != packRules {
		t.Errorf("the default pack has %d rules, want %d", len(f.Rules), packRules)
	}
	seen := map[string]int{}
	for i, r := range f.Rules {
		if r.ID == "" {
			t.Errorf("rule %d has no id", i)
			continue
		}
		if j, dup := seen[r.ID]; dup {
			t.Errorf("rule id %q is used by rules %d and %d", r.ID, j, i)
		}
		seen[r.ID] = i
	}
	if _, _, err := rules.Compile(f); err != nil {
		t.Errorf("the default pack does not compile: %v", err)
	}
}

// TestDefaultPackRuleTests runs tests/*.yaml against the embedded pack and
// checks that every rule has its own tests file with a positive and a
// negative test.
func TestDefaultPackRuleTests(t *testing.T) {
	f := parseDefault(t)
	rs, s, err := rules.Compile(f)
	if err != nil {
		t.Fatalf("the default pack does not compile: %v", err)
	}
	files, err := ruletest.Load(pack.Tests, "tests")
	if err != nil {
		t.Fatalf("load rule tests: %v", err)
	}

	results := ruletest.Run(context.Background(), rs, s, files)
	if len(results) == 0 {
		t.Fatal("no rule tests found under tests/")
	}
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("  %s: %s:\n      %v", r.File, r.Name, r.Err))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d rule tests failed:\n%s", len(failed), len(results), strings.Join(failed, "\n"))
	} else {
		t.Logf("%d rule tests in %d files passed", len(results), len(files))
	}

	// Every rule has tests/<id>.yaml holding a test that expects a finding
	// from it and a test that names it in rules: and says expect: [].
	var missing []string
	for _, r := range rs {
		name := path.Join("tests", r.ID+".yaml")
		file, ok := files[name]
		if !ok {
			missing = append(missing, fmt.Sprintf("  rule %s: no %s", r.ID, name))
			continue
		}
		positive, negative := false, false
		for _, tc := range file.Tests {
			for _, e := range tc.Expect {
				if e.Rule == r.ID {
					positive = true
				}
			}
			// expect: [] decodes to an empty, non-nil list; a test that
			// leaves expect out does not count as a negative test.
			if tc.Expect != nil && len(tc.Expect) == 0 && slices.Contains(tc.Rules, r.ID) {
				negative = true
			}
		}
		if !positive {
			missing = append(missing, fmt.Sprintf("  rule %s: %s has no test expecting a finding from it", r.ID, name))
		}
		if !negative {
			missing = append(missing, fmt.Sprintf("  rule %s: %s has no test with `expect: []` naming it in rules:", r.ID, name))
		}
	}
	// And every tests file is named after a rule of the pack.
	ids := map[string]bool{}
	for _, r := range rs {
		ids[r.ID] = true
	}
	for name := range files {
		id := strings.TrimSuffix(strings.TrimSuffix(path.Base(name), ".yaml"), ".yml")
		if !ids[id] {
			missing = append(missing, fmt.Sprintf("  %s: not named after a rule of the pack", name))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("rule test coverage:\n%s", strings.Join(missing, "\n"))
	}
}

// attack lists the ATT&CK techniques the pack may use, checked against
// attack.mitre.org: a tag that is not here is a typo or an unchecked claim.
var attack = map[string]string{
	"T1078": "Valid Accounts", "T1098": "Account Manipulation", "T1133": "External Remote Services",
	"T1070": "Indicator Removal", "T1485": "Data Destruction", "T1526": "Cloud Service Discovery", "T1552.004": "Unsecured Credentials: Private Keys",
	"T1555.006": "Credentials from Password Stores: Cloud Secrets Management Stores",
	"T1562":     "Impair Defenses", "T1562.007": "Impair Defenses: Disable or Modify Cloud Firewall",
	"T1565": "Data Manipulation", "T1580": "Cloud Infrastructure Discovery",
}

// TestMITRETags checks every tag against the list, and the tags the rules'
// subjects call for: reads T1555.006, weakening T1562, destruction T1485;
// no T1552.001 (credentials in files) for backups, no T1110 (brute force)
// for denials.
func TestMITRETags(t *testing.T) {
	f := parseDefault(t)
	for _, r := range f.Rules {
		for _, tag := range r.Tags {
			if strings.HasPrefix(tag, "T") && attack[tag] == "" {
				t.Errorf("rule %s: tag %s is not a checked ATT&CK technique", r.ID, tag)
			}
		}
		reads := slices.Contains(r.Match.Kinds, "read") && slices.Contains(r.Match.Families, "secret")
		if reads && !slices.Contains(r.Tags, "T1555.006") {
			t.Errorf("rule %s reads secrets but is not tagged T1555.006", r.ID)
		}
		if slices.Contains(r.Match.Outcomes, "denied") && slices.Contains(r.Tags, "T1110") {
			t.Errorf("rule %s: denials are not brute force (T1110)", r.ID)
		}
		if slices.Contains(r.Match.Kinds, "backup") && slices.Contains(r.Tags, "T1552.001") {
			t.Errorf("rule %s: a backup is not credentials in files (T1552.001)", r.ID)
		}
	}
	for id, tag := range map[string]string{"object-destroyed": "T1485", "vault-protection-weakened": "T1562"} {
		for _, r := range f.Rules {
			if r.ID == id && !slices.Contains(r.Tags, tag) {
				t.Errorf("rule %s is not tagged %s", id, tag)
			}
		}
	}
}

// TestExceptionsByIdentity: no rule of the pack excepts events by
// clientInfo, which any caller can send (an attacker would send the
// excepted tool's); platform identities are excepted by object id or app
// id, in a tenant's own file (the templates below).
func TestExceptionsByIdentity(t *testing.T) {
	for _, r := range parseDefault(t).Rules {
		for i, x := range r.Except {
			if len(x.ClientInfo) > 0 {
				t.Errorf("rule %s: except[%d] matches by client_info %v", r.ID, i, x.ClientInfo)
			}
		}
	}
}

// TestExceptionTemplates uncomments the exception templates at the end of
// the pack (from its last "# overrides:") and checks that they are a valid
// kvwatch.yaml once the pack is merged in, matching by identity only.
func TestExceptionTemplates(t *testing.T) {
	s := string(pack.Config)
	i := strings.LastIndex(s, "\n# overrides:\n")
	if i < 0 {
		t.Fatal("no exception templates (# overrides:) at the end of the pack")
	}
	var lines []string
	for _, l := range strings.Split(s[i+1:], "\n") {
		lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
	}
	text := strings.Join(lines, "\n")
	for _, tool := range []string{"AKS Secrets Store CSI", ".NET configuration provider", "Azure DevOps", "Terraform"} {
		if !strings.Contains(s, tool) {
			t.Errorf("the templates do not mention %s", tool)
		}
	}
	if strings.Contains(text, "client_info") {
		t.Error("a template matches by clientInfo, which any caller can send")
	}
	f, err := config.Parse("templates.yaml", []byte(text), config.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("the templates do not parse:\n%s\n%v", text, err)
	}
	if len(f.Overrides) < 5 {
		t.Errorf("%d rules overridden, want the burst, listing, mass and cross-vault rules", len(f.Overrides))
	}
	if err := config.Resolve(f, parseDefault(t)); err != nil {
		t.Fatalf("the templates do not resolve against the pack: %v", err)
	}
	if _, _, err := rules.Compile(f); err != nil {
		t.Fatalf("the templates do not compile: %v", err)
	}
}
