package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // business_hours.zone must load on machines without a zone database

	"github.com/kvwatch/kvwatch/internal/audit"
)

// The values kvwatch.yaml accepts, in the order messages list them.
var (
	Severities  = []string{"info", "low", "medium", "high", "critical"}
	RuleKinds   = []string{"each", "threshold", "distinct", "spike", "new_value", "sequence", "config_change", "access_grant"}
	ObjectTypes = []string{"secret", "key", "certificate", "storage"}
	Weekdays    = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
)

// TrustedNetworks is the word ip_in and ip_not_in use for
// settings.trusted_networks.
const TrustedNetworks = "trusted_networks"

// Defaults filled in by ApplyDefaults.
const (
	DefaultSeverity      = "medium"
	DefaultLateness      = 15 * time.Minute
	DefaultBucket        = time.Minute
	DefaultZone          = "UTC"
	DefaultStart         = "08:00"
	DefaultEnd           = "18:00"
	DefaultHorizon       = 30 * Day
	DefaultCooldown      = time.Hour // each and new_value rules, which have no window
	DefaultBaselineDays  = 7
	DefaultBaselineK     = 3.0
	DefaultBaselineRatio = 3.0
	DefaultBaselineMin   = 20
	DefaultSequenceCount = 1
)

// DefaultDays are the business days when business_hours.days is not given.
var DefaultDays = []string{"mon", "tue", "wed", "thu", "fri"}

var ruleIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// kindKeys says which kinds use each kind-specific key; a rule of another
// kind that sets it is an error.
var kindKeys = []struct {
	key   string
	kinds []string
	set   func(*RuleSpec) bool
}{
	{"window", []string{"threshold", "distinct", "spike", "sequence", "access_grant"}, func(r *RuleSpec) bool { return given(r.Window) }},
	{"count", []string{"threshold", "distinct", "sequence", "access_grant"}, func(r *RuleSpec) bool { return r.Count != 0 }},
	{"field", []string{"distinct"}, func(r *RuleSpec) bool { return r.Field != "" }},
	{"min_events", []string{"distinct"}, func(r *RuleSpec) bool { return r.MinEvents != 0 }},
	{"fields", []string{"new_value"}, func(r *RuleSpec) bool { return len(r.Fields) > 0 }},
	{"horizon", []string{"new_value"}, func(r *RuleSpec) bool { return given(r.Horizon) }},
	{"learning", []string{"spike", "new_value"}, func(r *RuleSpec) bool { return given(r.Learning) }},
	{"baseline", []string{"spike"}, func(r *RuleSpec) bool { return r.Baseline != nil }},
	{"then", []string{"sequence", "access_grant"}, func(r *RuleSpec) bool { return r.Then != nil }},
	{"routine", RoutineKinds, func(r *RuleSpec) bool { return r.Routine != nil }},
}

// given reports whether a Duration was written (or set by code).
func given(d Duration) bool { return d.Set || d.Duration != 0 }

// Validate checks a File built in code the way Parse checks a file read
// from disk; errors carry paths but no positions. Parse and Load already
// validate.
func (f *File) Validate() error {
	m := newMeta()
	for i := range f.Rules {
		m.rules = append(m.rules, origin{index: i})
	}
	errs := newCollector()
	validate(f, "", m, errs)
	return errs.err()
}

type validator struct {
	m      *meta
	errs   *collector
	file   string        // the file being checked
	bucket time.Duration // settings.bucket, 0 when it is invalid
	ids    map[string]string
}

func validate(f *File, name string, m *meta, errs *collector) {
	v := &validator{m: m, errs: errs, file: name, ids: map[string]string{}}
	v.settings(&f.Settings)
	v.delivery(f)
	v.tuning(f)
	v.inhibit(f.Inhibit)
	for i := range f.Rules {
		o := origin{file: name, index: i}
		if i < len(m.rules) {
			o = m.rules[i]
		}
		v.file = o.file
		v.rule(&f.Rules[i], indexPath("rules", o.index))
	}
}

// errf reports a problem with path, at the position of its key, unless
// decoding already reported one there.
func (v *validator) errf(path, format string, args ...any) {
	if v.m.bad(v.file, path) {
		return
	}
	v.errs.add(v.file, v.m.pos(v.file, path), path, fmt.Sprintf(format, args...))
}

func (v *validator) show(path, value string) string { return v.m.show(v.file, path, value) }

func (v *validator) showDuration(path string, d time.Duration) string {
	if f := v.m.get(v.file, path); f != nil && len(f.vars) > 0 {
		return fromVars(f.vars)
	}
	return FormatDuration(d)
}

// where formats a position for "first defined at".
func (v *validator) where(path string) string {
	at := v.m.pos(v.file, path)
	e := Error{File: v.file, Line: at.line, Column: at.col}
	if s := e.Error(); s != "" {
		return strings.TrimSuffix(s, ": ")
	}
	return path
}

func (v *validator) settings(s *Settings) {
	if given(s.Lateness) && s.Lateness.Duration <= 0 {
		v.errf("settings.lateness", "must be positive")
	}
	v.bucket = DefaultBucket
	if given(s.Bucket) {
		v.bucket = s.Bucket.Duration
		if s.Bucket.Duration <= 0 {
			v.errf("settings.bucket", "must be positive")
			v.bucket = 0
		}
	}
	if v.m.bad(v.file, "settings.bucket") {
		v.bucket = 0
	}

	bh := &s.BusinessHours
	const bhp = "settings.business_hours"
	switch {
	case bh.Zone == "":
	case bh.Zone == "Local":
		v.errf(bhp+".zone", `"Local" depends on the machine kvwatch runs on: name an IANA zone such as "Europe/Berlin"`)
	default:
		if _, err := time.LoadLocation(bh.Zone); err != nil {
			v.errf(bhp+".zone", "unknown time zone %s (an IANA name such as \"Europe/Berlin\" or \"UTC\")", v.show(bhp+".zone", bh.Zone))
		}
	}
	for i, day := range bh.Days {
		p := indexPath(bhp+".days", i)
		switch {
		case !slices.Contains(Weekdays, day):
			v.errf(p, "unknown day %s%s; days are %s", v.show(p, day), didYouMean(day, Weekdays), strings.Join(Weekdays, ", "))
		case slices.Index(bh.Days, day) < i:
			v.errf(p, "%s is listed twice", v.show(p, day))
		}
	}
	start, startOK := v.clock(bhp+".start", bh.Start, DefaultStart)
	end, endOK := v.clock(bhp+".end", bh.End, DefaultEnd)
	if startOK && endOK && start >= end {
		p := bhp + ".end"
		if bh.End == "" {
			p = bhp + ".start"
		}
		v.errf(p, "business hours must start before they end (start %s, end %s)", orDefault(bh.Start, DefaultStart), orDefault(bh.End, DefaultEnd))
	}

	for i, cidr := range s.TrustedNetworks {
		p := indexPath("settings.trusted_networks", i)
		if cidr == TrustedNetworks {
			v.errf(p, "trusted_networks cannot name itself")
			continue
		}
		v.network(p, cidr)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clock reads an "HH:MM" time of day as minutes after midnight.
func (v *validator) clock(path, s, def string) (int, bool) {
	if s == "" {
		s = def
	}
	if len(s) == 5 && s[2] == ':' {
		h, err1 := strconv.Atoi(s[:2])
		m, err2 := strconv.Atoi(s[3:])
		if err1 == nil && err2 == nil && h >= 0 && h < 24 && m >= 0 && m < 60 && s[0] != '+' && s[3] != '+' {
			return h*60 + m, true
		}
	}
	v.errf(path, `time of day %s must be written "HH:MM" (00:00 to 23:59)`, v.show(path, s))
	return 0, false
}

// network checks a CIDR or a single address.
func (v *validator) network(path, s string) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() == "" && p == p.Masked() {
			return
		}
		if p.Addr().Zone() == "" {
			v.errf(path, "%s has bits set beyond the prefix length (did you mean %s?)", v.show(path, s), v.showMasked(path, p))
			return
		}
	} else if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return
	}
	v.errf(path, "%s is not a CIDR (10.0.0.0/8) or an IP address", v.show(path, s))
}

func (v *validator) showMasked(path string, p netip.Prefix) string {
	if f := v.m.get(v.file, path); f != nil && len(f.vars) > 0 {
		return "the network address"
	}
	return quote(p.Masked().String())
}

func (v *validator) rule(r *RuleSpec, p string) {
	idp := p + ".id"
	switch {
	case r.ID == "":
		v.errf(idp, "id is required")
	case !ruleIDRE.MatchString(r.ID):
		v.errf(idp, "id %s must be lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", v.show(idp, r.ID))
	default:
		if first, dup := v.ids[r.ID]; dup {
			v.errf(idp, "duplicate rule id %s (first defined at %s)", v.show(idp, r.ID), first)
		} else if !v.m.bad(v.file, idp) {
			v.ids[r.ID] = v.where(idp)
		}
	}
	if r.Severity != "" {
		v.enum(p+".severity", "severity", r.Severity, Severities)
	}

	kp := p + ".kind"
	switch {
	case r.Kind == "":
		v.errf(kp, "kind is required: one of %s", strings.Join(RuleKinds, ", "))
	case !slices.Contains(RuleKinds, r.Kind):
		v.enum(kp, "kind", r.Kind, RuleKinds)
	default:
		v.kind(r, p)
	}

	v.match(&r.Match, p+".match")
	for i := range r.Except {
		v.match(&r.Except[i], indexPath(p+".except", i))
	}
	if r.Then != nil {
		v.match(r.Then, p+".then")
	}
	for i, name := range r.GroupBy {
		v.fieldName(indexPath(p+".group_by", i), name)
	}
	v.updateOn(r.UpdateOn, p+".update_on")
	v.routine(r.Routine, p+".routine")
	if slices.Contains(RoutineKinds, r.Kind) {
		v.routineFits(r, p+".routine")
		v.routineGroup(r, p+".routine")
	}
	for _, d := range []struct {
		key string
		d   Duration
	}{{"window", r.Window}, {"horizon", r.Horizon}, {"learning", r.Learning}, {"cooldown", r.Cooldown}} {
		if d.d.Duration < 0 {
			v.errf(p+"."+d.key, "must not be negative")
		}
	}
}

// kind checks the keys that depend on the rule's kind.
func (v *validator) kind(r *RuleSpec, p string) {
	k := r.Kind
	for _, kk := range kindKeys {
		if kk.set(r) && !slices.Contains(kk.kinds, k) {
			v.errf(p+"."+kk.key, "%s rules take no %s (only %s rules do)", k, kk.key, orList(kk.kinds))
		}
	}

	if slices.Contains([]string{"threshold", "distinct", "spike", "sequence", "access_grant"}, k) {
		wp := p + ".window"
		switch {
		case !given(r.Window):
			v.errf(wp, "%s rules need a window", k)
		case r.Window.Duration <= 0:
			v.errf(wp, "window must be positive")
		case k == "spike" && Day%r.Window.Duration != 0:
			// A spike compares a window with the same window of earlier days.
			v.errf(wp, "a spike window must divide a day evenly (like 5m, 1h or 6h), not %s", v.showDuration(wp, r.Window.Duration))
		case v.bucket > 0 && r.Window.Duration%v.bucket != 0:
			v.errf(wp, "window %s is not a whole number of buckets (settings.bucket is %s)", v.showDuration(wp, r.Window.Duration), FormatDuration(v.bucket))
		}
	}

	cp := p + ".count"
	switch k {
	case "threshold":
		if r.Count < 1 {
			if v.m.given(v.file, cp) || r.Count != 0 {
				v.errf(cp, "count must be at least 1")
			} else {
				v.errf(cp, "threshold rules need a count (how many events fire the rule, at least 1)")
			}
		}
	case "distinct":
		if r.Count < 2 {
			if v.m.given(v.file, cp) || r.Count != 0 {
				v.errf(cp, "count must be at least 2 distinct values")
			} else {
				v.errf(cp, "distinct rules need a count (how many distinct values fire the rule, at least 2)")
			}
		}
		if r.MinEvents < 0 {
			v.errf(p+".min_events", "min_events must not be negative")
		}
		if r.Field == "" {
			v.errf(p+".field", "distinct rules need a field (whose distinct values are counted): one of %s", strings.Join(audit.FieldNames, ", "))
		} else {
			v.fieldName(p+".field", r.Field)
		}
	case "spike":
		if b := r.Baseline; b != nil {
			bp := p + ".baseline"
			v.positive(bp+".days", float64(b.Days))
			v.positive(bp+".k", b.K)
			v.positive(bp+".ratio", b.Ratio)
			v.positive(bp+".min_count", float64(b.MinCount))
		}
	case "new_value":
		if len(r.Fields) == 0 {
			v.errf(p+".fields", "new_value rules need fields (the values remembered): some of %s", strings.Join(audit.FieldNames, ", "))
		}
		for i, name := range r.Fields {
			v.fieldName(indexPath(p+".fields", i), name)
		}
		if given(r.Horizon) && r.Horizon.Duration <= 0 {
			v.errf(p+".horizon", "horizon must be positive")
		}
	case "sequence":
		if r.Then == nil {
			v.errf(p+".then", "sequence rules need then (the event that must follow one matching match)")
		}
		if r.Count < 0 || (r.Count == 0 && v.m.given(v.file, cp)) {
			v.errf(cp, "count must be at least 1")
		}
	case "access_grant":
		v.accessGrant(r, p)
	}
}

// positive checks a number that has a default: when given it must be > 0.
func (v *validator) positive(path string, x float64) {
	if (v.m.given(v.file, path) || x != 0) && !(x > 0) {
		v.errf(path, "must be positive")
	}
}

func (v *validator) fieldName(path, name string) {
	if !audit.IsField(name) {
		v.errf(path, "unknown field %s%s; fields are %s", v.show(path, name), didYouMean(name, audit.FieldNames), strings.Join(audit.FieldNames, ", "))
	}
}

// enum checks that s is one of allowed, exactly.
func (v *validator) enum(path, what, s string, allowed []string) {
	if !slices.Contains(allowed, s) {
		v.errf(path, "unknown %s %s%s; one of %s", what, v.show(path, s), didYouMean(s, allowed), strings.Join(allowed, ", "))
	}
}

func didYouMean(s string, allowed []string) string {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return fmt.Sprintf(" (did you mean %q?)", a)
		}
	}
	if sg := suggest(s, allowed); sg != "" {
		return fmt.Sprintf(" (did you mean %q?)", sg)
	}
	return ""
}

func orList(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " and " + list[len(list)-1]
}

func strs[T ~string](list []T) []string {
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = string(x)
	}
	return out
}

var (
	familyNames  = strs(audit.Families)
	kindNames    = strs(audit.Kinds)
	outcomeNames = strs(audit.Outcomes)
)

func (v *validator) match(m *MatchSpec, p string) {
	v.globs(p+".operations", m.Operations)
	for i, s := range m.Families {
		v.enum(indexPath(p+".families", i), "family", s, familyNames)
	}
	for i, s := range m.Kinds {
		v.enum(indexPath(p+".kinds", i), "kind", s, kindNames)
	}
	for i, s := range m.Outcomes {
		v.enum(indexPath(p+".outcomes", i), "outcome", s, outcomeNames)
	}
	for i, s := range m.Status {
		if s < 100 || s > 599 {
			sp := indexPath(p+".status", i)
			v.errf(sp, "%s is not an HTTP status (100 to 599)", v.show(sp, strconv.Itoa(s)))
		}
	}
	v.globs(p+".vaults", m.Vaults)
	v.globs(p+".callers", m.Callers)
	v.globs(p+".app_ids", m.AppIDs)
	v.globs(p+".objects", m.Objects)
	v.globs(p+".client_info", m.ClientInfo)
	for i, s := range m.ObjectTypes {
		v.enum(indexPath(p+".object_types", i), "object type", s, ObjectTypes)
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"ip_in", m.IPIn}, {"ip_not_in", m.IPNotIn}} {
		for i, s := range l.list {
			if s != TrustedNetworks {
				v.network(indexPath(p+"."+l.key, i), s)
			}
		}
	}
	if c := m.Config; c != nil {
		cp := p + ".config"
		for i, s := range c.NetworkDefaultAction {
			v.oneOfFold(indexPath(cp+".network_default_action", i), s, "Allow", "Deny")
		}
		for i, s := range c.PublicNetworkAccess {
			v.oneOfFold(indexPath(cp+".public_network_access", i), s, "Enabled", "Disabled")
		}
		if c.RetentionBelow < 0 {
			v.errf(cp+".retention_below_days", "must not be negative")
		}
	}
}

// globs checks a list of patterns (or exact values): none may be empty.
func (v *validator) globs(path string, list []string) {
	for i, s := range list {
		if s == "" {
			v.errf(indexPath(path, i), "must not be empty")
		}
	}
}

// oneOfFold checks a value Azure writes (Allow, Enabled, ...), which
// matching compares ignoring case.
func (v *validator) oneOfFold(path, s string, allowed ...string) {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return
		}
	}
	v.errf(path, "%s is not %s", v.show(path, s), strings.Join(allowed, " or "))
}

// ApplyDefaults fills in every value left out: settings, severity,
// enabled, baselines, horizons, sequence counts and cooldowns. Parse and
// Load call it after validation; it is idempotent.
func (f *File) ApplyDefaults() {
	s := &f.Settings
	setDefault(&s.Lateness, DefaultLateness)
	setDefault(&s.Bucket, DefaultBucket)
	bh := &s.BusinessHours
	bh.Zone = orDefault(bh.Zone, DefaultZone)
	if len(bh.Days) == 0 {
		bh.Days = slices.Clone(DefaultDays)
	}
	bh.Start = orDefault(bh.Start, DefaultStart)
	bh.End = orDefault(bh.End, DefaultEnd)
	for i := range f.Rules {
		f.Rules[i].ApplyDefaults()
	}
}

// ApplyDefaults fills in the rule's unset values.
func (r *RuleSpec) ApplyDefaults() {
	r.Severity = orDefault(r.Severity, DefaultSeverity)
	if r.Enabled == nil {
		t := true
		r.Enabled = &t
	}
	switch r.Kind {
	case "spike":
		if r.Baseline == nil {
			r.Baseline = &Baseline{}
		}
		b := r.Baseline
		if b.Days == 0 {
			b.Days = DefaultBaselineDays
		}
		if b.K == 0 {
			b.K = DefaultBaselineK
		}
		if b.Ratio == 0 {
			b.Ratio = DefaultBaselineRatio
		}
		if b.MinCount == 0 {
			b.MinCount = DefaultBaselineMin
		}
	case "new_value":
		setDefault(&r.Horizon, DefaultHorizon)
	case "sequence":
		if r.Count == 0 {
			r.Count = DefaultSequenceCount
		}
	case "access_grant":
		if r.Count == 0 {
			r.Count = DefaultSequenceCount
		}
		if len(r.GroupBy) == 0 {
			r.GroupBy = []string{"vault"}
		}
	}
	applyUpdateOn(&r.UpdateOn, r.Kind)
	applyRoutine(r.Routine)
	switch {
	case given(r.Cooldown):
	case r.Kind == "each" || r.Kind == "new_value" || !given(r.Window):
		r.Cooldown = Duration{Duration: DefaultCooldown, Set: true}
	default:
		r.Cooldown = Duration{Duration: r.Window.Duration, Set: true}
	}
}

func setDefault(d *Duration, def time.Duration) {
	if !given(*d) {
		*d = Duration{Duration: def, Set: true}
	} else {
		d.Set = true
	}
}
