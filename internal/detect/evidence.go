package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/rules"
)

// newFinding starts a finding for a rule's group in a period.
func (en *Engine) newFinding(w *groupWork, periodStart int64, value string) finding.Finding {
	r := w.rule
	p := time.Unix(periodStart, 0).UTC()
	f := finding.Finding{
		ID:   finding.NewID(r.ID, w.group, p, value),
		Rule: r.ID, Title: r.Title, Description: r.Description, Severity: r.Severity,
		Tags: r.Tags, Kind: string(r.Kind), Runbook: r.Runbook,
		Group: r.Group(w.group), Period: p,
	}
	return f
}

// evidence is what the batch's own events say about a finding.
type evidenceSet struct {
	first, last time.Time
	objects     map[string]int
	ips         map[string]int
	ops         map[string]int
	corr        []string
	example     *audit.Event
	vaults      map[string]*audit.Event
}

func evidence(w *groupWork, events []audit.Event, idx []int) *evidenceSet {
	ev := &evidenceSet{objects: map[string]int{}, ips: map[string]int{}, ops: map[string]int{}, vaults: map[string]*audit.Event{}}
	seenCorr := map[string]bool{}
	for _, i := range idx {
		e := &events[w.contribs[i].ev]
		if ev.first.IsZero() || e.Time.Before(ev.first) {
			ev.first = e.Time
			ev.example = e
		}
		if e.Time.After(ev.last) {
			ev.last = e.Time
		}
		if o := e.Field("object"); o != "" {
			ev.objects[o]++
		}
		if e.CallerIP != "" {
			ev.ips[e.CallerIP]++
		}
		ev.ops[e.Operation]++
		if e.CorrelationID != "" && len(ev.corr) < 10 && !seenCorr[e.CorrelationID] {
			seenCorr[e.CorrelationID] = true
			ev.corr = append(ev.corr, e.CorrelationID)
		}
		if _, ok := ev.vaults[e.Vault]; !ok {
			ev.vaults[e.Vault] = e
		}
	}
	return ev
}

// opNames returns the operations of a count map, sorted, at most
// finding.MaxOperations.
func opNames(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for op := range m {
		out = append(out, op)
	}
	slices.Sort(out)
	if len(out) > finding.MaxOperations {
		out = out[:finding.MaxOperations]
	}
	return out
}

// opsOf returns the distinct operations of a group's contributions idx
// (all of them when idx is nil), sorted. A group's events mostly share one
// operation or a few: a slice, not a map.
func opsOf(w *groupWork, events []audit.Event, idx []int) []string {
	var out []string
	last := ""
	add := func(op string) {
		if op == last && len(out) > 0 {
			return
		}
		last = op
		if !slices.Contains(out, op) && len(out) < finding.MaxOperations {
			out = append(out, op)
		}
	}
	if idx == nil {
		for i := range w.contribs {
			add(events[w.contribs[i].ev].Operation)
		}
	} else {
		for _, i := range idx {
			add(events[w.contribs[i].ev].Operation)
		}
	}
	slices.Sort(out)
	return out
}

func top(m map[string]int, n int) []finding.Count {
	out := make([]finding.Count, 0, len(m))
	for v, c := range m {
		out = append(out, finding.Count{Value: v, Count: c})
	}
	slices.SortFunc(out, func(a, b finding.Count) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Value, b.Value))
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func (ev *evidenceSet) fill(f *finding.Finding) {
	f.FirstEvent, f.LastEvent = ev.first, ev.last
	f.TopObjects, f.TopIPs, f.TopOperations = top(ev.objects, 5), top(ev.ips, 5), top(ev.ops, 5)
	f.CorrelationIDs = ev.corr
	f.Operations = opNames(ev.ops)
	if ev.example != nil {
		ex := *ev.example
		f.Example = &ex
		f.TenantID = ex.Caller.TenantID
	}
	// The vault: from the group when grouped by vault, else when all
	// events agree.
	for _, p := range f.Group {
		if p.Field == "vault" {
			f.Vault = p.Value
		}
	}
	if f.Vault == "" && len(ev.vaults) == 1 {
		for v := range ev.vaults {
			f.Vault = v
		}
	}
	if e, ok := ev.vaults[f.Vault]; ok && f.Vault != "" {
		f.SubscriptionID, f.ResourceGroup, f.ResourceID = e.SubscriptionID, e.ResourceGroup, e.ResourceID
	}
	f.KQL = finding.KQL(f)
}

// summary is one sentence saying what happened.
func summary(f *finding.Finding, r *rules.Rule) string {
	who := ""
	for _, p := range f.Group {
		switch p.Field {
		case "caller":
			who = p.Value
		case "ip":
			if who == "" {
				who = "IP " + p.Value
			}
		}
	}
	if f.Example != nil && who != "" && f.Example.Caller.Key == who {
		who = f.Example.Caller.Display()
	}
	// A rule that does not group by caller still names the caller it saw.
	if who == "" && f.Example != nil && f.Example.Caller.Key != "" {
		who = f.Example.Caller.Display()
	}
	if who == "" {
		who = "someone"
	}
	where := ""
	if f.Vault != "" {
		where = " on " + f.Vault
	}
	switch rules.Kind(f.Kind) {
	case rules.Each:
		if f.Count > 1 {
			return fmt.Sprintf("%s by %s%s (%d times)", r.Title, who, where, f.Count)
		}
		op := ""
		if f.Example != nil {
			op = f.Example.Operation + " "
			if f.Example.ObjectName != "" {
				op += f.Example.ObjectType + " " + f.Example.ObjectName + " "
			}
		}
		return strings.TrimSpace(fmt.Sprintf("%s: %sby %s%s", r.Title, op, who, where))
	case rules.Threshold:
		return fmt.Sprintf("%s: %d matching requests by %s%s in %s (threshold %d)", r.Title, f.Count, who, where, fmtDur(f.Window), f.Threshold)
	case rules.Distinct:
		return fmt.Sprintf("%s: %d distinct %s by %s%s in %s (threshold %d)", r.Title, f.Count, strings.ReplaceAll(r.Field, "_", " ")+"s", who, where, fmtDur(f.Window), f.Threshold)
	case rules.Spike:
		mean := 0.0
		if f.Baseline != nil {
			mean = f.Baseline.Mean
		}
		return fmt.Sprintf("%s: %d requests by %s%s in %s against a usual %.1f", r.Title, f.Count, who, where, fmtDur(f.Window), mean)
	case rules.NewValue:
		return fmt.Sprintf("%s: %s first seen%s", r.Title, f.Value, where)
	case rules.Sequence:
		return fmt.Sprintf("%s: by %s%s, followed by %d matching requests within %s", r.Title, who, where, f.Count, fmtDur(f.Window))
	}
	return r.Title
}

func fmtDur(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "0m")
	return s
}
