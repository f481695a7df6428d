package config

import (
	"slices"
	"time"
)

// Routine says when a rule's group is routine: it fired on After distinct
// days (UTC) within the Within before the day at hand. A routine group is
// told once (its finding says so, at low severity) and then no longer
// alerted, while a group new to the behaviour still is: the configuration
// provider that lists and reads every secret at each start, the CSI driver
// re-reading its secrets at every rollout.
type Routine struct {
	After  int      `yaml:"after"`  // distinct days the group fired on; default 3
	Within Duration `yaml:"within"` // looking back from the day at hand; default 7d
}

// Routine defaults.
const (
	DefaultRoutineAfter  = 3
	DefaultRoutineWithin = 7 * Day
)

// RoutineKinds are the kinds that take routine: those whose findings a
// group raises again and again for the same behaviour.
var RoutineKinds = []string{"each", "threshold", "distinct", "spike", "sequence"}

// routine checks a rule's routine at p.
func (v *validator) routine(rt *Routine, p string) {
	if rt == nil {
		return
	}
	if rt.After < 0 || (rt.After == 0 && v.m.given(v.file, p+".after")) {
		v.errf(p+".after", "after must be at least 1 (the distinct days a group fired on before it is routine)")
	}
	if given(rt.Within) && (rt.Within.Duration < Day || rt.Within.Duration%Day != 0) {
		v.errf(p+".within", "within must be a whole number of days, at least 1d (not %s)", v.showDuration(p+".within", rt.Within.Duration))
	}
	if rt.After > 0 && given(rt.Within) && rt.Within.Duration >= Day && time.Duration(rt.After)*Day > rt.Within.Duration {
		v.errf(p+".after", "after %d days cannot happen within %s", rt.After, FormatDuration(rt.Within.Duration))
	}
}

// applyRoutine fills in routine's defaults.
func applyRoutine(rt *Routine) {
	if rt == nil {
		return
	}
	if rt.After == 0 {
		rt.After = DefaultRoutineAfter
	}
	setDefault(&rt.Within, DefaultRoutineWithin)
}

// accessGrant checks an access_grant rule: it groups by vault only (the
// grantee is the finding's value), and its count needs then.
func (v *validator) accessGrant(r *RuleSpec, p string) {
	if len(r.GroupBy) > 0 && !slices.Equal(r.GroupBy, []string{"vault"}) {
		v.errf(p+".group_by", "access_grant rules group by vault (the principal granted is the finding's value): group_by: [vault] or nothing")
	}
	cp := p + ".count"
	if r.Count < 0 || (r.Count == 0 && v.m.given(v.file, cp)) {
		v.errf(cp, "count must be at least 1")
	}
	if r.Then == nil && r.Count > 1 {
		v.errf(cp, "count counts the grantee's then events: an access_grant rule without then (a grant removed within the window) takes no count")
	}
}
