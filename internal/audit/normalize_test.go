package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const (
	recordsDir   = "../../testdata/records"
	malformedDir = "../../testdata/malformed"
	goldenDir    = "../../testdata/golden/normalize"
	opNamesFile  = "../../testdata/keyvault-operation-names.txt"
)

// fixtures returns the paths of the JSON files in dir, sorted.
func fixtures(t testing.TB, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixtures in %s", dir)
	}
	return paths
}

func fixtureName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}

// normalizeFile decodes and normalizes one fixture record.
func normalizeFile(t *testing.T, name string) (Event, Skip) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recordsDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRecord(data)
	if err != nil {
		t.Fatalf("%s: DecodeRecord: %v", name, err)
	}
	e, skip, err := Normalize(&r, Source{})
	if err != nil {
		t.Fatalf("%s: Normalize: %v", name, err)
	}
	return e, skip
}

// goldenSkip is what the golden file holds for a record Normalize skips.
type goldenSkip struct {
	Skip Skip `json:"skip"`
}

func TestNormalizeGolden(t *testing.T) {
	for _, path := range fixtures(t, recordsDir) {
		name := fixtureName(path)
		t.Run(name, func(t *testing.T) {
			e, skip := normalizeFile(t, name)
			var v any = e
			if skip != SkipNone {
				v = goldenSkip{skip}
			}
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got = append(got, '\n')
			golden := filepath.Join(goldenDir, name+".golden.json")
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestNormalizeGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Normalize(%s) differs from %s:\n--- got\n%s\n--- want\n%s", name, golden, got, want)
			}
		})
	}
}

// TestGoldenOrphans fails when a golden file has no fixture left.
func TestGoldenOrphans(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(goldenDir, "*.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		if _, err := os.Stat(filepath.Join(recordsDir, name+".json")); err != nil {
			t.Errorf("golden %s has no fixture record", g)
		}
	}
}

func TestNormalizeSkips(t *testing.T) {
	for name, want := range map[string]Skip{
		"skip-category-policy": SkipCategory,
		"skip-metric":          SkipMetric,
		"skip-managed-hsm":     SkipResourceType,
	} {
		if _, got := normalizeFile(t, name); got != want {
			t.Errorf("%s: skip = %q, want %q", name, got, want)
		}
	}
	// Every other fixture is a Key Vault audit event.
	for _, path := range fixtures(t, recordsDir) {
		name := fixtureName(path)
		if strings.HasPrefix(name, "skip-") {
			continue
		}
		if _, skip := normalizeFile(t, name); skip != SkipNone {
			t.Errorf("%s: skipped (%s)", name, skip)
		}
	}
}

func TestNormalizeMalformed(t *testing.T) {
	cases := map[string]bool{ // name → whether DecodeRecord itself must fail
		"time-missing":          false,
		"time-garbage":          false,
		"operationname-missing": false,
		"operationname-number":  true,
		"truncated":             true,
	}
	for _, path := range fixtures(t, malformedDir) {
		name := fixtureName(path)
		decodeFails, ok := cases[name]
		if !ok {
			t.Errorf("malformed fixture %s has no expectation here", name)
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeRecord(data)
		if decodeFails {
			if err == nil {
				t.Errorf("%s: DecodeRecord succeeded", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: DecodeRecord: %v", name, err)
			continue
		}
		e, skip, err := Normalize(&r, Source{})
		if !errors.Is(err, ErrInvalid) || skip != SkipNone {
			t.Errorf("%s: Normalize = (%+v, %q, %v), want an ErrInvalid error", name, e, skip, err)
		}
	}
}

func TestOutcomeIgnoresResultType(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		outcome Outcome
	}{
		{"failure-401-unauthorized", 401, OutcomeDenied},
		{"failure-403-forbidden", 403, OutcomeDenied},
		{"failure-404-not-found", 404, OutcomeNotFound},
		{"failure-429-throttled", 429, OutcomeThrottled},
		{"failure-500-internal", 500, OutcomeError},
		{"authentication-unauthorized", 401, OutcomeDenied},
		{"nostatus-not-found", 404, OutcomeNotFound},
		{"nostatus-toomanyrequests", 429, OutcomeThrottled},
		{"nostatus-too-many-requests", 429, OutcomeThrottled},
		{"secret-get", 200, OutcomeSuccess},
		{"secret-purge", 204, OutcomeSuccess},
		{"vault-purge", 202, OutcomeSuccess},
	}
	for _, c := range cases {
		e, _ := normalizeFile(t, c.name)
		if e.ResultType != "Success" {
			t.Errorf("%s: fixture resultType = %q, want Success", c.name, e.ResultType)
		}
		if e.HTTPStatus != c.status || e.Outcome != c.outcome {
			t.Errorf("%s: status %d outcome %s, want %d %s", c.name, e.HTTPStatus, e.Outcome, c.status, c.outcome)
		}
	}
}

func TestForbiddenWithSuccessIsDenied(t *testing.T) {
	r := Record{
		Time:            "2024-05-14T12:00:07.4451203Z",
		ResourceID:      "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/V",
		OperationName:   "SecretGet",
		Category:        "AuditEvent",
		ResultType:      "Success",
		ResultSignature: "Forbidden",
	}
	r.Properties.HTTPStatusCode = Number{Value: 403, Set: true}
	e, _, err := Normalize(&r, Source{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Outcome != OutcomeDenied || e.HTTPStatus != 403 {
		t.Errorf("outcome %s status %d, want denied 403", e.Outcome, e.HTTPStatus)
	}
	// The status wins over a signature that says otherwise.
	r.ResultSignature = "OK"
	if e, _, _ := Normalize(&r, Source{}); e.Outcome != OutcomeDenied {
		t.Errorf("with signature OK: outcome %s, want denied", e.Outcome)
	}
}

func TestSamePrincipalSameKey(t *testing.T) {
	short, _ := normalizeFile(t, "identity-short-claims")
	uri, _ := normalizeFile(t, "identity-uri-claims")
	const oid = "a1e2c3d4-5b6f-4789-8a0b-1c2d3e4f5a6b"
	for _, c := range []Caller{short.Caller, uri.Caller} {
		if c.Key != oid || c.KeyFrom != "oid" || c.ObjectID != oid || c.UPN != "alice@contoso.com" {
			t.Errorf("caller %+v, want key %s from oid, upn alice@contoso.com", c, oid)
		}
	}
	if short.Caller.Key != uri.Caller.Key {
		t.Errorf("short-claim key %q != URI-claim key %q", short.Caller.Key, uri.Caller.Key)
	}
	// Every fixture of alice, whatever the claim shape, has the same key.
	for _, name := range []string{"vault-put", "vault-patch", "vault-delete", "secret-set", "key-create"} {
		if e, _ := normalizeFile(t, name); e.Caller.Key != oid {
			t.Errorf("%s: caller key %q, want %q", name, e.Caller.Key, oid)
		}
	}
}

func TestCallerShapes(t *testing.T) {
	cases := []struct {
		name string
		want Caller
	}{
		{"identity-claim-array", Caller{
			ObjectID: "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e",
			AppID:    "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
			UPN:      "live.com#bob@fabrikam.com",
			TenantID: "5c2a7e91-3f4d-4b8e-a1c6-9d0e2f3a4b5c",
			Key:      "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e", KeyFrom: "oid",
		}},
		{"identity-none", Caller{Key: "185.220.101.45", KeyFrom: "ip"}},
		{"authentication-unauthorized", Caller{Key: "10.20.4.17", KeyFrom: "ip"}},
		{"secret-near-expiry-notification", Caller{}},
		{"vault-get-resource-graph", Caller{
			ObjectID: "f2b9d6c1-0a3e-4f7d-b8c5-6e4a2d1f9c07",
			AppID:    "509e4652-da8d-478d-a730-e9d4a1996ca4",
			Key:      "f2b9d6c1-0a3e-4f7d-b8c5-6e4a2d1f9c07", KeyFrom: "oid",
		}},
	}
	for _, c := range cases {
		if e, _ := normalizeFile(t, c.name); e.Caller != c.want {
			t.Errorf("%s: caller\n got %+v\nwant %+v", c.name, e.Caller, c.want)
		}
	}
}

func TestVaultConfig(t *testing.T) {
	ptrB := func(b bool) *bool { return &b }
	ptrI := func(i int) *int { return &i }
	e, _ := normalizeFile(t, "vault-put")
	want := VaultConfig{
		NetworkDefaultAction:    "Allow",
		PublicNetworkAccess:     "Enabled",
		RBACAuthorization:       ptrB(false),
		PurgeProtection:         ptrB(false),
		SoftDelete:              ptrB(true),
		SoftDeleteRetentionDays: ptrI(7),
		AccessPolicies:          ptrI(2),
		IPRules:                 []string{},
		// The principals the access policies grant, for judging changes.
		PolicyObjectIDs:              []string{"a1e2c3d4-5b6f-4789-8a0b-1c2d3e4f5a6b", "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9"},
		EnabledForDeployment:         ptrB(false),
		EnabledForTemplateDeployment: ptrB(false),
		EnabledForDiskEncryption:     ptrB(false),
	}
	if e.Config == nil {
		t.Fatal("VaultPut: no Config")
	}
	if g, w := mustJSON(t, e.Config), mustJSON(t, want); g != w {
		t.Errorf("VaultPut config\n got %s\nwant %s", g, w)
	}
	e, _ = normalizeFile(t, "vault-patch")
	if e.Config == nil || e.Config.PurgeProtection != nil || e.Config.AccessPolicies == nil || *e.Config.AccessPolicies != 3 {
		t.Errorf("VaultPatch config %s: want purge protection unset, 3 access policies", mustJSON(t, e.Config))
	}
	for _, name := range []string{"vault-get-resource-graph", "vault-delete", "secret-set"} {
		if e, _ := normalizeFile(t, name); e.Config != nil {
			t.Errorf("%s: Config %s, want nil", name, mustJSON(t, e.Config))
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFixtureTimes(t *testing.T) {
	cases := map[string]string{
		"time-fraction-0":      "2024-05-14T14:30:00Z",
		"time-fraction-3":      "2024-05-14T14:30:00.123Z",
		"time-fraction-7":      "2024-05-14T14:30:00.1234567Z",
		"time-no-zone":         "2024-05-14T14:30:00.1234567Z",
		"time-offset-plus0200": "2024-05-14T14:30:00.1234567Z",
	}
	for name, want := range cases {
		e, _ := normalizeFile(t, name)
		if got := e.Time.Format(time.RFC3339Nano); got != want || e.Time.Location() != time.UTC {
			t.Errorf("%s: time %s (%s), want %s UTC", name, got, e.Time.Location(), want)
		}
	}
	for name, want := range map[string]int64{"duration-string": 250, "duration-number": 250, "failure-500-internal": 30012} {
		if e, _ := normalizeFile(t, name); e.DurationMs != want {
			t.Errorf("%s: durationMs %d, want %d", name, e.DurationMs, want)
		}
	}
}

// operationNames reads the documented operation names.
func operationNames(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(opNamesFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
			names = append(names, s)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestClassifyDocumentedNames(t *testing.T) {
	names := operationNames(t)
	if len(names) != 82 {
		t.Errorf("%d documented names, the reference lists 82", len(names))
	}
	for _, op := range names {
		fam, kind := Classify(op)
		if fam == FamilyOther || kind == KindOther {
			t.Errorf("Classify(%q) = %s/%s: documented names must be classified", op, fam, kind)
		}
		// The family follows the name.
		var want Family
		switch {
		case op == "Authentication":
			want = FamilyAuthentication
		case op == "VaultAccessPolicyChangedEventGridNotification":
			want = FamilyVault
		case strings.HasSuffix(op, "EventGridNotification"):
			want = FamilyNotification
		case strings.HasPrefix(op, "Vault"):
			want = FamilyVault
		case strings.HasPrefix(op, "Key"):
			want = FamilyKey
		case strings.HasPrefix(op, "Secret"):
			want = FamilySecret
		case strings.HasPrefix(op, "Certificate"):
			want = FamilyCertificate
		}
		if fam != want {
			t.Errorf("Classify(%q) family %s, want %s", op, fam, want)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		op   string
		fam  Family
		kind Kind
	}{
		{"Authentication", FamilyAuthentication, KindAuth},
		{"VaultGet", FamilyVault, KindRead},
		{"VaultPut", FamilyVault, KindWrite},
		{"VaultPatch", FamilyVault, KindWrite},
		{"VaultDelete", FamilyVault, KindDelete},
		{"VaultPurge", FamilyVault, KindPurge},
		{"VaultRecover", FamilyVault, KindRecover},
		{"VaultListDeleted", FamilyVault, KindList},
		{"VaultAccessPolicyChangedEventGridNotification", FamilyVault, KindPolicy},
		{"KeyGet", FamilyKey, KindRead},
		{"KeySign", FamilyKey, KindCrypto},
		{"KeyUnwrap", FamilyKey, KindCrypto},
		{"KeyDecrypt", FamilyKey, KindCrypto},
		{"KeyBackup", FamilyKey, KindBackup},
		{"KeyRotate", FamilyKey, KindWrite},
		{"KeyRotationPolicyGet", FamilyKey, KindRead},
		{"KeyRotationPolicySet", FamilyKey, KindPolicy},
		{"KeyNearExpiryEventGridNotification", FamilyNotification, KindNotify},
		{"SecretGet", FamilySecret, KindRead},
		{"SecretList", FamilySecret, KindList},
		{"SecretListVersions", FamilySecret, KindList},
		{"SecretSet", FamilySecret, KindWrite},
		{"SecretDelete", FamilySecret, KindDelete},
		{"SecretPurge", FamilySecret, KindPurge},
		{"SecretBackup", FamilySecret, KindBackup},
		{"SecretRestore", FamilySecret, KindRestore},
		{"SecretGetDeleted", FamilySecret, KindRead},
		{"SecretNearExpiryEventGridNotification", FamilyNotification, KindNotify},
		{"SecretExpiredEventGridNotification", FamilyNotification, KindNotify},
		{"CertificateGet", FamilyCertificate, KindRead},
		{"CertificateIssuersList", FamilyCertificate, KindList},
		{"CertificateIssuerSet", FamilyCertificate, KindWrite},
		{"CertificateContactsDelete", FamilyCertificate, KindDelete},
		{"CertificatePolicyUpdate", FamilyCertificate, KindPolicy},
		{"CertificatePendingMerge", FamilyCertificate, KindWrite},
		// Unknown names: family by prefix, kind by verb.
		{"SecretRotate", FamilySecret, KindWrite},
		{"KeyAttestationGet", FamilyKey, KindRead},
		{"KeyReleaseList", FamilyKey, KindList},
		{"CertificateFooPurge", FamilyCertificate, KindPurge},
		{"VaultNetworkPolicySet", FamilyVault, KindPolicy},
		{"SecretFooCreate", FamilySecret, KindWrite},
		{"KeyFooEncrypt", FamilyKey, KindCrypto},
		{"KeyFrobnicate", FamilyKey, KindOther},
		{"StorageAccountFooEventGridNotification", FamilyNotification, KindNotify},
		{"ManagedHsmFooBar", FamilyOther, KindOther},
		{"ManagedHsmKeyGet", FamilyOther, KindRead},
		{"", FamilyOther, KindOther},
		{"Key", FamilyKey, KindOther},
	}
	for _, c := range cases {
		fam, kind := Classify(c.op)
		if fam != c.fam || kind != c.kind {
			t.Errorf("Classify(%q) = %s/%s, want %s/%s", c.op, fam, kind, c.fam, c.kind)
		}
	}
}

func TestParseTime(t *testing.T) {
	valid := []struct{ in, want string }{
		{"2024-05-14T09:20:15Z", "2024-05-14T09:20:15Z"},
		{"2024-05-14T09:20:15.123Z", "2024-05-14T09:20:15.123Z"},
		{"2024-05-14T09:20:15.1234567Z", "2024-05-14T09:20:15.1234567Z"},
		{"2024-05-14T09:20:15.123456789Z", "2024-05-14T09:20:15.123456789Z"},
		{"2024-05-14T09:20:15.1234567891234Z", "2024-05-14T09:20:15.123456789Z"}, // beyond 9 digits: cut
		{"2024-05-14T09:20:15.1234567", "2024-05-14T09:20:15.1234567Z"},          // no zone: UTC
		{"2024-05-14T09:20:15", "2024-05-14T09:20:15Z"},
		{"2024-05-14 09:20:15.5", "2024-05-14T09:20:15.5Z"},
		{"2024-05-14t09:20:15z", "2024-05-14T09:20:15Z"},
		{"2024-05-14T09:20:15,25Z", "2024-05-14T09:20:15.25Z"},
		{"  2024-05-14T09:20:15Z \n", "2024-05-14T09:20:15Z"},
		{"2024-05-14T11:20:15.1234567+02:00", "2024-05-14T09:20:15.1234567Z"},
		{"2024-05-14T11:20:15+0200", "2024-05-14T09:20:15Z"},
		{"2024-05-14T11:20:15+02", "2024-05-14T09:20:15Z"},
		{"2024-05-14T04:50:15-04:30", "2024-05-14T09:20:15Z"},
		{"2024-05-14T09:20:15+00:00", "2024-05-14T09:20:15Z"},
		{"2024-05-14T09:20:15-00:00", "2024-05-14T09:20:15Z"},
		{"2024-05-15T01:20:15+16:00", "2024-05-14T09:20:15Z"},
		{"2024-01-01T01:00:00+02:00", "2023-12-31T23:00:00Z"}, // offset crosses a year
		{"2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"},      // leap day
		{"2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"},
		{"2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999999Z"},
		{"2017-01-01T01:59:60+02:00", "2016-12-31T23:59:59.999999999Z"},
		{"0001-01-01T00:00:00.000000001Z", "0001-01-01T00:00:00.000000001Z"},
		{"9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z"},
	}
	for _, c := range valid {
		got, err := ParseTime(c.in)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", c.in, err)
			continue
		}
		if s := got.Format(time.RFC3339Nano); s != c.want || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %s (%s), want %s UTC", c.in, s, got.Location(), c.want)
		}
	}
	invalid := []string{
		"",
		"2024-05-14",
		"2024-05-14T09:20",
		"not a time at all, no",
		"Tuesday, 14 May 2024 09:20",
		"2024-02-31T00:00:00Z", // 31 February
		"2023-02-29T00:00:00Z", // not a leap year
		"2024-04-31T00:00:00Z",
		"2024-00-10T00:00:00Z",
		"2024-13-10T00:00:00Z",
		"2024-05-00T00:00:00Z",
		"2024-05-32T00:00:00Z",
		"2024-05-14T24:00:00Z",
		"2024-05-14T09:60:00Z",
		"2024-05-14T09:20:61Z",
		"2024-05-14X09:20:15Z",
		"2024/05/14T09:20:15Z",
		"2024-05-14T09:20:15.Z", // a dot without digits
		"2024-05-14T09:20:15ZZ", // junk after the zone
		"2024-05-14T09:20:15 Z", // space before the zone
		"2024-05-14T09:20:15+2", // offset too short
		"2024-05-14T09:20:15+24:00",
		"2024-05-14T09:20:15+02:60",
		"2024-05-14T09:20:15+02-00",
		"2024-05-14T09:20:15+0a:00",
		"2024-05-14T09:20:15.123+02:00:00",
		"2024-05-14T09:20:15 UTC",
		"+2024-05-14T09:20:15Z",
		"２０２４-05-14T09:20:15Z",
		"1715678415", // epoch seconds are not accepted
		// Out of range: the zero Time, before it, or past year 9999.
		"0001-01-01T00:00:00Z",
		"0000-06-01T00:00:00Z",
		"0001-01-01T00:30:00+01:00",
		"9999-12-31T23:30:00-01:00",
	}
	for _, in := range invalid {
		if got, err := ParseTime(in); err == nil {
			t.Errorf("ParseTime(%q) = %s, want an error", in, got.Format(time.RFC3339Nano))
		}
	}
}

func TestStatusFromSignature(t *testing.T) {
	cases := []struct {
		sig  string
		want int
	}{
		{"", 0},
		{"OK", 200},
		{"ok", 200},
		{"Accepted", 202},
		{"No Content", 204},
		{"NoContent", 204},
		{"Unauthorized", 401},
		{"Forbidden", 403},
		{"FORBIDDEN", 403},
		{"Not Found", 404},
		{"NotFound", 404},
		{"not found", 404},
		{"Not_Found", 404},
		{"Conflict", 409},
		{"TooManyRequests", 429},
		{"Too Many Requests", 429},
		{"too many requests", 429},
		{"Internal Server Error", 500},
		{"InternalServerError", 500},
		{"Service Unavailable", 503},
		{"403", 403},
		{"429", 429},
		{" 404 ", 404},
		{"4034", 0},
		{"40", 0},
		{"Success", 0},
		{"Failure", 0},
		{"Not Found Really", 0},
		{strings.Repeat("Not Found ", 20), 0},
	}
	for _, c := range cases {
		if got := StatusFromSignature(c.sig); got != c.want {
			t.Errorf("StatusFromSignature(%q) = %d, want %d", c.sig, got, c.want)
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	cases := map[int]Outcome{
		0: OutcomeUnknown, 99: OutcomeUnknown, 100: OutcomeSuccess, 200: OutcomeSuccess, 204: OutcomeSuccess,
		304: OutcomeSuccess, 400: OutcomeFailed, 401: OutcomeDenied, 403: OutcomeDenied, 404: OutcomeNotFound,
		409: OutcomeFailed, 429: OutcomeThrottled, 500: OutcomeError, 503: OutcomeError, 600: OutcomeUnknown,
	}
	for status, want := range cases {
		if got := OutcomeOf(status); got != want {
			t.Errorf("OutcomeOf(%d) = %s, want %s", status, got, want)
		}
	}
}

func TestParseVaultID(t *testing.T) {
	cases := []struct {
		id            string
		sub, rg, name string
		ok            bool
	}{
		{"/SUBSCRIPTIONS/8F3B2C1D-4E5A-4B6C-9D7E-0A1B2C3D4E5F/RESOURCEGROUPS/RG-SECURITY-PROD/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-CONTOSO-PROD",
			"8f3b2c1d-4e5a-4b6c-9d7e-0a1b2c3d4e5f", "rg-security-prod", "kv-contoso-prod", true},
		{"/subscriptions/8f3b2c1d-4e5a-4b6c-9d7e-0a1b2c3d4e5f/resourceGroups/rg-Security-Prod/providers/Microsoft.KeyVault/vaults/kv-Contoso-Prod",
			"8f3b2c1d-4e5a-4b6c-9d7e-0a1b2c3d4e5f", "rg-security-prod", "kv-contoso-prod", true},
		{"/Subscriptions/S/ResourceGroups/RG/Providers/microsoft.keyvault/Vaults/V", "s", "rg", "v", true},
		{"subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v", "s", "rg", "v", true},   // no leading slash
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v/", "s", "rg", "v", true}, // trailing slash
		{"/subscriptions/s/resourcegroups/rg/providers/Microsoft.Storage/storageAccounts/v", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/Microsoft.KeyVault/managedHSMs/hsm", "", "", "", false},
		{"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/HSM", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v/secrets/x", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v/extra", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg", "", "", "", false},
		{"/subscriptions/s", "", "", "", false},
		{"/", "", "", "", false},
		{"", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v//", "", "", "", false},
		{"/tenants/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/v", "", "", "", false},
		{"/subscriptions/s/groups/rg/providers/microsoft.keyvault/vaults/v", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/provider/microsoft.keyvault/vaults/v", "", "", "", false},
		{"/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvaults/vaults/v", "", "", "", false},
	}
	for _, c := range cases {
		sub, rg, name, ok := ParseVaultID(c.id)
		if sub != c.sub || rg != c.rg || name != c.name || ok != c.ok {
			t.Errorf("ParseVaultID(%q) = (%q, %q, %q, %v), want (%q, %q, %q, %v)",
				c.id, sub, rg, name, ok, c.sub, c.rg, c.name, c.ok)
		}
	}
}

func TestNormalizeObject(t *testing.T) {
	cases := []struct {
		name                 string
		typ, object, version string
	}{
		{"secret-get", "secret", "db-password", "6a1b2c3d4e5f40718293a4b5c6d7e8f9"},
		{"secret-list", "secret", "", ""},
		{"secret-purge", "secret", "legacy-api-key", ""},
		{"key-sign", "key", "payments-cmk", "4f1d2c3b5a6e4d7c8b9a0f1e2d3c4b5a"},
		{"certificate-issuer-set", "certificate", "issuers/DigiCertIssuer", ""},
		{"certificate-contacts-get", "certificate", "contacts", ""},
		{"vault-put", "", "", ""},
		{"failure-401-unauthorized", "key", "payments-cmk", ""}, // from requestUri
	}
	for _, c := range cases {
		e, _ := normalizeFile(t, c.name)
		if e.ObjectType != c.typ || e.ObjectName != c.object || e.ObjectVersion != c.version {
			t.Errorf("%s: object (%q, %q, %q), want (%q, %q, %q)", c.name,
				e.ObjectType, e.ObjectName, e.ObjectVersion, c.typ, c.object, c.version)
		}
		if e.Vault != "kv-contoso-prod" {
			t.Errorf("%s: vault %q", c.name, e.Vault)
		}
	}
}

// TestNormalizeVaultFromHost: without a resourceId the vault name comes
// from the data-plane host of properties.id, not from the ARM host of
// requestUri.
func TestNormalizeVaultFromHost(t *testing.T) {
	for _, name := range []string{"secret-get", "identity-uri-claims"} {
		data, err := os.ReadFile(filepath.Join(recordsDir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		r.ResourceID = ""
		e, _, err := Normalize(&r, Source{})
		if err != nil {
			t.Fatal(err)
		}
		if e.Vault != "kv-contoso-prod" {
			t.Errorf("%s without resourceId: vault %q, want kv-contoso-prod", name, e.Vault)
		}
	}
}

func TestParseObjectURI(t *testing.T) {
	const h = "https://kv-contoso-prod.vault.azure.net"
	cases := []struct {
		uri                      string
		host, typ, name, version string
	}{
		{h + "/secrets/db-password/6a1b2c3d4e5f40718293a4b5c6d7e8f9", "kv-contoso-prod.vault.azure.net", "secret", "db-password", "6a1b2c3d4e5f40718293a4b5c6d7e8f9"},
		{h + "/secrets/db-password/?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "db-password", ""},
		{h + "/secrets/db-password?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "db-password", ""},
		{h + "/secrets/db-password/versions?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "db-password", ""},
		{h + "/secrets/db-password/backup?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "db-password", ""},
		{h + "/secrets?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "", ""},
		{h + "/deletedsecrets/old?api-version=7.4", "kv-contoso-prod.vault.azure.net", "secret", "old", ""},
		{h + ":443/keys/k/ABCDEF0123/sign?api-version=7.4", "kv-contoso-prod.vault.azure.net", "key", "k", "ABCDEF0123"},
		{h + "/keys/k/create?api-version=7.4", "kv-contoso-prod.vault.azure.net", "key", "k", ""},
		{h + "/keys/k/rotationpolicy?api-version=7.4", "kv-contoso-prod.vault.azure.net", "key", "k", ""},
		{h + "/KEYS/k", "kv-contoso-prod.vault.azure.net", "key", "k", ""},
		{h + "/certificates/c/pending", "kv-contoso-prod.vault.azure.net", "certificate", "c", ""},
		{h + "/certificates/c/pending/merge", "kv-contoso-prod.vault.azure.net", "certificate", "c", ""},
		{h + "/certificates/c/policy", "kv-contoso-prod.vault.azure.net", "certificate", "c", ""},
		{h + "/certificates/issuers/DigiCertIssuer", "kv-contoso-prod.vault.azure.net", "certificate", "issuers/DigiCertIssuer", ""},
		{h + "/certificates/issuers", "kv-contoso-prod.vault.azure.net", "certificate", "issuers", ""},
		{h + "/certificates/contacts", "kv-contoso-prod.vault.azure.net", "certificate", "contacts", ""},
		{h + "/secrets/name%20with%20space/0a", "kv-contoso-prod.vault.azure.net", "secret", "name with space", "0a"},
		{h + "/storage/acct", "kv-contoso-prod.vault.azure.net", "storage", "acct", ""},
		{h + "/", "kv-contoso-prod.vault.azure.net", "", "", ""},
		{h, "kv-contoso-prod.vault.azure.net", "", "", ""},
		{"https://control-prod-weu.vaultcore.azure.net/subscriptions/s/resourcegroups/rg/providers/Microsoft.KeyVault/vaults/v?api-version=2023-07-01", "control-prod-weu.vaultcore.azure.net", "", "", ""},
		{"", "", "", "", ""},
	}
	for _, c := range cases {
		host, typ, name, version := parseObjectURI(c.uri)
		if host != c.host || typ != c.typ || name != c.name || version != c.version {
			t.Errorf("parseObjectURI(%q) = (%q, %q, %q, %q), want (%q, %q, %q, %q)",
				c.uri, host, typ, name, version, c.host, c.typ, c.name, c.version)
		}
	}
}
