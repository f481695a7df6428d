package contract

// Issue 14: what a deployment needs beyond the basic contract: the Core
// Tools path, every region read, redeploys that keep alerting, roles on
// shared workspaces, alerts on kvwatch itself, safe defaults, the policy
// option. Each test reads the Bicep, host.json, the generated function.json
// files and the handler; none needs Azure.

import (
	"archive/zip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/handlers"
	"github.com/kvwatch/kvwatch/internal/host"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/pipeline"
)

// ---------------------------------------------------------------- 1. Core Tools and azd

// checkPackageRuntime: Core Tools (`func azure functionapp publish`, run in
// the app folder) takes the worker runtime from FUNCTIONS_WORKER_RUNTIME in
// the environment, else from local.settings.json in the function app root,
// the folder holding host.json (WorkerRuntimeLanguageHelper.
// GetCurrentWorkerRuntimeLanguage, SecretsManager.AppSettingsFilePath), and
// fails with "Worker runtime is not set" without one. On Flex it compares
// that with functionAppConfig.runtime.name ("custom"). It never zips
// local.settings.json (FileSystemHelpers.GetLocalFiles), nor does azd for a
// function target (project_utils.go), nor internal/contract/cmd/zip.
func checkPackageRuntime(t *testing.T, app string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(app, "host.json")); err != nil {
		t.Errorf("%s has no host.json: Core Tools finds the app root by it", app)
	}
	b, err := os.ReadFile(filepath.Join(app, "local.settings.json"))
	if err != nil {
		t.Fatalf("%s has no local.settings.json: func azure functionapp publish fails with \"Worker runtime is not set\"", app)
	}
	var ls struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		t.Fatalf("%s/local.settings.json: %v", app, err)
	}
	if ls.IsEncrypted || len(ls.Values) != 1 || ls.Values["FUNCTIONS_WORKER_RUNTIME"] != "custom" {
		t.Errorf("%s/local.settings.json = %s: want exactly FUNCTIONS_WORKER_RUNTIME=custom (nothing else, nothing secret)", app, b)
	}
	// The runtime Core Tools reads must be the one Flex declares.
	f := loadInfra(t).file(t, "modules/functionapp.bicep")
	site := one(t, f, "Microsoft.Web/sites").Body()
	if got, _ := site.Path("properties", "functionAppConfig", "runtime", "name").Literal(); got != ls.Values["FUNCTIONS_WORKER_RUNTIME"] {
		t.Errorf("Flex runtime %q, local.settings.json %q: Core Tools refuses to publish when they differ", got, ls.Values["FUNCTIONS_WORKER_RUNTIME"])
	}
}

func TestPackageWorkerRuntime(t *testing.T) {
	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "host.json"), []byte(`{"version":"2.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFunctionApp(filepath.Join(root, "function-app"), app, []string{"westeurope"}); err != nil {
		t.Fatal(err)
	}
	checkPackageRuntime(t, app)

	// A built package: the zip leaves local.settings.json out.
	zipPath := filepath.Join(root, "dist", "kvwatch.zip")
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Skip("no dist/kvwatch.zip: run make package to check it too")
	}
	defer zr.Close()
	for _, f := range zr.File {
		if filepath.Base(f.Name) == "local.settings.json" {
			t.Errorf("dist/kvwatch.zip holds %s: local settings are never deployed", f.Name)
		}
	}
}

// ---------------------------------------------------------------- 2. every region read

// TestRegionsAgree: for 1, 2 and 3 regions, the function.json files `make
// package` writes, the connection settings the Bicep sets and the routes
// the handler serves agree: one trigger per region, each on its own
// connection (its region's namespace), all through the same pipeline.
func TestRegionsAgree(t *testing.T) {
	in := loadInfra(t)
	main, app := in.file(t, "main.bicep"), in.file(t, "modules/appsettings.bicep")
	s := appSettings(t, in)

	// main.bicep hands every region's namespace to the settings, in order.
	ns := main.Find("module", "appSettings").Body().Path("params", "eventHubNamespaces")
	if ns == nil || !ns.For || !strings.Contains(ns.Text, "for (region, i) in regions") ||
		!strings.Contains(ns.Text, "location: region.location") || !strings.Contains(ns.Text, "eventHubs[i].outputs.fullyQualifiedNamespace") {
		t.Fatalf("main.bicep passes eventHubNamespaces = %s: want one { location, fullyQualifiedNamespace } per region", text(ns))
	}
	// The first region's connection, always.
	if got := text(s.always["EventHubConnection__fullyQualifiedNamespace"]); got != "eventHubNamespaces[0].fullyQualifiedNamespace" {
		t.Errorf("EventHubConnection__fullyQualifiedNamespace = %s", got)
	}
	// The others': the key templates of regionConnections, over regions 1..n-1.
	rc := app.Find("var", "regionConnections")
	if rc == nil || !strings.Contains(rc.Value.Text, "range(1, length(eventHubNamespaces) - 1)") {
		t.Fatalf("appsettings.bicep: regionConnections must map range(1, length(eventHubNamespaces) - 1)")
	}
	var written *Decl
	for _, r := range app.ResourcesOfType("Microsoft.Web/sites/config") {
		if !r.Existing {
			written = r
		}
	}
	if !slices.Contains(written.Body().Get("properties").Identifiers(), "regionConnections") {
		t.Error("appsettings.bicep: the app settings do not include regionConnections")
	}
	keyTmpl := regexp.MustCompile(`'(EventHubConnection_\$\{eventHubNamespaces\[i\]\.location\}__[A-Za-z]+)'`)
	var templates []string
	for _, m := range keyTmpl.FindAllStringSubmatch(rc.Value.Text, -1) {
		templates = append(templates, m[1])
	}
	slices.Sort(templates)
	if !slices.Equal(templates, []string{"EventHubConnection_${eventHubNamespaces[i].location}__credential", "EventHubConnection_${eventHubNamespaces[i].location}__fullyQualifiedNamespace"}) {
		t.Fatalf("regionConnections keys %v: want <connection>__fullyQualifiedNamespace and __credential per region", templates)
	}
	// Settings for a list of regions, as the Bicep evaluates them.
	settingsFor := func(regions []string) map[string]bool {
		out := map[string]bool{}
		for k := range s.always {
			out[k] = true
		}
		for _, r := range regions[1:] {
			for _, tmpl := range templates {
				out[strings.ReplaceAll(tmpl, "${eventHubNamespaces[i].location}", r)] = true
			}
		}
		return out
	}

	// The handler as serve wires it, with a processor that counts.
	proc := &countingProc{}
	srv := httptest.NewServer(handlers.New(handlers.Config{}, proc, zerolog.Nop()))
	defer srv.Close()

	for _, regions := range [][]string{
		{"westeurope"},
		{"westeurope", "northeurope"},
		{"westeurope", "northeurope", "eastus2"},
	} {
		files, err := FunctionFiles(filepath.Join(root, "function-app"), regions)
		if err != nil {
			t.Fatal(err)
		}
		set := settingsFor(regions)
		var triggers []string
		connections := map[string]bool{}
		for name, b := range files {
			var fj functionJSON
			if err := json.Unmarshal(b, &fj); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, bind := range fj.Bindings {
				if bind["type"] != "eventHubTrigger" {
					continue
				}
				triggers = append(triggers, name)
				conn, _ := bind["connection"].(string)
				connections[conn] = true
				if !set[conn+"__fullyQualifiedNamespace"] || !set[conn+"__credential"] {
					t.Errorf("%d regions: %s reads connection %s; the Bicep sets no %s__fullyQualifiedNamespace / __credential", len(regions), name, conn, conn)
				}
				for _, key := range []string{"eventHubName", "consumerGroup"} {
					v, _ := bind[key].(string)
					for _, m := range percentRef.FindAllStringSubmatch(v, -1) {
						if !set[m[1]] {
							t.Errorf("%s %s reads %%%s%%, which is not set", name, key, m[1])
						}
					}
				}
				if bind["dataType"] != "string" || bind["cardinality"] != "many" || bind["name"] != "events" {
					t.Errorf("%s: binding %v: want dataType string, cardinality many, name events (what the handler decodes)", name, bind)
				}
				// The host invokes POST /<function name>; the handler runs it.
				before := proc.n
				body, _ := host.Body(host.Batch{Namespace: conn + ".servicebus.windows.net", Hub: "insights-logs-auditevent", Partition: "0",
					Events: []host.Event{{Body: []byte(`{"records":[]}`), Sequence: 1}}}, host.StringOfStrings)
				r, err := host.Invoke(context.Background(), srv.Client(), srv.URL, name, body)
				if err != nil || r.Status != http.StatusOK || proc.n != before+1 {
					t.Errorf("%d regions: POST /%s: %v status %d; the handler must run it through the pipeline", len(regions), name, err, r.Status)
				}
			}
		}
		if len(triggers) != len(regions) || len(connections) != len(regions) {
			t.Errorf("%d regions: triggers %v on %d connections: want one trigger per region, each on its own connection", len(regions), triggers, len(connections))
		}
	}
	// The deployment's output names the same functions and connections.
	out := main.Find("output", "eventHubs")
	for _, want := range []string{"format('AuditEvents{0}', i == 0 ? '' : '_${region.location}')", "format('EventHubConnection{0}', i == 0 ? '' : '_${region.location}')"} {
		if !strings.Contains(out.Value.Text, want) {
			t.Errorf("main.bicep output eventHubs lacks %s (handlers.RegionFunction / RegionConnection)", want)
		}
	}
	if handlers.RegionFunction("x") != "AuditEvents_x" || handlers.RegionConnection("x") != "EventHubConnection_x" {
		t.Error("handlers.RegionFunction / RegionConnection changed: change the Bicep's templates with them")
	}
}

type countingProc struct{ n int }

func (p *countingProc) Process(_ context.Context, b *ingest.Batch) (pipeline.Summary, error) {
	p.n++
	return pipeline.Summary{Partition: b.Partition.PartitionID}, nil
}

// TestRegionValidation: duplicate, upper-case and empty region lists are
// refused by `make package`; duplicates also by Resource Manager, since the
// per-region modules are named after the region.
func TestRegionValidation(t *testing.T) {
	for _, bad := range [][]string{nil, {"westeurope", "westeurope"}, {"West Europe"}, {"WestEurope"}, {"west-europe"}} {
		if _, err := FunctionFiles(filepath.Join(root, "function-app"), bad); err == nil {
			t.Errorf("regions %q accepted", bad)
		}
	}
	main := loadInfra(t).file(t, "main.bicep")
	for _, m := range []string{"eventHubs", "archives", "policies", "policyRoles"} {
		if got := text(main.Find("module", m).Body().Get("name")); !strings.Contains(got, "${region.location}") {
			t.Errorf("main.bicep module %s is named %s: name it after region.location so that a duplicate region fails validation", m, got)
		}
	}
	rt := main.Find("type", "regionType")
	if rt == nil || !strings.Contains(rt.Value.Text, "@minLength(2)") || !strings.Contains(rt.Value.Text, "@maxLength(40)") {
		t.Error("regionType.location has no length decorators")
	}
}

// TestRegionsFromParams: `make package` reads the regions of
// main.bicepparam as a deployment would, and checks namePrefix.
func TestRegionsFromParams(t *testing.T) {
	path := filepath.Join(root, "infra", "main.bicepparam")
	got, err := RegionsFromParams(path, func(string) (string, bool) { return "", false })
	if err != nil || len(got) == 0 {
		t.Fatalf("RegionsFromParams: %v %v", got, err)
	}
	env := map[string]string{"AZURE_LOCATION": "swedencentral"}
	got2, err := RegionsFromParams(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || got2[0] != "swedencentral" {
		t.Errorf("with AZURE_LOCATION=swedencentral: %v %v", got2, err)
	}
	if err := CheckNamePrefix(path); err != nil {
		t.Error(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.bicepparam")
	os.WriteFile(bad, []byte("using './main.bicep'\nparam namePrefix = 'KvWatch'\nparam regions = [\n  {\n    location: 'westeurope'\n    vaults: []\n  }\n  {\n    location: 'westeurope'\n    vaults: []\n  }\n]\n"), 0o644)
	if CheckNamePrefix(bad) == nil {
		t.Error("namePrefix 'KvWatch' accepted")
	}
	regions, err := RegionsFromParams(bad, os.LookupEnv)
	if err != nil || CheckRegions(regions) == nil {
		t.Errorf("duplicate regions in a parameter file accepted: %v %v", regions, err)
	}
}

// ---------------------------------------------------------------- 3. redeploys keep alerting

// TestSecretSettingsKept: the Key Vault reference settings stay when a
// redeploy does not carry the secret values: present when the value is
// given now or the setting was there before (read from the site's current
// settings); and a deployment never writes an empty secret.
func TestSecretSettingsKept(t *testing.T) {
	in := loadInfra(t)
	f := in.file(t, "modules/appsettings.bicep")
	var existing *Decl
	for _, r := range f.ResourcesOfType("Microsoft.Web/sites/config") {
		if r.Existing {
			existing = r
		}
	}
	if existing == nil || literal(t, "existing config name", existing.Body().Get("name")) != "appsettings" {
		t.Fatal("appsettings.bicep does not read the site's current app settings (an existing sites/config 'appsettings')")
	}
	cur := f.Find("var", "current")
	if cur == nil || !strings.Contains(cur.Value.Text, existing.Name+".list()") {
		t.Fatalf("appsettings.bicep: var current = %s, want %s.list().properties", text(cur.Value), existing.Name)
	}
	for v, setting := range map[string]string{"teamsSettings": "KVWATCH_TEAMS_WEBHOOK_URL", "smtpSettings": "KVWATCH_SMTP_PASSWORD"} {
		d := f.Find("var", v)
		if d == nil || !strings.Contains(d.Value.Text, "contains(current, '"+setting+"')") {
			t.Errorf("appsettings.bicep %s: %s must stay when it was set before (contains(current, '%s'))", v, setting, setting)
		}
	}
	kv := in.file(t, "modules/keyvault.bicep")
	for _, r := range kv.ResourcesOfType("Microsoft.KeyVault/vaults/secrets") {
		if !strings.HasPrefix(strings.TrimSpace(r.Value.Text), "if (!empty(") {
			t.Errorf("keyvault.bicep %s is written without a value check: a redeploy without the value would empty it", r.Name)
		}
	}
	doc := readDoc(t)
	if !strings.Contains(doc, "### Rotating secrets") {
		t.Error("docs/deploy.md has no \"Rotating secrets\" section")
	}
}

// ---------------------------------------------------------------- 4. roles

func TestRoleDefinitions(t *testing.T) {
	in := loadInfra(t)
	for _, path := range SortedKeys(in.files) {
		f := in.files[path]
		for _, d := range f.ResourcesOfType("Microsoft.Authorization/roleDefinitions") {
			name := d.Body().Path("properties", "roleName")
			txt := text(name)
			if n := f.Find("var", "nameSuffix"); n != nil && strings.Contains(txt, "${nameSuffix}") {
				txt = n.Value.Text
			}
			if !strings.Contains(txt, "uniqueString(resourceGroup().id)") {
				t.Errorf("infra/%s %s: roleName %s: custom role names are unique per tenant; include a hash of the scope (uniqueString(resourceGroup().id))", path, d.Name, text(name))
			}
			if !strings.HasPrefix(strings.TrimSpace(d.Value.Text), "if (") {
				t.Errorf("infra/%s %s is defined unconditionally: define a role only when someone holds it", path, d.Name)
			}
		}
	}
	main := in.file(t, "main.bicep")
	if got := text(main.Find("module", "logRoles").Value); !strings.HasPrefix(strings.TrimSpace(got), "if (hasLogPrincipals)") {
		t.Error("main.bicep deploys the log roles without principals")
	}
	ext := main.Find("module", "logRolesExternalWorkspace").Body().Get("params").Object
	for key, want := range map[string]string{"workspaceOwned": "false", "viewerPrincipalIds": "[]", "managerPrincipalIds": "[]"} {
		if got := text(ext.Get(key)); got != want {
			t.Errorf("logRolesExternalWorkspace %s = %s, want %s: no workspace-wide rights on a workspace kvwatch does not own", key, got, want)
		}
	}
	f := in.file(t, "modules/rbac-logs.bicep")
	if got := f.Find("var", "managerActions").Value.Text; !strings.Contains(got, "workspaceOwned ? ['Microsoft.OperationalInsights/workspaces/*'] : []") {
		t.Errorf("managerActions %s: workspaces/* only on kvwatch's own workspace", got)
	}
	for _, a := range f.Find("var", "analystWorkspaceActions").Value.Array {
		s, _ := a.Literal()
		if strings.Contains(s, "*") || strings.Contains(s, "/query/") && s != "Microsoft.OperationalInsights/workspaces/query/read" {
			t.Errorf("analyst workspace action %q: the tables come from Reader on one table", s)
		}
	}
	// Reader on the AzureDiagnostics table.
	found := false
	for _, ra := range f.ResourcesOfType("Microsoft.Authorization/roleAssignments") {
		sym := text(ra.Body().Get("scope"))
		d := f.Symbol(sym)
		if d == nil || d.ResourceType() != "Microsoft.OperationalInsights/workspaces/tables" {
			continue
		}
		if n, _ := d.Body().Get("name").Literal(); n == "AzureDiagnostics" && strings.Contains(text(ra.Body().Path("properties", "roleDefinitionId")), "roles.reader") {
			found = true
		}
	}
	if !found {
		t.Error("rbac-logs.bicep: no Reader assignment on workspaces/tables AzureDiagnostics (table-level read for analysts)")
	}
	doc := readDoc(t)
	for _, want := range []string{"User Access Administrator", "Role Based Access Control Administrator"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/deploy.md does not say which built-in roles can deploy (%s)", want)
		}
	}
}

// ---------------------------------------------------------------- 5. workspace destination

func TestWorkspaceSinkSkip(t *testing.T) {
	main := loadInfra(t).file(t, "main.bicep")
	if main.Find("param", "workspaceSinkSkipVaults") == nil {
		t.Fatal("main.bicep has no workspaceSinkSkipVaults parameter")
	}
	got := text(main.Find("module", "diagnostics").Body().Path("params", "workspaceId"))
	if !strings.Contains(got, "!contains(workspaceSkip, toLower(target.vaultId))") {
		t.Errorf("diagnostics workspaceId = %s: skip the workspace for vaults in workspaceSinkSkipVaults", got)
	}
	if !strings.Contains(readDoc(t), "az monitor diagnostic-settings list") {
		t.Error("docs/deploy.md does not show how to find the vaults whose logs already reach the workspace")
	}
}

// ---------------------------------------------------------------- 6. alerts on kvwatch

func TestAlertsOnKvwatch(t *testing.T) {
	in := loadInfra(t)
	main := in.file(t, "main.bicep")
	if paramDefault := text(main.Find("param", "monitorKvwatch").Value); paramDefault != "true" {
		t.Errorf("monitorKvwatch defaults to %s: the alerts are deployed by default", paramDefault)
	}
	if !strings.HasPrefix(strings.TrimSpace(main.Find("module", "alerts").Value.Text), "if (monitorKvwatch)") {
		t.Error("main.bicep: module alerts is not under monitorKvwatch")
	}
	if main.Find("param", "alertEmails").Value != nil {
		t.Error("alertEmails has a default: the operator's address is required")
	}
	f := in.file(t, "modules/alerts.bicep")
	ag := one(t, f, "Microsoft.Insights/actionGroups").Body()
	if !strings.Contains(text(ag.Path("properties", "emailReceivers")), "emailAddress: email") {
		t.Error("the action group mails no operator")
	}
	ma := one(t, f, "Microsoft.Insights/metricAlerts")
	for _, m := range []string{"'IncomingMessages'", "'OutgoingMessages'", "'EntityName'", "eventHubName"} {
		if !strings.Contains(ma.Value.Text, m) {
			t.Errorf("metric alert lacks %s (incoming vs outgoing per hub)", m)
		}
	}
	if !strings.Contains(ma.Value.Text, "for (ns, i) in eventHubNamespaces") {
		t.Error("the metric alert is not per region")
	}
	rules := f.Find("var", "logRules").Value.Array
	queries := map[string]string{}
	for _, r := range rules {
		n, _ := r.Object.Get("name").Literal()
		q, _ := r.Object.Get("query").Literal()
		queries[n] = q
	}
	for _, n := range []string{"kvwatch-failures", "kvwatch-held-by-retries", "kvwatch-dead-letters"} {
		if queries[n] == "" {
			t.Errorf("alerts.bicep: no log alert %s", n)
		}
	}
	// The held-by-retries query names the trigger functions.
	if !strings.Contains(queries["kvwatch-held-by-retries"], `startswith "`+handlers.AuditFunction+`"`) {
		t.Errorf("held-by-retries query %q does not select the Event Hubs triggers", queries["kvwatch-held-by-retries"])
	}
	// The dead-letter query matches what the code writes: the summary line
	// of a batch with dead letters, and the handler's error lines.
	q := queries["kvwatch-dead-letters"]
	m := regexp.MustCompile(`extract\(@"([^"]+)"`).FindStringSubmatch(q)
	if m == nil {
		t.Fatalf("dead-letter query %q: no extract(@\"...\")", q)
	}
	sum := pipeline.Summary{Partition: "3"}
	sum.Stats.Events, sum.Stats.Records, sum.Stats.DeadLettered = 2, 20, 4
	line := sum.String()
	if got := regexp.MustCompile(m[1]).FindStringSubmatch(line); got == nil || got[1] != "4" || !strings.HasPrefix(line, "kvwatch: ") {
		t.Errorf("the dead-letter query's %q does not read 4 from the summary %q", m[1], line)
	}
	src, _ := os.ReadFile(filepath.Join(root, "handlers", "handlers.go"))
	if !strings.Contains(string(src), `"kvwatch: error: "`) || !strings.Contains(string(src), "dead-lettered") {
		t.Error("handlers.go no longer writes \"kvwatch: error: ... dead-lettered\": change the alert with it")
	}
	// Sampling keeps what the queries read.
	var h struct {
		Logging struct {
			ApplicationInsights struct {
				SamplingSettings struct {
					IsEnabled     *bool  `json:"isEnabled"`
					ExcludedTypes string `json:"excludedTypes"`
				} `json:"samplingSettings"`
			} `json:"applicationInsights"`
		} `json:"logging"`
	}
	b, _ := os.ReadFile(filepath.Join(root, "host.json"))
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	ss := h.Logging.ApplicationInsights.SamplingSettings
	excluded := strings.Split(ss.ExcludedTypes, ";")
	if ss.IsEnabled == nil || *ss.IsEnabled {
		for _, want := range []string{"Request", "Trace", "Exception"} {
			if !slices.Contains(excluded, want) {
				t.Errorf("host.json samplingSettings.excludedTypes %q: %s may be sampled away (the alerts and the docs' queries read it)", ss.ExcludedTypes, want)
			}
		}
	}
}

// ---------------------------------------------------------------- 7. safe defaults

// TestBatchFitsBody: a full batch of host.json's maxEventBatchSize events,
// each the largest Event Hubs event encoded the worst way the host can,
// fits the handler's default body limit; and the worst encoding factor holds
// for every byte value through the host double's encoding.
func TestBatchFitsBody(t *testing.T) {
	var h struct {
		Extensions struct {
			EventHubs struct {
				MaxEventBatchSize int `json:"maxEventBatchSize"`
				PrefetchCount     int `json:"prefetchCount"`
			} `json:"eventHubs"`
		} `json:"extensions"`
	}
	b, _ := os.ReadFile(filepath.Join(root, "host.json"))
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	n := h.Extensions.EventHubs.MaxEventBatchSize
	if n <= 0 {
		t.Fatal("host.json sets no extensions.eventHubs.maxEventBatchSize (the default is 100)")
	}
	const metadataPerEvent = 64 << 10 // sequence, offset, times, system properties, encoded
	need := int64(n)*(handlers.WorstEncoding*handlers.MaxEventBytes+metadataPerEvent) + 64<<10
	if need > handlers.DefaultMaxBody {
		t.Errorf("host.json maxEventBatchSize %d: a full batch can need %d bytes, over the handler's DefaultMaxBody %d", n, need, handlers.DefaultMaxBody)
	}
	if h.Extensions.EventHubs.PrefetchCount < n {
		t.Errorf("prefetchCount %d below maxEventBatchSize %d", h.Extensions.EventHubs.PrefetchCount, n)
	}
	// Every byte value, as dataType "string" encodes it.
	all := make([]byte, 0, 256*64)
	for i := 0; i < 64; i++ {
		for c := 0; c < 256; c++ {
			all = append(all, byte(c))
		}
	}
	for c := 0; c < 256; c++ {
		ev := make([]byte, 4096)
		for i := range ev {
			ev[i] = byte(c)
		}
		body, err := host.Body(host.Batch{Partition: "0", Events: []host.Event{{Body: ev, Sequence: 1}}}, host.StringOfStrings)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) > handlers.WorstEncoding*len(ev)+4096 {
			t.Fatalf("byte %#x: %d bytes of event became %d of body, over %d×", c, len(ev), len(body), handlers.WorstEncoding)
		}
	}
}

func TestSafeDefaults(t *testing.T) {
	in := loadInfra(t)
	main := in.file(t, "main.bicep")

	// Locked immutability: the policy is left alone.
	arc := in.file(t, "modules/archive.bicep")
	imm := one(t, arc, "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies")
	if !strings.Contains(imm.Value.Text, "if (!immutabilityLocked)") {
		t.Error("archive.bicep writes the immutability policy even when it is locked")
	}
	if got := moduleParam(t, main, "archives", "immutabilityLocked"); got != "archiveImmutabilityLocked" {
		t.Errorf("archives get immutabilityLocked: %s", got)
	}
	if got := text(main.Find("param", "archiveImmutabilityLocked").Value); got != "false" {
		t.Errorf("archiveImmutabilityLocked defaults to %s", got)
	}
	// Key Vault name salt.
	if kv := main.Find("var", "keyVaultName"); kv == nil || !strings.Contains(kv.Value.Text, "keyVaultNameSalt") {
		t.Error("the Key Vault name does not take keyVaultNameSalt")
	}
	// Network rules.
	ehf := in.file(t, "modules/eventhub.bicep")
	nr := one(t, ehf, "Microsoft.EventHub/namespaces/networkRuleSets").Body()
	if got := text(nr.Path("properties", "trustedServiceAccessEnabled")); got != "true" {
		t.Errorf("Event Hubs trustedServiceAccessEnabled = %s: Azure Monitor streams as a trusted service", got)
	}
	if got := text(one(t, arc, "Microsoft.Storage/storageAccounts").Body().Path("properties", "networkAcls", "defaultAction")); got != "'Deny'" {
		t.Errorf("archive networkAcls.defaultAction = %s, want 'Deny'", got)
	}
	for _, path := range []string{"modules/archive.bicep", "modules/storage.bicep"} {
		st := one(t, in.file(t, path), "Microsoft.Storage/storageAccounts").Body()
		if got := text(st.Path("properties", "networkAcls", "bypass")); got != "'AzureServices'" {
			t.Errorf("%s networkAcls.bypass = %s, want 'AzureServices'", path, got)
		}
	}
	// Basic publishing credentials off.
	fa := in.file(t, "modules/functionapp.bicep")
	off := map[string]bool{}
	for _, r := range fa.ResourcesOfType("Microsoft.Web/sites/basicPublishingCredentialsPolicies") {
		n, _ := r.Body().Get("name").Literal()
		if text(r.Body().Path("properties", "allow")) == "false" {
			off[n] = true
		}
	}
	if !off["ftp"] || !off["scm"] {
		t.Errorf("basic publishing credentials off: %v, want ftp and scm", off)
	}
	// The development consumer group exists on every hub.
	if len(ehf.ResourcesOfType("Microsoft.EventHub/namespaces/eventhubs/consumergroups")) != 2 {
		t.Error("eventhub.bicep: want the app's and the development consumer group")
	}
	// Private endpoints and the compiler are documented.
	doc := readDoc(t)
	for _, want := range []string{"### Private endpoints", "az bicep build", "what-if"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/deploy.md lacks %q", want)
		}
	}
}

// ---------------------------------------------------------------- 8. policy

func TestPolicyOption(t *testing.T) {
	in := loadInfra(t)
	main := in.file(t, "main.bicep")
	if got := text(main.Find("param", "policyAssignmentEnabled").Value); got != "false" {
		t.Errorf("policyAssignmentEnabled defaults to %s", got)
	}
	pm := main.Find("module", "policies")
	if !strings.Contains(pm.Value.Text, "if (policyAssignmentEnabled)") || text(pm.Body().Get("scope")) != "subscription()" {
		t.Errorf("module policies: %s", pm.Value.Text)
	}
	f := in.file(t, "modules/policy.bicep")
	if ts := f.Find("targetScope", ""); ts == nil && !strings.Contains(f.Src, "targetScope = 'subscription'") {
		t.Error("policy.bicep is not subscription-scoped")
	}
	def := one(t, f, "Microsoft.Authorization/policyDefinitions")
	for _, want := range []string{"'DeployIfNotExists'", "'Microsoft.KeyVault/vaults'", "'Microsoft.Insights/diagnosticSettings'", "categoryGroup: 'audit'", "roles.monitoringContributor", "roles.azureEventHubsDataOwner", "existenceCondition"} {
		if !strings.Contains(def.Value.Text, want) {
			t.Errorf("policy definition lacks %s", want)
		}
	}
	as := one(t, f, "Microsoft.Authorization/policyAssignments").Body()
	if got, _ := as.Path("identity", "type").Literal(); got != "SystemAssigned" {
		t.Error("the policy assignment has no identity to remediate with")
	}
	var owner bool
	for _, a := range roleAssignments(t, in) {
		if a.file == "modules/rbac-policy.bicep" && a.role == "azureEventHubsDataOwner" && a.scopeType == "Microsoft.EventHub/namespaces" {
			owner = true
		}
	}
	if !owner {
		t.Error("rbac-policy.bicep: the policy identity gets no Azure Event Hubs Data Owner on the namespace")
	}
}

// ---------------------------------------------------------------- 9. docs

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDeployDoc(t *testing.T) {
	doc := readDoc(t)
	for _, want := range []string{"## Costs", "100 K", "1 M", "10 M", "## Upgrading", "## Tearing down", "az monitor diagnostic-settings delete", "REGIONS=", "KVWATCH_ALERT_EMAIL"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/deploy.md lacks %q", want)
		}
	}
}
