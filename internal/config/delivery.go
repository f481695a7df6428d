package config

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// This file checks where findings go: delivery settings, receivers (their
// names, their kind and each kind's own settings), routes (the receivers
// they name, their severities and patterns), silences and mute intervals,
// and the keys that tune rules (overrides, except). Everything kvwatch
// checks before it runs is checked here, with positions, so `rules check`
// and `serve` accept and refuse the same files.

// ReceiverKinds are the kinds of receiver, in the order messages list them.
var ReceiverKinds = []string{"teams", "email", "webhook", "stdout"}

// DefaultInhibitWait is delivery.inhibit_wait when the file does not say.
const DefaultInhibitWait = time.Minute

// InhibitWaitOrDefault is how long an alert of an inhibition's target rule waits
// for a source to cover it: the file's delivery.inhibit_wait, else
// DefaultInhibitWait.
func (d DeliverySettings) InhibitWaitOrDefault() time.Duration {
	if given(d.InhibitWait) {
		return d.InhibitWait.Duration
	}
	return DefaultInhibitWait
}

// validator wrapping helpers for the delivery part.

func (v *validator) delivery(f *File) {
	d := &f.Delivery
	for _, x := range []struct {
		key string
		d   Duration
	}{{"give_up", d.GiveUp}, {"max_backoff", d.MaxBackoff}, {"max_reminder", d.MaxReminder}} {
		if given(x.d) && x.d.Duration <= 0 {
			v.errf("delivery."+x.key, "must be positive")
		}
	}
	if d.GroupWait.Duration < 0 {
		v.errf("delivery.group_wait", "must not be negative")
	}
	if d.InhibitWait.Duration < 0 {
		v.errf("delivery.inhibit_wait", "must not be negative")
	}

	names := v.receivers(f.Receivers)
	for i := range f.Routes {
		v.route(&f.Routes[i], indexPath("routes", i), names)
	}
	for i := range f.Silences {
		v.silence(&f.Silences[i], indexPath("silences", i))
	}
	for i := range f.MuteIntervals {
		v.muteInterval(&f.MuteIntervals[i], indexPath("mute_intervals", i))
	}
}

var receiverNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// receivers checks every receiver and returns their names.
func (v *validator) receivers(list []ReceiverSpec) []string {
	var names []string
	first := map[string]string{}
	for i := range list {
		r := &list[i]
		p := indexPath("receivers", i)
		np := p + ".name"
		switch {
		case r.Name == "":
			v.errf(np, "name is required (routes name receivers by it)")
		case !receiverNameRE.MatchString(r.Name):
			v.errf(np, "name %s must be letters, digits, '.', '_' and '-'", v.show(np, r.Name))
		default:
			if at, dup := first[r.Name]; dup {
				v.errf(np, "duplicate receiver name %s (first defined at %s)", v.show(np, r.Name), at)
			} else if !v.m.bad(v.file, np) {
				first[r.Name] = v.where(np)
				names = append(names, r.Name)
			}
		}
		var kinds []string
		var check func() error
		if r.Teams != nil {
			kinds = append(kinds, "teams")
			check = r.Teams.Validate
		}
		if r.Email != nil {
			kinds = append(kinds, "email")
			check = r.Email.Validate
		}
		if r.Webhook != nil {
			kinds = append(kinds, "webhook")
			check = r.Webhook.Validate
		}
		if r.Stdout != nil {
			kinds = append(kinds, "stdout")
			check = r.Stdout.Validate
		}
		switch {
		case len(kinds) == 0:
			v.errf(p, "a receiver needs one of %s", orList(ReceiverKinds))
		case len(kinds) > 1:
			v.errf(p+"."+kinds[1], "a receiver has one kind, and this one also has %s: make it a receiver of its own", kinds[0])
		case r.Off != "":
			// Optional and not configured: its settings are not checked.
		default:
			v.kindSettings(p+"."+kinds[0], check())
		}
	}
	return names
}

// settingKeyRE finds the key a receiver's own error names at its start:
// "url: missing", "to[0]: ...", "smtp.host: required", "url is required".
var settingKeyRE = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*)(?:[:,]| )`)

// kindSettings reports a receiver's own validation errors, each at the key
// it names, when that key was written (else at the receiver's kind).
func (v *validator) kindSettings(p string, err error) {
	for _, e := range leafErrors(err) {
		msg := e.Error()
		for _, prefix := range ReceiverKinds {
			msg = strings.TrimPrefix(msg, prefix+": ")
		}
		at := p
		if m := settingKeyRE.FindStringSubmatch(msg); m != nil && v.m.get(v.file, p+"."+m[1]) != nil {
			at = p + "." + m[1]
			msg = strings.TrimPrefix(msg, m[1]+": ") // the path says it
		}
		if v.m.bad(v.file, at) {
			continue
		}
		v.errs.add(v.file, v.m.pos(v.file, at), at, msg)
	}
}

// leafErrors flattens errors joined (and wrapped around joins) into the
// errors that hold one message each.
func leafErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	// A prefix wrapped around a join ("teams: " + joined): the join's
	// parts, each keeping the message it would have had alone.
	if inner := errors.Unwrap(err); inner != nil {
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			return leafErrors(inner)
		}
	}
	return []error{err}
}

func (v *validator) route(r *RouteSpec, p string, names []string) {
	if len(r.Receivers) == 0 {
		v.errf(p+".receivers", "a route needs receivers (the names of receivers it sends to)")
	}
	for i, n := range r.Receivers {
		rp := indexPath(p+".receivers", i)
		if slices.Contains(names, n) {
			continue
		}
		if len(names) == 0 {
			v.errf(rp, "no receiver named %s: no receivers are defined (receivers:)", v.show(rp, n))
			continue
		}
		v.errf(rp, "no receiver named %s%s; receivers are %s", v.show(rp, n), didYouMean(n, names), strings.Join(names, ", "))
	}
	if r.MinSeverity != "" {
		v.enum(p+".min_severity", "severity", r.MinSeverity, Severities)
	}
	v.patterns(p+".rules", r.Rules)
	v.patterns(p+".vaults", r.Vaults)
	v.globs(p+".tags", r.Tags)
}

// patterns checks globs matched with path.Match.
func (v *validator) patterns(p string, list []string) {
	for i, s := range list {
		ip := indexPath(p, i)
		if s == "" {
			v.errf(ip, "must not be empty")
		} else if _, err := path.Match(s, ""); err != nil {
			v.errf(ip, "bad pattern %s (globs take *, ? and [a-z])", v.show(ip, s))
		}
	}
}

// ParseInstant reads a silence's starts or ends: RFC 3339, with or without
// seconds' fractions.
func ParseInstant(s string) (time.Time, error) {
	return time.Parse(time.RFC3339, s)
}

func (v *validator) silence(s *SilenceSpec, p string) {
	var starts, ends time.Time
	okS, okE := false, false
	if s.Starts != "" {
		t, err := ParseInstant(s.Starts)
		if err != nil {
			v.errf(p+".starts", "%s is not an RFC 3339 time such as 2026-03-01T22:00:00Z", v.show(p+".starts", s.Starts))
		} else {
			starts, okS = t, true
		}
	}
	if s.Ends != "" {
		t, err := ParseInstant(s.Ends)
		if err != nil {
			v.errf(p+".ends", "%s is not an RFC 3339 time such as 2026-03-02T06:00:00Z", v.show(p+".ends", s.Ends))
		} else {
			ends, okE = t, true
		}
	}
	if okS && okE && !ends.After(starts) {
		v.errf(p+".ends", "the silence ends (%s) before it starts (%s)", s.Ends, s.Starts)
	}
	if len(s.Rules)+len(s.Vaults)+len(s.Callers)+len(s.IPs) == 0 && !v.m.bad(v.file, p) {
		v.errf(p, "a silence names at least one of rules, vaults, callers, ips (else it mutes everything)")
	}
	v.patterns(p+".rules", s.Rules)
	v.patterns(p+".vaults", s.Vaults)
	v.patterns(p+".callers", s.Callers)
	for i, ip := range s.IPs {
		v.network(indexPath(p+".ips", i), ip)
	}
}

func (v *validator) muteInterval(m *MuteIntervalSpec, p string) {
	if m.Zone != "" {
		if m.Zone == "Local" {
			v.errf(p+".zone", `"Local" depends on the machine kvwatch runs on: name an IANA zone such as "Europe/Berlin"`)
		} else if _, err := time.LoadLocation(m.Zone); err != nil {
			v.errf(p+".zone", "unknown time zone %s (an IANA name such as \"Europe/Berlin\" or \"UTC\")", v.show(p+".zone", m.Zone))
		}
	}
	for i, day := range m.Days {
		dp := indexPath(p+".days", i)
		if !slices.Contains(Weekdays, strings.ToLower(day)) {
			v.errf(dp, "unknown day %s%s; days are %s", v.show(dp, day), didYouMean(day, Weekdays), strings.Join(Weekdays, ", "))
		}
	}
	start, okS := v.muteClock(p+".start", m.Start)
	end, okE := v.muteClock(p+".end", m.End)
	if okS && okE && start >= end {
		v.errf(p+".end", "a mute interval must start before it ends (start %s, end %s)", m.Start, m.End)
	}
}

// muteClock reads a mute interval's HH:MM; 24:00 is the end of the day.
func (v *validator) muteClock(p, s string) (int, bool) {
	if s == "" {
		v.errf(p, `%s is required ("HH:MM")`, p[strings.LastIndexByte(p, '.')+1:])
		return 0, false
	}
	if s == "24:00" {
		return 24 * 60, true
	}
	return v.clock(p, s, "")
}

// tuning checks overrides and the top-level except as far as they can be
// checked without the rules they apply to (Resolve does the rest).
func (v *validator) tuning(f *File) {
	for i := range f.Except {
		v.exceptEntry(&f.Except[i], indexPath("except", i))
	}
	ids := make([]string, 0, len(f.Overrides))
	for id := range f.Overrides {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		o := f.Overrides[id]
		p := joinPath("overrides", id)
		if o.Severity != "" {
			v.enum(p+".severity", "severity", o.Severity, Severities)
		}
		if v.m.given(v.file, p+".count") && o.Count < 1 {
			v.errf(p+".count", "count must be at least 1")
		}
		for _, d := range []struct {
			key string
			d   Duration
		}{{"window", o.Window}, {"cooldown", o.Cooldown}, {"learning", o.Learning}, {"horizon", o.Horizon}} {
			if given(d.d) && d.d.Duration <= 0 && (d.key == "window" || d.key == "horizon") {
				v.errf(p+"."+d.key, "%s must be positive", d.key)
			} else if d.d.Duration < 0 {
				v.errf(p+"."+d.key, "must not be negative")
			}
		}
		v.globs(p+".vaults", o.Vaults)
		v.globs(p+".tags", o.Tags)
		v.updateOn(o.UpdateOn, p+".update_on")
		v.routine(o.Routine, p+".routine")
		for i := range o.Except {
			v.exceptEntry(&o.Except[i], indexPath(p+".except", i))
		}
	}
}

// exceptEntry checks one entry of an except list that applies to rules
// the user did not write: an empty one would silence them all.
func (v *validator) exceptEntry(m *MatchSpec, p string) {
	if isEmptyMatch(m) && !v.m.bad(v.file, p) {
		v.errf(p, "an empty except entry matches every event: name callers, app_ids, vaults, ip_in or another key")
	}
	v.match(m, p)
}

func isEmptyMatch(m *MatchSpec) bool {
	return len(m.Operations)+len(m.Families)+len(m.Kinds)+len(m.Outcomes)+len(m.Status)+len(m.Vaults)+
		len(m.Callers)+len(m.AppIDs)+len(m.Objects)+len(m.ObjectTypes)+len(m.ClientInfo)+len(m.IPIn)+len(m.IPNotIn) == 0 &&
		m.OutsideBusinessHours == nil && m.Anonymous == nil && m.Config == nil
}

// optionalReceivers turns off the optional receivers whose settings name
// unset variables, dropping the errors those variables caused, and says
// which variables would turn each on.
func optionalReceivers(f *File, name string, m *meta, errs *collector) {
	for i := range f.Receivers {
		r := &f.Receivers[i]
		if !r.Optional {
			continue
		}
		p := indexPath("receivers", i)
		var unset []string
		for k, fl := range m.fields {
			if k.file == name && strings.HasPrefix(k.path, p+".") {
				for _, n := range fl.unset {
					if !slices.Contains(unset, n) {
						unset = append(unset, n)
					}
				}
			}
		}
		if len(unset) == 0 {
			continue
		}
		slices.Sort(unset)
		r.Off = "set " + strings.Join(unset, ", ")
		errs.list = slices.DeleteFunc(errs.list, func(e *Error) bool {
			_, isUnset := unsetName(e.Msg)
			return isUnset && e.File == name && strings.HasPrefix(e.Path, p+".")
		})
		// What those values could not be decoded into is not an error
		// either: the receiver is off.
		for k, fl := range m.fields {
			if k.file == name && strings.HasPrefix(k.path, p+".") && len(fl.unset) > 0 {
				fl.bad = false
			}
		}
	}
}

// Active returns the receivers that are on: all but the optional ones
// whose variables are unset.
func (f *File) Active() []ReceiverSpec {
	var out []ReceiverSpec
	for _, r := range f.Receivers {
		if r.Off == "" {
			out = append(out, r)
		}
	}
	return out
}

// describeOff says what to set to turn the receivers that are off on.
func (f *File) describeOff() string {
	var parts []string
	for _, r := range f.Receivers {
		if r.Off != "" {
			parts = append(parts, fmt.Sprintf("receiver %s: %s", r.Name, r.Off))
		}
	}
	return strings.Join(parts, "; ")
}

// NoReceivers says, when no receiver is on, what to set to turn one on;
// "" when some receiver is on.
func (f *File) NoReceivers() string {
	if len(f.Active()) > 0 {
		return ""
	}
	if off := f.describeOff(); off != "" {
		return "no receiver is on, so alerts go to the log only; to turn one on, " + off
	}
	return "no receivers configured, so alerts go to the log only: add receivers: and routes: to kvwatch.yaml"
}
