package config

import (
	"slices"
	"strings"
)

// Resolve makes f the configuration kvwatch runs: unless f says
// default_pack: false, the rules of pack come first, less those f defines
// itself (a rule of f with a pack rule's id replaces it); then each of f's
// overrides changes the rule it names, and f's top-level except is added
// to every rule. pack is nil when f is itself the default configuration.
//
// Both files are expected to come from Parse or Load (or to have passed
// Validate). What can only be checked against the rules (an override of a
// rule that does not exist, a key the rule's kind does not take, a value
// that leaves the rule invalid) is reported in an *Errors pointing into f;
// f is changed only when there is no error.
func Resolve(f *File, pack *File) error {
	m := f.meta
	if m == nil {
		m = newMeta()
	}
	errs := newCollector()
	errs.addFile(f.name)
	v := &validator{m: m, errs: errs, file: f.name, ids: map[string]string{}}
	v.bucket = f.Settings.Bucket.Duration
	if v.bucket <= 0 {
		v.bucket = DefaultBucket
	}

	var merged []RuleSpec
	if pack != nil && (f.DefaultPack == nil || *f.DefaultPack) {
		own := map[string]bool{}
		for _, r := range f.Rules {
			own[r.ID] = true
		}
		for _, r := range pack.Rules {
			if !own[r.ID] {
				merged = append(merged, r)
			}
		}
	}
	merged = append(merged, f.Rules...)
	var ids []string
	byID := map[string]int{}
	for i, r := range merged {
		ids = append(ids, r.ID)
		byID[r.ID] = i
	}

	overridden := make([]RuleSpec, len(merged))
	copy(overridden, merged)
	names := make([]string, 0, len(f.Overrides))
	for id := range f.Overrides {
		names = append(names, id)
	}
	slices.Sort(names)
	for _, id := range names {
		p := joinPath("overrides", id)
		i, ok := byID[id]
		if !ok {
			what := "the rules are"
			if pack != nil && f.DefaultPack != nil && !*f.DefaultPack {
				what = "default_pack is false, so the rules are only yours:"
			}
			v.errf(p, "no rule %s to override%s; %s %s", quote(id), didYouMean(id, ids), what, strings.Join(ids, ", "))
			continue
		}
		overridden[i] = v.override(merged[i], f.Overrides[id], p)
	}
	for i := range overridden {
		r := &overridden[i]
		r.Except = append(slices.Clip(r.Except), f.Except...)
	}
	// The default pack's inhibitions apply unless the file writes its own
	// inhibit section (inhibit: [] for none) or leaves the pack out.
	inhibit := f.Inhibit
	if pack != nil && (f.DefaultPack == nil || *f.DefaultPack) && f.Inhibit == nil && !m.given(f.name, "inhibit") {
		inhibit = pack.Inhibit
	}
	if f.Inhibit != nil || m.given(f.name, "inhibit") {
		v.inhibitRules(f.Inhibit, ids)
	}
	if err := errs.err(); err != nil {
		return err
	}
	f.Inhibit = inhibit
	f.Rules = overridden
	for i := range f.Rules {
		f.Rules[i].ApplyDefaults()
	}
	return nil
}

// override returns r changed by o, reporting keys r's kind does not take
// and values that leave it invalid at the override's keys (path p).
func (v *validator) override(r RuleSpec, o OverrideSpec, p string) RuleSpec {
	out := r
	out.Match.Vaults = slices.Clone(r.Match.Vaults)
	out.Except = slices.Clone(r.Except)
	out.Tags = slices.Clone(r.Tags)
	if o.Enabled != nil {
		e := *o.Enabled
		out.Enabled = &e
	}
	if o.Severity != "" {
		out.Severity = o.Severity
	}
	takes := func(key string) bool {
		for _, kk := range kindKeys {
			if kk.key == key && !slices.Contains(kk.kinds, r.Kind) {
				v.errf(p+"."+key, "rule %s is of kind %s, which takes no %s (only %s rules do)", r.ID, r.Kind, key, orList(kk.kinds))
				return false
			}
		}
		return true
	}
	if v.m.given(v.file, p+".count") || o.Count != 0 {
		if takes("count") {
			out.Count = o.Count
		}
	}
	if given(o.Window) && takes("window") {
		out.Window = o.Window
	}
	if given(o.Learning) && takes("learning") {
		out.Learning = o.Learning
	}
	if given(o.Horizon) && takes("horizon") {
		out.Horizon = o.Horizon
	}
	if given(o.Cooldown) {
		out.Cooldown = o.Cooldown
	}
	if len(o.Vaults) > 0 {
		out.Match.Vaults = slices.Clone(o.Vaults)
	}
	out.Except = append(out.Except, o.Except...)
	for _, t := range o.Tags {
		if !slices.Contains(out.Tags, t) {
			out.Tags = append(out.Tags, t)
		}
	}
	if o.Runbook != "" {
		out.Runbook = o.Runbook
	}
	if o.UpdateOn != nil {
		out.UpdateOn = mergeUpdateOn(r.UpdateOn, o.UpdateOn)
	}
	if o.Routine != nil && takes("routine") {
		out.Routine = mergeRoutine(r.Routine, o.Routine)
	}
	// What the change leaves: a window the rule's kind cannot use, a
	// count below what it needs.
	if given(o.Window) && out.Window.Duration > 0 && slices.Contains(kindKeys[0].kinds, r.Kind) {
		switch {
		case r.Kind == "spike" && Day%out.Window.Duration != 0:
			v.errf(p+".window", "a spike window must divide a day evenly (like 5m, 1h or 6h), not %s", v.showDuration(p+".window", out.Window.Duration))
		case out.Window.Duration%v.bucket != 0:
			v.errf(p+".window", "window %s is not a whole number of buckets (settings.bucket is %s)", v.showDuration(p+".window", out.Window.Duration), FormatDuration(v.bucket))
		}
	}
	if r.Kind == "distinct" && v.m.given(v.file, p+".count") && o.Count < 2 && o.Count >= 1 {
		v.errf(p+".count", "count must be at least 2 distinct values")
	}
	if (o.Routine != nil || given(o.Cooldown) || given(o.Window)) && slices.Contains(RoutineKinds, r.Kind) {
		// What the change leaves: a routine its periods cannot reach.
		rp := p + ".routine"
		if o.Routine == nil {
			rp = p + ".cooldown"
			if !given(o.Cooldown) {
				rp = p + ".window"
			}
		}
		v.routineFits(&out, rp)
		if o.Routine != nil {
			v.routineGroup(&out, rp)
		}
	}
	return out
}
