// Package rules is the compiled form of kvwatch.yaml's rules: who matches,
// how events are grouped, and which kind of condition turns them into a
// finding. Evaluation against state lives in package detect.
package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/groupkey"
)

// Kind is a rule's kind of condition.
type Kind string

// Kinds.
const (
	Each      Kind = "each"      // every matching event
	Threshold Kind = "threshold" // at least Count events in Window per group
	Distinct  Kind = "distinct"  // at least Count distinct Field values in Window per group
	Spike     Kind = "spike"     // the window's count against a learned baseline
	NewValue  Kind = "new_value" // a value not seen for the group within Horizon
	Sequence  Kind = "sequence"  // Match then Count events of Then within Window
	// ConfigChange judges each vault configuration a record carries
	// (VaultGet, VaultPut, VaultPatch) against the vault's last known one:
	// loosening transitions, and the first sighting of a weak one.
	ConfigChange Kind = "config_change"
	// AccessGrant follows each principal an access policy grants (an
	// object id in a vault configuration's access policies that the
	// configuration before it did not hold): with Then, Count events of
	// Then by that principal within Window of the grant; without, the
	// grant removed again within Window (access.go in package detect).
	AccessGrant Kind = "access_grant"
)

// Rule is a compiled rule.
type Rule struct {
	ID          string
	Title       string
	Description string
	Runbook     string
	Severity    finding.Severity
	Tags        []string
	Kind        Kind

	Match  *Matcher
	Except []*Matcher
	Then   *Matcher

	GroupBy []string
	Field   string
	Fields  []string

	Window   time.Duration
	Cooldown time.Duration
	Horizon  time.Duration
	Learning time.Duration
	Count    int
	// MinEvents (distinct): the window must also hold this many events.
	MinEvents int
	Baseline  config.Baseline
	// Routine, when set, learns the groups that fire routinely
	// (config.Routine; detect's routine.go): nil when the rule has none.
	Routine *Routine
	// Off says why the rule does not run (disabled, or its trusted
	// network list is empty); "" when it runs.
	Off string
}

// Routine is a rule's compiled routine: a group that fires in After
// distinct cooldown periods within Within is routine, alerted again only
// above Growth times the largest count it was learned with.
type Routine struct {
	After  int
	Within time.Duration
	Growth float64
}

// Settings are the compiled global settings.
type Settings struct {
	Lateness time.Duration
	Bucket   time.Duration
	Hours    *Hours
	Trusted  []netip.Prefix
}

// Defaults for settings and kinds.
const (
	DefaultLateness = 15 * time.Minute
	DefaultBucket   = time.Minute
)

// Matches reports whether e matches the rule and none of its exceptions.
func (r *Rule) Matches(e *audit.Event) bool {
	if !r.Match.Match(e) {
		return false
	}
	for _, x := range r.Except {
		if x.Match(e) {
			return false
		}
	}
	return true
}

// GroupKey returns the group an event belongs to: its group_by values
// encoded by groupkey, injectively whatever bytes they hold (two
// different tuples never share a group). Group splits it back.
func (r *Rule) GroupKey(e *audit.Event) string {
	switch len(r.GroupBy) {
	case 0:
		return ""
	case 1:
		return e.Field(r.GroupBy[0])
	}
	var buf [128]byte
	b := buf[:0]
	for i, f := range r.GroupBy {
		if i > 0 {
			b = append(b, groupkey.Sep)
		}
		b = groupkey.AppendValue(b, e.Field(f))
	}
	return string(b)
}

// Group splits a group key back into pairs.
func (r *Rule) Group(key string) []finding.Pair {
	if len(r.GroupBy) == 0 {
		return nil
	}
	vals := groupkey.Split(key, len(r.GroupBy))
	out := make([]finding.Pair, len(r.GroupBy))
	for i, f := range r.GroupBy {
		out[i] = finding.Pair{Field: f, Value: vals[i]}
	}
	return out
}

// Horizon returns how long (in event time) state of the rule must be kept
// behind the newest event: its window plus lateness, or its history.
func (r *Rule) StateHorizon(s *Settings) time.Duration {
	switch r.Kind {
	case Spike:
		return time.Duration(r.Baseline.Days+1)*24*time.Hour + s.Lateness
	case NewValue:
		return r.Horizon + s.Lateness
	}
	// (AccessGrant: the grantee's events, in time blocks; the
	// configurations it keeps are in the vault's meta entity.)
	return r.Window + s.Lateness + s.Bucket
}

// Compile turns a loaded configuration into rules and settings. The
// configuration is expected to be validated already (config.Load does);
// Compile still reports what it cannot compile.
func Compile(f *config.File) ([]*Rule, *Settings, error) {
	s := &Settings{Lateness: f.Settings.Lateness.Duration, Bucket: f.Settings.Bucket.Duration}
	if s.Lateness <= 0 {
		s.Lateness = DefaultLateness
	}
	if s.Bucket <= 0 {
		s.Bucket = DefaultBucket
	}
	var errs []error
	h, err := NewHours(f.Settings.BusinessHours)
	if err != nil {
		errs = append(errs, err)
	}
	s.Hours = h
	for _, n := range f.Settings.TrustedNetworks {
		p, err := prefix(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("settings.trusted_networks: %w", err))
			continue
		}
		s.Trusted = append(s.Trusted, p)
	}
	var out []*Rule
	for i := range f.Rules {
		r, err := compileRule(&f.Rules[i], s)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", f.Rules[i].ID, err))
			continue
		}
		out = append(out, r)
	}
	return out, s, errors.Join(errs...)
}

func compileRule(spec *config.RuleSpec, s *Settings) (*Rule, error) {
	sev := finding.Medium
	if spec.Severity != "" {
		v, err := finding.ParseSeverity(spec.Severity)
		if err != nil {
			return nil, err
		}
		sev = v
	}
	r := &Rule{
		ID: spec.ID, Title: spec.Title, Description: spec.Description, Runbook: spec.Runbook,
		Severity: sev, Tags: spec.Tags, Kind: Kind(spec.Kind),
		GroupBy: spec.GroupBy, Field: spec.Field, Fields: spec.Fields,
		Window: spec.Window.Duration, Cooldown: spec.Cooldown.Duration, Horizon: spec.Horizon.Duration,
		Learning: spec.Learning.Duration, Count: spec.Count, MinEvents: spec.MinEvents,
	}
	if r.Title == "" {
		r.Title = r.ID
	}
	if spec.Baseline != nil {
		r.Baseline = *spec.Baseline
	}

	var off []string
	if spec.Enabled != nil && !*spec.Enabled {
		off = append(off, "disabled")
	}
	var err error
	var emptyTrusted bool
	if r.Match, emptyTrusted, err = compileMatch(&spec.Match, s); err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	if emptyTrusted {
		off = append(off, "settings.trusted_networks is empty")
	}
	for i := range spec.Except {
		m, _, err := compileMatch(&spec.Except[i], s)
		if err != nil {
			return nil, fmt.Errorf("except[%d]: %w", i, err)
		}
		r.Except = append(r.Except, m)
	}
	if spec.Then != nil {
		if r.Then, _, err = compileMatch(spec.Then, s); err != nil {
			return nil, fmt.Errorf("then: %w", err)
		}
	}
	for _, f := range append(append(append([]string{}, r.GroupBy...), r.Fields...), r.Field) {
		if f != "" && !audit.IsField(f) {
			return nil, fmt.Errorf("unknown field %q", f)
		}
	}
	switch r.Kind {
	case Each, ConfigChange:
		if r.Cooldown <= 0 {
			r.Cooldown = time.Hour
		}
	case Threshold, Distinct, Sequence:
		if r.Window <= 0 {
			return nil, fmt.Errorf("kind %s needs a window", r.Kind)
		}
		if r.Window%s.Bucket != 0 {
			return nil, fmt.Errorf("window %s is not a multiple of the bucket %s", r.Window, s.Bucket)
		}
		if r.Count <= 0 {
			r.Count = 1
		}
		if r.Kind == Distinct && r.Field == "" {
			return nil, errors.New("kind distinct needs a field")
		}
		if r.Kind == Sequence && r.Then == nil {
			return nil, errors.New("kind sequence needs then")
		}
	case AccessGrant:
		if r.Window <= 0 || r.Window%s.Bucket != 0 {
			return nil, fmt.Errorf("kind access_grant needs a window that is a multiple of the bucket %s", s.Bucket)
		}
		if len(r.GroupBy) == 0 {
			r.GroupBy = []string{"vault"}
		}
		if len(r.GroupBy) != 1 || r.GroupBy[0] != "vault" {
			return nil, errors.New("kind access_grant groups by vault")
		}
		if r.Count <= 0 {
			r.Count = 1
		}
	case Spike:
		if r.Window <= 0 || (24*time.Hour)%r.Window != 0 {
			return nil, fmt.Errorf("kind spike needs a window that divides a day (got %s)", r.Window)
		}
		if r.Baseline.Days <= 0 {
			r.Baseline.Days = 7
		}
		if r.Baseline.K <= 0 {
			r.Baseline.K = 3
		}
		if r.Baseline.Ratio <= 0 {
			r.Baseline.Ratio = 3
		}
		if r.Baseline.MinCount <= 0 {
			r.Baseline.MinCount = 20
		}
		if r.Learning <= 0 {
			r.Learning = 3 * 24 * time.Hour
		}
	case NewValue:
		if len(r.Fields) == 0 {
			return nil, errors.New("kind new_value needs fields")
		}
		if r.Horizon <= 0 {
			r.Horizon = 30 * 24 * time.Hour
		}
		if r.Learning <= 0 {
			r.Learning = 7 * 24 * time.Hour
		}
		if r.Cooldown <= 0 {
			r.Cooldown = r.Horizon
		}
	default:
		return nil, fmt.Errorf("unknown kind %q", r.Kind)
	}
	if r.Cooldown <= 0 {
		r.Cooldown = r.Window
	}
	if r.Cooldown < s.Bucket {
		r.Cooldown = s.Bucket
	}
	if rt := spec.Routine; rt.On() {
		if !slices.Contains(config.RoutineKinds, string(r.Kind)) {
			return nil, fmt.Errorf("kind %s takes no routine", r.Kind)
		}
		r.Routine = &Routine{After: rt.After, Within: rt.Within.Duration, Growth: rt.Growth}
		if r.Routine.After == 0 {
			r.Routine.After = config.DefaultRoutineAfter
		}
		if r.Routine.Within <= 0 {
			r.Routine.Within = config.DefaultRoutineWithin
		}
		if r.Routine.Growth < 1 {
			r.Routine.Growth = config.DefaultRoutineGrowth
		}
		if r.Routine.After < 2 || r.Routine.After > config.MaxRoutineAfter {
			return nil, fmt.Errorf("routine after %d is not from 2 to %d", r.Routine.After, config.MaxRoutineAfter)
		}
	}
	r.Off = strings.Join(off, "; ")
	return r, nil
}

func compileMatch(m *config.MatchSpec, s *Settings) (*Matcher, bool, error) {
	out := &Matcher{
		status: m.Status, appIDs: m.AppIDs, objectTypes: m.ObjectTypes,
		outsideHours: m.OutsideBusinessHours, hours: s.Hours, anonymous: m.Anonymous, cfg: m.Config,
	}
	for _, p := range m.Operations {
		out.ops = append(out.ops, newGlob(p))
	}
	for _, p := range m.Vaults {
		out.vaults = append(out.vaults, newGlob(p))
	}
	for _, p := range m.Callers {
		out.callers = append(out.callers, newGlob(p))
	}
	for _, p := range m.Objects {
		out.objects = append(out.objects, newGlob(p))
	}
	for _, p := range m.ClientInfo {
		out.clientInfo = append(out.clientInfo, newGlob(p))
	}
	for _, f := range m.Families {
		out.families = append(out.families, audit.Family(strings.ToLower(f)))
	}
	for _, k := range m.Kinds {
		out.kinds = append(out.kinds, audit.Kind(strings.ToLower(k)))
	}
	for _, o := range m.Outcomes {
		out.outcomes = append(out.outcomes, audit.Outcome(strings.ToLower(o)))
	}
	emptyTrusted := false
	nets := func(list []string) ([]netip.Prefix, error) {
		var ps []netip.Prefix
		for _, n := range list {
			if n == "trusted_networks" {
				if len(s.Trusted) == 0 {
					emptyTrusted = true
				}
				ps = append(ps, s.Trusted...)
				continue
			}
			p, err := prefix(n)
			if err != nil {
				return nil, err
			}
			ps = append(ps, p)
		}
		return ps, nil
	}
	var err error
	if out.ipIn, err = nets(m.IPIn); err != nil {
		return nil, false, err
	}
	if out.ipNotIn, err = nets(m.IPNotIn); err != nil {
		return nil, false, err
	}
	out.hasIPIn, out.hasIPNotIn = len(m.IPIn) > 0, len(m.IPNotIn) > 0
	if out.outsideHours != nil && out.hours == nil {
		return nil, false, errors.New("outside_business_hours needs valid business_hours")
	}
	return out, emptyTrusted, nil
}

func prefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
