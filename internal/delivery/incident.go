package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// A finding is an incident that grows: the engine hands the same finding
// on again when later evidence adds to it (a higher count, an operation it
// had not seen), and the next period of the same rule and group continues
// the incident while its cooldown lasts. What the user was told of it is
// kept with the cooldown of its rule and group (Told): a finding that
// brings a fact the user has not seen is sent at once as an update of the
// same incident, saying what changed; one that only repeats known facts is
// what cooldowns and reminders hold back. Insert-if-absent decisions say
// which alert first carried a finding; Told says what the user knows.

// UpdatePolicy says which new facts make an update of an incident
// (kvwatch.yaml's update_on).
type UpdatePolicy struct {
	// Operations: an operation of the administrative, delete, purge,
	// backup or restore kinds (Reportable) not reported yet.
	Operations bool
	// Severity: a severity above the one reported.
	Severity bool
	// CountFactor: a count at least this many times the count last
	// reported; 0 never.
	CountFactor float64
}

// DefaultUpdatePolicy applies to rules Options.Updates does not list.
var DefaultUpdatePolicy = UpdatePolicy{Operations: true, Severity: true, CountFactor: 2}

// Told is what the user was told of the incident of a cooldown key.
type Told struct {
	// Incident is the ID of the finding that opened it; Opened that
	// finding's period: a finding of an earlier period is not this
	// incident's.
	Incident string    `json:"incident"`
	Opened   time.Time `json:"opened"`
	// Version counts the incident's messages: 1 for the first.
	Version  int              `json:"version"`
	Severity finding.Severity `json:"severity"`
	// Count is the count last reported.
	Count int64 `json:"count"`
	// Operations are the reportable operations reported, sorted.
	Operations []string `json:"operations,omitempty"`
	// Values are the configuration changes reported (config_change).
	Values []string `json:"values,omitempty"`
	// Facts fingerprints the finding that made the last message and
	// Changes what that message said: an attempt that stopped after
	// writing Told makes the same message again.
	Facts   string   `json:"facts,omitempty"`
	Changes []string `json:"changes,omitempty"`
	// Learned: the user was told the group is routine from now on.
	Learned bool `json:"learned,omitempty"`
}

// Bounds of Told's lists: past them nothing more is remembered, and a
// fact not remembered is reported again at worst.
const (
	maxToldOperations = 64
	maxToldValues     = 16
)

// Reportable reports whether an operation is one every distinct one of
// which reaches the user: the catalogue's delete, purge, backup and
// restore kinds in any family, and administrative ones (a vault's writes,
// deletes, purges, recovery and access-policy changes; policy changes and
// recoveries of objects). It is audit.Reportable, which detection's
// routine learning shares.
func Reportable(op string) bool { return audit.Reportable(op) }

// operations returns a finding's operations (those the engine listed, or
// else its top ones).
func operations(f *finding.Finding) []string {
	if len(f.Operations) > 0 {
		return f.Operations
	}
	out := make([]string, 0, len(f.TopOperations))
	for _, c := range f.TopOperations {
		out = append(out, c.Value)
	}
	slices.Sort(out)
	return out
}

// reportable returns f's reportable operations, sorted.
func reportable(f *finding.Finding) []string {
	var out []string
	for _, op := range operations(f) {
		if Reportable(op) && !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	slices.Sort(out)
	return out
}

// facts fingerprints what a finding says: its ID, count, severity,
// operations and value.
func facts(f *finding.Finding) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00", f.ID, f.Count, f.Severity, f.Value)
	for _, op := range operations(f) {
		h.Write([]byte(op))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// newTold is what the first message of an incident opened by f tells.
func newTold(f *finding.Finding) *Told {
	t := &Told{Incident: f.ID, Opened: f.Period, Version: 1, Severity: f.Severity, Count: f.Count,
		Operations: reportable(f), Facts: facts(f), Learned: f.Learned}
	if t.Operations != nil && len(t.Operations) > maxToldOperations {
		t.Operations = t.Operations[:maxToldOperations]
	}
	if f.Kind == "config_change" && f.Value != "" {
		t.Values = []string{f.Value}
	}
	return t
}

// changes returns what f tells that t does not, under policy p, and the
// Told that results when it is reported. No changes: f repeats known
// facts.
func changes(t *Told, f *finding.Finding, p UpdatePolicy) ([]string, *Told) {
	next := *t
	next.Operations = slices.Clone(t.Operations)
	next.Values = slices.Clone(t.Values)
	var out []string
	if p.Operations {
		for _, op := range reportable(f) {
			if i, found := slices.BinarySearch(next.Operations, op); !found && len(next.Operations) < maxToldOperations {
				next.Operations = slices.Insert(next.Operations, i, op)
				out = append(out, "+"+op)
			}
		}
		if f.Kind == "config_change" && f.Value != "" && !slices.Contains(next.Values, f.Value) {
			if len(next.Values) < maxToldValues {
				next.Values = append(next.Values, f.Value)
			}
			out = append(out, "+"+f.Value)
		}
	}
	if p.Severity && f.Severity > t.Severity {
		out = append(out, "severity "+t.Severity.String()+" → "+f.Severity.String())
		next.Severity = f.Severity
	}
	if p.CountFactor > 0 && t.Count > 0 && float64(f.Count) >= p.CountFactor*float64(t.Count) {
		out = append(out, "count "+strconv.FormatInt(t.Count, 10)+" → "+strconv.FormatInt(f.Count, 10))
		next.Count = f.Count
	}
	if f.Learned && !t.Learned {
		// Whatever the policy: the group goes quiet after this.
		out = append(out, "routine from now on")
		next.Learned = true
	}
	if len(out) == 0 {
		return nil, t
	}
	next.Version++
	next.Facts, next.Changes = facts(f), out
	return out, &next
}

// Incidents follows what was told of each finding, by finding ID, under
// the rules' update policies, for a printer of findings (kvwatch replay):
// the first sighting of a finding is version 1, and a finding handed on
// again is a new version when it tells something new (the changes an
// update would say), and nothing otherwise. It is not safe for concurrent
// use; the printer holds its own lock.
type Incidents struct {
	// Updates are the rules' policies; rules not listed get
	// DefaultUpdatePolicy.
	Updates map[string]UpdatePolicy
	told    map[string]*Told
}

// Tell returns the version of the message f makes and what it changes:
// (1, nil) for a finding not seen before, (n, changes) for an update,
// (0, nil) for a repeat of known facts.
func (in *Incidents) Tell(f *finding.Finding) (int, []string) {
	if in.told == nil {
		in.told = map[string]*Told{}
	}
	t, ok := in.told[f.ID]
	if !ok {
		in.told[f.ID] = newTold(f)
		return 1, nil
	}
	p, ok := in.Updates[f.Rule]
	if !ok {
		p = DefaultUpdatePolicy
	}
	out, next := changes(t, f, p)
	if len(out) == 0 {
		return 0, nil
	}
	in.told[f.ID] = next
	return next.Version, out
}
