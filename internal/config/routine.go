package config

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Routine says when a rule's group is routine: it fired in After distinct
// cooldown periods (the finding's period) within Within. The finding that
// makes it routine is still alerted, and says so; the group's later
// findings are marked routine and not alerted, unless one's count is above
// Growth times the largest count learned, or it carries a reportable
// operation (a delete, purge, backup, restore, policy, recovery or vault
// write) the routine periods did not; a routine that stops (no finding
// within Within) is forgotten. Another group (a new caller) is not
// routine: the configuration provider that lists and reads every secret
// at each start, the CSI driver re-reading its secrets at every rollout
// stop alerting, a new identity doing the same does not.
//
// Only application identities are learned (service principals and managed
// identities: a caller with an app id and no user principal name). People
// never are: a person who lists and reads every secret of a vault every
// day is alerted every time. So a rule with a routine must group by
// caller (or object_id): one caller per group, told apart.
type Routine struct {
	// Enabled, true unless set false, lets an override turn a rule's
	// routine off.
	Enabled *bool    `yaml:"enabled"`
	After   int      `yaml:"after"`  // distinct periods the group fired in; default 3
	Within  Duration `yaml:"within"` // default 7d
	Growth  float64  `yaml:"growth"` // default 2
}

// Routine defaults and bounds.
const (
	DefaultRoutineAfter  = 3
	DefaultRoutineWithin = 7 * Day
	DefaultRoutineGrowth = 2.0
	// MaxRoutineAfter bounds after: the engine keeps that many periods
	// per group.
	MaxRoutineAfter = 64
)

// RoutineKinds are the kinds that take routine: those whose findings a
// group raises again and again for the same behaviour. A new value, a
// configuration change and an access grant are news every time.
var RoutineKinds = []string{"each", "threshold", "distinct", "spike", "sequence"}

// On reports whether the routine is on (set and not enabled: false).
func (rt *Routine) On() bool { return rt != nil && (rt.Enabled == nil || *rt.Enabled) }

// routine checks a rule's (or an override's) routine at p.
func (v *validator) routine(rt *Routine, p string) {
	if rt == nil {
		return
	}
	ap := p + ".after"
	if (v.m.given(v.file, ap) || rt.After != 0) && (rt.After < 2 || rt.After > MaxRoutineAfter) {
		v.errf(ap, "after must be from 2 to %d (the distinct periods a group fires in before it is routine; at 1 every group would be routine at its first finding)", MaxRoutineAfter)
	}
	if given(rt.Within) && rt.Within.Duration <= 0 {
		v.errf(p+".within", "within must be positive")
	}
	gp := p + ".growth"
	if (v.m.given(v.file, gp) || rt.Growth != 0) && !(rt.Growth >= 1) {
		v.errf(gp, "growth %s must be at least 1 (2: a routine group is alerted again when its count is above twice the largest it was learned with)",
			v.show(gp, strconv.FormatFloat(rt.Growth, 'g', -1, 64)))
	}
}

// routineFits checks, at p, that a rule's routine can happen: after
// periods of its cooldown fit within within.
func (v *validator) routineFits(r *RuleSpec, p string) {
	rt := r.Routine
	if !rt.On() {
		return
	}
	after, within := rt.After, rt.Within.Duration
	if after == 0 {
		after = DefaultRoutineAfter
	}
	if !given(rt.Within) {
		within = DefaultRoutineWithin
	}
	cd := effectiveCooldown(r)
	if after < 2 || after > MaxRoutineAfter || within <= 0 || cd <= 0 {
		return // reported by routine, or the cooldown is
	}
	if time.Duration(after-1)*cd >= within {
		v.errf(p, "a group cannot fire in %d periods of %s (the cooldown) within %s: make within longer than %s",
			after, FormatDuration(cd), FormatDuration(within), FormatDuration(time.Duration(after-1)*cd))
	}
}

// routineGroup checks, at p, that a rule with a routine groups by one
// caller: routine learns application identities only, and tells them from
// people by the group's caller.
func (v *validator) routineGroup(r *RuleSpec, p string) {
	if !r.Routine.On() || slices.Contains(r.GroupBy, "caller") || slices.Contains(r.GroupBy, "object_id") {
		return
	}
	v.errf(p, "routine learns application identities only, never people, and tells them apart by the caller: group_by must include caller (or object_id)")
}

// effectiveCooldown is the cooldown ApplyDefaults gives a rule.
func effectiveCooldown(r *RuleSpec) time.Duration {
	switch {
	case given(r.Cooldown):
		return r.Cooldown.Duration
	case r.Kind == "each" || r.Kind == "new_value" || !given(r.Window):
		return DefaultCooldown
	}
	return r.Window.Duration
}

// applyRoutine fills in routine's defaults.
func applyRoutine(rt *Routine) {
	if rt == nil {
		return
	}
	if rt.Enabled == nil {
		t := true
		rt.Enabled = &t
	}
	if rt.After == 0 {
		rt.After = DefaultRoutineAfter
	}
	setDefault(&rt.Within, DefaultRoutineWithin)
	if rt.Growth == 0 || math.IsNaN(rt.Growth) {
		rt.Growth = DefaultRoutineGrowth
	}
}

// mergeRoutine returns base changed by the keys o sets.
func mergeRoutine(base, o *Routine) *Routine {
	out := &Routine{}
	if base != nil {
		*out = *base
	}
	if o.Enabled != nil {
		out.Enabled = o.Enabled
	}
	if o.After != 0 {
		out.After = o.After
	}
	if given(o.Within) {
		out.Within = o.Within
	}
	if o.Growth != 0 {
		out.Growth = o.Growth
	}
	return out
}
