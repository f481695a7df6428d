package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const hostileDir = "../../testdata/hostile"

// Every string field of a normalized event is within its bound, whatever
// the record said; the fields cut are named; an event stays far under
// Table Storage's 32 K-character property and 1 MiB entity limits.
func TestHostileRecordsAreBounded(t *testing.T) {
	want := map[string][]string{
		"upn-40k-no-oid":     {"caller.upn", "caller.key"},
		"objectid-40k":       {"caller.objectId", "caller.key"},
		"vault-40k":          {"resourceId", "vault"},
		"clientinfo-1mb":     {"clientInfo"},
		"requesturi-1mb":     {"objectName", "requestUri"},
		"no-objectid":        nil,
		"vault-patch-public": nil,
	}
	for _, path := range fixtures(t, hostileDir) {
		name := fixtureName(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeRecord(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e, skip, err := Normalize(&r, Source{})
		if err != nil || skip != SkipNone {
			t.Fatalf("%s: %v %q", name, err, skip)
		}
		w, ok := want[name]
		if !ok {
			t.Fatalf("%s: no expectation", name)
		}
		if !slices.Equal(e.Truncated, w) {
			t.Errorf("%s: truncated %v, want %v", name, e.Truncated, w)
		}
		for i := range bounds {
			b := &bounds[i]
			if v := *b.f(&e); len(v) > b.max || !utf8.ValidString(v) && utf8.ValidString(string(data)) {
				t.Errorf("%s: %s is %d bytes, bound %d", name, b.name, len(v), b.max)
			}
		}
		if len(e.Caller.Key) > MaxUPN {
			t.Errorf("%s: caller key is %d bytes", name, len(e.Caller.Key))
		}
		for _, f := range e.Truncated {
			if f == "caller.key" && !strings.Contains(e.Caller.Key, "…#") {
				t.Errorf("%s: the cut key %q has no hash suffix", name, e.Caller.Key)
			}
		}
		js, _ := json.Marshal(&e)
		if len(js) > 16<<10 {
			t.Errorf("%s: the event is %d bytes of JSON", name, len(js))
		}
		if e.Caller.Key == "" {
			t.Errorf("%s: no caller key", name)
		}
	}
}

// Long values that differ only past the cut stay different; the same
// value always gives the same result; the cut is at a character boundary.
func TestTruncateKeepsValuesDistinct(t *testing.T) {
	a := strings.Repeat("é", 30000) + "a@contoso.com"
	b := strings.Repeat("é", 30000) + "b@contoso.com"
	ta, cut := Truncate(a, MaxUPN)
	tb, _ := Truncate(b, MaxUPN)
	if !cut || ta == tb {
		t.Fatalf("distinct values collide: %q", ta)
	}
	if again, _ := Truncate(a, MaxUPN); again != ta {
		t.Fatal("not deterministic")
	}
	if len(ta) > MaxUPN || !utf8.ValidString(ta) || !strings.HasSuffix(ta[:len(ta)-16], "…#") {
		t.Fatalf("bad cut: %d bytes, valid %v, %q", len(ta), utf8.ValidString(ta), ta[len(ta)-24:])
	}
	if s, cut := Truncate("short", MaxUPN); cut || s != "short" {
		t.Fatal("a short value was changed")
	}

	// Two callers with 40,000-character UPNs that differ at the end are
	// two callers; the same one written in another case is the same.
	mk := func(upn string) Event {
		r := Record{Time: "2026-11-23T10:00:00Z", OperationName: "SecretGet",
			ResourceID: "/SUBSCRIPTIONS/A/RESOURCEGROUPS/B/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV"}
		r.Identity.UPN = upn
		e, _, err := Normalize(&r, Source{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	long := strings.Repeat("m", 40000)
	e1, e2, e3 := mk(long+"1@x.com"), mk(long+"2@x.com"), mk(strings.ToUpper(long)+"1@X.COM")
	if e1.Caller.Key == e2.Caller.Key {
		t.Fatal("two long UPNs share a caller key")
	}
	if e1.Caller.Key != e3.Caller.Key {
		t.Fatal("the same UPN in another case is another caller")
	}
}

// Ordinary records are left alone: nothing truncated in any fixture.
func TestOrdinaryRecordsAreNotTruncated(t *testing.T) {
	for _, path := range fixtures(t, recordsDir) {
		e, skip := normalizeFile(t, fixtureName(path))
		if skip == SkipNone && e.Truncated != nil {
			t.Errorf("%s: truncated %v", filepath.Base(path), e.Truncated)
		}
	}
}

func BenchmarkBound(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(recordsDir, "secret-get.json"))
	if err != nil {
		b.Fatal(err)
	}
	r, _ := DecodeRecord(data)
	e, _, _ := Normalize(&r, Source{})
	b.ReportAllocs()
	for b.Loop() {
		bound(&e)
	}
}
