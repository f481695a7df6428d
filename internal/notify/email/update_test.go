package email

import (
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// An update's subject says UPDATE and what changed; its body names the
// incident and the change, and the rules folded into the message.
func TestRenderUpdate(t *testing.T) {
	a := realisticAlert()
	a.Incident, a.Version, a.Changes = "0123456789abcdef01234567", 3, []string{"+VaultDelete", "+VaultPurge"}
	a.Related = []alert.Related{{Rule: "vault-admin-operation", Severity: finding.High}}
	s, text, html, err := Render(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := "[kvwatch] UPDATE HIGH Many different secrets read — kv-payments-prod: +VaultDelete, +VaultPurge"; s != want {
		t.Errorf("subject %q, want %q", s, want)
	}
	html = strings.ReplaceAll(html, "&#43;", "+")
	for _, body := range []string{text, html} {
		for _, want := range []string{"Update 2 of incident 0123456789abcdef01234567", "+VaultDelete, +VaultPurge",
			"Also fired on the same evidence, folded into this message: vault-admin-operation (high)"} {
			if !strings.Contains(body, want) {
				t.Errorf("body lacks %q:\n%s", want, body)
			}
		}
	}
}
