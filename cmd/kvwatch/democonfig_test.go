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

// The demo day's platform identities (demo's principals): the AKS Secrets
// Store CSI driver, app-orders-api's configuration provider, the Azure
// DevOps release principal and Terraform's principal.
const (
	csiOID       = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
	ordersAPIOID = "4b5c6d7e-8f90-4a1b-92c3-d4e5f6a7b8c9"
	adoOID       = "3d4e5f6a-7b8c-4d9e-a0f1-b2c3d4e5f6a7"
	adoAppID     = "9e0f1a2b-3c4d-4e5f-96a7-b8c9d0e1f2a3"
	tfOID        = "8b9c0d1e-2f3a-4b4c-95d6-e7f8a9b0c1d2"
	tfAppID      = "0f1a2b3c-4d5e-4f6a-87b8-c9d0e1f2a3b4"
)

// The demo tenant's configuration differs from the shipped one only by its
// exceptions, by identity, each from the rules its tool trips: the CSI
// driver's rollout is no secret-retrieval-burst on its vault; the
// configuration provider (on its vault), the release pipeline and Terraform
// list and read by design (listing-then-read-burst, mass-secret-retrieval,
// mass-secret-retrieval-day, secret-retrieval-burst), Terraform and the
// configuration provider over the across-vaults rule's 20 secrets.
// Everything else (settings, receivers, routes, every other rule, the same
// identities elsewhere) is the shipped configuration's.
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
	read := func(vault, oid, appID, clientInfo string) *audit.Event {
		return &audit.Event{Vault: vault, Operation: "SecretGet", Family: audit.FamilySecret, Kind: audit.KindRead,
			Outcome: audit.OutcomeSuccess, HTTPStatus: 200, ObjectType: "secret", ObjectName: "some-secret", ClientInfo: clientInfo,
			Caller: audit.Caller{ObjectID: oid, AppID: appID, Key: oid, KeyFrom: "oid"}}
	}
	csi := read("kv-shared-infra", csiOID, "", "akvsecretsprovider/v1.6.0")
	orders := read("kv-payments-prod", ordersAPIOID, "", "azsdk-net-Security.KeyVault.Secrets/4.6.0")
	ado := read("kv-web-prod", adoOID, adoAppID, "AzureKeyVault/2.247.1")
	tf := read("kv-data-dev", tfOID, tfAppID, "HashiCorp Terraform/1.9.8")
	// The same identities where their tool does not take them, and a
	// stranger sending the tools' clientInfo: never excepted.
	csiElsewhere := read("kv-payments-prod", csiOID, "", csi.ClientInfo)
	ordersElsewhere := read("kv-web-prod", ordersAPIOID, "", orders.ClientInfo)
	var strangers []*audit.Event
	for _, e := range []*audit.Event{csi, orders, ado, tf} {
		strangers = append(strangers, read(e.Vault, "d4c3b2a1-9f8e-4d7c-b6a5-948372615f0e", "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", e.ClientInfo))
	}
	startup := []*audit.Event{orders, ado, tf}
	excepted := map[string][]*audit.Event{ // rule -> the events its demo exceptions take
		"secret-retrieval-burst":     {csi, orders, ado, tf},
		"listing-then-read-burst":    startup,
		"mass-secret-retrieval":      startup,
		"mass-secret-retrieval-day":  startup,
		"secrets-read-across-vaults": {tf, orders},
	}
	all := append([]*audit.Event{csi, orders, ado, tf, csiElsewhere, ordersElsewhere}, strangers...)
	for i := range dr {
		d, s := dr[i], sr[i]
		if d.ID != s.ID {
			t.Fatalf("rule %d: %s, shipped %s", i, d.ID, s.ID)
		}
		want := excepted[d.ID]
		if len(d.Except) != len(s.Except)+len(want) {
			t.Errorf("%s: %d exceptions, want the shipped %d plus %d", d.ID, len(d.Except), len(s.Except), len(want))
		}
		for _, e := range all {
			if got, shippedGot := counts(d, e), counts(s, e); slices.Contains(want, e) {
				if got || !shippedGot {
					t.Errorf("%s: %s on %s: matches %v (shipped %v), want excepted", d.ID, e.Caller.ObjectID, e.Vault, got, shippedGot)
				}
			} else if got != shippedGot {
				t.Errorf("%s: %s on %s (clientInfo %q): matches %v, shipped %v", d.ID, e.Caller.ObjectID, e.Vault, e.ClientInfo, got, shippedGot)
			}
		}
	}
	// The templates' ids are the demo's, filled in where the pack's
	// commented templates leave zeros, and every exception names an
	// identity, never a clientInfo.
	f, err := config.Parse("demo.yaml", demoConfigBytes(t), config.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := f.Overrides["secret-retrieval-burst"]; !ok || len(o.Except) == 0 || !slices.Contains(o.Except[0].Callers, csiOID) {
		t.Errorf("the demo file does not except the CSI identity by object id: %+v", f.Overrides)
	}
	for id, o := range f.Overrides {
		for _, x := range o.Except {
			if len(x.ClientInfo) > 0 || len(x.Callers)+len(x.AppIDs) == 0 {
				t.Errorf("%s: an exception not by identity: %+v", id, x)
			}
		}
	}
}

// counts says whether a rule counts an event: its match, or for a sequence
// its then, and none of its exceptions (as detection applies them).
func counts(r *rules.Rule, e *audit.Event) bool {
	if !r.Match.Match(e) && (r.Then == nil || !r.Then.Match(e)) {
		return false
	}
	return !slices.ContainsFunc(r.Except, func(x *rules.Matcher) bool { return x.Match(e) })
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
		if stderr.Len() > 0 || holdsDemoID(configIDs(f)) {
			t.Errorf("%s: runs the demo tenant's exceptions (stderr %q)", name, stderr.String())
		}
	}
	f, err := loadConfig("", empty)
	if err != nil {
		t.Fatal(err)
	}
	if holdsDemoID(configIDs(f)) {
		t.Error("the configuration serve runs holds the demo's platform identities")
	}
	var stdout bytes.Buffer
	stderr.Reset()
	if code := run(context.Background(), []string{"rules", "show", "secret-retrieval-burst"}, empty, &stdout, &stderr); code != 0 ||
		holdsDemoID(stdout.String()) {
		t.Errorf("rules show (the shipped configuration) names a demo platform identity:\n%s%s", stdout.String(), stderr.String())
	}
}

// holdsDemoID says whether s names one of the demo tenant's excepted ids.
func holdsDemoID(s string) bool {
	return slices.ContainsFunc([]string{csiOID, ordersAPIOID, adoAppID, tfAppID}, func(id string) bool { return strings.Contains(s, id) })
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
