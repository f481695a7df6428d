package teams

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// An update of an incident says so in its header, says what changed
// under the summary, and names the incident; an alert that folds in other
// rules' (inhibition) names them.
func TestCardOfAnUpdate(t *testing.T) {
	a := demoAlert(t)
	a.Incident, a.Version, a.Changes = "0123456789abcdef01234567", 2, []string{"+VaultDelete", "+VaultPurge", "count 25 → 525"}
	a.Related = []alert.Related{{Rule: "secret-retrieval-burst", Severity: finding.Medium, Alert: "x"}}
	msg, err := Message(a, DefaultMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	var m parsed
	json.Unmarshal(msg, &m)
	blocks, facts, _, _ := texts(t, m.Attachments[0].Content)
	all := strings.Join(append(blocks, facts...), "\n")
	for _, want := range []string{"UPDATE 1 · HIGH severity", `What changed: \+VaultDelete, \+VaultPurge, count 25 → 525`,
		"0123456789abcdef01234567, update 1", `secret\-retrieval\-burst \(medium\) on the same evidence`} {
		if !strings.Contains(all, want) {
			t.Errorf("card lacks %q:\n%s", want, all)
		}
	}
	checkCard(t, msg)
}
