// Package finding is what detection raises: a rule's condition that held for
// a group of events, with everything a person needs to act on it.
package finding

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// Severity orders findings.
type Severity int

// Severities, lowest first.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity name.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Pair is one field of a group.
type Pair struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// Count is a value and how often it was seen.
type Count struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Baseline is what a spike was measured against.
type Baseline struct {
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stdDev"`
	Slots  int     `json:"slots"` // history windows it was computed from
}

// Finding is one raised detection.
type Finding struct {
	// ID is stable for (rule, group, period): the same condition found twice,
	// by two attempts or two instances, has the same ID.
	ID          string   `json:"id"`
	Rule        string   `json:"rule"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	Severity    Severity `json:"severity"`
	Tags        []string `json:"tags,omitempty"`
	Kind        string   `json:"kind"`
	Runbook     string   `json:"runbook,omitempty"`

	// Group is the rule's group_by fields and their values.
	Group []Pair `json:"group,omitempty"`
	// Vault is the vault the finding is about, when there is one.
	Vault          string `json:"vault,omitempty"`
	SubscriptionID string `json:"subscriptionId,omitempty"`
	ResourceGroup  string `json:"resourceGroup,omitempty"`
	ResourceID     string `json:"resourceId,omitempty"`
	TenantID       string `json:"tenantId,omitempty"`

	// Period is the start of the cooldown period the finding belongs to.
	Period time.Time `json:"period"`
	// WindowStart/WindowEnd bound the events counted (event time).
	WindowStart time.Time     `json:"windowStart"`
	WindowEnd   time.Time     `json:"windowEnd"`
	Window      time.Duration `json:"window,omitempty"`
	// Count is how many matching events the window held; Threshold what
	// it had to reach (distinct values for distinct rules).
	Count     int64     `json:"count"`
	Threshold int64     `json:"threshold,omitempty"`
	Baseline  *Baseline `json:"baseline,omitempty"`
	// Value is the new value (new_value rules).
	Value string `json:"value,omitempty"`

	FirstEvent time.Time `json:"firstEvent"`
	LastEvent  time.Time `json:"lastEvent"`

	// Top values among the events the finding saw: objects, IPs, operations.
	TopObjects    []Count `json:"topObjects,omitempty"`
	TopIPs        []Count `json:"topIps,omitempty"`
	TopOperations []Count `json:"topOperations,omitempty"`
	// Operations are the distinct operations of the events the finding
	// saw, sorted (at most MaxOperations): the same incident handed on
	// again names the operations that are new to it.
	Operations []string `json:"operations,omitempty"`
	// CorrelationIDs are up to ten of the events' correlation ids.
	CorrelationIDs []string `json:"correlationIds,omitempty"`
	// Example is one of the events.
	Example *audit.Event `json:"example,omitempty"`

	// Routine says the finding's group fires routinely (its rule's
	// routine: it fired in the rule's routine.after distinct periods
	// within routine.within, and this finding is not above what was
	// learned): it is recorded and handed on like any other, and delivery
	// does not alert it. The summary says so; so does it on the finding
	// that made the group routine, and on one above its routine (both
	// alerted, Routine false).
	Routine bool `json:"routine,omitempty"`
	// Learned marks the finding that made its group routine ("routine
	// from now on"): the user is told, even within a cooldown (an update
	// of the incident), before the group goes quiet.
	Learned bool `json:"learned,omitempty"`

	// Summary is one sentence saying what happened.
	Summary string `json:"summary"`
	// KQL shows the same records in Log Analytics (AzureDiagnostics).
	KQL string `json:"kql"`

	// Raised is when kvwatch raised it (wall clock).
	Raised time.Time `json:"raised"`

	// Trimmed says what Fit left out to keep the finding within
	// MaxBodyBytes; empty when nothing was.
	Trimmed string `json:"trimmed,omitempty"`
}

// MaxOperations bounds Finding.Operations (Key Vault has about 80).
const MaxOperations = 64

// NewID derives a finding's stable ID from its rule, group and period (and,
// for new_value rules, the value).
func NewID(rule, group string, period time.Time, value string) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(group))
	h.Write([]byte{0})
	h.Write([]byte(period.UTC().Format(time.RFC3339)))
	h.Write([]byte{0})
	h.Write([]byte(value))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// GroupCaller returns the field ("caller", else "object_id") and value
// naming the one caller a finding's group is about; "" if it is not one
// caller's.
func (f *Finding) GroupCaller() (field, value string) {
	for _, p := range f.Group {
		if p.Field == "caller" || (p.Field == "object_id" && field == "") {
			field, value = p.Field, p.Value
		}
	}
	return field, value
}

// GroupString renders a group as "field=value field=value".
func GroupString(g []Pair) string {
	var b strings.Builder
	for i, p := range g {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Field)
		b.WriteByte('=')
		b.WriteString(p.Value)
	}
	return b.String()
}
