package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const testPack = `rules:
  - id: secret-retrieval-burst
    severity: medium
    kind: threshold
    window: 5m
    count: 25
    cooldown: 15m
    match: {families: [secret]}
    group_by: [vault, caller]
  - id: object-destroyed
    severity: high
    kind: each
    match: {kinds: [delete, purge]}
`

func parsePack(t *testing.T) *File {
	t.Helper()
	p, err := Parse("kvwatch.yaml (embedded)", []byte(testPack), Options{Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Overrides change a pack rule's fields without copying it; the top-level
// except reaches every rule; the rest of the rule stays the pack's.
func TestResolveOverridesAndExcept(t *testing.T) {
	f, err := parseString(`
overrides:
  secret-retrieval-burst:
    count: 50
    window: 10m
    severity: high
    vaults: [kv-prod-*]
    except: [{callers: [backup-job]}]
  object-destroyed:
    enabled: false
except:
  - callers: [scanner@contoso.com]
  - ip_in: [10.1.0.0/16]
rules:
  - {id: mine, kind: each}
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, parsePack(t)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range f.Rules {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"secret-retrieval-burst", "object-destroyed", "mine"}) {
		t.Fatalf("rules %v", ids)
	}
	b := f.Rules[0]
	if b.Count != 50 || b.Window.Duration != 10*time.Minute || b.Severity != "high" || b.Cooldown.Duration != 15*time.Minute ||
		!slices.Equal(b.Match.Vaults, []string{"kv-prod-*"}) || !slices.Equal(b.Match.Families, []string{"secret"}) {
		t.Errorf("overridden rule: %+v", b)
	}
	if len(b.Except) != 3 || b.Except[0].Callers[0] != "backup-job" || b.Except[1].Callers[0] != "scanner@contoso.com" || b.Except[2].IPIn[0] != "10.1.0.0/16" {
		t.Errorf("except of the overridden rule: %+v", b.Except)
	}
	if *f.Rules[1].Enabled || len(f.Rules[1].Except) != 2 || len(f.Rules[2].Except) != 2 {
		t.Errorf("object-destroyed enabled %v, except %d; mine except %d", *f.Rules[1].Enabled, len(f.Rules[1].Except), len(f.Rules[2].Except))
	}
	// The pack itself is not changed.
	if p := parsePack(t); p.Rules[0].Count != 25 {
		t.Error("pack changed")
	}
}

func TestResolveErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		errs       []string
	}{
		{"unknown rule", "overrides:\n  secret-retreival-burst: {count: 50}\n", []string{
			`kvwatch.yaml:2:3: overrides.secret-retreival-burst: |no rule "secret-retreival-burst" to override (did you mean "secret-retrieval-burst"?)`}},
		{"key the kind does not take", "overrides:\n  object-destroyed: {window: 5m, count: 3}\n", []string{
			`kvwatch.yaml:2:22: overrides.object-destroyed.window: |rule object-destroyed is of kind each, which takes no window`,
			`kvwatch.yaml:2:34: overrides.object-destroyed.count: |which takes no count`}},
		{"window not whole buckets", "settings: {bucket: 2m}\noverrides:\n  secret-retrieval-burst: {window: 5m}\n", []string{
			`kvwatch.yaml:3:28: overrides.secret-retrieval-burst.window: |window 5m is not a whole number of buckets (settings.bucket is 2m)`}},
		{"pack off", "default_pack: false\noverrides:\n  object-destroyed: {enabled: false}\n", []string{
			`kvwatch.yaml:3:3: overrides.object-destroyed: |default_pack is false`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseString(c.yaml)
			if err != nil {
				t.Fatal(err)
			}
			before := len(f.Rules)
			expectErrors(t, Resolve(f, parsePack(t)), c.errs...)
			if len(f.Rules) != before {
				t.Error("f changed despite errors")
			}
		})
	}
}

// With no pack (the embedded configuration is the file), Resolve only
// applies the file's own overrides and except.
func TestResolveNoPack(t *testing.T) {
	f, err := Parse("kvwatch.yaml", []byte(testPack+"except: [{app_ids: [\"00000000-0000-0000-0000-000000000001\"]}]\n"), Options{Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := Resolve(f, nil); err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 2 || len(f.Rules[1].Except) != 1 || !strings.HasPrefix(f.Rules[1].Except[0].AppIDs[0], "0000") {
		t.Errorf("rules %+v", f.Rules)
	}
}
