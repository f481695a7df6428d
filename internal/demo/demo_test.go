package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/ingest"
)

// Generating a day takes a moment: share results between tests.
var (
	cacheMu sync.Mutex
	cache   = map[Options][]Blob{}
)

func generate(t testing.TB, opts Options) []Blob {
	t.Helper()
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if b, ok := cache[opts]; ok {
		return b
	}
	b := Generate(opts)
	cache[opts] = b
	return b
}

// scenarios are the options the scenario checks run on.
var scenarios = []struct {
	name string
	opts Options
}{
	{"default", Options{}},
	{"seed 42", Options{Seed: 42}},
	{"other day", Options{Seed: 7, Day: time.Date(2027, 2, 28, 15, 4, 5, 0, time.UTC)}},
}

func lines(data []byte) [][]byte {
	var out [][]byte
	for l := range bytes.Lines(data) {
		out = append(out, bytes.TrimSuffix(l, []byte("\n")))
	}
	return out
}

func TestDeterministic(t *testing.T) {
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		a, b Options
		same bool
	}{
		{"same seed", Options{Seed: 5}, Options{Seed: 5}, true},
		{"zero value is the defaults", Options{}, Options{Seed: 1, Day: day}, true},
		{"only the date of Day counts", Options{Seed: 3, Day: day.Add(17 * time.Hour)}, Options{Seed: 3, Day: day}, true},
		{"different seed", Options{Seed: 1}, Options{Seed: 2}, false},
		{"different day", Options{Seed: 1}, Options{Seed: 1, Day: day.AddDate(0, 0, 1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := generate(t, tt.a), Generate(tt.b) // one cached, one fresh
			same := len(a) == len(b)
			for i := 0; same && i < len(a); i++ {
				same = a[i].Path == b[i].Path && bytes.Equal(a[i].Data, b[i].Data)
			}
			if same != tt.same {
				t.Fatalf("outputs identical = %v, want %v", same, tt.same)
			}
			if ia, ib := Incidents(tt.a), Incidents(tt.b); tt.same && !slices.Equal(ia, ib) {
				t.Fatalf("incidents differ for equivalent options")
			}
		})
	}
}

func TestBlobsSortedAndVolume(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			blobs := generate(t, sc.opts)
			if !slices.IsSortedFunc(blobs, func(a, b Blob) int { return strings.Compare(a.Path, b.Path) }) {
				t.Error("blobs are not sorted by path")
			}
			n := 0
			for i, b := range blobs {
				if i > 0 && b.Path == blobs[i-1].Path {
					t.Errorf("duplicate blob path %s", b.Path)
				}
				if len(b.Data) == 0 || b.Data[len(b.Data)-1] != '\n' {
					t.Errorf("%s: empty or not newline-terminated", b.Path)
				}
				n += bytes.Count(b.Data, []byte("\n"))
			}
			if n < 15000 || n > 30000 {
				t.Errorf("%d records, want 15000-30000", n)
			}
		})
	}
}

var (
	pathRE = regexp.MustCompile(`^resourceId=(/SUBSCRIPTIONS/[0-9A-F-]{36}/RESOURCEGROUPS/[A-Z0-9-]+/PROVIDERS/MICROSOFT\.KEYVAULT/VAULTS/[A-Z0-9-]+)` +
		`/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/m=00/(mixed/)?PT1H\.json$`)
	timeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$`)
	guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	verRE  = regexp.MustCompile(`^https://[a-z0-9-]+\.vault\.azure\.net/(secrets|keys|certificates)/[a-z0-9-]+/[0-9a-f]{32}$`)
)

// fieldOrder is the top-level layout of an audit record; identity is
// absent from anonymous records and notifications.
var fieldOrder = []string{"time", "resourceId", "operationName", "operationVersion", "category",
	"resultType", "resultSignature", "resultDescription", "durationMs", "callerIpAddress",
	"correlationId", "identity", "properties"}

var signatures = map[float64]string{200: "OK", 204: "No Content", 401: "Unauthorized", 403: "Forbidden",
	404: "Not Found", 429: "Too Many Requests"}

const (
	uriOID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	uriUPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
)

// keys returns the member names of a JSON object, in order.
func keys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", line)
	}
	var out []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// isAudit says whether a raw record is a Key Vault vault AuditEvent.
func isAudit(m map[string]any) bool {
	_, metric := m["metricName"]
	rid, _ := m["resourceId"].(string)
	return !metric && m["category"] == "AuditEvent" && strings.Contains(rid, "/MICROSOFT.KEYVAULT/VAULTS/")
}

func TestRecordsWellFormed(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			y, mo, d := sc.opts.Day.Date()
			if sc.opts.Day.IsZero() {
				y, mo, d = 2026, 11, 23
			}
			nonAudit := 0
			shapes := map[string]int{}
			for _, b := range generate(t, sc.opts) {
				m := pathRE.FindStringSubmatch(b.Path)
				if m == nil {
					t.Fatalf("bad blob path %q", b.Path)
				}
				hour, _ := strconv.Atoi(m[5])
				if m[2] != fmt.Sprintf("%04d", y) || m[3] != fmt.Sprintf("%02d", int(mo)) || m[4] != fmt.Sprintf("%02d", d) {
					t.Fatalf("%s: not on the requested day", b.Path)
				}
				hourStart := time.Date(y, mo, d, hour, 0, 0, 0, time.UTC)
				for i, line := range lines(b.Data) {
					where := fmt.Sprintf("%s:%d", b.Path, i+1)
					var rec map[string]any
					if err := json.Unmarshal(line, &rec); err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					ts, _ := rec["time"].(string)
					if !timeRE.MatchString(ts) {
						t.Fatalf("%s: time %q", where, ts)
					}
					tm, _ := time.Parse(time.RFC3339Nano, ts)
					if tm.Before(hourStart) || !tm.Before(hourStart.Add(time.Hour)) {
						t.Errorf("%s: time %s outside the blob's hour %s", where, ts, hourStart)
					}
					if !isAudit(rec) {
						nonAudit++
						if m[6] == "" {
							t.Errorf("%s: non-audit record in an audit blob", where)
						}
						continue
					}
					if m[6] != "" {
						t.Errorf("%s: audit record in the mixed blob", where)
					}
					checkAudit(t, where, line, rec, m[1], shapes)
				}
			}
			if nonAudit != nonAuditRecords {
				t.Errorf("%d non-audit records, want %d", nonAudit, nonAuditRecords)
			}
			for _, s := range []string{"short", "uri", "none"} {
				if shapes[s] == 0 {
					t.Errorf("no record with identity shape %q", s)
				}
			}
		})
	}
}

func checkAudit(t *testing.T, where string, line []byte, rec map[string]any, resourceID string, shapes map[string]int) {
	t.Helper()
	want := slices.Clone(fieldOrder)
	if _, ok := rec["identity"]; !ok {
		want = slices.DeleteFunc(want, func(s string) bool { return s == "identity" })
	}
	if got := keys(t, line); !slices.Equal(got, want) {
		t.Fatalf("%s: fields %v, want %v", where, got, want)
	}
	if rec["resourceId"] != resourceID {
		t.Errorf("%s: resourceId %v in blob of %s", where, rec["resourceId"], resourceID)
	}
	op, _ := rec["operationName"].(string)
	if fam, _ := audit.Classify(op); fam == audit.FamilyOther {
		t.Errorf("%s: unknown operation %q", where, op)
	}
	if rec["resultType"] != "Success" {
		t.Errorf("%s: resultType %v", where, rec["resultType"])
	}
	if dur, ok := rec["durationMs"].(string); !ok {
		t.Errorf("%s: durationMs is not a string: %v", where, rec["durationMs"])
	} else if _, err := strconv.Atoi(dur); err != nil {
		t.Errorf("%s: durationMs %q", where, dur)
	}
	if c, _ := rec["correlationId"].(string); !guidRE.MatchString(c) {
		t.Errorf("%s: correlationId %q", where, c)
	}
	props, ok := rec["properties"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no properties", where)
	}
	status, ok := props["httpStatusCode"].(float64)
	if !ok {
		t.Fatalf("%s: httpStatusCode is not a number", where)
	}
	if rec["resultSignature"] != signatures[status] {
		t.Errorf("%s: resultSignature %v for status %v", where, rec["resultSignature"], status)
	}
	ver, _ := rec["operationVersion"].(string)
	uri, _ := props["requestUri"].(string)
	notification := strings.HasSuffix(op, "EventGridNotification")
	if !notification && (uri == "" || !strings.HasSuffix(uri, "?api-version="+ver)) {
		t.Errorf("%s: requestUri %q for operationVersion %q", where, uri, ver)
	}
	if id, _ := props["id"].(string); strings.HasSuffix(op, "Get") && status == 200 && !strings.HasPrefix(op, "Vault") &&
		!verRE.MatchString(id) {
		t.Errorf("%s: id %q", where, id)
	}
	mgmt := strings.HasPrefix(op, "Vault") && !notification
	if mgmt {
		if !dateRE.MatchString(ver) {
			t.Errorf("%s: ARM operationVersion %q", where, ver)
		}
		// VaultPut and VaultPatch carry the resulting configuration; a
		// VaultGet may carry the configuration it returned.
		if (op == "VaultPut" || op == "VaultPatch") && props["properties"] == nil || op != "VaultGet" && op != "VaultPut" && op != "VaultPatch" && props["properties"] != nil {
			t.Errorf("%s: properties.properties presence wrong for %s", where, op)
		}
	} else if !notification {
		if ver != "7.4" && ver != "7.5" {
			t.Errorf("%s: data-plane operationVersion %q", where, ver)
		}
		_, ap := props["isAccessPolicyMatch"]
		_, rb := props["isRbacAuthorized"]
		if (ap || rb) == (status == 401) || (ap && rb) {
			t.Errorf("%s: isAccessPolicyMatch/isRbacAuthorized wrong for status %v", where, status)
		}
		if tls := props["tlsVersion"]; tls != "TLS1_2" && tls != "TLS1_3" {
			t.Errorf("%s: tlsVersion %v", where, tls)
		}
	}
	idy, ok := rec["identity"].(map[string]any)
	if !ok {
		shapes["none"]++
		if !notification && status != 401 {
			t.Errorf("%s: no identity on status %v", where, status)
		}
		return
	}
	claim, _ := idy["claim"].(map[string]any)
	_, short := claim["oid"]
	_, long := claim[uriOID]
	switch {
	case short && !long && !mgmt:
		shapes["short"]++
	case long && !short && mgmt:
		shapes["uri"]++
	default:
		t.Errorf("%s: claim shape wrong for %s: %v", where, op, claim)
	}
}

// decoded is everything the demo day gives through kvwatch's ingest.
type decoded struct {
	events []audit.Event
	stats  ingest.Stats
	raw    map[string]map[string]any // "path:line" -> raw record
}

var decodedCache = map[Options]decoded{}

// decodeOpts decodes the day of opts, once per options.
func decodeOpts(t *testing.T, opts Options) decoded {
	t.Helper()
	blobs := generate(t, opts)
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if d, ok := decodedCache[opts]; ok {
		return d
	}
	d := decodeAll(t, blobs)
	decodedCache[opts] = d
	return d
}

func decodeAll(t *testing.T, blobs []Blob) decoded {
	t.Helper()
	d := decoded{raw: map[string]map[string]any{}}
	dec := &ingest.Decoder{Now: func() time.Time { return time.Unix(0, 0) }}
	for _, b := range blobs {
		batch := dec.File(b.Path, b.Data)
		if len(batch.Letters) != 0 || batch.Stats.DeadLettered != 0 || len(batch.Problems) != 0 {
			t.Fatalf("%s: %d dead letters, problems %q", b.Path, len(batch.Letters), batch.Problems)
		}
		d.events = append(d.events, batch.Events...)
		d.stats.Add(batch.Stats)
		for i, l := range lines(b.Data) {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatal(err)
			}
			d.raw[fmt.Sprintf("%s:%d", b.Path, i+1)] = m
		}
	}
	return d
}

func (d decoded) rawOf(e audit.Event) map[string]any {
	return d.raw[fmt.Sprintf("%s:%d", e.Source.File, e.Source.Line)]
}

func TestIngest(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			d := decodeOpts(t, sc.opts)
			if d.stats.Skipped != nonAuditRecords {
				t.Errorf("skipped %d, want %d", d.stats.Skipped, nonAuditRecords)
			}
			if d.stats.Metrics == 0 || d.stats.Categories == 0 || d.stats.Resources == 0 {
				t.Errorf("every skip reason should be exercised: %+v", d.stats)
			}
			if d.stats.Accepted != len(d.raw)-nonAuditRecords || d.stats.Accepted != len(d.events) {
				t.Errorf("accepted %d of %d records (%d events)", d.stats.Accepted, len(d.raw), len(d.events))
			}

			counts := map[string]int{}
			shapeKeys := map[string]map[string]map[string]bool{} // upn -> shape -> keys
			for _, e := range d.events {
				raw := d.rawOf(e)
				if raw == nil {
					t.Fatalf("no raw record for %+v", e.Source)
				}
				status := int(raw["properties"].(map[string]any)["httpStatusCode"].(float64))
				if e.HTTPStatus != status {
					t.Errorf("%s:%d: status %d, raw %d", e.Source.File, e.Source.Line, e.HTTPStatus, status)
				}
				counts[string(e.Outcome)]++
				if status == 403 {
					counts["403"]++
					if e.Outcome != audit.OutcomeDenied || e.ResultType != "Success" {
						t.Errorf("403 record: outcome %q resultType %q", e.Outcome, e.ResultType)
					}
				}
				if e.Vault == "" || e.SubscriptionID == "" || e.ResourceGroup == "" {
					t.Errorf("%s:%d: vault not read from resourceId", e.Source.File, e.Source.Line)
				}
				if _, ok := raw["identity"]; ok && (e.Caller.KeyFrom != "oid" || e.Caller.TenantID == "") {
					t.Errorf("%s:%d: caller %+v", e.Source.File, e.Source.Line, e.Caller)
				}
				if e.Caller.UPN == "" {
					continue
				}
				shape := "short"
				if strings.HasPrefix(e.Operation, "Vault") && e.Family == audit.FamilyVault {
					shape = "uri"
				}
				if shapeKeys[e.Caller.UPN] == nil {
					shapeKeys[e.Caller.UPN] = map[string]map[string]bool{}
				}
				if shapeKeys[e.Caller.UPN][shape] == nil {
					shapeKeys[e.Caller.UPN][shape] = map[string]bool{}
				}
				shapeKeys[e.Caller.UPN][shape][e.Caller.Key] = true
			}
			for _, k := range []string{"success", "denied", "notfound", "throttled", "403"} {
				if counts[k] == 0 {
					t.Errorf("no %s records", k)
				}
			}
			if counts["403"] < 30 {
				t.Errorf("%d 403 records, want at least 30", counts["403"])
			}

			both := 0
			for upn, byShape := range shapeKeys {
				if len(byShape) < 2 {
					continue
				}
				both++
				all := map[string]bool{}
				for _, ks := range byShape {
					for k := range ks {
						all[k] = true
					}
				}
				if len(all) != 1 {
					t.Errorf("%s seen through both claim shapes has keys %v", upn, all)
				}
			}
			if both < 2 {
				t.Errorf("%d people seen through both claim shapes, want at least 2 (ravi, alice, carol)", both)
			}
		})
	}
}

// TestIncidents checks that every planted incident's window holds the
// records that make it, as kvwatch sees them.
func TestIncidents(t *testing.T) {
	type check func(t *testing.T, inc Incident, in, all []audit.Event)
	checks := map[string]check{
		"mass-secret-read": func(t *testing.T, inc Incident, in, all []audit.Event) {
			if in[0].Operation != "SecretList" {
				t.Errorf("first operation %s, want SecretList", in[0].Operation)
			}
			if n := distinct(in, "SecretGet"); n < 40 {
				t.Errorf("%d distinct secrets read, want 40", n)
			}
			if d := inc.End.Sub(inc.Start); d > 5*time.Minute {
				t.Errorf("window %s, want about 4 minutes", d)
			}
			for _, e := range all {
				if e.Caller.Key == inc.Caller && e.Vault == inc.Vault && (e.Time.Before(inc.Start) || e.Time.After(inc.End)) {
					t.Errorf("caller also on %s at %s", inc.Vault, e.Time)
				}
			}
		},
		"denied-burst": func(t *testing.T, inc Incident, in, _ []audit.Event) {
			if n := count(in, func(e audit.Event) bool { return e.Outcome == audit.OutcomeDenied && e.ResultType == "Success" }); n != 30 {
				t.Errorf("%d denials, want 30", n)
			}
			if d := inc.End.Sub(inc.Start); d > 3*time.Minute {
				t.Errorf("window %s, want at most 3 minutes", d)
			}
			if ip := in[0].CallerIP; strings.HasPrefix(ip, "10.") || ip == "" {
				t.Errorf("caller IP %q is not external", ip)
			}
		},
		"denied-across-vaults": func(t *testing.T, inc Incident, in, _ []audit.Event) {
			vaults := map[string]bool{}
			for _, e := range in {
				if e.Outcome == audit.OutcomeDenied {
					vaults[e.Vault] = true
				}
			}
			if len(vaults) != 3 || inc.Vault != "" {
				t.Errorf("denied on %v (Vault %q), want 3 vaults", vaults, inc.Vault)
			}
			if d := inc.End.Sub(inc.Start); d > time.Hour {
				t.Errorf("window %s, want within the hour", d)
			}
		},
		"secret-purge": func(t *testing.T, inc Incident, in, _ []audit.Event) {
			del := slices.IndexFunc(in, func(e audit.Event) bool { return e.Operation == "SecretDelete" })
			purge := slices.IndexFunc(in, func(e audit.Event) bool { return e.Operation == "SecretPurge" })
			if del < 0 || purge < del || in[del].ObjectName != in[purge].ObjectName || in[purge].ObjectName == "" {
				t.Fatalf("want SecretDelete then SecretPurge of one secret: %v", ops(in))
			}
			if in[purge].Outcome != audit.OutcomeSuccess || in[purge].Kind != audit.KindPurge {
				t.Errorf("purge: outcome %s kind %s", in[purge].Outcome, in[purge].Kind)
			}
			for _, tm := range []time.Time{inc.Start, inc.End} {
				if tm.Hour() != 2 || tm.Minute() != 13 {
					t.Errorf("at %s, want 02:13", tm.Format(time.TimeOnly))
				}
			}
		},
		"vault-made-public": func(t *testing.T, inc Incident, in, _ []audit.Event) {
			i := slices.IndexFunc(in, func(e audit.Event) bool { return e.Operation == "VaultPatch" })
			if i < 0 {
				t.Fatalf("no VaultPatch: %v", ops(in))
			}
			c := in[i].Config
			if c == nil || c.NetworkDefaultAction != "Allow" || c.PublicNetworkAccess != "Enabled" ||
				c.AccessPolicies == nil || *c.AccessPolicies == 0 || c.SoftDelete == nil || c.RBACAuthorization == nil {
				t.Errorf("config %+v", c)
			}
		},
		"vault-destroyed": func(t *testing.T, inc Incident, in, _ []audit.Event) {
			// A VaultPatch, then VaultDelete and VaultPurge in the same
			// clock hour (one vault-admin-operation incident) but a later
			// replayed batch (replay hands an hour on in half hours).
			if got := strings.Join(ops(in), ","); got != "VaultGet,VaultPatch,VaultDelete,VaultPurge" {
				t.Fatalf("operations %s", got)
			}
			patch, del := in[1].Time, in[2].Time
			if patch.Hour() != del.Hour() || patch.Minute() >= 30 || del.Minute() < 30 {
				t.Errorf("patch at %s, delete at %s: want one clock hour, two half hours", patch.Format(time.TimeOnly), del.Format(time.TimeOnly))
			}
			for _, e := range in {
				if e.Outcome != audit.OutcomeSuccess {
					t.Errorf("%s: outcome %s", e.Operation, e.Outcome)
				}
			}
		},
		"secret-backup": func(t *testing.T, inc Incident, in, all []audit.Event) {
			if n := distinct(in, "SecretBackup"); n < 3 {
				t.Errorf("%d secrets backed up, want several", n)
			}
			for _, e := range all {
				if e.Caller.Key == inc.Caller && (e.Time.Before(inc.Start) || e.Time.After(inc.End)) {
					t.Errorf("caller also seen at %s (%s)", e.Time, e.Operation)
				}
			}
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			incs := Incidents(sc.opts)
			d := decodeOpts(t, sc.opts)
			seen := map[string]bool{}
			for _, inc := range incs {
				t.Run(inc.Name, func(t *testing.T) {
					if seen[inc.Name] {
						t.Fatalf("duplicate incident name")
					}
					seen[inc.Name] = true
					if inc.Start.IsZero() || inc.End.Before(inc.Start) || inc.Description == "" || inc.Caller == "" {
						t.Fatalf("incomplete incident %+v", inc)
					}
					var in []audit.Event
					for _, e := range d.events {
						if e.Caller.Key == inc.Caller && (inc.Vault == "" || e.Vault == inc.Vault) &&
							!e.Time.Before(inc.Start) && !e.Time.After(inc.End) {
							in = append(in, e)
						}
					}
					slices.SortStableFunc(in, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })
					if len(in) == 0 {
						t.Fatalf("no records in the window")
					}
					if !in[0].Time.Equal(inc.Start) && !inc.Start.Before(in[0].Time) {
						t.Errorf("window starts after the first record")
					}
					if !in[len(in)-1].Time.Equal(inc.End) {
						t.Errorf("window ends at %s, last record at %s", inc.End, in[len(in)-1].Time)
					}
					c, ok := checks[inc.Name]
					if !ok {
						t.Fatalf("no check for incident %q", inc.Name)
					}
					c(t, inc, in, d.events)
				})
			}
			for name := range checks {
				if !seen[name] {
					t.Errorf("incident %q not planted", name)
				}
			}
		})
	}
}

func count(es []audit.Event, f func(audit.Event) bool) int {
	n := 0
	for _, e := range es {
		if f(e) {
			n++
		}
	}
	return n
}

func distinct(es []audit.Event, op string) int {
	names := map[string]bool{}
	for _, e := range es {
		if e.Operation == op && e.Outcome == audit.OutcomeSuccess {
			names[e.ObjectName] = true
		}
	}
	return len(names)
}

func ops(es []audit.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Operation)
	}
	return out
}

// TestNoise checks the background the detections must stay quiet on.
func TestNoise(t *testing.T) {
	d := decodeOpts(t, Options{})
	argByVault, policyByVault := map[string]int{}, map[string]int{}
	ops := map[string]int{}
	anonymous, dup := 0, 0
	seen := map[string]bool{}
	for _, e := range d.events {
		ops[e.Operation]++
		if e.Caller.AppID == appResourceGraph {
			argByVault[e.Vault]++
			if !strings.HasPrefix(e.ClientInfo, "AzureResourceGraph.IngestionWorkerService") {
				t.Errorf("Resource Graph clientInfo %q", e.ClientInfo)
			}
		}
		if e.Caller.AppID == appPolicyInsights {
			policyByVault[e.Vault]++
		}
		if e.Caller.KeyFrom == "ip" {
			anonymous++
		}
		k := e.CorrelationID + e.Time.String()
		if seen[k] {
			dup++
		}
		seen[k] = true
	}
	for _, v := range []string{"kv-payments-prod", "kv-web-prod", "kv-data-dev", "kv-shared-infra"} {
		if argByVault[v] < 200 || policyByVault[v] < 50 {
			t.Errorf("%s: %d Resource Graph and %d Policy Insights reads", v, argByVault[v], policyByVault[v])
		}
	}
	for _, op := range []string{"SecretGet", "SecretList", "SecretSet", "CertificateGet", "KeyUnwrap", "KeyDecrypt",
		"VaultGet", "VaultPatch", "VaultPut", "SecretNearExpiryEventGridNotification",
		"CertificateNearExpiryEventGridNotification", "VaultAccessPolicyChangedEventGridNotification"} {
		if ops[op] == 0 {
			t.Errorf("no %s", op)
		}
	}
	if anonymous == 0 || dup == 0 {
		t.Errorf("%d anonymous records, %d duplicates; want some of each", anonymous, dup)
	}
	// People work 08:00-18:00 UTC; the only person out of hours is the purge.
	for _, e := range d.events {
		if strings.Contains(e.Caller.UPN, "@") && (e.Time.Hour() < 8 || e.Time.Hour() >= 18) &&
			e.Caller.UPN != "jordan.miles@contoso.com" {
			t.Errorf("%s at %s", e.Caller.UPN, e.Time)
		}
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	blobs := generate(t, Options{})
	if err := Write(dir, blobs); err != nil {
		t.Fatal(err)
	}
	for _, b := range []Blob{blobs[0], blobs[len(blobs)/2], blobs[len(blobs)-1]} {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(b.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b.Data) {
			t.Errorf("%s: content differs", b.Path)
		}
	}
	for _, p := range []string{"../escape/PT1H.json", "/abs/PT1H.json"} {
		if err := Write(dir, []Blob{{Path: p, Data: []byte("{}\n")}}); err == nil {
			t.Errorf("Write accepted path %q", p)
		}
	}
}
