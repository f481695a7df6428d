package digest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/finding"
)

// RoutineLimit bounds the routine decisions a digest reads: past it, the
// counts are lower bounds (Report.RoutineTruncated).
const RoutineLimit = 100_000

// RoutineGroup is a rule's group whose findings were learned as routine
// and not alerted in the period (the rule's routine:: an application
// identity doing by design what the rule looks for). Values come from log
// records: the renderers escape them.
type RoutineGroup struct {
	Rule     string // "" for decisions recorded before kvwatch said what they were about
	Severity finding.Severity
	Vault    string // "" when the findings name none
	Group    []finding.Pair
	// Caller is the group's caller (key), CallerName its UPN or name when
	// known.
	Caller, CallerName string
	// Findings counts the routine findings (one per period of the rule's
	// cooldown), Events adds up their counts as decided.
	Findings int
	Events   int64
	// First and Last are the first events of the earliest and the newest
	// of them, in the digest's zone.
	First, Last time.Time
}

// loadRoutine reads the routine decisions made in [start, end) and groups
// them by rule and group, most findings first. A routine finding that an
// alert carries (handed on later above its routine: alerted, its routine
// decision kept) is not routine: alerted holds the findings the alerts
// examined carry. An outbox that cannot list routine decisions gives none.
func loadRoutine(ctx context.Context, outbox delivery.Outbox, start, end time.Time, alerted map[string]bool) ([]RoutineGroup, int, bool, error) {
	l, ok := outbox.(delivery.RoutineLister)
	if !ok {
		return nil, 0, false, nil
	}
	ds, truncated, err := l.RoutineDecisions(ctx, start, end, RoutineLimit)
	if err != nil {
		return nil, 0, false, fmt.Errorf("digest: read the routine decisions: %w", err)
	}
	gs, n := GroupRoutine(ds, alerted, start.Location())
	return gs, n, truncated, nil
}

// GroupRoutine groups routine decisions by rule and group, most findings
// first (then by rule, vault and caller), leaving out the findings alerted
// names, and returns them with the number of findings in all. Times are
// put in loc.
func GroupRoutine(ds []delivery.RoutineDecision, alerted map[string]bool, loc *time.Location) ([]RoutineGroup, int) {
	if loc == nil {
		loc = time.UTC
	}
	byKey := map[string]*RoutineGroup{}
	var order []string
	n := 0
	for _, d := range ds {
		if alerted[d.Finding] {
			continue
		}
		n++
		b := d.Of
		if b == nil {
			b = &delivery.Brief{}
		}
		k := b.Rule + "\x00" + finding.GroupString(b.Group) + "\x00" + b.Caller
		g := byKey[k]
		if g == nil {
			g = &RoutineGroup{Rule: b.Rule, Severity: b.Severity, Vault: b.Vault, Group: b.Group, Caller: b.Caller, CallerName: b.CallerName}
			byKey[k] = g
			order = append(order, k)
		}
		g.Findings++
		g.Events += b.Count
		if t := b.FirstEvent; !t.IsZero() {
			if g.First.IsZero() || t.Before(g.First) {
				g.First = t.In(loc)
			}
			if t.After(g.Last) {
				g.Last = t.In(loc)
			}
		}
		if g.CallerName == "" {
			g.CallerName = b.CallerName
		}
		if g.Vault == "" {
			g.Vault = b.Vault
		}
	}
	out := make([]RoutineGroup, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	slices.SortFunc(out, func(a, b RoutineGroup) int {
		return cmp.Or(cmp.Compare(b.Findings, a.Findings), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Vault, b.Vault),
			cmp.Compare(a.Caller, b.Caller), cmp.Compare(finding.GroupString(a.Group), finding.GroupString(b.Group)))
	})
	return out, n
}

// alertedFindings returns the IDs of the findings the entries' alerts
// carry.
func alertedFindings(es []*delivery.Entry) map[string]bool {
	out := map[string]bool{}
	for _, e := range es {
		if e == nil || e.Alert == nil {
			continue
		}
		for _, f := range e.Alert.Findings {
			out[f.ID] = true
		}
	}
	return out
}

// RoutineWho names a routine group: "caller on vault", the caller as
// "name (key)" when it has a name; as logged (escape it).
func RoutineWho(g *RoutineGroup) string {
	s := who(g.Caller, g.CallerName)
	if g.Caller == "" && g.CallerName == "" {
		s = finding.GroupString(g.Group)
		if s == "" {
			s = "(group not recorded)"
		}
	}
	if g.Vault != "" {
		s += " on " + g.Vault
	}
	return s
}

// RoutineRule names a routine group's rule.
func RoutineRule(g *RoutineGroup) string {
	if g.Rule == "" {
		return "(rule not recorded)"
	}
	return g.Rule
}

// RoutineEntry is one routine group on a line: "listing-then-read-burst:
// orders-api on kv-payments-prod ×9"; as logged (escape it).
func RoutineEntry(g *RoutineGroup) string {
	return RoutineRule(g) + ": " + RoutineWho(g) + " ×" + strconv.Itoa(g.Findings)
}

// RoutineSpan says when a routine group's findings happened (their first
// events), in the digest's zone: "08:10 – 15:20", with dates when the
// period spans days.
func RoutineSpan(r *Report, g *RoutineGroup) string {
	if g.First.IsZero() {
		return ""
	}
	f := "2006-01-02 15:04"
	if r.Period == Daily {
		f = "15:04"
	}
	if g.First.Equal(g.Last) {
		return g.First.Format(f)
	}
	return g.First.Format(f) + " – " + g.Last.Format(f)
}

// maxRoutineInLine is how many groups RoutineLine names.
const maxRoutineInLine = 3

// RoutineLine says in one line what was learned as routine and not
// alerted: "12 findings (listing-then-read-burst: orders-api on
// kv-payments-prod ×9, …)"; "none" without any. As logged (escape it).
func RoutineLine(r *Report) string {
	if r.RoutineCount == 0 {
		return "none"
	}
	s := plural(r.RoutineCount, "finding")
	if r.RoutineTruncated {
		s = "at least " + s
	}
	var parts []string
	for i := range r.Routine[:min(len(r.Routine), maxRoutineInLine)] {
		parts = append(parts, RoutineEntry(&r.Routine[i]))
	}
	if len(r.Routine) > maxRoutineInLine {
		parts = append(parts, fmt.Sprintf("and %d more groups", len(r.Routine)-maxRoutineInLine))
	}
	return s + " (" + strings.Join(parts, ", ") + ")"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return Num(int64(n)) + " " + noun + "s"
}
