package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/rules"
)

// csiOID is the demo day's AKS Secrets Store CSI driver identity (demo's
// principals["aks-csi"]).
const csiOID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"

// The demo tenant's configuration differs from the shipped one only by its
// exception: the CSI driver's rollout is no secret-retrieval-burst, by the
// driver's object id, on its vault; everything else (settings, receivers,
// routes, every other rule) is the shipped configuration's.
func TestDemoConfig(t *testing.T) {
	getenv := func(string) string { return "" }
	demoCfg, err := demoConfig(getenv)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := loadConfig("", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(demoCfg.Settings, shipped.Settings) || !reflect.DeepEqual(demoCfg.Receivers, shipped.Receivers) ||
		!reflect.DeepEqual(demoCfg.Routes, shipped.Routes) || !reflect.DeepEqual(demoCfg.Inhibit, shipped.Inhibit) {
		t.Error("the demo configuration's settings, receivers, routes or inhibitions are not the shipped ones")
	}
	dr, _, err := rules.Compile(demoCfg)
	if err != nil {
		t.Fatal(err)
	}
	sr, _, err := rules.Compile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if len(dr) != len(sr) {
		t.Fatalf("%d rules, shipped %d", len(dr), len(sr))
	}
	csi := &audit.Event{Vault: "kv-shared-infra", Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
		Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: "acr-pull-token",
		Caller: audit.Caller{ObjectID: csiOID, Key: csiOID, KeyFrom: "oid"}}
	other := *csi
	other.Vault = "kv-payments-prod"
	for i := range dr {
		d, s := dr[i], sr[i]
		if d.ID != s.ID {
			t.Fatalf("rule %d: %s, shipped %s", i, d.ID, s.ID)
		}
		if d.ID == "secret-retrieval-burst" {
			if len(d.Except) != len(s.Except)+1 || d.Matches(csi) || !d.Matches(&other) || !s.Matches(csi) {
				t.Errorf("secret-retrieval-burst: want the shipped rule plus one exception, the CSI identity on kv-shared-infra")
			}
			continue
		}
		if len(d.Except) != len(s.Except) || d.Matches(csi) != s.Matches(csi) {
			t.Errorf("rule %s differs from the shipped one", d.ID)
		}
	}
	// The templates' caller is the demo's: the file fills in what the
	// pack's commented template leaves as zeros.
	f, err := config.Parse("demo.yaml", demoConfigBytes(t), config.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := f.Overrides["secret-retrieval-burst"]; !ok || len(o.Except) != 1 || !slices.Contains(o.Except[0].Callers, csiOID) {
		t.Errorf("the demo file does not except the CSI identity by object id: %+v", f.Overrides)
	}
}

func demoConfigBytes(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join(repoRoot, "internal/demo/kvwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Only a replay (or digest) of the bundled demo day with no configuration
// of the user's runs the demo tenant's file, and says so; a replay of
// files, or with --config or KVWATCH_CONFIG, runs what it names; serve's
// configuration (loadConfig) never holds the demo's ids.
func TestDemoConfigOnlyForTheBundledDay(t *testing.T) {
	empty := func(string) string { return "" }
	var stderr bytes.Buffer
	if _, err := loadRunConfig("", true, empty, &stderr); err != nil || strings.TrimSpace(stderr.String()) != demoConfigLine {
		t.Fatalf("bundled day: %v, stderr %q", err, stderr.String())
	}
	user := filepath.Join(t.TempDir(), "kvwatch.yaml")
	os.WriteFile(user, []byte("settings: {lateness: 10m}\n"), 0o644)
	withEnv := func(k string) string {
		if k == "KVWATCH_CONFIG" {
			return user
		}
		return ""
	}
	for name, c := range map[string]struct {
		path string
		day  bool
		env  func(string) string
	}{"files": {"", false, empty}, "--config": {user, true, empty}, "KVWATCH_CONFIG": {"", true, withEnv}} {
		stderr.Reset()
		f, err := loadRunConfig(c.path, c.day, c.env, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		if stderr.Len() > 0 || strings.Contains(configIDs(f), csiOID) {
			t.Errorf("%s: runs the demo tenant's exceptions (stderr %q)", name, stderr.String())
		}
	}
	f, err := loadConfig("", empty)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(configIDs(f), csiOID) {
		t.Error("the configuration serve runs holds the demo's CSI identity")
	}
	var stdout bytes.Buffer
	stderr.Reset()
	if code := run(context.Background(), []string{"rules", "show", "secret-retrieval-burst"}, empty, &stdout, &stderr); code != 0 ||
		strings.Contains(stdout.String(), csiOID) {
		t.Errorf("rules show (the shipped configuration) names the demo's CSI identity:\n%s%s", stdout.String(), stderr.String())
	}
}

// configIDs lists the callers and app ids every rule's exceptions name.
func configIDs(f *config.File) string {
	var b strings.Builder
	for _, r := range f.Rules {
		for _, x := range r.Except {
			b.WriteString(strings.Join(x.Callers, " ") + " " + strings.Join(x.AppIDs, " ") + "\n")
		}
	}
	return b.String()
}
