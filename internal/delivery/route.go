package delivery

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/alert"
	"github.com/kvwatch/kvwatch/internal/config"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// Route sends matching alerts to receivers.
type Route struct {
	Receivers   []string
	MinSeverity finding.Severity
	Rules       []string // globs
	Tags        []string
	Vaults      []string // globs
	Continue    bool
}

func globAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(s)); ok {
			return true
		}
	}
	return false
}

// Matches reports whether the route takes the alert.
func (r *Route) Matches(a *alert.Alert) bool {
	if a.Severity < r.MinSeverity || !globAny(r.Rules, a.Rule) || !globAny(r.Vaults, a.Vault) {
		return false
	}
	if len(r.Tags) > 0 && !slices.ContainsFunc(r.Tags, func(t string) bool {
		return slices.ContainsFunc(a.Tags, func(at string) bool { return strings.EqualFold(at, t) })
	}) {
		return false
	}
	return true
}

// Routes returns the receivers an alert goes to: routes are tried in order,
// the first match wins unless it says continue. With no routes at all,
// every receiver gets every alert.
func Routes(routes []Route, a *alert.Alert, all []string) []string {
	if len(routes) == 0 {
		return all
	}
	var out []string
	for i := range routes {
		r := &routes[i]
		if !r.Matches(a) {
			continue
		}
		for _, n := range r.Receivers {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		if !r.Continue {
			break
		}
	}
	return out
}

// Silence mutes matching alerts. A silence from kvwatch.yaml holds the
// alerts whose first event falls between Starts and Ends; one added at
// run time (kvwatch silence add: it has an ID) also holds, while it is
// active, every alert sent meanwhile. A zero Ends never ends; a zero
// Starts has always begun.
type Silence struct {
	// ID names a silence added at run time; "" for one from kvwatch.yaml.
	ID        string         `json:"id,omitempty"`
	Comment   string         `json:"comment,omitempty"`
	Rules     []string       `json:"rules,omitempty"`
	Vaults    []string       `json:"vaults,omitempty"`
	Callers   []string       `json:"callers,omitempty"`
	IPs       []netip.Prefix `json:"ips,omitempty"`
	Starts    time.Time      `json:"starts,omitzero"`
	Ends      time.Time      `json:"ends,omitzero"`
	CreatedBy string         `json:"createdBy,omitempty"`
	Created   time.Time      `json:"created,omitzero"`
}

// Name describes the silence in logs and records.
func (s *Silence) Name() string {
	name := "silence"
	if s.ID != "" {
		name += " " + s.ID
	}
	switch {
	case s.Comment != "":
		return name + ": " + s.Comment
	case s.Ends.IsZero():
		return name + " (open-ended)"
	}
	return name + " until " + s.Ends.Format(time.RFC3339)
}

// Covers reports whether t falls between Starts and Ends.
func (s *Silence) Covers(t time.Time) bool {
	return !t.Before(s.Starts) && (s.Ends.IsZero() || t.Before(s.Ends))
}

// Matches reports whether the silence mutes the alert: by its first
// event's time (see Silence).
func (s *Silence) Matches(a *alert.Alert) bool { return s.MatchesAt(a, time.Time{}) }

// MatchesAt reports whether the silence mutes the alert when it is
// recorded or sent at now: a silence added at run time also holds what is
// sent while it is active.
func (s *Silence) MatchesAt(a *alert.Alert, now time.Time) bool {
	if !s.Covers(a.FirstEvent) && (s.ID == "" || now.IsZero() || !s.Covers(now)) {
		return false
	}
	if !globAny(s.Rules, a.Rule) || !globAny(s.Vaults, a.Vault) {
		return false
	}
	if len(s.Callers) > 0 {
		var who []string
		for _, p := range a.Group {
			if p.Field == "caller" || p.Field == "caller_upn" {
				who = append(who, p.Value)
			}
		}
		if ex := a.Lead().Example; ex != nil {
			who = append(who, ex.Caller.Key, ex.Caller.UPN)
		}
		if !slices.ContainsFunc(who, func(w string) bool { return w != "" && globAny(s.Callers, w) }) {
			return false
		}
	}
	if len(s.IPs) > 0 {
		var ips []string
		for _, p := range a.Group {
			if p.Field == "ip" {
				ips = append(ips, p.Value)
			}
		}
		if ex := a.Lead().Example; ex != nil {
			ips = append(ips, ex.CallerIP)
		}
		hit := false
		for _, ip := range ips {
			if addr, err := netip.ParseAddr(ip); err == nil {
				for _, p := range s.IPs {
					hit = hit || p.Contains(addr.Unmap())
				}
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// MuteInterval is a weekly maintenance window.
type MuteInterval struct {
	Name       string
	loc        *time.Location
	days       [7]bool
	start, end int // minutes
}

// Contains reports whether t falls in the window.
func (m *MuteInterval) Contains(t time.Time) bool {
	lt := t.In(m.loc)
	mins := lt.Hour()*60 + lt.Minute()
	return m.days[lt.Weekday()] && mins >= m.start && mins < m.end
}

// Compiled is delivery's part of the configuration.
type Compiled struct {
	Routes   []Route
	Silences []Silence
	Mutes    []MuteInterval
	Settings config.DeliverySettings
	// Updates are the rules' update_on, by rule id.
	Updates  map[string]UpdatePolicy
	Inhibits []InhibitRule
}

// Compile reads routes, silences and mute intervals from a configuration
// config has validated (config.Parse, config.Load or File.Validate: the
// receivers routes name exist, times and networks parse). Routes leave out
// receivers that are off (optional, with their variables unset); a route
// left with none is dropped.
func Compile(f *config.File) (*Compiled, error) {
	c := &Compiled{Settings: f.Delivery, Updates: map[string]UpdatePolicy{}}
	var errs []error
	for _, r := range f.Rules {
		p := DefaultUpdatePolicy
		if u := r.UpdateOn; u != nil {
			if u.Operations != nil {
				p.Operations = *u.Operations
			}
			if u.Severity != nil {
				p.Severity = *u.Severity
			}
			if u.CountFactor != nil {
				p.CountFactor = *u.CountFactor
			}
		}
		c.Updates[r.ID] = p
	}
	for _, in := range f.Inhibit {
		c.Inhibits = append(c.Inhibits, InhibitRule{Sources: in.SourceRules, Targets: in.TargetRules, Equal: in.Equal})
	}
	off := map[string]bool{}
	for _, r := range f.Receivers {
		if r.Off != "" {
			off[r.Name] = true
		}
	}
	for i, r := range f.Routes {
		rt := Route{Rules: r.Rules, Tags: r.Tags, Vaults: r.Vaults, Continue: r.Continue}
		for _, n := range r.Receivers {
			if !off[n] {
				rt.Receivers = append(rt.Receivers, n)
			}
		}
		if r.MinSeverity != "" {
			s, err := finding.ParseSeverity(r.MinSeverity)
			if err != nil {
				errs = append(errs, fmt.Errorf("routes[%d].min_severity: %w", i, err))
			}
			rt.MinSeverity = s
		}
		if len(rt.Receivers) > 0 {
			c.Routes = append(c.Routes, rt)
		}
	}
	for i, s := range f.Silences {
		sl := Silence{Comment: s.Comment, Rules: s.Rules, Vaults: s.Vaults, Callers: s.Callers}
		var err error
		if s.Starts != "" {
			if sl.Starts, err = config.ParseInstant(s.Starts); err != nil {
				errs = append(errs, fmt.Errorf("silences[%d].starts: %w", i, err))
			}
		}
		if s.Ends != "" {
			if sl.Ends, err = config.ParseInstant(s.Ends); err != nil {
				errs = append(errs, fmt.Errorf("silences[%d].ends: %w", i, err))
			}
		}
		for _, ip := range s.IPs {
			p, err := parsePrefix(ip)
			if err != nil {
				errs = append(errs, fmt.Errorf("silences[%d].ips: %w", i, err))
				continue
			}
			sl.IPs = append(sl.IPs, p)
		}
		c.Silences = append(c.Silences, sl)
	}
	for i, m := range f.MuteIntervals {
		mi, err := muteInterval(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("mute_intervals[%d]: %w", i, err))
			continue
		}
		c.Mutes = append(c.Mutes, mi)
	}
	return c, errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func muteInterval(m config.MuteIntervalSpec) (MuteInterval, error) {
	mi := MuteInterval{Name: m.Name, loc: time.UTC}
	if m.Zone != "" {
		loc, err := time.LoadLocation(m.Zone)
		if err != nil {
			return mi, fmt.Errorf("zone: %w", err)
		}
		mi.loc = loc
	}
	days := map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
	if len(m.Days) == 0 {
		for i := range mi.days {
			mi.days[i] = true
		}
	}
	for _, d := range m.Days {
		wd, ok := days[strings.ToLower(d)]
		if !ok {
			return mi, fmt.Errorf("days: unknown day %q", d)
		}
		mi.days[wd] = true
	}
	var err error
	if mi.start, err = hhmm(m.Start); err != nil {
		return mi, fmt.Errorf("start: %w", err)
	}
	if mi.end, err = hhmm(m.End); err != nil {
		return mi, fmt.Errorf("end: %w", err)
	}
	if mi.start >= mi.end {
		return mi, errors.New("start is not before end")
	}
	return mi, nil
}

func hhmm(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hi, e1 := strconv.Atoi(h)
	mi, e2 := strconv.Atoi(m)
	if !ok || e1 != nil || e2 != nil || hi < 0 || hi > 24 || mi < 0 || mi > 59 || hi*60+mi > 1440 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return hi*60 + mi, nil
}

// MutedBy names the first silence, then mute interval, that holds an
// alert back when it is recorded at now; "" when none does. It is what
// the dispatcher records, and what `kvwatch routes test` shows.
func MutedBy(a *alert.Alert, silences []Silence, mutes []MuteInterval, now time.Time) string {
	for i := range silences {
		if silences[i].MatchesAt(a, now) {
			return silences[i].Name()
		}
	}
	for i := range mutes {
		if mutes[i].Contains(a.FirstEvent) {
			return "mute interval " + mutes[i].Name
		}
	}
	return ""
}
