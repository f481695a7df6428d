// Package alert is what receivers are sent: one or more findings of the
// same rule and vault, grouped, with the links and facts a person needs.
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
)

// SchemaVersion is the version of the JSON form of an Alert (the webhook
// payload); it changes only when a field changes meaning or goes away.
const SchemaVersion = "kvwatch.alert/v1"

// Alert is one notification.
type Alert struct {
	Schema string `json:"schema"`
	// ID is stable for the findings it carries: the same findings always
	// make the same alert, so the outbox can refuse a second one.
	ID string `json:"id"`
	// Key is the cooldown key: rule and group.
	Key string `json:"key"`

	Rule        string           `json:"rule"`
	Title       string           `json:"title"`
	Description string           `json:"description,omitempty"`
	Severity    finding.Severity `json:"severity"`
	Tags        []string         `json:"tags,omitempty"`
	Runbook     string           `json:"runbook,omitempty"`

	Group          []finding.Pair `json:"group,omitempty"`
	Vault          string         `json:"vault,omitempty"`
	SubscriptionID string         `json:"subscriptionId,omitempty"`
	ResourceGroup  string         `json:"resourceGroup,omitempty"`
	ResourceID     string         `json:"resourceId,omitempty"`
	TenantID       string         `json:"tenantId,omitempty"`

	// Summary is the lead finding's one sentence.
	Summary string `json:"summary"`
	// Findings are the grouped findings, the lead first. Count is their
	// total count of events; Suppressed counts findings of the same key the
	// cooldown held back since the previous alert.
	Findings   []finding.Finding `json:"findings"`
	Count      int64             `json:"count"`
	Suppressed int               `json:"suppressed,omitempty"`
	// Repeat is 0 for the first alert of a condition, n for the n-th
	// reminder while it persists.
	Repeat int `json:"repeat,omitempty"`

	// Incident names the incident the alert reports (the ID of the
	// finding that opened it); Version is 1 for its first message and
	// grows with each update. Changes say what an update adds to what the
	// user was told: "+VaultDelete", "count 25 → 525", "severity high →
	// critical"; empty on a first message.
	Incident string   `json:"incident,omitempty"`
	Version  int      `json:"version,omitempty"`
	Changes  []string `json:"changes,omitempty"`
	// Related are the alerts of other rules that fired on the same
	// evidence and were folded into this one (inhibition): one incident,
	// one message.
	Related []Related `json:"related,omitempty"`

	FirstEvent time.Time `json:"firstEvent"`
	LastEvent  time.Time `json:"lastEvent"`
	Created    time.Time `json:"created"`

	// Test marks an alert sent by `kvwatch alerts test`.
	Test bool `json:"test,omitempty"`
}

// Related is an alert of another rule folded into this one.
type Related struct {
	Rule     string           `json:"rule"`
	Title    string           `json:"title"`
	Severity finding.Severity `json:"severity"`
	Summary  string           `json:"summary"`
	// Group and Period are its lead finding's.
	Group  []finding.Pair `json:"group,omitempty"`
	Period time.Time      `json:"period,omitzero"`
	// Alert is the folded alert's ID: it is in the outbox, recorded as
	// inhibited by this one.
	Alert string `json:"alert"`
}

// IsUpdate reports whether the alert updates an incident the user was
// told of before.
func (a *Alert) IsUpdate() bool { return a.Version > 1 }

// UpdateID is the ID of version v of an incident's messages.
func UpdateID(incident string, version int) string {
	h := sha256.Sum256([]byte(incident + "#" + strconv.Itoa(version)))
	return hex.EncodeToString(h[:12])
}

// New builds an alert from findings of one rule and vault (the lead first).
func New(fs []finding.Finding, created time.Time) *Alert {
	lead := fs[0]
	a := &Alert{
		Schema: SchemaVersion, Key: CooldownKey(&lead),
		Rule: lead.Rule, Title: lead.Title, Description: lead.Description, Severity: lead.Severity,
		Tags: lead.Tags, Runbook: lead.Runbook, Group: lead.Group, Vault: lead.Vault,
		SubscriptionID: lead.SubscriptionID, ResourceGroup: lead.ResourceGroup, ResourceID: lead.ResourceID,
		TenantID: lead.TenantID, Summary: lead.Summary, Findings: fs, Created: created.UTC(),
		FirstEvent: lead.FirstEvent, LastEvent: lead.LastEvent,
	}
	ids := make([]string, len(fs))
	for i := range fs {
		f := &fs[i]
		ids[i] = f.ID
		a.Count += max(f.Count, 1)
		if f.Severity > a.Severity {
			a.Severity = f.Severity
		}
		if !f.FirstEvent.IsZero() && (a.FirstEvent.IsZero() || f.FirstEvent.Before(a.FirstEvent)) {
			a.FirstEvent = f.FirstEvent
		}
		if f.LastEvent.After(a.LastEvent) {
			a.LastEvent = f.LastEvent
		}
	}
	slices.Sort(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, ",")))
	a.ID = hex.EncodeToString(h[:12])
	return a
}

// CooldownKey is the key cooldowns are kept under: rule and group.
func CooldownKey(f *finding.Finding) string {
	return f.Rule + "|" + finding.GroupString(f.Group)
}

// Lead returns the alert's first finding.
func (a *Alert) Lead() *finding.Finding { return &a.Findings[0] }

// PortalURL opens the vault in the Azure portal, or "" without a resource id.
func (a *Alert) PortalURL() string {
	if a.ResourceID == "" {
		return ""
	}
	tenant := ""
	if a.TenantID != "" {
		tenant = "@" + url.PathEscape(a.TenantID)
	}
	return "https://portal.azure.com/#" + tenant + "/resource" + escapeResourceID(a.ResourceID) + "/overview"
}

// escapeResourceID escapes each segment of an ARM id for a URL fragment.
func escapeResourceID(id string) string {
	parts := strings.Split(id, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
