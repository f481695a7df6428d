package printer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/printer"
)

// A finding handed on again is printed again only when it tells something
// new: a VaultPatch, then the same finding with VaultDelete and VaultPurge
// (an update, at the time of its new evidence, naming what changed), then
// the same facts again (nothing). Without Updates, a finding prints once.
func TestFindingsPrintsUpdates(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2026, 11, 23, 16, m, 0, 0, time.UTC) }
	first := finding.Finding{ID: "f1", Rule: "vault-admin-operation", Title: "Administrative operation on a vault",
		Severity: finding.High, Summary: "VaultPatch", Count: 1, FirstEvent: at(5), LastEvent: at(5),
		Operations: []string{"VaultPatch"}}
	grown := first
	grown.Summary, grown.Count, grown.FirstEvent, grown.LastEvent = "VaultDelete, VaultPurge", 2, at(40), at(41)
	grown.Operations = []string{"VaultDelete", "VaultPurge"}
	other := finding.Finding{ID: "f2", Rule: "object-near-expiry", Severity: finding.Low, FirstEvent: at(20), LastEvent: at(20)}

	for _, tc := range []struct {
		name    string
		updates printer.Updater
		want    []string
	}{
		{"updates", &delivery.Incidents{Updates: map[string]delivery.UpdatePolicy{"vault-admin-operation": {Operations: true, Severity: true}}},
			[]string{"2026-11-23T16:05Z HIGH     vault-admin-operation", "2026-11-23T16:20Z LOW      object-near-expiry",
				"2026-11-23T16:41Z UPDATE 2 vault-admin-operation  +VaultDelete, +VaultPurge"}},
		{"no updates", nil, []string{"2026-11-23T16:05Z HIGH     vault-admin-operation", "2026-11-23T16:20Z LOW      object-near-expiry"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := printer.NewFindings(&buf, printer.Text)
			p.Updates = tc.updates
			for _, batch := range [][]finding.Finding{{first}, {other, grown}, {grown}} {
				if err := p.Found(context.Background(), batch); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			var heads []string
			for _, l := range strings.Split(buf.String(), "\n") {
				if l != "" && !strings.HasPrefix(l, " ") {
					heads = append(heads, l)
				}
			}
			if len(heads) != len(tc.want) {
				t.Fatalf("printed\n%s", buf.String())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(heads[i], w) {
					t.Errorf("line %d: %q, want %q", i, heads[i], w)
				}
			}
			if p.Count() != 2 {
				t.Errorf("Count %d, want 2 findings", p.Count())
			}
		})
	}

	// JSON: the update is the finding again, with its version and changes.
	var buf bytes.Buffer
	p := printer.NewFindings(&buf, printer.JSON)
	p.Updates = &delivery.Incidents{}
	for _, batch := range [][]finding.Finding{{first}, {grown}, {grown}} {
		if err := p.Found(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	p.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("JSON: %d lines\n%s", len(lines), buf.String())
	}
	var u struct {
		ID      string   `json:"id"`
		Version int      `json:"version"`
		Changes []string `json:"changes"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &u); err != nil || u.ID != "f1" || u.Version != 2 ||
		strings.Join(u.Changes, ", ") != "+VaultDelete, +VaultPurge, count 1 → 2" { // the default policy counts too
		t.Errorf("JSON update %s: %+v %v", lines[1], u, err)
	}
}
