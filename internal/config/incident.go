package config

import (
	"path"
	"slices"
	"strconv"
	"strings"
)

// This file checks the keys that shape incidents: a rule's update_on (what
// later evidence is sent as an update of an incident already reported) and
// the inhibit section (rules that fire on the same evidence make one
// message). Cross-references (the rules inhibit names) are checked by
// Resolve, once the default pack's rules are merged in.

// Defaults of update_on.
const (
	DefaultUpdateOnOperations = true
	DefaultUpdateOnSeverity   = true
	DefaultCountFactor        = 2.0
	// MinCountFactor is the least count_factor other than 0: below it a
	// steady stream of events would make an update at nearly every batch.
	MinCountFactor = 1.5
)

// updateOn checks a rule's (or an override's) update_on at p.
func (v *validator) updateOn(u *UpdateOn, p string) {
	if u == nil || u.CountFactor == nil {
		return
	}
	cp := p + ".count_factor"
	if x := *u.CountFactor; x != 0 && !(x >= MinCountFactor) {
		v.errf(cp, "count_factor %s must be 0 (the count never makes an update) or at least %s (2: an update when the count doubles)",
			v.show(cp, strconv.FormatFloat(x, 'g', -1, 64)), strconv.FormatFloat(MinCountFactor, 'g', -1, 64))
	}
}

// applyUpdateOn fills in update_on's defaults for a rule of kind: each
// rules count the events of one batch, not of their incident, so their
// count makes no update by default (their operations and severity do).
func applyUpdateOn(u **UpdateOn, kind string) {
	if *u == nil {
		*u = &UpdateOn{}
	}
	x := *u
	if x.Operations == nil {
		b := DefaultUpdateOnOperations
		x.Operations = &b
	}
	if x.Severity == nil {
		b := DefaultUpdateOnSeverity
		x.Severity = &b
	}
	if x.CountFactor == nil {
		f := DefaultCountFactor
		if kind == "each" {
			f = 0
		}
		x.CountFactor = &f
	}
}

// mergeUpdateOn returns base changed by the keys o sets.
func mergeUpdateOn(base, o *UpdateOn) *UpdateOn {
	out := &UpdateOn{}
	if base != nil {
		*out = *base
	}
	if o.Operations != nil {
		out.Operations = o.Operations
	}
	if o.Severity != nil {
		out.Severity = o.Severity
	}
	if o.CountFactor != nil {
		out.CountFactor = o.CountFactor
	}
	return out
}

// inhibit checks the inhibit section's shape: rule lists given, patterns
// valid, equal fields known.
func (v *validator) inhibit(list []InhibitSpec) {
	for i := range list {
		in := &list[i]
		p := indexPath("inhibit", i)
		for _, l := range []struct {
			key  string
			list []string
		}{{"source_rules", in.SourceRules}, {"target_rules", in.TargetRules}} {
			lp := p + "." + l.key
			if len(l.list) == 0 {
				v.errf(lp, "%s is required (rule ids, globs allowed)", l.key)
			}
			for j, s := range l.list {
				if _, err := path.Match(s, ""); err != nil || s == "" {
					v.errf(indexPath(lp, j), "%s is not a rule id or glob", v.show(indexPath(lp, j), s))
				}
			}
		}
		for j, name := range in.Equal {
			v.fieldName(indexPath(p+".equal", j), name)
		}
	}
}

// inhibitRules checks, once the rules are known, that every pattern of
// the inhibit section names a rule and that no rule inhibits itself.
func (v *validator) inhibitRules(list []InhibitSpec, ids []string) {
	matching := func(pat string) []string {
		var out []string
		for _, id := range ids {
			if ok, _ := path.Match(pat, id); ok {
				out = append(out, id)
			}
		}
		return out
	}
	for i := range list {
		in := &list[i]
		p := indexPath("inhibit", i)
		sources := map[string]bool{}
		for _, l := range []struct {
			key    string
			list   []string
			source bool
		}{{"source_rules", in.SourceRules, true}, {"target_rules", in.TargetRules, false}} {
			for j, pat := range l.list {
				jp := indexPath(p+"."+l.key, j)
				got := matching(pat)
				if len(got) == 0 {
					v.errf(jp, "no rule %s%s; the rules are %s", v.show(jp, pat), didYouMean(pat, ids), strings.Join(ids, ", "))
					continue
				}
				for _, id := range got {
					if l.source {
						sources[id] = true
					} else if sources[id] {
						v.errf(jp, "rule %s is both a source and a target of this inhibition: a rule cannot inhibit itself", id)
					}
				}
			}
		}
	}
}

// InhibitMatches reports whether a rule id matches one of an inhibition's
// patterns.
func InhibitMatches(patterns []string, id string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, id)
		return ok
	})
}
