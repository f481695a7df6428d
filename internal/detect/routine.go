package detect

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Routine learning (a rule's routine:). A group that fires in the rule's
// routine.after distinct cooldown periods within routine.within is
// routine: the configuration provider that lists and reads every secret at
// each start, the CSI driver re-reading its secrets at every rollout. The
// finding that makes it routine is handed on as any other and says so;
// the group's later findings are marked routine (finding.Routine), which
// delivery records without alerting, unless one's count is above
// routine.growth times the largest count learned, or it carries a
// reportable operation (audit.Reportable) the routine's periods did not.
// A routine that stops (no finding within routine.within) is forgotten;
// another group (a new caller doing the same) learns on its own.
//
// Only application identities learn (audit.Caller.IsApp: a service
// principal or managed identity, an app id and no user principal name): a
// person who lists and reads every secret of a vault every day is alerted
// every time, and so is a group that is not one caller (a rule that does
// not group by caller or object_id; config rejects routine on those). A
// finding is judged by the caller of its example event, which for a group
// of one caller is the group's; a finding the batch holds no event of
// (its window satisfied by earlier batches) keeps the verdict its period
// was given, and starts no period. A person's findings write no routine
// state.
//
// The state is one entity per (rule, group), in the store the rules use
// (so journaled with the rest, and merged the same way by every
// instance), at BlockRoutine, holding the periods the group fired in
// (at most routine.after, none older than routine.within behind the
// newest), each in Seen under its period's start (unix seconds, decimal):
// Last is the largest count handed on in it (see judge) and First its verdict, fixed
// when the period is first judged (so a period handed on again, with a
// higher count, by a retry or a redelivery or another batch, is judged the
// same way): 0 learning, -since the period that made the group routine
// (since: the first period learned), b ≥ 1 a period of the routine, judged
// against the largest count learned b. Values holds, per period, the
// reportable operations its findings carried. Seen spans merge by minimum
// First and maximum Last, Values by union, so concurrent writers (two
// partitions, two instances) merge to one state.
//
// Periods are judged in order within a batch. With records in time order a
// period's finding comes no later than the next period's (a window that
// satisfies a later period overlaps an earlier one only on events it
// holds too), so the verdicts do not depend on the batching; the count
// learned from an earlier period is the largest handed on so far, which
// a batch cut at a period's boundary may still see grow.

// BlockRoutine holds a (rule, group)'s routine.
const BlockRoutine int64 = -3

// routineTold etc. are what a period's verdict says.
type routineState int8

const (
	routineLearning routineState = iota // not routine (yet)
	routineTold                         // the period that made the group routine: alerted
	routineQuiet                        // routine: not alerted
	routineAbove                        // routine, but above it: alerted
)

// routineVerdict is the judgement of one finding.
type routineVerdict struct {
	state   routineState
	since   int64    // told: the first period learned
	base    int64    // told: the largest count learned, with this one; quiet, above: the largest before it
	newOps  []string // above: reportable operations the routine did not have
	periods int      // told: periods learned
}

// judgeRoutine judges the findings of rules with a routine against their
// groups' routines, in one store update, and marks and explains them.
// keys[i] names found[i].
func (en *Engine) judgeRoutine(ctx context.Context, found []finding.Finding, keys []handedKey) error {
	type item struct {
		i      int
		period int64
		// known: the finding's caller is known to be an application
		// identity; otherwise (no event in the batch) only a period judged
		// before is judged again.
		known bool
	}
	byKey := map[state.Key][]item{}
	var order []state.Key
	for i := range found {
		k := keys[i]
		r := en.rules[k.ri]
		if r.Routine == nil {
			continue
		}
		who := principalOf(&found[i])
		if who == notApp {
			continue // a person, or several callers: never routine
		}
		sk := state.Key{Rule: r.ID, Group: k.group, Block: BlockRoutine}
		if _, ok := byKey[sk]; !ok {
			order = append(order, sk)
		}
		byKey[sk] = append(byKey[sk], item{i, k.period, who == isApp})
	}
	if len(order) == 0 {
		return nil
	}
	rulesByID := map[string]*rules.Rule{}
	for _, sk := range order {
		its := byKey[sk]
		slices.SortStableFunc(its, func(a, b item) int {
			return cmp.Or(cmp.Compare(a.period, b.period), cmp.Compare(found[a.i].ID, found[b.i].ID))
		})
		rulesByID[sk.Rule] = en.rules[keys[its[0].i].ri]
	}
	// The largest counts this process saw, the batch's included, for the
	// periods a group's next judgement raises.
	for _, sk := range order {
		rt := rulesByID[sk.Rule].Routine
		for _, it := range byKey[sk] {
			en.routineCounts.put(sk, it.period, found[it.i].Count, int64(rt.Within/time.Second), rt.After)
		}
	}
	verdicts := make([]routineVerdict, len(found))
	apply := func(sk state.Key, e *state.Entity) bool {
		its, ok := byKey[sk]
		if !ok {
			return false
		}
		rt := rulesByID[sk.Rule].Routine
		largest := func(q int64) int64 { return en.routineCounts.get(sk, q) }
		changed := false
		for _, it := range its {
			f := &found[it.i]
			if !it.known {
				if _, had := e.Seen[strconv.FormatInt(it.period, 10)]; !had {
					continue
				}
			}
			var c bool
			verdicts[it.i], c = judge(e, rt, it.period, max(f.Count, 1), reportableOps(f), largest)
			changed = changed || c
		}
		return changed
	}
	// The batch's own update caught the store up with the other writers a
	// moment ago: this one writes without reading them again (a journal
	// skips a query per other stream). Verdicts come from apply, not from
	// what Update returns.
	if _, err := en.store.Update(state.WriteOnly(ctx), order, apply); err != nil {
		return fmt.Errorf("update routine state: %w", err)
	}
	for _, sk := range order {
		r := rulesByID[sk.Rule]
		for _, it := range byKey[sk] {
			explain(&found[it.i], r, verdicts[it.i])
		}
	}
	return nil
}

// principal says what a finding's group is to routine learning.
type principal int8

const (
	unknownCaller principal = iota // the batch holds no event of the finding
	isApp                          // one application identity: learns
	notApp                         // a person, or not one caller: never routine
)

// principalOf tells an application identity's finding from a person's (or
// a group of several callers'), by the group's caller (or object_id) and
// the caller of the finding's example event.
func principalOf(f *finding.Finding) principal {
	field, value := f.GroupCaller()
	if value == "" {
		return notApp
	}
	if f.Example == nil {
		return unknownCaller
	}
	c := &f.Example.Caller
	same := c.Key == value
	if field == "object_id" {
		same = c.ObjectID == value
	}
	if same && c.IsApp() {
		return isApp
	}
	return notApp
}

// routineCounts remembers, per routine group, the largest count this
// process handed on in each of its recent periods (at most after+1, none
// older than within behind the newest): what judge raises earlier
// periods' counts to when the group's next period is judged. Safe for
// concurrent use; bounded (forgotten whole past 100,000 groups, which
// only leaves those counts at what was written).
type routineCounts struct {
	mu sync.Mutex
	m  map[state.Key]map[int64]int64
}

func (rc *routineCounts) put(k state.Key, period, n, within int64, after int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil || len(rc.m) > 100_000 {
		rc.m = map[state.Key]map[int64]int64{}
	}
	ps := rc.m[k]
	if ps == nil {
		ps = map[int64]int64{}
		rc.m[k] = ps
	}
	ps[period] = max(ps[period], n)
	newest := period
	for q := range ps {
		newest = max(newest, q)
	}
	for q := range ps {
		if newest-q >= within {
			delete(ps, q)
		}
	}
	for len(ps) > after+1 {
		oldest := newest
		for q := range ps {
			oldest = min(oldest, q)
		}
		delete(ps, oldest)
	}
}

func (rc *routineCounts) get(k state.Key, period int64) int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.m[k][period]
}

// reportableOps returns a finding's reportable operations, sorted.
func reportableOps(f *finding.Finding) []string {
	var out []string
	for _, op := range f.Operations {
		if audit.Reportable(op) {
			out = append(out, op)
		}
	}
	return out
}

// judge judges a finding of period p with count n and reportable
// operations ops against a group's routine e, recording the period; it
// reports whether e changed. It depends only on its arguments (a store
// may call it again with fresher state; largest only grows).
//
// A period's count is recorded when the period is first judged; it grows
// as its finding is handed on again, which is not written then (nearly
// every batch hands on grown counts: writing each would cost the journal
// an entry of every group every batch), but when the group's next period
// is judged: the earlier periods' counts are raised then to the largest
// this process handed on (largest). After a restart that is at least the
// count each was first judged with.
func judge(e *state.Entity, rt *rules.Routine, p, n int64, ops []string, largest func(period int64) int64) (routineVerdict, bool) {
	key := strconv.FormatInt(p, 10)
	within := int64(rt.Within / time.Second)
	if e.Seen == nil {
		e.Seen = map[string]state.Span{}
	}
	periods := routinePeriods(e)
	_, had := e.Seen[key]
	changed := false
	// The periods before p within reach, and the operations they carried.
	var prior []int64
	var base int64
	routine := false
	known := map[string]bool{}
	for _, q := range periods {
		if q >= p || p-q >= within {
			continue
		}
		prior = append(prior, q)
		qk := strconv.FormatInt(q, 10)
		s := e.Seen[qk]
		if !had {
			if c := largest(q); c > s.Last {
				s.Last, changed = c, true
				e.Seen[qk] = s
			}
		}
		base = max(base, s.Last)
		if s.First != 0 {
			routine = true
		}
		for _, op := range e.Values[q] {
			known[op] = true
		}
	}
	var newOps []string
	for _, op := range ops {
		if !known[op] {
			newOps = append(newOps, op)
		}
	}
	cur := e.Seen[key]
	if !had {
		cur = state.Span{Last: n}
		switch {
		case routine:
			cur.First = max(base, 1)
		case len(prior)+1 >= rt.After:
			since := p
			if len(prior) > 0 {
				since = min(since, prior[0])
			}
			cur.First = -since
		}
		e.Seen[key] = cur
		changed = true
	}
	if addOps(e, p, ops) {
		changed = true
	}
	var v routineVerdict
	switch {
	case cur.First < 0:
		v = routineVerdict{state: routineTold, since: -cur.First, base: max(base, cur.Last, n), periods: len(prior) + 1}
	case cur.First > 0:
		v = routineVerdict{state: routineQuiet, base: cur.First}
		if float64(n) > rt.Growth*float64(cur.First) || len(newOps) > 0 {
			v.state, v.newOps = routineAbove, newOps
		}
	}
	if !had && trimRoutine(e, within, rt.After) {
		changed = true
	}
	return v, changed
}

// routinePeriods lists the periods a routine entity holds, ascending.
func routinePeriods(e *state.Entity) []int64 {
	out := make([]int64, 0, len(e.Seen))
	for k := range e.Seen {
		if q, err := strconv.ParseInt(k, 10, 64); err == nil {
			out = append(out, q)
		}
	}
	slices.Sort(out)
	return out
}

// addOps adds reportable operations to period p's, reporting whether any
// was new.
func addOps(e *state.Entity, p int64, ops []string) bool {
	if len(ops) == 0 {
		return false
	}
	have := e.Values[p]
	added := false
	for _, op := range ops {
		i, found := slices.BinarySearch(have, op)
		if found || len(have) >= finding.MaxOperations {
			continue
		}
		have = slices.Insert(slices.Clone(have), i, op)
		added = true
	}
	if added {
		if e.Values == nil {
			e.Values = map[int64][]string{}
		}
		e.Values[p] = have
	}
	return added
}

// trimRoutine forgets the periods no later judgement needs: those within
// reach of no period from the newest on, and all but the newest after (a
// period judged late, older than those, is not kept: redelivered records
// older than the lateness do not move the routine back). It reports
// whether it forgot any.
func trimRoutine(e *state.Entity, within int64, after int) bool {
	periods := routinePeriods(e)
	newest := periods[len(periods)-1]
	var keep []int64
	for _, q := range periods {
		if newest-q < within {
			keep = append(keep, q)
		}
	}
	if len(keep) > after {
		keep = keep[len(keep)-after:]
	}
	if len(keep) == len(periods) {
		return false
	}
	for _, q := range periods {
		if !slices.Contains(keep, q) {
			delete(e.Seen, strconv.FormatInt(q, 10))
			delete(e.Values, q)
		}
	}
	if len(e.Values) == 0 {
		e.Values = nil
	}
	return true
}

// explain marks a finding with its verdict and says it in its summary.
func explain(f *finding.Finding, r *rules.Rule, v routineVerdict) {
	g := strconv.FormatFloat(r.Routine.Growth, 'g', -1, 64) + "×"
	switch v.state {
	case routineTold:
		f.Learned = true
		f.Summary += fmt.Sprintf("; seen in %d %s since %s; routine from now on: alerted again only above %s count %d",
			v.periods, periodNoun(r.Cooldown), time.Unix(v.since, 0).UTC().Format("2006-01-02T15:04Z"), g, v.base)
	case routineQuiet:
		f.Routine = true
		f.Summary += fmt.Sprintf("; routine (learned count %d): not alerted unless above %s that", v.base, g)
	case routineAbove:
		if len(v.newOps) > 0 {
			f.Summary += fmt.Sprintf("; above its routine: %s, which its routine did not have", strings.Join(v.newOps, ", "))
		} else {
			f.Summary += fmt.Sprintf("; above its routine: count %d is more than %s the learned %d", f.Count, g, v.base)
		}
	}
}

// periodNoun names a rule's cooldown periods in the plural.
func periodNoun(cd time.Duration) string {
	switch cd {
	case time.Hour:
		return "different hours"
	case 24 * time.Hour:
		return "different days"
	}
	return "periods of " + fmtDur(cd)
}
