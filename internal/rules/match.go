package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/config"
)

// Matcher is a compiled match: every condition set must hold.
type Matcher struct {
	ops          []glob
	families     []audit.Family
	kinds        []audit.Kind
	outcomes     []audit.Outcome
	status       []int
	vaults       []glob
	callers      []glob
	appIDs       []string
	objects      []glob
	objectTypes  []string
	clientInfo   []glob
	ipIn         []netip.Prefix
	ipNotIn      []netip.Prefix
	hasIPIn      bool
	hasIPNotIn   bool
	outsideHours *bool
	hours        *Hours
	anonymous    *bool
	cfg          *config.ConfigMatch
}

// MayMatch reports whether an event of family f and kind k could satisfy
// the matcher, judging by its families and kinds alone.
func (m *Matcher) MayMatch(f audit.Family, k audit.Kind) bool {
	if len(m.families) > 0 && !contains(m.families, f) || len(m.kinds) > 0 && !contains(m.kinds, k) {
		return false
	}
	if len(m.ops) == 0 {
		return true
	}
	if f == audit.FamilyOther {
		return true
	}
	for _, g := range m.ops {
		if g.kind != 0 {
			// A pattern: any documented name it matches tells the classes.
			for _, op := range audit.Operations {
				if g.match(op) {
					if of, ok := audit.Classify(op); of == f && ok == k {
						return true
					}
				}
			}
			continue
		}
		// Operation names are matched ignoring case, but classified as
		// written: a name in the wrong case may classify differently, so
		// an unknown classification keeps the rule everywhere.
		of, ok := audit.Classify(g.orig)
		if of == audit.FamilyOther || (of == f && ok == k) {
			return true
		}
	}
	return false
}

// Match reports whether e satisfies every condition.
func (m *Matcher) Match(e *audit.Event) bool {
	if len(m.ops) > 0 && !anyGlob(m.ops, e.Operation) {
		return false
	}
	if len(m.families) > 0 && !contains(m.families, e.Family) {
		return false
	}
	if len(m.kinds) > 0 && !contains(m.kinds, e.Kind) {
		return false
	}
	if len(m.outcomes) > 0 && !contains(m.outcomes, e.Outcome) {
		return false
	}
	if len(m.status) > 0 && !contains(m.status, e.HTTPStatus) {
		return false
	}
	if m.outsideHours != nil && m.hours.Outside(e.Time) != *m.outsideHours {
		return false
	}
	if len(m.vaults) > 0 && !anyGlob(m.vaults, e.Vault) {
		return false
	}
	if len(m.callers) > 0 && !anyGlob(m.callers, e.Caller.Key) && !anyGlob(m.callers, e.Caller.UPN) &&
		!anyGlob(m.callers, e.Caller.ObjectID) && !anyGlob(m.callers, e.Caller.AppID) {
		return false
	}
	if len(m.appIDs) > 0 && !containsFold(m.appIDs, e.Caller.AppID) {
		return false
	}
	if len(m.objects) > 0 && !anyGlob(m.objects, e.ObjectName) {
		return false
	}
	if len(m.objectTypes) > 0 && !containsFold(m.objectTypes, e.ObjectType) {
		return false
	}
	if len(m.clientInfo) > 0 && !anyGlob(m.clientInfo, e.ClientInfo) {
		return false
	}
	if m.hasIPIn || m.hasIPNotIn {
		ip, err := netip.ParseAddr(e.CallerIP)
		if err != nil {
			if ap, err2 := netip.ParseAddrPort(e.CallerIP); err2 == nil {
				ip, err = ap.Addr(), nil
			}
		}
		if err != nil { // no usable address: neither inside nor outside
			return false
		}
		ip = ip.Unmap()
		if m.hasIPIn && !inAny(m.ipIn, ip) {
			return false
		}
		if m.hasIPNotIn && inAny(m.ipNotIn, ip) {
			return false
		}
	}
	if m.anonymous != nil && (e.Caller.KeyFrom == "ip" || e.Caller.KeyFrom == "") != *m.anonymous {
		return false
	}
	if m.cfg != nil && !matchConfig(m.cfg, e.Config) {
		return false
	}
	return true
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

func inAny(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func matchConfig(m *config.ConfigMatch, c *audit.VaultConfig) bool {
	if c == nil {
		return false
	}
	if m.Weakened != nil && Weakened(c) != *m.Weakened {
		return false
	}
	if len(m.NetworkDefaultAction) > 0 && !containsFold(m.NetworkDefaultAction, c.NetworkDefaultAction) {
		return false
	}
	if len(m.PublicNetworkAccess) > 0 && !containsFold(m.PublicNetworkAccess, c.PublicNetworkAccess) {
		return false
	}
	if m.PurgeProtection != nil && (c.PurgeProtection == nil || *c.PurgeProtection != *m.PurgeProtection) {
		// An unset purge protection means off: ARM reports null until it is enabled.
		if !(c.PurgeProtection == nil && !*m.PurgeProtection) {
			return false
		}
	}
	if m.RBAC != nil && (c.RBACAuthorization == nil || *c.RBACAuthorization != *m.RBAC) {
		return false
	}
	if m.SoftDelete != nil && (c.SoftDelete == nil || *c.SoftDelete != *m.SoftDelete) {
		return false
	}
	if m.RetentionBelow > 0 && (c.SoftDeleteRetentionDays == nil || *c.SoftDeleteRetentionDays >= m.RetentionBelow) {
		return false
	}
	return true
}

// Weakened reports whether a vault configuration leaves a protection off:
// network default action Allow, public network access Enabled, soft delete
// off, soft-delete retention below 90 days, or purge protection explicitly
// false. An unset purge protection (ARM reports null until it is enabled)
// and access policies instead of RBAC are not counted: they are how many
// vaults were created, not a change, and belong in the compliance review.
func Weakened(c *audit.VaultConfig) bool {
	switch {
	case strings.EqualFold(c.NetworkDefaultAction, "Allow"):
		return true
	case strings.EqualFold(c.PublicNetworkAccess, "Enabled"):
		return true
	case c.PurgeProtection != nil && !*c.PurgeProtection:
		return true
	case c.SoftDelete != nil && !*c.SoftDelete:
		return true
	case c.SoftDeleteRetentionDays != nil && *c.SoftDeleteRetentionDays < 90:
		return true
	}
	return false
}

// glob is a case-insensitive pattern with * (any run) and ? (one byte).
type glob struct {
	orig string // as written
	pat  string // lower-case
	kind int    // 0 exact, 1 prefix*, 2 *suffix, 3 general
	lit  string
}

func newGlob(p string) glob {
	orig := p
	p = strings.ToLower(p)
	g := glob{orig: orig, pat: p, kind: 3}
	switch {
	case !strings.ContainsAny(p, "*?"):
		g.kind, g.lit = 0, p
	case strings.Count(p, "*") == 1 && !strings.Contains(p, "?") && strings.HasSuffix(p, "*"):
		g.kind, g.lit = 1, p[:len(p)-1]
	case strings.Count(p, "*") == 1 && !strings.Contains(p, "?") && strings.HasPrefix(p, "*"):
		g.kind, g.lit = 2, p[1:]
	case len(p) > 2 && strings.Count(p, "*") == 2 && !strings.Contains(p, "?") && p[0] == '*' && p[len(p)-1] == '*':
		g.kind, g.lit = 4, p[1:len(p)-1]
	}
	return g
}

func (g glob) match(s string) bool {
	switch g.kind {
	case 0:
		return strings.EqualFold(s, g.lit)
	case 1:
		return len(s) >= len(g.lit) && strings.EqualFold(s[:len(g.lit)], g.lit)
	case 2:
		return len(s) >= len(g.lit) && strings.EqualFold(s[len(s)-len(g.lit):], g.lit)
	case 4:
		return hasFold(s, g.lit)
	}
	return wildcard(g.pat, s)
}

// wildcard matches lower-case pattern p against s, folding ASCII case.
// hasFold reports whether some len(lit) bytes of s equal lit under
// simple case folding (strings.EqualFold). For an ASCII lit only ASCII
// bytes can match it (a rune of several bytes folds to no run of as many
// ASCII letters), so it compares bytes, and one without letters (the
// default pack's "*@*") is a plain search.
func hasFold(s, lit string) bool {
	ascii, letters := true, false
	for i := 0; i < len(lit); i++ {
		c := lit[i] | 0x20
		ascii = ascii && lit[i] < 0x80
		letters = letters || ('a' <= c && c <= 'z')
	}
	switch {
	case ascii && !letters:
		return strings.Contains(s, lit)
	case ascii:
		for i := 0; i+len(lit) <= len(s); i++ {
			j := 0
			for j < len(lit) && lower(s[i+j]) == lower(lit[j]) {
				j++
			}
			if j == len(lit) {
				return true
			}
		}
		return false
	}
	for i := 0; i+len(lit) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(lit)], lit) {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func wildcard(p, s string) bool {
	star, mark := -1, 0
	i, j := 0, 0
	for j < len(s) {
		c := s[j]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == c):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, mark = i, j
			i++
		case star >= 0:
			i = star + 1
			mark++
			j = mark
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

func anyGlob(gs []glob, s string) bool {
	for _, g := range gs {
		if g.match(s) {
			return true
		}
	}
	return false
}

// Hours is a weekly business-hours schedule in a time zone.
type Hours struct {
	loc        *time.Location
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight
}

// NewHours compiles business hours; empty values take the defaults
// (UTC, Monday to Friday, 08:00 to 18:00).
func NewHours(b config.BusinessHours) (*Hours, error) {
	h := &Hours{loc: time.UTC, start: 8 * 60, end: 18 * 60}
	if b.Zone != "" {
		loc, err := time.LoadLocation(b.Zone)
		if err != nil {
			return nil, fmt.Errorf("business_hours.zone: %w", err)
		}
		h.loc = loc
	}
	days := b.Days
	if len(days) == 0 {
		days = []string{"mon", "tue", "wed", "thu", "fri"}
	}
	names := map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
		"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
	for _, d := range days {
		wd, ok := names[strings.ToLower(d)]
		if !ok {
			return nil, fmt.Errorf("business_hours.days: unknown day %q", d)
		}
		h.days[wd] = true
	}
	var err error
	if b.Start != "" {
		if h.start, err = clock(b.Start); err != nil {
			return nil, fmt.Errorf("business_hours.start: %w", err)
		}
	}
	if b.End != "" {
		if h.end, err = clock(b.End); err != nil {
			return nil, fmt.Errorf("business_hours.end: %w", err)
		}
	}
	if h.start >= h.end {
		return nil, fmt.Errorf("business_hours: start %s is not before end %s", b.Start, b.End)
	}
	return h, nil
}

func clock(s string) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || h < 0 || h > 24 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return h*60 + m, nil
}

// Outside reports whether t falls outside business hours.
func (h *Hours) Outside(t time.Time) bool {
	lt := t.In(h.loc)
	if !h.days[lt.Weekday()] {
		return true
	}
	m := lt.Hour()*60 + lt.Minute()
	return m < h.start || m >= h.end
}
