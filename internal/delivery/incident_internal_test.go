package delivery

import (
	"slices"
	"testing"

	"github.com/kvwatch/kvwatch/internal/finding"
)

// What makes an update, under the default policy and tuned ones: a new
// reportable operation (reads are not), a higher severity, a new
// configuration change, a count at the factor of the last one reported.
func TestChanges(t *testing.T) {
	first := finding.Finding{ID: "f", Kind: "config_change", Severity: finding.Medium, Count: 25,
		Operations: []string{"SecretGet", "VaultPatch"}, Value: "first seen: public network access Enabled"}
	told := newTold(&first)
	if !slices.Equal(told.Operations, []string{"VaultPatch"}) {
		t.Fatalf("told operations %v: only reportable ones", told.Operations)
	}
	for _, c := range []struct {
		name   string
		f      finding.Finding
		policy UpdatePolicy
		want   []string
	}{
		{"the same facts", first, DefaultUpdatePolicy, nil},
		{"a read is not reportable", finding.Finding{ID: "f", Kind: "config_change", Severity: finding.Medium, Count: 26,
			Operations: []string{"SecretList"}, Value: first.Value}, DefaultUpdatePolicy, nil},
		{"a loosening after a weak first sighting", finding.Finding{ID: "g", Kind: "config_change", Severity: finding.Critical, Count: 1,
			Operations: []string{"VaultPatch"}, Value: "network default action Deny → Allow"}, DefaultUpdatePolicy,
			[]string{"+network default action Deny → Allow", "severity medium → critical"}},
		{"under twice the count", finding.Finding{ID: "f", Severity: finding.Medium, Count: 49}, DefaultUpdatePolicy, nil},
		{"twice the count", finding.Finding{ID: "f", Severity: finding.Medium, Count: 50}, DefaultUpdatePolicy, []string{"count 25 → 50"}},
		{"count_factor 0", finding.Finding{ID: "f", Severity: finding.Medium, Count: 5000}, UpdatePolicy{Operations: true, Severity: true}, nil},
		{"operations off", finding.Finding{ID: "f", Severity: finding.Medium, Count: 1, Operations: []string{"VaultDelete"}},
			UpdatePolicy{Severity: true, CountFactor: 2}, nil},
		{"a purge and a backup", finding.Finding{ID: "f", Severity: finding.Medium, Count: 2, Operations: []string{"KeyBackup", "SecretPurge"}},
			DefaultUpdatePolicy, []string{"+KeyBackup", "+SecretPurge"}},
	} {
		got, next := changes(told, &c.f, c.policy)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: changes %q, want %q", c.name, got, c.want)
		}
		if len(got) > 0 && (next.Version != 2 || next == told) {
			t.Errorf("%s: the next told is version %d", c.name, next.Version)
		}
	}
	for op, want := range map[string]bool{"VaultPatch": true, "VaultPut": true, "VaultDelete": true, "VaultPurge": true,
		"VaultRecover": true, "VaultAccessPolicyChangedEventGridNotification": true, "SecretDelete": true, "CertificatePurge": true,
		"KeyBackup": true, "SecretRestore": true, "KeyRotationPolicySet": true, "VaultGet": false, "SecretGet": false,
		"SecretList": false, "SecretSet": false, "KeySign": false} {
		if Reportable(op) != want {
			t.Errorf("Reportable(%s) = %v", op, !want)
		}
	}
}
