package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/azurite/azuritetest"
)

// sweepRecords are Key Vault AuditEvent records of a caller listing a
// vault's secrets and reading 20 of them, at each start given.
func sweepRecords(vault string, claim map[string]string, starts ...time.Time) []map[string]any {
	var out []map[string]any
	rec := func(at time.Time, op, path string) map[string]any {
		return map[string]any{
			"time": at.UTC().Format(time.RFC3339), "category": "AuditEvent", "operationName": op, "operationVersion": "7.4",
			"resourceId": "/SUBSCRIPTIONS/8F3B2C1D-4E5A-4B6C-9D7E-0A1B2C3D4E5F/RESOURCEGROUPS/RG-PAY/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/" + strings.ToUpper(vault),
			"resultType": "Success", "resultSignature": "OK", "durationMs": "9", "callerIpAddress": "10.20.6.15",
			"identity": map[string]any{"claim": claim},
			"properties": map[string]any{"id": "https://" + vault + ".vault.azure.net/" + path, "httpStatusCode": 200,
				"requestUri": "https://" + vault + ".vault.azure.net/" + path + "?api-version=7.4"},
		}
	}
	for _, s := range starts {
		out = append(out, rec(s, "SecretList", "secrets"))
		for i := range 20 {
			out = append(out, rec(s.Add(time.Duration(i+1)*2*time.Second), "SecretGet", fmt.Sprintf("secrets/app-secret-%d/6a1b2c3d", i)))
		}
	}
	return out
}

// Issue 12.4: `kvwatch alerts list` reports what was learned as routine
// and not alerted. After a replay into Table Storage of an application
// that lists then reads kv-payments-prod's secrets at 6 starts (told at
// the third, routine at the last three, for each of the sweep rules) and
// of a person doing the same as often (never routine), the list ends with
// a count per rule and group since --since; --routine lists each routine
// finding; the default window (the last 24 hours) holds none of them.
func TestAlertsListReportsRoutine(t *testing.T) {
	conn := azuritetest.Start(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer hook.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kvwatch.yaml")
	os.WriteFile(cfg, []byte("receivers:\n  - name: hook\n    webhook: {url: \"${HOOK}\"}\n"), 0o644)
	const app, person = "4b5c6d7e-8f90-4a1b-8c2d-3e4f5a6b7c8d", "55e6f708-192a-43b4-85d6-e7f8091a2b3c"
	day := time.Date(2026, 11, 23, 0, 10, 0, 0, time.UTC)
	var appStarts, personStarts []time.Time
	for h := range 6 {
		appStarts = append(appStarts, day.Add(time.Duration(h)*time.Hour))
		personStarts = append(personStarts, day.Add(time.Duration(h)*time.Hour+30*time.Minute))
	}
	recs := sweepRecords("kv-payments-prod", map[string]string{"oid": app, "appid": "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f", "appidacr": "2"}, appStarts...)
	recs = append(recs, sweepRecords("kv-payments-prod", map[string]string{"oid": person, "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
		"appidacr": "0", "upn": "dave.okafor@contoso.com"}, personStarts...)...)
	body, err := json.Marshal(map[string]any{"records": recs})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "sweeps.json")
	if err := os.WriteFile(data, body, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KVWATCH_TABLE_CONNECTION_STRING": conn, "KVWATCH_TABLE_PREFIX": fmt.Sprintf("q%d", time.Now().UnixNano()%1e9),
		"HOOK": hook.URL, "KVWATCH_CONFIG": cfg}
	getenv := func(k string) string { return env[k] }
	cli := func(args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		if code := run(context.Background(), args, getenv, &o, &e); code != 0 {
			t.Fatalf("kvwatch %s: exit %d\n%s%s", strings.Join(args, " "), code, o.String(), e.String())
		}
		return o.String()
	}
	cli("replay", "--state", "table", "--send", data)

	list := cli("alerts", "list", "-n", "100", "--since", "2026-11-01")
	i := strings.Index(list, "\nlearned as routine, not alerted, since 2026-11-01T00:00Z: 9 findings (kvwatch alerts list --routine lists each)\n")
	if i < 0 {
		t.Fatalf("alerts list does not report the routine findings:\n%s", list)
	}
	alerts, section := list[:i], list[i:]
	for _, rule := range []string{"listing-then-read-burst", "mass-secret-retrieval", "secrets-read-across-vaults"} {
		want := fmt.Sprintf("  ×3     %-32s %-20s %s, last 2026-11-23T05:10Z\n", rule, "kv-payments-prod", app)
		if !strings.Contains(section, want) {
			t.Errorf("routine section lacks %q:\n%s", want, section)
		}
	}
	if strings.Contains(section, person) || strings.Count(section, "\n  ×") != 3 {
		t.Errorf("routine section:\n%s", section)
	}
	if !strings.Contains(alerts, "listing-then-read-burst") || !strings.Contains(alerts, "hook:") {
		t.Errorf("the alerts are not listed before it:\n%s", alerts)
	}

	rows := cli("alerts", "list", "--routine", "--since", "2026-11-01", "-n", "100")
	lines := strings.Split(strings.TrimSpace(rows), "\n")
	if len(lines) != 1+9 || !strings.HasPrefix(lines[0], "learned as routine, not alerted, since 2026-11-01T00:00Z: 9 findings") {
		t.Fatalf("alerts list --routine:\n%s", rows)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, " routine  "+app+", count 20, period 2026-11-23T0") || !strings.Contains(l, "kv-payments-prod") {
			t.Errorf("routine row %q", l)
		}
	}
	if l := cli("alerts", "list", "-n", "100"); strings.Contains(l, "learned as routine") {
		t.Errorf("the last 24 hours hold no routine finding, yet:\n%s", l)
	}
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"alerts", "list", "--since", "yesterday"}, getenv, &o, &e); code != 2 || !strings.Contains(e.String(), "--since") {
		t.Errorf("a bad --since: exit %d, %s", code, e.String())
	}
}
