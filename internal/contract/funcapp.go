package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kvwatch/kvwatch/handlers"
)

// The function app `make package` builds: the function folders of
// function-app/, one more Event Hubs trigger per region after the first
// (generated from function-app/AuditEvents/function.json), and a
// local.settings.json that tells Core Tools the worker runtime.
//
// Regions: infra/main.bicep creates one Event Hubs namespace per entry of
// its `regions` parameter, and the app setting
// EventHubConnection__fullyQualifiedNamespace names the first one's;
// EventHubConnection_<location>__fullyQualifiedNamespace each other one's
// (infra/modules/appsettings.bicep). The trigger of the first region is
// function-app/AuditEvents (connection EventHubConnection); the trigger of
// region <location> is AuditEvents_<location> (connection
// EventHubConnection_<location>), same hub name, consumer group, retry
// policy. The handler serves them all (handlers.IsAuditFunction).

// LocalSettings is the local.settings.json `make package` puts in dist/app.
// Core Tools (`func azure functionapp publish`) resolves the worker runtime
// from the environment variable FUNCTIONS_WORKER_RUNTIME or, failing that,
// from local.settings.json in the function app root (the folder holding
// host.json), and refuses to publish without one ("Worker runtime is not
// set"). It never uploads local.settings.json (FileSystemHelpers.GetLocalFiles
// skips it), and azd skips it for Function targets too; the platform would
// ignore it anyway. It holds that one value and nothing secret.
const LocalSettings = `{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "custom"
  }
}
`

// readEnv matches readEnvironmentVariable('NAME') and
// readEnvironmentVariable('NAME', 'default') in a .bicepparam file.
var readEnv = regexp.MustCompile(`^readEnvironmentVariable\(\s*'([^']*)'\s*(?:,\s*'([^']*)'\s*)?\)$`)

// RegionsFromParams returns the locations of the `regions` parameter in a
// .bicepparam file, in order. A location is a string literal or
// readEnvironmentVariable('NAME'[, 'default']), looked up with lookup.
func RegionsFromParams(path string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := ParseFile(path)
	if err != nil {
		return nil, err
	}
	d := f.Find("param", "regions")
	if d == nil || d.Value == nil || d.Value.Array == nil {
		return nil, fmt.Errorf("%s: no param regions = [ ... ]", path)
	}
	var out []string
	for i, e := range d.Value.Array {
		if e.Object == nil || e.Object.Get("location") == nil {
			return nil, fmt.Errorf("%s:%d: regions[%d] is not { location: ..., vaults: [...] }", path, e.Line, i)
		}
		v := e.Object.Get("location")
		if s, ok := v.Literal(); ok {
			out = append(out, s)
			continue
		}
		m := readEnv.FindStringSubmatch(strings.TrimSpace(v.Text))
		if m == nil {
			return nil, fmt.Errorf("%s:%d: regions[%d].location is %s: write a string literal or readEnvironmentVariable('NAME', 'default'), or give the list with REGIONS=",
				path, v.Line, i, v.Text)
		}
		s, ok := lookup(m[1])
		if !ok || s == "" {
			if !strings.Contains(v.Text, ",") {
				return nil, fmt.Errorf("%s:%d: regions[%d].location reads %s, which is not set", path, v.Line, i, m[1])
			}
			s = m[2]
		}
		out = append(out, s)
	}
	return out, nil
}

// CheckNamePrefix returns an error unless the namePrefix a .bicepparam file
// sets (if any, and if a literal) is lower-case letters and digits starting
// with a letter, 3 to 11 long: Bicep has no pattern decorator, and storage
// account names built from it accept nothing else.
func CheckNamePrefix(path string) error {
	f, err := ParseFile(path)
	if err != nil {
		return err
	}
	d := f.Find("param", "namePrefix")
	if d == nil {
		return nil
	}
	s, ok := d.Value.Literal()
	if !ok {
		return nil
	}
	if !namePrefixRe.MatchString(s) {
		return fmt.Errorf("%s:%d: namePrefix %q: want 3 to 11 lower-case letters and digits, starting with a letter", path, d.Line, s)
	}
	return nil
}

var namePrefixRe = regexp.MustCompile(`^[a-z][a-z0-9]{2,10}$`)

// CheckRegions returns an error unless regions is a non-empty list of Azure
// location names (lower-case letters and digits) without duplicates.
func CheckRegions(regions []string) error {
	if len(regions) == 0 {
		return errors.New("no regions: the deployment needs at least one")
	}
	seen := map[string]bool{}
	for _, r := range regions {
		if !handlers.ValidRegion(r) {
			return fmt.Errorf("region %q: want an Azure location name, lower-case letters and digits (westeurope, eastus2)", r)
		}
		if seen[r] {
			return fmt.Errorf("region %q appears twice: one entry per region, with all its vaults", r)
		}
		seen[r] = true
	}
	return nil
}

// ParseRegionList splits REGIONS= ("westeurope northeurope" or
// "westeurope,northeurope").
func ParseRegionList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// FunctionFiles returns the function.json files of the function app for the
// given regions, by function name: every folder of functionApp (the
// first region's AuditEvents among them) and AuditEvents_<location> for each
// region after the first.
func FunctionFiles(functionApp string, regions []string) (map[string][]byte, error) {
	if err := CheckRegions(regions); err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(functionApp, "*", "function.json"))
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[filepath.Base(filepath.Dir(p))] = b
	}
	tmpl, ok := out[handlers.AuditFunction]
	if !ok {
		return nil, fmt.Errorf("%s/%s/function.json missing", functionApp, handlers.AuditFunction)
	}
	for _, region := range regions[1:] {
		b, err := regionFunction(tmpl, region)
		if err != nil {
			return nil, fmt.Errorf("%s/%s/function.json: %w", functionApp, handlers.AuditFunction, err)
		}
		name := handlers.RegionFunction(region)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("function-app/%s exists; it is generated per region", name)
		}
		out[name] = b
	}
	return out, nil
}

// regionFunction is the AuditEvents function.json with the connection of
// region.
func regionFunction(tmpl []byte, region string) ([]byte, error) {
	var fj map[string]any
	if err := json.Unmarshal(tmpl, &fj); err != nil {
		return nil, err
	}
	bindings, _ := fj["bindings"].([]any)
	n := 0
	for _, b := range bindings {
		m, _ := b.(map[string]any)
		if m["type"] == "eventHubTrigger" {
			if m["connection"] != "EventHubConnection" {
				return nil, fmt.Errorf("trigger connection %v, want EventHubConnection", m["connection"])
			}
			m["connection"] = handlers.RegionConnection(region)
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%d eventHubTrigger bindings, want 1", n)
	}
	b, err := json.MarshalIndent(fj, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteFunctionApp writes the function folders for regions and
// local.settings.json into out (dist/app).
func WriteFunctionApp(functionApp, out string, regions []string) error {
	files, err := FunctionFiles(functionApp, regions)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		dir := filepath.Join(out, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "function.json"), files[name], 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(out, "local.settings.json"), []byte(LocalSettings), 0o644)
}
