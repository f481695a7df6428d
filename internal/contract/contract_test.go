package contract

import (
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root, relative to this package.
const root = "../.."

// ---------------------------------------------------------------- fixtures

type infra struct {
	files map[string]*File
}

func loadInfra(t *testing.T) *infra {
	t.Helper()
	files, err := ParseDir(filepath.Join(root, "infra"))
	if err != nil {
		t.Fatalf("parse infra: %v", err)
	}
	for _, want := range []string{"main.bicep", "main.bicepparam", "modules/appsettings.bicep", "modules/functionapp.bicep", "modules/eventhub.bicep", "modules/diagnostics.bicep"} {
		if files[want] == nil {
			t.Fatalf("infra/%s missing", want)
		}
	}
	return &infra{files: files}
}

func (in *infra) file(t *testing.T, name string) *File {
	t.Helper()
	f := in.files[name]
	if f == nil {
		t.Fatalf("infra/%s missing", name)
	}
	return f
}

// one returns the single resource of typ in file f.
func one(t *testing.T, f *File, typ string) *Decl {
	t.Helper()
	rs := f.ResourcesOfType(typ)
	if len(rs) != 1 {
		t.Fatalf("%s: want exactly one %s resource, found %d", f.Path, typ, len(rs))
	}
	return rs[0]
}

func literal(t *testing.T, where string, v *Value) string {
	t.Helper()
	s, ok := v.Literal()
	if !ok {
		text := "<missing>"
		if v != nil {
			text = v.Text
		}
		t.Fatalf("%s: want a string literal, found %s", where, text)
	}
	return s
}

func text(v *Value) string {
	if v == nil {
		return "<missing>"
	}
	return v.Text
}

// paramDefault returns the literal default of a param in main.bicep.
func paramDefault(t *testing.T, f *File, name string) string {
	t.Helper()
	d := f.Find("param", name)
	if d == nil {
		t.Fatalf("%s: no param %s", f.Path, name)
	}
	return literal(t, f.Path+": param "+name, d.Value)
}

// moduleParam returns the expression main.bicep passes to a module's param.
func moduleParam(t *testing.T, f *File, module, param string) string {
	t.Helper()
	d := f.Find("module", module)
	if d == nil {
		t.Fatalf("%s: no module %s", f.Path, module)
	}
	v := d.Body().Path("params", param)
	if v == nil {
		t.Fatalf("%s: module %s passes no %s", f.Path, module, param)
	}
	return v.Text
}

type functionJSON struct {
	Bindings []map[string]any `json:"bindings"`
}

func loadFunctions(t *testing.T) map[string]functionJSON {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "function-app", "*", "function.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no function-app/*/function.json (%v)", err)
	}
	out := map[string]functionJSON{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var fj functionJSON
		if err := json.Unmarshal(b, &fj); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(filepath.Dir(p))] = fj
	}
	return out
}

func localSettings(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "function-app", "local.settings.json.example"))
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		Values map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		t.Fatalf("local.settings.json.example: %v", err)
	}
	return ls.Values
}

// ---------------------------------------------------------------- app settings

// appSettings collects the settings infra/modules/appsettings.bicep gives the
// Function app: the keys of the object literals the config resource's
// `properties` expression names, directly or through vars of the file.
// Unconditional are those in plain object literals (not a branch of a
// ternary, not a union() argument built on the spot).
type settings struct {
	always map[string]*Value // set in every deployment
	maybe  map[string]*Value // set when a parameter asks for it
}

func (s settings) has(name string) bool {
	_, a := s.always[name]
	_, m := s.maybe[name]
	return a || m
}

func appSettings(t *testing.T, in *infra) settings {
	t.Helper()
	f := in.file(t, "modules/appsettings.bicep")
	var res *Decl
	for _, r := range f.ResourcesOfType("Microsoft.Web/sites/config") {
		if !r.Existing {
			if res != nil {
				t.Fatal("appsettings.bicep: two sites/config resources are written")
			}
			res = r
		}
	}
	if res == nil {
		t.Fatal("appsettings.bicep: no sites/config resource is written")
	}
	if n := literal(t, "appsettings name", res.Body().Get("name")); n != "appsettings" {
		t.Fatalf("the sites/config resource is %q, want appsettings", n)
	}
	props := res.Body().Get("properties")
	if props == nil {
		t.Fatal("appsettings resource has no properties")
	}
	s := settings{always: map[string]*Value{}, maybe: map[string]*Value{}}
	add := func(o *Object, always bool) {
		for _, p := range o.Props {
			if always {
				s.always[p.Key] = p.Value
			} else {
				s.maybe[p.Key] = p.Value
			}
		}
	}
	if props.Object != nil {
		add(props.Object, true)
	}
	for _, o := range props.Inner {
		add(o, false)
	}
	for _, id := range props.Identifiers() {
		d := f.Find("var", id)
		if d == nil || d.Value == nil {
			continue
		}
		if d.Value.Object != nil {
			add(d.Value.Object, true)
		}
		for _, o := range d.Value.Inner {
			add(o, false)
		}
	}
	if len(s.always) == 0 {
		t.Fatal("found no app settings in infra/modules/appsettings.bicep")
	}
	return s
}

// Settings the platform or a binding needs whatever the code says.
var requiredSettings = map[string]string{
	"AzureWebJobsStorage__accountName":          "the host's storage, by identity (Flex needs AzureWebJobsStorage)",
	"AzureWebJobsStorage__credential":           "explicitly the managed identity",
	"EventHubConnection__credential":            "explicitly the managed identity",
	"APPLICATIONINSIGHTS_CONNECTION_STRING":     "telemetry",
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Application Insights has local auth off",
	"KVWATCH_CONFIG":                            "the kvwatch.yaml shipped in the package",
	"KVWATCH_LOG_LEVEL":                         "log level",
	// internal/tablestore (being written) reads KVWATCH_TABLE_CONNECTION_STRING,
	// AzureWebJobsStorage, AzureWebJobsStorage__tableServiceUri or
	// KVWATCH_TABLE_ENDPOINT, and KVWATCH_TABLE_PREFIX. Shared Key is off, so
	// only the identity-based endpoint can work.
	"KVWATCH_TABLE_ENDPOINT": "kvwatch's tables, by identity",
	"KVWATCH_TABLE_PREFIX":   "kvwatch's table names",
}

// Settings that must never be set: they contradict Flex Consumption or the
// identity-only design.
var forbiddenSettings = map[string]string{
	"KVWATCH_EVENTHUB_CONNECTION_STRING":       "a SAS connection string, for kvwatch consume only: the app receives with its identity",
	"FUNCTIONS_WORKER_RUNTIME":                 "Flex declares the runtime in functionAppConfig.runtime",
	"FUNCTIONS_EXTENSION_VERSION":              "set by the platform on Flex",
	"WEBSITE_RUN_FROM_PACKAGE":                 "Flex deploys from its blob container",
	"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "no content share on Flex",
	"WEBSITE_CONTENTSHARE":                     "no content share on Flex",
	"AzureWebJobsStorage":                      "a connection string: Shared Key is off, use __accountName",
	"KVWATCH_TABLE_CONNECTION_STRING":          "a connection string: Shared Key is off, use KVWATCH_TABLE_ENDPOINT",
	"EventHubConnection":                       "a SAS connection string: the app receives with its identity",
	"APPINSIGHTS_INSTRUMENTATIONKEY":           "key-based telemetry; local auth is off",
	"AZURE_CLIENT_ID":                          "would select a user-assigned identity; the app uses its system-assigned one",
}

// How each environment variable the Go code reads is provided in Azure. A
// name the code reads that is not listed here fails TestCodeSettingsAreSet:
// decide whether the Bicep must set it, and list it.
var codeSettings = map[string]string{
	"KVWATCH_EVENTHUB_NAMESPACE":           "alt",      // kvwatch consume, outside Functions (the app uses EventHubConnection__fullyQualifiedNamespace)
	"KVWATCH_EVENTHUB_CONNECTION_STRING":   "never",    // kvwatch consume only: a SAS connection string
	"FUNCTIONS_CUSTOMHANDLER_PORT":         "host",     // set by the Functions host
	"FUNCTIONS_HTTPWORKER_PORT":            "host",     // set by the Functions host
	"KVWATCH_LOG_LEVEL":                    "bicep",    // appsettings.bicep
	"KVWATCH_CONFIG":                       "bicep",    // appsettings.bicep
	"KVWATCH_MAX_BODY_BYTES":               "default",  // the default fits a full batch (TestBatchFitsBody)
	"KVWATCH_SILENCE_POLL":                 "default",  // how often serve reads runtime silences (30s)
	"KVWATCH_DEADLETTER_FILE":              "default",  // temp file until dead letters move to Table Storage
	"KVWATCH_PROFILE":                      "default",  // a diagnostic: serve's CPU and allocation profiles (docs/performance.md), unset in Azure
	"KVWATCH_EVENTHUB_NAME":                "bicep",    // also %...% in function.json
	"KVWATCH_CONSUMER_GROUP":               "bicep",    // also %...% in function.json
	"KVWATCH_TABLE_ENDPOINT":               "bicep",    // tablestore, identity-based
	"KVWATCH_TABLE_PREFIX":                 "bicep",    // tablestore
	"AzureWebJobsStorage__tableServiceUri": "alt",      // tablestore alternative to KVWATCH_TABLE_ENDPOINT
	"KVWATCH_TABLE_CONNECTION_STRING":      "never",    // Shared Key is off
	"AzureWebJobsStorage":                  "never",    // Shared Key is off
	"AZURE_CLIENT_ID":                      "never",    // system-assigned identity
	"AzureWebJobsStorage__accountName":     "bicep",    // host storage; tablestore fallback
	"AzureWebJobsStorage__credential":      "bicep",    // managedidentity
	"AzureWebJobsStorage__clientId":        "never",    // user-assigned identity only
	"IDENTITY_ENDPOINT":                    "host",     // set by the platform for managed identity
	"MSI_ENDPOINT":                         "host",     // older name of the same
	"TLS1_2":                               "not-env",  // a TLS version, not a variable
	"TLS1_3":                               "not-env",  // a TLS version, not a variable
	"KVWATCH_TEST_TABLE_CONNECTION_STRING": "test",     // tests only
	"EventHubConnection_":                  "not-env",  // handlers.RegionConnection's prefix: EventHubConnection_<region>, set per region (TestRegionsAgree)
	"KVWATCH_ACS_ENDPOINT":                 "optional", // set when acsEndpoint is given
	"KVWATCH_EMAIL_FROM":                   "optional", // set when emailFrom is given
	"KVWATCH_EMAIL_TO":                     "optional", // set when emailTo is given
	"KVWATCH_SMTP_HOST":                    "optional", // set when smtpHost is given
	"KVWATCH_TEAMS_WEBHOOK_URL":            "optional", // Key Vault reference when teamsWebhookUrl is given
	"KVWATCH_SMTP_PASSWORD":                "optional", // Key Vault reference when smtpPassword is given
}

// envName matches string literals that look like an environment variable:
// upper case with an underscore, or the host's mixed-case setting names.
var envName = regexp.MustCompile(`"([A-Z][A-Z0-9]*_[A-Z0-9_]+|AzureWebJobs[A-Za-z0-9_]*|EventHubConnection[A-Za-z0-9_]*)"`)

// codeEnvNames scans the non-test Go sources for environment variable names.
func codeEnvNames(t *testing.T) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "dist", "bin", "contract":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range envName.FindAllStringSubmatch(string(b), -1) {
			rel, _ := filepath.Rel(root, path)
			if !slices.Contains(found[m[1]], rel) {
				found[m[1]] = append(found[m[1]], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestCodeSettingsAreSet: every environment variable the Go code reads is
// either set by the Bicep or knowingly left to the host, a default or tests.
func TestCodeSettingsAreSet(t *testing.T) {
	s := appSettings(t, loadInfra(t))
	for _, name := range SortedKeys(codeEnvNames(t)) {
		how, ok := codeSettings[name]
		if !ok {
			t.Errorf("the code reads %s (%v), which internal/contract does not know: set it in infra/modules/appsettings.bicep "+
				"if it matters in Azure, and list it in codeSettings", name, codeEnvNames(t)[name])
			continue
		}
		switch how {
		case "bicep":
			if _, ok := s.always[name]; !ok {
				t.Errorf("the code reads %s; infra/modules/appsettings.bicep does not set it in every deployment", name)
			}
		case "optional":
			if !s.has(name) {
				t.Errorf("the code reads %s; infra/modules/appsettings.bicep never sets it", name)
			}
		case "never":
			if s.has(name) {
				t.Errorf("%s is set, but %s", name, forbiddenSettings[name])
			}
		}
	}
}

// TestRequiredSettings: what the host and kvwatch need in Azure.
func TestRequiredSettings(t *testing.T) {
	s := appSettings(t, loadInfra(t))
	for _, name := range SortedKeys(requiredSettings) {
		if _, ok := s.always[name]; !ok {
			t.Errorf("app setting %s is not set (%s)", name, requiredSettings[name])
		}
	}
	if v := s.always["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]; v != nil {
		if got, _ := v.Literal(); got != "Authorization=AAD" {
			t.Errorf("APPLICATIONINSIGHTS_AUTHENTICATION_STRING = %s, want 'Authorization=AAD' (system-assigned identity)", v.Text)
		}
	}
	for _, name := range []string{"AzureWebJobsStorage__credential", "EventHubConnection__credential"} {
		if v := s.always[name]; v != nil {
			if got, _ := v.Literal(); got != "managedidentity" {
				t.Errorf("%s = %s, want 'managedidentity'", name, v.Text)
			}
		}
	}
}

// TestForbiddenSettings: nothing in infra/ sets a setting that breaks Flex
// or brings back keys.
func TestForbiddenSettings(t *testing.T) {
	in := loadInfra(t)
	s := appSettings(t, in)
	for _, name := range SortedKeys(forbiddenSettings) {
		if s.has(name) {
			t.Errorf("app setting %s must not be set: %s", name, forbiddenSettings[name])
		}
	}
	// Nor anywhere else (siteConfig.appSettings, another config resource).
	for _, path := range SortedKeys(in.files) {
		f := in.files[path]
		toks, err := lex(f.Src)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			name := tok.text
			if tok.kind == tString {
				name = tok.value
			}
			if why, bad := forbiddenSettings[name]; bad && (tok.kind == tString || tok.kind == tIdent) {
				t.Errorf("infra/%s:%d names %s: %s", path, tok.line, name, why)
			}
		}
	}
}

var percentRef = regexp.MustCompile(`%([A-Za-z0-9_]+)%`)

// TestBindingSettingsAreSet: every %NAME% a function.json reads and every
// identity-based connection a binding names is an app setting.
func TestBindingSettingsAreSet(t *testing.T) {
	s := appSettings(t, loadInfra(t))
	for name, fj := range loadFunctions(t) {
		for _, b := range fj.Bindings {
			for key, v := range b {
				str, ok := v.(string)
				if !ok {
					continue
				}
				for _, m := range percentRef.FindAllStringSubmatch(str, -1) {
					if _, ok := s.always[m[1]]; !ok {
						t.Errorf("function-app/%s/function.json %s reads %%%s%%; infra/modules/appsettings.bicep does not set it", name, key, m[1])
					}
				}
			}
			conn, _ := b["connection"].(string)
			if conn == "" {
				continue
			}
			switch b["type"] {
			case "eventHubTrigger", "eventHub":
				want := conn + "__fullyQualifiedNamespace"
				v, ok := s.always[want]
				if !ok {
					t.Errorf("function-app/%s: connection %q needs app setting %s (identity-based)", name, conn, want)
					continue
				}
				if !v.identifier && !strings.Contains(v.Text, "servicebus.windows.net") && !strings.HasSuffix(v.Text, ".fullyQualifiedNamespace") {
					t.Errorf("%s = %s: want the namespace's host name", want, v.Text)
				}
			default:
				if !hasPrefix(s, conn+"__") {
					t.Errorf("function-app/%s: connection %q has no %s__* app setting", name, conn, conn)
				}
			}
		}
	}
}

func hasPrefix(s settings, prefix string) bool {
	for k := range s.always {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

var yamlRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// TestConfigReferencesAreSet: the kvwatch.yaml the package ships expands
// ${NAME} from app settings; a reference without a default must be set.
func TestConfigReferencesAreSet(t *testing.T) {
	s := appSettings(t, loadInfra(t))
	b, err := os.ReadFile(filepath.Join(root, "internal", "pack", "kvwatch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	optional := optionalReceiverLines(t, b)
	for i, line := range strings.Split(string(b), "\n") {
		if optional[i+1] {
			continue // an optional receiver is left out while its settings are unset
		}
		if j := strings.Index(line, "#"); j >= 0 && !strings.Contains(line[:j], "'") && !strings.Contains(line[:j], `"`) {
			line = line[:j]
		}
		line = strings.ReplaceAll(line, "$$", "")
		for _, m := range yamlRef.FindAllStringSubmatch(line, -1) {
			if m[2] != "" {
				continue
			}
			if !s.has(m[1]) {
				t.Errorf("internal/pack/kvwatch.yaml:%d references ${%s}; no app setting provides it", i+1, m[1])
			}
		}
	}
}

// optionalReceiverLines returns the lines of the receivers marked
// `optional: true` in a kvwatch.yaml: internal/config leaves such a receiver
// out, instead of failing, when a variable it names is unset.
func optionalReceiverLines(t *testing.T, src []byte) map[int]bool {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil || len(doc.Content) == 0 {
		t.Fatalf("kvwatch.yaml: %v", err)
	}
	out := map[int]bool{}
	top := doc.Content[0]
	lines := strings.Count(string(src), "\n") + 1
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "receivers" {
			continue
		}
		items := top.Content[i+1].Content
		end := lines
		if i+2 < len(top.Content) {
			end = top.Content[i+2].Line - 1
		}
		for k, item := range items {
			last := end
			if k+1 < len(items) {
				last = items[k+1].Line - 1
			}
			for j := 0; j+1 < len(item.Content); j += 2 {
				if item.Content[j].Value == "optional" && item.Content[j+1].Value == "true" {
					for l := item.Line; l <= last; l++ {
						out[l] = true
					}
				}
			}
		}
	}
	return out
}

// ---------------------------------------------------------------- names

// TestHubAndConsumerGroupAgree: the hub the diagnostic settings write to, the
// hub and consumer group the Bicep creates, and the ones the trigger reads
// (through KVWATCH_EVENTHUB_NAME and KVWATCH_CONSUMER_GROUP) are the same,
// and match local.settings.json.example.
func TestHubAndConsumerGroupAgree(t *testing.T) {
	in := loadInfra(t)
	main := in.file(t, "main.bicep")
	local := localSettings(t)

	if got, want := paramDefault(t, main, "auditHubName"), local["KVWATCH_EVENTHUB_NAME"]; got != want {
		t.Errorf("main.bicep auditHubName defaults to %q; local.settings.json.example says %q", got, want)
	}
	// Local runs read with the development consumer group, never the app's.
	if got, want := paramDefault(t, main, "devConsumerGroupName"), local["KVWATCH_CONSUMER_GROUP"]; got != want {
		t.Errorf("main.bicep devConsumerGroupName defaults to %q; local.settings.json.example says %q", got, want)
	}
	if paramDefault(t, main, "consumerGroupName") == local["KVWATCH_CONSUMER_GROUP"] {
		t.Errorf("local.settings.json.example reads with the app's consumer group %q: a laptop would take partitions from the app", local["KVWATCH_CONSUMER_GROUP"])
	}
	params := in.file(t, "main.bicepparam")
	for name, want := range map[string]string{"auditHubName": local["KVWATCH_EVENTHUB_NAME"], "devConsumerGroupName": local["KVWATCH_CONSUMER_GROUP"], "consumerGroupName": paramDefault(t, main, "consumerGroupName")} {
		if d := params.Find("param", name); d != nil {
			if got, _ := d.Value.Literal(); got != want {
				t.Errorf("main.bicepparam sets %s = %s; the code and local settings use %q", name, d.Value.Text, want)
			}
		}
	}

	// main.bicep hands the same parameters to every module.
	for _, c := range []struct{ module, param, want string }{
		{"eventHubs", "eventHubName", "auditHubName"},
		{"eventHubs", "consumerGroupName", "consumerGroupName"},
		{"diagnostics", "eventHubName", "auditHubName"},
		{"appSettings", "eventHubName", "auditHubName"},
		{"appSettings", "consumerGroupName", "consumerGroupName"},
		{"eventHubs", "devConsumerGroupName", "devConsumerGroupName"},
		{"eventHubs", "receiverPrincipalId", "functionApp.outputs.principalId"},
	} {
		if got := moduleParam(t, main, c.module, c.param); got != c.want {
			t.Errorf("main.bicep: module %s gets %s: %s, want %s", c.module, c.param, got, c.want)
		}
	}

	// And the modules use them.
	eh := in.file(t, "modules/eventhub.bicep")
	if got := text(one(t, eh, "Microsoft.EventHub/namespaces/eventhubs").Body().Get("name")); got != "eventHubName" {
		t.Errorf("eventhub.bicep: hub name is %s, want eventHubName", got)
	}
	var groups []string
	for _, cg := range eh.ResourcesOfType("Microsoft.EventHub/namespaces/eventhubs/consumergroups") {
		groups = append(groups, text(cg.Body().Get("name")))
	}
	if !slices.Contains(groups, "consumerGroupName") {
		t.Errorf("eventhub.bicep: consumer groups %v, want one named consumerGroupName", groups)
	}
	diag := in.file(t, "modules/diagnostics.bicep")
	if got := text(one(t, diag, "Microsoft.Insights/diagnosticSettings").Body().Path("properties", "eventHubName")); got != "eventHubName" {
		t.Errorf("diagnostics.bicep: eventHubName is %s; without it Azure Monitor creates a hub per category", got)
	}
	s := appSettings(t, in)
	for name, want := range map[string]string{
		"KVWATCH_EVENTHUB_NAME":                       "eventHubName",
		"KVWATCH_CONSUMER_GROUP":                      "consumerGroupName",
		"EventHubConnection__fullyQualifiedNamespace": "eventHubNamespaces[0].fullyQualifiedNamespace",
	} {
		if got := text(s.always[name]); got != want {
			t.Errorf("appsettings.bicep: %s = %s, want %s", name, got, want)
		}
	}
	// The trigger reads the same names.
	fj := loadFunctions(t)["AuditEvents"]
	if len(fj.Bindings) == 0 {
		t.Fatal("function-app/AuditEvents/function.json has no bindings")
	}
	b := fj.Bindings[0]
	if b["eventHubName"] != "%KVWATCH_EVENTHUB_NAME%" || b["consumerGroup"] != "%KVWATCH_CONSUMER_GROUP%" || b["connection"] != "EventHubConnection" {
		t.Errorf("AuditEvents binding reads eventHubName=%v consumerGroup=%v connection=%v; the Bicep sets KVWATCH_EVENTHUB_NAME, KVWATCH_CONSUMER_GROUP, EventHubConnection__*",
			b["eventHubName"], b["consumerGroup"], b["connection"])
	}
}

// TestSchedulesAgree: the timers run on the schedules local runs use.
func TestSchedulesAgree(t *testing.T) {
	in := loadInfra(t)
	main := in.file(t, "main.bicep")
	local := localSettings(t)
	s := appSettings(t, in)
	for setting, param := range map[string]string{
		"KVWATCH_SILENCE_SCHEDULE":      "silenceSchedule",
		"KVWATCH_DIGEST_SCHEDULE":       "digestSchedule",
		"KVWATCH_HOUSEKEEPING_SCHEDULE": "housekeepingSchedule",
	} {
		if got := text(s.always[setting]); got != param {
			t.Errorf("appsettings.bicep: %s = %s, want %s", setting, got, param)
		}
		if got := moduleParam(t, main, "appSettings", param); got != param {
			t.Errorf("main.bicep passes %s: %s", param, got)
		}
		if got, want := paramDefault(t, main, param), local[setting]; got != want {
			t.Errorf("main.bicep %s defaults to %q; local.settings.json.example has %q", param, got, want)
		}
	}
}

// ---------------------------------------------------------------- runtime

// TestFlexCustomRuntime: Flex Consumption, runtime custom 1.0, system-assigned
// identity, identity-based deployment storage.
func TestFlexCustomRuntime(t *testing.T) {
	in := loadInfra(t)
	f := in.file(t, "modules/functionapp.bicep")
	plan := one(t, f, "Microsoft.Web/serverfarms").Body()
	if got := literal(t, "plan sku.name", plan.Path("sku", "name")); got != "FC1" {
		t.Errorf("plan sku %q, want FC1", got)
	}
	if got := literal(t, "plan sku.tier", plan.Path("sku", "tier")); got != "FlexConsumption" {
		t.Errorf("plan tier %q, want FlexConsumption", got)
	}
	if got := text(plan.Path("properties", "reserved")); got != "true" {
		t.Errorf("plan reserved = %s, want true (Linux)", got)
	}
	site := one(t, f, "Microsoft.Web/sites").Body()
	if got := literal(t, "site kind", site.Get("kind")); got != "functionapp,linux" {
		t.Errorf("site kind %q", got)
	}
	if got := literal(t, "identity.type", site.Path("identity", "type")); got != "SystemAssigned" {
		t.Errorf("identity %q, want SystemAssigned", got)
	}
	cfg := site.Path("properties", "functionAppConfig")
	if cfg == nil || cfg.Object == nil {
		t.Fatal("site has no properties.functionAppConfig")
	}
	if got := literal(t, "runtime.name", cfg.Object.Path("runtime", "name")); got != "custom" {
		t.Errorf("runtime %q, want custom", got)
	}
	ver := cfg.Object.Path("runtime", "version")
	if got := text(ver); got != "customRuntimeVersion" {
		t.Errorf("runtime.version = %s, want the customRuntimeVersion parameter", got)
	}
	if got := paramDefault(t, in.file(t, "main.bicep"), "customRuntimeVersion"); got != "1.0" {
		t.Errorf("customRuntimeVersion defaults to %q; Azure lists custom 1.0 for Flex", got)
	}
	if got := literal(t, "deployment auth", cfg.Object.Path("deployment", "storage", "authentication", "type")); got != "SystemAssignedIdentity" {
		t.Errorf("deployment storage authentication %q, want SystemAssignedIdentity", got)
	}
	if got := literal(t, "azd tag", site.Get("tags").Inner[0].Get("azd-service-name")); got != "kvwatch" {
		t.Errorf("azd-service-name tag %q, want kvwatch (azure.yaml's service)", got)
	}
}

// TestHostJSONAndPackage: host.json names the binary `make package` builds,
// with arguments the binary knows; a built dist/app has everything.
func TestHostJSONAndPackage(t *testing.T) {
	var host struct {
		Version         string `json:"version"`
		ExtensionBundle struct {
			ID      string `json:"id"`
			Version string `json:"version"`
		} `json:"extensionBundle"`
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string   `json:"defaultExecutablePath"`
				WorkingDirectory      string   `json:"workingDirectory"`
				Arguments             []string `json:"arguments"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	hostJSON, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(hostJSON, &host); err != nil {
		t.Fatalf("host.json: %v", err)
	}
	exe := host.CustomHandler.Description.DefaultExecutablePath
	if exe == "" || strings.ContainsAny(exe, `/\`) || host.CustomHandler.Description.WorkingDirectory != "" {
		t.Fatalf("host.json defaultExecutablePath %q (workingDirectory %q): want a file name at the app root",
			exe, host.CustomHandler.Description.WorkingDirectory)
	}
	if host.ExtensionBundle.ID != "Microsoft.Azure.Functions.ExtensionBundle" {
		t.Errorf("extension bundle %q", host.ExtensionBundle.ID)
	}
	mainGo, err := os.ReadFile(filepath.Join(root, "cmd", "kvwatch", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if args := host.CustomHandler.Description.Arguments; len(args) == 0 || !strings.Contains(string(mainGo), `case "`+args[0]+`":`) {
		t.Errorf("host.json starts the binary with %v; cmd/kvwatch has no such command", args)
	}

	// The Makefile's package target builds the binary host.json names.
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"defaultExecutablePath", "-o dist/app/$(PACKAGE_EXE)", "CGO_ENABLED=0 GOOS=linux GOARCH=amd64", "-trimpath", "cp host.json dist/app/", "PACKAGE_CONFIG ?= internal/pack/kvwatch.yaml", "cp $(PACKAGE_CONFIG) dist/app/kvwatch.yaml", "./internal/contract/cmd/funcapp -out dist/app -regions '$(REGIONS)'"} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("Makefile package target lacks %q", want)
		}
	}

	// KVWATCH_CONFIG points at the kvwatch.yaml the package ships.
	in := loadInfra(t)
	if got := paramDefault(t, in.file(t, "main.bicep"), "configPath"); got != "kvwatch.yaml" {
		t.Errorf("configPath defaults to %q; the package ships kvwatch.yaml at the app root", got)
	}

	// A package built by `make package`, when there is one.
	app := filepath.Join(root, "dist", "app")
	if _, err := os.Stat(app); err != nil {
		t.Skip("no dist/app: run make package to check the package too")
	}
	bin := filepath.Join(app, exe)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("dist/app has no %s (host.json's defaultExecutablePath): %v", exe, err)
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("dist/app/%s is not executable", exe)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("dist/app/%s: %v", exe, err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 || ef.OSABI != elf.ELFOSABI_NONE && ef.OSABI != elf.ELFOSABI_LINUX {
		t.Errorf("dist/app/%s is %v/%v, want linux/amd64", exe, ef.Machine, ef.OSABI)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("dist/app/%s is dynamically linked; build with CGO_ENABLED=0", exe)
		}
	}
	same := func(a, b string) {
		x, err1 := os.ReadFile(a)
		y, err2 := os.ReadFile(b)
		if err1 != nil || err2 != nil || string(x) != string(y) {
			t.Errorf("%s differs from %s (run make package again)", b, a)
		}
	}
	same(filepath.Join(root, "host.json"), filepath.Join(app, "host.json"))
	if _, err := os.Stat(filepath.Join(app, "kvwatch.yaml")); err != nil {
		t.Errorf("dist/app has no kvwatch.yaml (KVWATCH_CONFIG points at it): %v", err)
	}
	for name := range loadFunctions(t) {
		same(filepath.Join(root, "function-app", name, "function.json"), filepath.Join(app, name, "function.json"))
	}
	checkPackageRuntime(t, app)
}

// ---------------------------------------------------------------- roles

// The built-in role definition IDs, as Microsoft lists them (built-in roles
// reference; the same in every tenant).
var builtInRoles = map[string]string{
	"azureEventHubsDataReceiver":        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
	"storageBlobDataOwner":              "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
	"storageQueueDataContributor":       "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
	"storageTableDataContributor":       "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
	"monitoringMetricsPublisher":        "3913510d-42f4-4e42-8a64-420c390055eb",
	"keyVaultSecretsUser":               "4633458b-17de-408a-b874-0445c86b69e6",
	"communicationAndEmailServiceOwner": "09976791-48a7-449e-bb21-39d1a415f350",
	"reader":                            "acdd72a7-3385-48ef-bd42-f606fba81ae7",
	"monitoringContributor":             "749f88d5-cbae-40b8-bcfc-e573ddc772fa",
	"azureEventHubsDataOwner":           "f526a384-b230-433a-b45c-95f59c4a2dec",
}

// What the Function app's identity needs, and where.
var appRoles = []struct{ role, scopeType, why string }{
	{"azureEventHubsDataReceiver", "Microsoft.EventHub/namespaces/eventhubs", "the Event Hubs trigger"},
	{"storageBlobDataOwner", "Microsoft.Storage/storageAccounts", "host blobs and Flex deployment storage"},
	{"storageQueueDataContributor", "Microsoft.Storage/storageAccounts", "host queues"},
	{"storageTableDataContributor", "Microsoft.Storage/storageAccounts", "kvwatch's tables"},
	{"monitoringMetricsPublisher", "Microsoft.Insights/components", "telemetry with Authorization=AAD"},
	{"keyVaultSecretsUser", "Microsoft.KeyVault/vaults", "Key Vault references"},
}

type assignment struct {
	file      string
	role      string // key in roles.json, or "custom:<symbol>"
	scopeType string
	principal string
}

func roleAssignments(t *testing.T, in *infra) []assignment {
	t.Helper()
	var out []assignment
	roleRef := regexp.MustCompile(`roles\.([A-Za-z0-9_]+)`)
	for _, path := range SortedKeys(in.files) {
		f := in.files[path]
		for _, ra := range f.ResourcesOfType("Microsoft.Authorization/roleAssignments") {
			body := ra.Body()
			scope := body.Get("scope")
			var scopeType string
			if scope != nil {
				sym := strings.Split(scope.Text, "[")[0]
				if d := f.Symbol(sym); d != nil && d.Kind == "resource" {
					scopeType = d.ResourceType()
				}
			}
			def := text(body.Path("properties", "roleDefinitionId"))
			// Follow a var to its expression.
			if d := f.Find("var", def); d != nil && d.Value != nil {
				def = d.Value.Text
			}
			principal := text(body.Path("properties", "principalId"))
			for _, m := range roleRef.FindAllStringSubmatch(def, -1) {
				out = append(out, assignment{path, m[1], scopeType, principal})
			}
			for _, d := range f.ResourcesOfType("Microsoft.Authorization/roleDefinitions") {
				if strings.Contains(def, d.Name+".") {
					out = append(out, assignment{path, "custom:" + d.Name, scopeType, principal})
				}
			}
		}
	}
	return out
}

// TestRolesJSON: the GUIDs the Bicep uses are the built-in roles' IDs.
func TestRolesJSON(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "infra", "roles.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("infra/roles.json: %v", err)
	}
	for name, want := range builtInRoles {
		if got[name] != want {
			t.Errorf("infra/roles.json %s = %q, want %q", name, got[name], want)
		}
	}
	for name := range got {
		if _, ok := builtInRoles[name]; !ok && !strings.HasPrefix(name, "_") {
			t.Errorf("infra/roles.json has %s, which this test does not know the ID of", name)
		}
	}
}

// TestAppRolesAssigned: every role the code needs is assigned to the app's
// identity, on the resource it is needed for.
func TestAppRolesAssigned(t *testing.T) {
	in := loadInfra(t)
	as := roleAssignments(t, in)
	for _, want := range appRoles {
		ok := false
		for _, a := range as {
			if a.role == want.role && a.scopeType == want.scopeType && strings.Contains(strings.ToLower(a.principal), "principalid") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("no assignment of %s (%s) on a %s for the app's identity (%s)", want.role, builtInRoles[want.role], want.scopeType, want.why)
		}
	}
	main := in.file(t, "main.bicep")
	for _, m := range []string{"appRoles", "acsRole"} {
		if got := moduleParam(t, main, m, "principalId"); got != "functionApp.outputs.principalId" {
			t.Errorf("main.bicep: module %s grants to %s, want functionApp.outputs.principalId", m, got)
		}
	}
}

// TestACSRole: email through Communication Services with the identity needs
// the built-in Communication and Email Service Owner role or Microsoft's
// documented narrower custom role.
func TestACSRole(t *testing.T) {
	in := loadInfra(t)
	f := in.file(t, "modules/rbac-acs.bicep")
	var builtIn, custom bool
	for _, a := range roleAssignments(t, in) {
		if a.file != "modules/rbac-acs.bicep" || a.scopeType != "Microsoft.Communication/communicationServices" {
			continue
		}
		switch {
		case a.role == "communicationAndEmailServiceOwner":
			builtIn = true
		case strings.HasPrefix(a.role, "custom:"):
			d := f.Symbol(strings.TrimPrefix(a.role, "custom:"))
			perms := d.Body().Path("properties", "permissions")
			var actions []string
			for _, e := range perms.Array {
				if e.Object == nil {
					continue
				}
				for _, act := range e.Object.Get("actions").Array {
					s, _ := act.Literal()
					actions = append(actions, strings.ToLower(s))
				}
			}
			want := []string{"microsoft.communication/communicationservices/read", "microsoft.communication/communicationservices/write", "microsoft.communication/emailservices/write"}
			custom = true
			for _, w := range want {
				if !slices.Contains(actions, w) {
					t.Errorf("ACS custom role lacks %s", w)
				}
			}
			if len(actions) != len(want) {
				t.Errorf("ACS custom role has %v: more than Microsoft documents for sending", actions)
			}
		}
	}
	if !builtIn || !custom {
		t.Errorf("rbac-acs.bicep: want an assignment on the Communication Services resource with the built-in role (%v) and with the custom role (%v)", builtIn, custom)
	}
}

// TestLogReaderRoles: the three custom roles exist and are assigned on the
// archive accounts and the workspace.
func TestLogReaderRoles(t *testing.T) {
	in := loadInfra(t)
	f := in.file(t, "modules/rbac-logs.bicep")
	defs := f.ResourcesOfType("Microsoft.Authorization/roleDefinitions")
	names := map[string]bool{}
	for _, d := range defs {
		names[d.Name] = true
		if got := literal(t, d.Name+" type", d.Body().Path("properties", "type")); got != "CustomRole" {
			t.Errorf("%s type %q", d.Name, got)
		}
	}
	for _, want := range []string{"viewer", "analyst", "manager"} {
		if !names[want] {
			t.Errorf("rbac-logs.bicep: no %s role definition", want)
		}
	}
	scopes := map[string]bool{}
	for _, ra := range f.ResourcesOfType("Microsoft.Authorization/roleAssignments") {
		sym := strings.Split(text(ra.Body().Get("scope")), "[")[0]
		if d := f.Symbol(sym); d != nil {
			scopes[d.ResourceType()] = true
		}
	}
	for _, want := range []string{"Microsoft.Storage/storageAccounts", "Microsoft.OperationalInsights/workspaces"} {
		if !scopes[want] {
			t.Errorf("rbac-logs.bicep assigns no role on a %s", want)
		}
	}
	// Only the manager may change or delete.
	for _, name := range []string{"archiveReadActions", "analystWorkspaceActions"} {
		for _, v := range f.Find("var", name).Value.Array {
			s, _ := v.Literal()
			if !strings.HasSuffix(s, "/read") {
				t.Errorf("%s: %q is not a read", name, s)
			}
		}
	}
}

// ---------------------------------------------------------------- resources

// TestResourceSettings: the security settings the issue asks for.
func TestResourceSettings(t *testing.T) {
	in := loadInfra(t)

	ns := one(t, in.file(t, "modules/eventhub.bicep"), "Microsoft.EventHub/namespaces").Body()
	if got := literal(t, "namespace sku", ns.Path("sku", "name")); got != "Standard" {
		t.Errorf("Event Hubs sku %q, want Standard", got)
	}
	if got := literal(t, "minimumTlsVersion", ns.Path("properties", "minimumTlsVersion")); got != "1.2" {
		t.Errorf("Event Hubs minimumTlsVersion %q", got)
	}
	if got := text(ns.Path("properties", "disableLocalAuth")); got != "false" {
		t.Errorf("Event Hubs disableLocalAuth = %s: diagnostic settings stream only through a SAS rule", got)
	}
	rules := in.file(t, "modules/eventhub.bicep").ResourcesOfType("Microsoft.EventHub/namespaces/authorizationRules")
	if len(rules) != 1 {
		t.Fatalf("want one namespace authorization rule, found %d", len(rules))
	}
	var rights []string
	for _, r := range rules[0].Body().Path("properties", "rights").Array {
		s, _ := r.Literal()
		rights = append(rights, s)
	}
	slices.Sort(rights)
	if !slices.Equal(rights, []string{"Listen", "Manage", "Send"}) {
		t.Errorf("authorization rule rights %v, want Manage, Send, Listen (Azure Monitor)", rights)
	}
	if len(in.file(t, "modules/eventhub.bicep").ResourcesOfType("Microsoft.EventHub/namespaces/eventhubs/authorizationRules")) > 0 {
		t.Error("hub-level SAS rules: the app must receive with its identity")
	}

	st := one(t, in.file(t, "modules/storage.bicep"), "Microsoft.Storage/storageAccounts").Body()
	for key, want := range map[string]string{
		"supportsHttpsTrafficOnly": "true",
		"allowBlobPublicAccess":    "false",
		"allowSharedKeyAccess":     "false",
		"minimumTlsVersion":        "'TLS1_2'",
	} {
		if got := text(st.Path("properties", key)); got != want {
			t.Errorf("app storage %s = %s, want %s", key, got, want)
		}
	}

	kv := one(t, in.file(t, "modules/keyvault.bicep"), "Microsoft.KeyVault/vaults").Body()
	for key, want := range map[string]string{"enableRbacAuthorization": "true", "enablePurgeProtection": "true"} {
		if got := text(kv.Path("properties", key)); got != want {
			t.Errorf("kvwatch's Key Vault %s = %s, want %s", key, got, want)
		}
	}

	ai := one(t, in.file(t, "modules/monitoring.bicep"), "Microsoft.Insights/components").Body()
	if got := text(ai.Path("properties", "DisableLocalAuth")); got != "true" {
		t.Errorf("Application Insights DisableLocalAuth = %s, want true", got)
	}

	arc := in.file(t, "modules/archive.bicep")
	if got := text(one(t, arc, "Microsoft.Storage/storageAccounts").Body().Path("sku", "name")); strings.Contains(strings.ToLower(got), "premium") {
		t.Errorf("archive sku %s: premium accounts are not a diagnostic settings destination", got)
	}
	imm := one(t, arc, "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies").Body()
	if got := text(imm.Path("properties", "allowProtectedAppendWrites")); got != "true" {
		t.Errorf("immutability allowProtectedAppendWrites = %s: Azure Monitor appends to each hour's blob", got)
	}
	if got := literal(t, "immutability policy name", imm.Get("name")); got != "default" {
		t.Errorf("immutability policy name %q, want default", got)
	}
	arcStorage := one(t, arc, "Microsoft.Storage/storageAccounts").Body()
	if got := text(arcStorage.Get("location")); got != "location" {
		t.Errorf("archive location %s: must be the vaults' region (param location)", got)
	}
	if got := moduleParam(t, in.file(t, "main.bicep"), "archives", "location"); got != "region.location" {
		t.Errorf("main.bicep puts the archive in %s, want region.location", got)
	}
	if got := moduleParam(t, in.file(t, "main.bicep"), "eventHubs", "location"); got != "region.location" {
		t.Errorf("main.bicep puts the namespace in %s, want region.location", got)
	}
}

// TestDiagnosticSettings: category group audit and AllMetrics, an API version
// that knows category groups, AzureDiagnostics for the workspace (the table
// the findings' KQL reads), module scope at the vault's resource group.
func TestDiagnosticSettings(t *testing.T) {
	in := loadInfra(t)
	f := in.file(t, "modules/diagnostics.bicep")
	ds := one(t, f, "Microsoft.Insights/diagnosticSettings")
	if v := ds.APIVersion(); v < "2021-05-01-preview" {
		t.Errorf("diagnosticSettings@%s: category groups need 2021-05-01-preview or later", v)
	}
	if sym := text(ds.Body().Get("scope")); f.Symbol(sym) == nil || f.Symbol(sym).ResourceType() != "Microsoft.KeyVault/vaults" {
		t.Errorf("diagnostic setting scope %s is not the vault", sym)
	}
	props := ds.Body().Get("properties").Object
	var groups, metrics []string
	for _, l := range props.Get("logs").Array {
		if s, ok := l.Object.Get("categoryGroup").Literal(); ok {
			groups = append(groups, s)
		}
	}
	for _, m := range props.Get("metrics").Array {
		if s, ok := m.Object.Get("category").Literal(); ok {
			metrics = append(metrics, s)
		}
	}
	if !slices.Contains(groups, "audit") {
		t.Errorf("logs %v: want category group audit", groups)
	}
	if !slices.Contains(metrics, "AllMetrics") {
		t.Errorf("metrics %v: want AllMetrics", metrics)
	}
	kql, err := os.ReadFile(filepath.Join(root, "internal", "finding", "kql.go"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(kql), "AzureDiagnostics") && !strings.Contains(text(props.Get("logAnalyticsDestinationType")), "'AzureDiagnostics'") {
		t.Errorf("the findings' KQL reads AzureDiagnostics; logAnalyticsDestinationType is %s", text(props.Get("logAnalyticsDestinationType")))
	}
	scope := text(in.file(t, "main.bicep").Find("module", "diagnostics").Body().Get("scope"))
	if !strings.Contains(scope, "resourceGroup(split(target.vaultId, '/')[2], split(target.vaultId, '/')[4])") {
		t.Errorf("diagnostics module scope %s: want the vault's subscription and resource group", scope)
	}
}

// TestAPIVersionsDocumented: every resource type and API version in the Bicep
// is in docs/deploy.md's table with the source it was checked against.
func TestAPIVersionsDocumented(t *testing.T) {
	in := loadInfra(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	seen := map[string]bool{}
	for _, path := range SortedKeys(in.files) {
		for _, r := range in.files[path].Resources() {
			key := r.ResourceType() + "@" + r.APIVersion()
			if seen[key] {
				continue
			}
			seen[key] = true
			if r.APIVersion() == "" {
				t.Errorf("infra/%s:%d: %s has no API version", path, r.Line, r.Name)
				continue
			}
			found := false
			for _, l := range lines {
				if strings.HasPrefix(l, "|") && strings.Contains(l, "`"+r.ResourceType()+"`") && strings.Contains(l, "`"+r.APIVersion()+"`") {
					found = true
				}
			}
			if !found {
				t.Errorf("docs/deploy.md lists no `%s` `%s` (infra/%s:%d)", r.ResourceType(), r.APIVersion(), path, r.Line)
			}
		}
	}
}

// TestAzureYAML: azd deploys what make package builds.
func TestAzureYAML(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var y struct {
		Name  string `yaml:"name"`
		Infra struct {
			Provider string `yaml:"provider"`
			Path     string `yaml:"path"`
			Module   string `yaml:"module"`
		} `yaml:"infra"`
		Services map[string]struct {
			Project     string `yaml:"project"`
			Language    string `yaml:"language"`
			Host        string `yaml:"host"`
			Dist        string `yaml:"dist"`
			RemoteBuild *bool  `yaml:"remoteBuild"`
			Hooks       map[string]struct {
				Posix struct {
					Run string `yaml:"run"`
				} `yaml:"posix"`
			} `yaml:"hooks"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &y); err != nil {
		t.Fatalf("azure.yaml: %v", err)
	}
	if y.Infra.Path != "infra" || y.Infra.Module != "main" || (y.Infra.Provider != "" && y.Infra.Provider != "bicep") {
		t.Errorf("azure.yaml infra = %+v, want bicep, infra, main", y.Infra)
	}
	svc, ok := y.Services["kvwatch"]
	if !ok {
		t.Fatal("azure.yaml has no service kvwatch (the site's azd-service-name tag)")
	}
	if svc.Host != "function" || svc.Language != "custom" || svc.Dist != "dist/app" {
		t.Errorf("service kvwatch: host %q language %q dist %q; want function, custom (ship dist as it is), dist/app", svc.Host, svc.Language, svc.Dist)
	}
	if svc.RemoteBuild == nil || *svc.RemoteBuild {
		t.Error("service kvwatch: remoteBuild must be false (the binary is built locally)")
	}
	if got := svc.Hooks["prepackage"].Posix.Run; got != "make package" {
		t.Errorf("prepackage hook runs %q, want make package", got)
	}
}

// TestModuleWiring does what the Bicep compiler would have: every module
// main.bicep calls exists, gets only parameters it declares and every one it
// requires, and every module output main.bicep reads is declared; every
// roles.<name> the modules use is in roles.json.
func TestModuleWiring(t *testing.T) {
	in := loadInfra(t)
	outputRef := regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\.outputs\.([A-Za-z_][A-Za-z0-9_]*)`)
	for _, path := range SortedKeys(in.files) {
		f := in.files[path]
		for _, d := range f.Decls {
			if d.Kind != "module" {
				continue
			}
			target := filepath.ToSlash(filepath.Join(filepath.Dir(path), d.Type))
			mod := in.files[target]
			if mod == nil {
				t.Errorf("infra/%s:%d: module %s: no infra/%s", path, d.Line, d.Name, target)
				continue
			}
			declared := map[string]*Decl{}
			for _, p := range mod.Decls {
				if p.Kind == "param" {
					declared[p.Name] = p
				}
			}
			passed := map[string]bool{}
			if params := d.Body().Get("params"); params != nil && params.Object != nil {
				for _, k := range params.Object.Keys() {
					passed[k] = true
					if declared[k] == nil {
						t.Errorf("infra/%s:%d: module %s passes %s, which infra/%s does not declare", path, d.Line, d.Name, k, target)
					}
				}
			}
			for name, p := range declared {
				if p.Value == nil && !strings.HasSuffix(p.Type, "?") && !passed[name] {
					t.Errorf("infra/%s:%d: module %s does not pass %s, which infra/%s requires", path, d.Line, d.Name, name, target)
				}
			}
		}
		// Outputs read from modules.
		for _, m := range outputRef.FindAllStringSubmatch(stripComments(f.Src), -1) {
			d := f.Find("module", m[1])
			if d == nil {
				t.Errorf("infra/%s: %s.outputs.%s: no module %s", path, m[1], m[2], m[1])
				continue
			}
			mod := in.files[filepath.ToSlash(filepath.Join(filepath.Dir(path), d.Type))]
			if mod != nil && mod.Find("output", m[2]) == nil {
				t.Errorf("infra/%s: %s.outputs.%s: %s declares no output %s", path, m[1], m[2], d.Type, m[2])
			}
		}
	}
	// roles.<name> references.
	b, err := os.ReadFile(filepath.Join(root, "infra", "roles.json"))
	if err != nil {
		t.Fatal(err)
	}
	var roles map[string]string
	if err := json.Unmarshal(b, &roles); err != nil {
		t.Fatal(err)
	}
	for _, path := range SortedKeys(in.files) {
		toks, err := lex(in.files[path].Src)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+2 < len(toks); i++ {
			if toks[i].kind == tIdent && toks[i].text == "roles" && toks[i+1].text == "." && toks[i+2].kind == tIdent {
				if _, ok := roles[toks[i+2].text]; !ok {
					t.Errorf("infra/%s:%d uses roles.%s, which infra/roles.json does not define", path, toks[i].line, toks[i+2].text)
				}
			}
		}
	}
}

// stripComments drops // and /* */ comments (outside strings) from Bicep.
func stripComments(src string) string {
	toks, err := lex(src)
	if err != nil {
		return src
	}
	var b strings.Builder
	last := 0
	for _, tok := range toks {
		if tok.start > last {
			gap := src[last:tok.start]
			// keep newlines and blanks, drop comment text
			for _, r := range gap {
				if r == '\n' || r == ' ' || r == '\t' {
					b.WriteRune(r)
				}
			}
		}
		b.WriteString(src[tok.start:tok.end])
		last = tok.end
	}
	return b.String()
}

// TestParamFile: main.bicepparam sets only parameters main.bicep declares,
// and every one main.bicep requires.
func TestParamFile(t *testing.T) {
	in := loadInfra(t)
	main, params := in.file(t, "main.bicep"), in.file(t, "main.bicepparam")
	if !strings.Contains(params.Src, "using './main.bicep'") {
		t.Error("main.bicepparam does not say using './main.bicep'")
	}
	set := map[string]bool{}
	for _, d := range params.Decls {
		if d.Kind != "param" {
			continue
		}
		set[d.Name] = true
		if main.Find("param", d.Name) == nil {
			t.Errorf("main.bicepparam:%d sets %s, which main.bicep does not declare", d.Line, d.Name)
		}
	}
	for _, d := range main.Decls {
		if d.Kind == "param" && d.Value == nil && !set[d.Name] {
			t.Errorf("main.bicepparam does not set %s, which main.bicep requires", d.Name)
		}
	}
}
