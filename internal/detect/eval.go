package detect

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/groupkey"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// BlockRule held a rule-wide entity (the rule's first event time) while
// new_value learning was rule-wide; learning is per group now, and entities
// of this block are only left from older state.
const BlockRule int64 = -2

const blockSec = int64(blockDur / time.Second)

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// plan lists the entities a batch changes and the function that applies
// the batch's contributions to each, exactly once per input position.
func (en *Engine) plan(order []*groupWork) ([]state.Key, state.ApplyFunc) {
	bucketSec := int64(en.settings.Bucket / time.Second)
	// A key's parts are the groups that change it, each with the block its
	// contributions are picked by (contribIn), kept in a list through the
	// parts slice: no slice of indices per group and block.
	type part struct {
		w    *groupWork
		next int32 // index of the key's next part, -1 at the end
	}
	var parts []part
	ends := make(map[state.Key][2]int32, len(order)) // a key's first and last part
	var keys []state.Key
	var blocks []int64
	for _, w := range order {
		r := w.rule
		blocks = blocks[:0]
		put := func(b int64) {
			if !slices.Contains(blocks, b) {
				blocks = append(blocks, b)
			}
		}
		for i := range w.contribs {
			c := &w.contribs[i]
			switch r.Kind {
			case rules.Threshold, rules.Distinct, rules.Sequence:
				put(floorDiv(c.t, blockSec))
			case rules.Spike:
				put(floorDiv(c.t, 86400))
				put(state.BlockMeta)
			case rules.NewValue, rules.ConfigChange:
				put(state.BlockMeta)
			case rules.AccessGrant:
				if c.second {
					put(floorDiv(c.t, blockSec))
				} else {
					put(state.BlockMeta)
				}
			}
		}
		for _, b := range blocks {
			k := state.Key{Rule: r.ID, Group: w.group, Block: b}
			if b == BlockRule {
				k.Group = ""
			}
			i := int32(len(parts))
			parts = append(parts, part{w: w, next: -1})
			if e, ok := ends[k]; ok {
				parts[e[1]].next = i
				ends[k] = [2]int32{e[0], i}
			} else {
				keys = append(keys, k)
				ends[k] = [2]int32{i, i}
			}
		}
	}
	batchMin := int64(math.MaxInt64) // the batch's earliest event time
	for _, w := range order {
		for i := range w.contribs {
			batchMin = min(batchMin, w.contribs[i].t)
		}
	}
	apply := func(k state.Key, e *state.Entity) bool {
		first, ok := ends[k]
		if !ok {
			return false
		}
		rule0 := parts[first[0]].w.rule
		// Special blocks hold idempotent state (an earliest time, first and
		// last sightings): applying the same event twice changes nothing,
		// so they keep no input positions (which would grow for ever on
		// long-lived entities) and are written only when they change.
		if k.Block < 0 {
			changed := false
			n0 := len(e.Seen)
			var newest int64
			for pi := first[0]; pi >= 0; pi = parts[pi].next {
				w := parts[pi].w
				r := w.rule
				for j := range w.contribs {
					c := &w.contribs[j]
					if !contribIn(r.Kind, c, k.Block) {
						continue
					}
					switch {
					case k.Block == BlockRule, r.Kind == rules.Spike:
						if e.First == 0 || c.t < e.First {
							e.First, changed = c.t, true
						}
					case r.Kind == rules.NewValue:
						// The group's learning starts at its own first event
						// (state written while learning was rule-wide starts
						// at its oldest remembered sighting).
						if e.First == 0 {
							for _, s := range e.Seen {
								if e.First == 0 || s.First < e.First {
									e.First, changed = s.First, true
								}
							}
						}
						if e.First == 0 || c.t < e.First {
							e.First, changed = c.t, true
						}
						changed = seen(e, c.value, c.t, int64(r.Horizon/time.Second)) || changed
						newest = max(newest, c.t)
					case r.Kind == rules.ConfigChange:
						first := c.t
						for x := range w.contribs {
							first = min(first, w.contribs[x].t)
						}
						changed = addConfig(e, c.t, c.value, first) || changed
					case r.Kind == rules.AccessGrant:
						keep := int64((r.Window + en.settings.Lateness + en.settings.Bucket) / time.Second)
						// What the batch's events judge grants with: from a window
						// before its earliest event on.
						changed = addGrantConfig(e, c.t, c.value, keep, batchMin-int64(r.Window/time.Second)) || changed
					}
				}
			}
			// The history is swept (values past the horizon forgotten, the
			// bounds kept) when it gained a value, and otherwise at most once
			// an hour of event time per group and process: a sweep reads every
			// remembered value, and most batches only move known values'
			// last sightings.
			if changed && rule0.Kind == rules.NewValue && k.Block == state.BlockMeta &&
				(len(e.Seen) > n0 || en.swept.due(k, newest)) {
				pruneSeen(e, int64(rule0.Horizon/time.Second))
			}
			return changed
		}
		// Window blocks count: they apply each input position once. Records
		// of one event share a position, so marks are raised only at the end.
		// (A group sees one stream or a few: a slice on the stack, not a map
		// per group and batch.)
		var origBuf [8]appliedMark
		orig := origBuf[:0]
		for s, p := range e.Applied {
			orig = append(orig, appliedMark{s, p})
		}
		absorbed := func(c *contrib) bool {
			if c.stream == "" {
				return false
			}
			for _, o := range orig {
				if o.stream == c.stream {
					return c.pos <= o.pos
				}
			}
			return false
		}
		changed := false
		// The encoded size of e.Values, once a distinct value needs it: an
		// upper bound that reads no bytes while it leaves room for the value
		// at hand, the exact size once it does not.
		vb, vbExact := -1, false
		for pi := first[0]; pi >= 0; pi = parts[pi].next {
			w := parts[pi].w
			r := w.rule
			for j := range w.contribs {
				c := &w.contribs[j]
				if !contribIn(r.Kind, c, k.Block) || absorbed(c) {
					continue
				}
				changed = true
				e.MarkApplied(c.stream, c.pos)
				switch {
				case r.Kind == rules.Threshold:
					inc(&e.Counts, en.bucketKey(w.ri, c.t))
				case (r.Kind == rules.Sequence || r.Kind == rules.AccessGrant) && c.second:
					inc(&e.Counts2, floorDiv(c.t, bucketSec))
				case r.Kind == rules.Sequence:
					inc(&e.Counts, floorDiv(c.t, bucketSec))
				case r.Kind == rules.Distinct:
					if vb < 0 {
						vb = valuesLenUpper(e.Values)
					}
					if !vbExact && vb+valueCostUpper(c.value) > valuesBytes {
						vb, vbExact = valuesLen(e.Values), true
					}
					bk := en.bucketKey(w.ri, c.t)
					// A coarser bucket holds as many values as its settings' buckets would.
					vb += addValue(e, bk, c.value, max(2*r.Count, 16)*int(en.bucket[w.ri]/bucketSec), valuesBytes-vb)
					if r.MinEvents > 0 {
						inc(&e.Counts, bk)
					}
				case r.Kind == rules.Spike:
					inc(&e.Counts, floorDiv(c.t, int64(r.Window/time.Second)))
				}
			}
		}
		return changed
	}
	return keys, apply
}

// contribIn reports whether a contribution of a rule of kind k changes
// the entity of block b (plan's blocks).
func contribIn(k rules.Kind, c *contrib, b int64) bool {
	switch k {
	case rules.Threshold, rules.Distinct, rules.Sequence:
		return floorDiv(c.t, blockSec) == b
	case rules.Spike:
		return b == state.BlockMeta || floorDiv(c.t, 86400) == b
	case rules.NewValue, rules.ConfigChange:
		return b == state.BlockMeta
	case rules.AccessGrant:
		if c.second {
			return floorDiv(c.t, blockSec) == b
		}
		return b == state.BlockMeta
	}
	return false
}

func inc(m *map[int64]int64, k int64) {
	if *m == nil {
		*m = map[int64]int64{}
	}
	(*m)[k]++
}

// valuesBytes bounds the encoded distinct values of one window block (a
// distinct rule's group and hour), on top of the count per bucket
// (max(2·count, 16)): past it the block records no new value, so a
// distinct count within that hour stops growing — by then it holds tens of
// worst-case values, far more than any threshold needs.
const valuesBytes = 768 << 10

// addValue adds v to the sorted set of a bucket unless present, full, or
// costlier than room bytes; it returns the bytes its encoding added.
func addValue(e *state.Entity, bucket int64, v string, capN, room int) int {
	if e.Values == nil {
		e.Values = map[int64][]string{}
	}
	vs, had := e.Values[bucket]
	i, found := slices.BinarySearch(vs, v)
	if found || len(vs) >= capN {
		return 0
	}
	cost := state.JSONStringLen(v) + 1
	if !had {
		cost += len(`"":[],`) + len(strconv.FormatInt(bucket, 10))
	}
	if cost > room {
		return 0
	}
	e.Values[bucket] = slices.Insert(vs, i, v)
	return cost
}

// appliedMark is one stream's applied position.
type appliedMark struct {
	stream string
	pos    int64
}

// valueCostUpper bounds what addValue can count for v: six bytes per byte
// escaped, quotes and comma, and a new bucket's key of up to 20 digits.
func valueCostUpper(v string) int {
	return 6*len(v) + 3 + len(`"":[],`) + 20
}

// valuesLenUpper bounds valuesLen(m) from the lengths alone.
func valuesLenUpper(m map[int64][]string) int {
	n := 0
	for _, vs := range m {
		n += len(`"":[],`) + 20
		for _, v := range vs {
			n += 6*len(v) + 3
		}
	}
	return n
}

// valuesLen is the encoded size of a Values map (what addValue counts).
func valuesLen(m map[int64][]string) int {
	n := 0
	for b, vs := range m {
		n += len(`"":[],`) + len(strconv.FormatInt(b, 10))
		for _, v := range vs {
			n += state.JSONStringLen(v) + 1
		}
	}
	return n
}

// seen records an appearance of v at t: a run of appearances continues
// while gaps stay within the horizon. It reports whether anything changed.
func seen(e *state.Entity, v string, t, horizon int64) bool {
	if e.Seen == nil {
		e.Seen = map[string]state.Span{}
	}
	s, ok := e.Seen[v]
	switch {
	case !ok, t-s.Last > horizon:
		e.Seen[v] = state.Span{First: t, Last: t}
	case t > s.Last:
		s.Last = t
		e.Seen[v] = s
	case t < s.First && s.First-t <= horizon:
		s.First = t
		e.Seen[v] = s
	default:
		return false
	}
	return true
}

// maxSeen and seenBytes bound a new_value group's remembered values
// (values unseen for the rule's horizon are forgotten first): past either,
// the least recently seen are forgotten, and one of them seen again is new
// again. With values of object-id length about 11,000 fit in seenBytes.
const (
	maxSeen   = 20000
	seenBytes = 768 << 10
)

func pruneSeen(e *state.Entity, horizon int64) {
	var newest int64
	for _, s := range e.Seen {
		newest = max(newest, s.Last)
	}
	for v, s := range e.Seen {
		if newest-s.Last > horizon {
			delete(e.Seen, v)
		}
	}
	state.BoundSeen(e.Seen, maxSeen, seenBytes)
}

// evaluate checks every touched group's condition and returns candidate
// findings (the store decides which are new).
//
// Candidates this engine handed on already, whose facts did not grow, are
// left out before they are built (handed.go); keys[i] names found[i].
func (en *Engine) evaluate(ctx context.Context, order []*groupWork, ents map[state.Key]*state.Entity, events []audit.Event) (found []finding.Finding, keys []handedKey, err error) {
	if ents == nil {
		ents = map[state.Key]*state.Entity{}
	}
	// Read the neighbouring entities windows need that the batch did not write.
	// The neighbouring blocks windows need that the batch did not write:
	// each group's ranges, read at the cost of the entities that exist
	// where the store can (state.RangeGetter), else block by block.
	var ranges []state.Range
	for _, w := range order {
		ranges = en.needs(w, ranges)
	}
	// With them, what was handed on of the groups' findings (marks.go).
	ranges = en.markRanges(order, ranges)
	var got map[state.Key]*state.Entity
	if rg, ok := en.store.(state.RangeGetter); ok && len(ranges) > 0 {
		var err error
		if got, err = rg.GetRanges(ctx, ranges); err != nil {
			return nil, nil, fmt.Errorf("read state: %w", err)
		}
	} else if len(ranges) > 0 {
		// A group's ranges name its rule and group, so groups never ask for
		// the same key twice, but for access_grant groups, which share their
		// vault's grants (a map of every key cost more than the rest).
		var missing []state.Key
		want := map[state.Key]bool{}
		for _, r := range ranges {
			for b := r.From; b <= r.To; b++ {
				k := state.Key{Rule: r.Rule, Group: r.Group, Block: b}
				if _, ok := ents[k]; ok {
					continue
				}
				if b < 0 {
					if want[k] {
						continue
					}
					want[k] = true
				}
				missing = append(missing, k)
			}
		}
		var err error
		if got, err = en.store.Get(ctx, missing); err != nil {
			return nil, nil, fmt.Errorf("read state: %w", err)
		}
	}
	for k, e := range got {
		if _, ok := ents[k]; !ok { // what the batch wrote stands
			ents[k] = e
		}
	}
	en.seedMarks(got)
	var out candidates
	var grants []*groupWork // access_grant groups, judged together
	sc := &scratch{}
	for _, w := range order {
		switch w.rule.Kind {
		case rules.Each:
			en.evalEach(w, events, &out)
		case rules.Threshold, rules.Distinct:
			en.evalWindow(w, ents, events, &out, sc)
		case rules.Sequence:
			en.evalSequence(w, ents, events, &out, sc)
		case rules.Spike:
			en.evalSpike(w, ents, events, &out)
		case rules.NewValue:
			en.evalNewValue(w, ents, events, &out)
		case rules.ConfigChange:
			en.evalConfigChange(w, ents, events, &out)
		case rules.AccessGrant:
			grants = append(grants, w)
		}
	}
	if err := en.evalAccessGrants(ctx, grants, ents, events, &out); err != nil {
		return nil, nil, err
	}
	now := en.now().UTC()
	for i := range out.fs {
		out.fs[i].Raised = now // Consume fits each to finding.MaxBodyBytes as it encodes it
	}
	sort.Stable(&out)
	return out.fs, out.keys, nil
}

// candidates are the findings a batch raised, each with its handedKey.
type candidates struct {
	fs   []finding.Finding
	keys []handedKey
}

func (c *candidates) add(f finding.Finding, k handedKey) {
	c.fs = append(c.fs, f)
	c.keys = append(c.keys, k)
}

func (c *candidates) Len() int { return len(c.fs) }
func (c *candidates) Less(i, j int) bool {
	a, b := &c.fs[i], &c.fs[j]
	return cmp.Or(a.WindowEnd.Compare(b.WindowEnd), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.ID, b.ID)) < 0
}
func (c *candidates) Swap(i, j int) {
	c.fs[i], c.fs[j] = c.fs[j], c.fs[i]
	c.keys[i], c.keys[j] = c.keys[j], c.keys[i]
}

// needs appends the ranges of blocks a group's evaluation reads (a range
// of blocks once per group: no duplicates within a group).
func (en *Engine) needs(w *groupWork, rs []state.Range) []state.Range {
	r := w.rule
	addRange := func(from, to, per int64) {
		rs = append(rs, state.Range{Rule: r.ID, Group: w.group, From: floorDiv(from, per), To: floorDiv(to, per)})
	}
	meta := func(group string) {
		rs = append(rs, state.Range{Rule: r.ID, Group: group, From: state.BlockMeta, To: state.BlockMeta})
	}
	win := int64(r.Window / time.Second)
	tmin, tmax := w.contribs[0].t, w.contribs[0].t
	for _, c := range w.contribs[1:] {
		tmin, tmax = min(tmin, c.t), max(tmax, c.t)
	}
	switch r.Kind {
	case rules.Threshold, rules.Distinct, rules.Sequence:
		// evalWindow and evalSequence read the buckets from a window before
		// the first touched bucket to a window after the last.
		bs := en.bucket[w.ri]
		addRange(floorDiv(tmin, bs)*bs-win, floorDiv(tmax, bs)*bs+win, blockSec)
	case rules.Spike:
		addRange(tmin-int64(r.Baseline.Days)*86400, tmax, 86400)
		meta(w.group)
	case rules.NewValue, rules.ConfigChange:
		meta(w.group)
	case rules.AccessGrant:
		if !w.contribs[0].second {
			meta(w.group)
			break
		}
		meta(groupkey.Split(w.group, 2)[0]) // the vault's grants
		addRange(tmin-win, tmax, blockSec)
	}
	return rs
}

func period(t, cooldown int64) int64 { return floorDiv(t, cooldown) * cooldown }

// evalEach raises one finding per cooldown period with the batch's events.
func (en *Engine) evalEach(w *groupWork, events []audit.Event, out *candidates) {
	r := w.rule
	cd := int64(r.Cooldown / time.Second)
	byPeriod := map[int64][]int{}
	var periods []int64
	for i, c := range w.contribs {
		p := period(c.t, cd)
		if _, ok := byPeriod[p]; !ok {
			periods = append(periods, p)
		}
		byPeriod[p] = append(byPeriod[p], i)
	}
	slices.Sort(periods)
	for _, p := range periods {
		idx := byPeriod[p]
		k := handedKey{w.ri, w.group, p, ""}
		if en.known(k, int64(len(idx)), func() []string { return opsOf(w, events, idx) }) {
			continue
		}
		f := en.newFinding(w, p, "")
		ev := evidence(w, events, idx)
		ev.fill(&f)
		f.Count = int64(len(idx))
		f.WindowStart, f.WindowEnd = f.FirstEvent, f.LastEvent
		f.Summary = summary(&f, r)
		out.add(f, k)
	}
}

// series is a group's per-bucket state over a range of buckets, copied out
// of the entities once so windows can be summed without map lookups.
type series struct {
	lo     int64
	counts []int64
	second []int64
	values [][]string
}

// scratch holds a batch's buffers for evaluating one group after another:
// a group's evaluation allocates nothing it does not hand on.
type scratch struct {
	sr      series
	prefix  []int64
	buckets []int64
	starts  []int64
	cands   []bool
	set     map[string]int32
	suffix  []int64
	blocks  []block // the group's blocks series found
}

// block is one of a group's window entities.
type block struct {
	b int64
	e *state.Entity
}

// zeroed returns s resized to n and cleared, reusing its array if it can.
func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// series returns the group's series from bucket lo to hi (in units of
// the rule's bucket, bs seconds), in sc's buffers (valid until the next
// call). Entities keep counts and values by the settings' bucket; a rule
// with a coarser bucket (ruleBucket) sums them into its own.
func (en *Engine) series(w *groupWork, ents map[state.Key]*state.Entity, lo, hi, bs int64, distinct bool, sc *scratch) *series {
	sr := &sc.sr
	sr.lo = lo
	sr.counts, sr.second = zeroed(sr.counts, int(hi-lo+1)), zeroed(sr.second, int(hi-lo+1))
	if distinct {
		sr.values = zeroed(sr.values, int(hi-lo+1))
	}
	at := func(b int64) (int64, bool) { // a fine bucket's index in the series
		b = en.ruleBucketOf(b, bs)
		return b - lo, b >= lo && b <= hi
	}
	sc.blocks = sc.blocks[:0]
	for blk := floorDiv(lo*bs, blockSec); blk <= floorDiv(hi*bs, blockSec); blk++ {
		e := ents[state.Key{Rule: w.rule.ID, Group: w.group, Block: blk}]
		if e == nil {
			continue
		}
		sc.blocks = append(sc.blocks, block{blk, e})
		for b, v := range e.Counts {
			if i, ok := at(b); ok {
				sr.counts[i] += v
			}
		}
		for b, v := range e.Counts2 {
			if i, ok := at(b); ok {
				sr.second[i] += v
			}
		}
		if distinct {
			for b, v := range e.Values {
				if i, ok := at(b); ok {
					if sr.values[i] == nil {
						sr.values[i] = v // shared with the entity: read only
					} else {
						sr.values[i] = append(slices.Clip(sr.values[i]), v...)
					}
				}
			}
		}
	}
	return sr
}

// ruleBucket is the width in seconds of a rule's buckets (Engine.bucket,
// computed once in New): the settings' bucket (fine seconds), or for a
// threshold or distinct window of 6 hours or more a coarser one of about a
// 96th of the window that divides an hour (a day's window slides by 15
// minutes, not by the minute: evaluating it costs 96 buckets, not 1,440).
// Entities still keep their counts by the settings' bucket, each at the
// start of the rule's bucket it falls in.
func ruleBucket(r *rules.Rule, fine int64) int64 {
	if (r.Kind != rules.Threshold && r.Kind != rules.Distinct) || r.Window < 6*time.Hour {
		return fine
	}
	want := int64(r.Window/time.Second) / 96
	best := fine
	for _, c := range []int64{120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600} {
		if c <= want && c > best && c%fine == 0 && blockSec%c == 0 {
			best = c
		}
	}
	return best
}

// fineBucket is the settings' bucket in seconds.
func (en *Engine) fineBucket() int64 { return int64(en.settings.Bucket / time.Second) }

// ruleBucketOf is the index of the rule's bucket (bs seconds) that the
// settings' bucket b (an entity's key) falls in.
func (en *Engine) ruleBucketOf(b, bs int64) int64 {
	if fine := en.fineBucket(); bs != fine {
		return floorDiv(b*fine, bs)
	}
	return b
}

// bucketKey is the settings'-bucket index an event at t is counted under
// for rule ri: the first of the rule's bucket it falls in.
func (en *Engine) bucketKey(ri int, t int64) int64 {
	fine := en.fineBucket()
	bs := en.bucket[ri]
	return floorDiv(t, bs) * (bs / fine)
}

// touched returns the buckets the group's contributions fall in, sorted,
// in sc's buffer.
func (en *Engine) touched(w *groupWork, bs int64, sc *scratch) (buckets []int64, lo, hi int64) {
	buckets = sc.buckets[:0]
	for i := range w.contribs {
		buckets = append(buckets, floorDiv(w.contribs[i].t, bs))
	}
	slices.Sort(buckets)
	buckets = slices.Compact(buckets)
	sc.buckets = buckets
	return buckets, buckets[0], buckets[len(buckets)-1]
}

// evalWindow evaluates threshold and distinct rules over sliding windows
// ending in or after every touched bucket.
func (en *Engine) evalWindow(w *groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates, sc *scratch) {
	r := w.rule
	bs := en.bucket[w.ri]
	n := int64(r.Window / time.Second / time.Duration(bs))
	cd := int64(r.Cooldown / time.Second)
	buckets, tlo, thi := en.touched(w, bs, sc)
	lo, hi := tlo-n, thi+n
	distinct := r.Kind == rules.Distinct
	sr := en.series(w, ents, lo, hi, bs, distinct, sc)
	if distinct && !reachable(sr.values, n, int64(r.Count)) {
		return
	}
	prefix := zeroed(sc.prefix, len(sr.counts)+1)
	sc.prefix = prefix
	for i, c := range sr.counts {
		prefix[i+1] = prefix[i] + c
	}
	if sc.set == nil {
		sc.set = map[string]int32{}
	}
	// Distinct values are counted over a window that slides forward (the
	// windows evaluated end later and later): each bucket's values are
	// added once and removed once, so a day-long window costs what its
	// values cost, not a day of buckets per window.
	set := sc.set
	clear(set)
	// A long distinct window is counted from the group's index where it
	// can be (distinct.go): a suffix sum, not a set filled. A short one is
	// counted from its buckets read once from the range's end (scanSuffix):
	// a window that ends at or after the last bucket holding a value, as a
	// batch of new records' windows do, holds what the buckets from its
	// start on hold; one that ends before it (a late record's) slides the set.
	var suf []int64
	sufMax, sufOK := int64(0), false
	if distinct && n >= indexMinBuckets {
		suf, sufMax, sufOK = en.suffix(w, sc.blocks, lo, hi, bs, sc)
	} else if distinct && !en.distinct.off {
		suf, sufMax = scanSuffix(sr.values, lo, max(tlo-n+1, lo), set, sc)
		sufOK = true
	}
	wf, wt := int64(1), int64(0) // the buckets set holds, inclusive; empty
	windowValue := func(end int64) int64 {
		from, to := max(end-n+1, lo), end // inclusive
		if !distinct {
			return prefix[to-lo+1] - prefix[from-lo]
		}
		if sufOK && sufMax <= to {
			en.distinct.answers.Add(1)
			return suf[from-lo]
		}
		if from > wt || from < wf {
			clear(set)
			wf, wt = from, from-1
		}
		// A window that slides pairs each bucket leaving with one
		// entering: where the two hold the same values (a caller that
		// reads the same secrets bucket after bucket) the window does not
		// change, at the cost of comparing them, not of two set updates
		// per value.
		for wf < from && wt < to {
			out, in := sr.values[wf-lo], sr.values[wt+1-lo]
			wf++
			wt++
			if slices.Equal(out, in) {
				continue
			}
			for _, v := range in {
				set[v]++
			}
			for _, v := range out {
				if set[v]--; set[v] <= 0 {
					delete(set, v)
				}
			}
		}
		for ; wf < from; wf++ {
			for _, v := range sr.values[wf-lo] {
				if set[v]--; set[v] <= 0 {
					delete(set, v)
				}
			}
		}
		for wt < to {
			wt++
			for _, v := range sr.values[wt-lo] {
				set[v]++
			}
		}
		return int64(len(set))
	}
	cond := func(end int64) (int64, bool) {
		v := windowValue(end)
		if v < int64(r.Count) {
			return v, false
		}
		if r.MinEvents > 0 {
			from := max(end-n+1, lo)
			if prefix[end-lo+1]-prefix[from-lo] < int64(r.MinEvents) {
				return v, false
			}
		}
		return v, true
	}
	// A window is anchored at its first bucket, which must hold a matching
	// event, and belongs to the cooldown period that bucket falls in; the
	// satisfied anchored window of a period with the highest count (the
	// earliest of equal ones) raises the period's finding. Both conditions
	// only grow with the data, and a batch evaluates every window holding a
	// bucket it touched, so the findings do not depend on the order records
	// arrive in or on where batches are cut: a later batch's window of the
	// same period with a higher count hands the finding on again with it
	// (handed.go), and one batch holding all the records finds that window
	// at once. A burst is found in the period it began, not again in the
	// next one unless it goes on long enough to satisfy the condition there
	// on its own.
	anchored := func(st int64) bool {
		if distinct {
			return len(sr.values[st-lo]) > 0
		}
		return sr.counts[st-lo] > 0
	}
	starts := sc.starts[:0]
	next := int64(math.MinInt64)
	for _, b := range buckets {
		for st := max(b-n+1, next); st <= b; st++ {
			starts = append(starts, st)
		}
		next = b + 1
	}
	sc.starts = starts
	// starts ascend, so do their periods: each period's best window is
	// known once the starts move past it.
	type best struct {
		p, st, v int64 // period, start, count
		ok       bool
	}
	raise := func(b best) {
		p, st, v := b.p, b.st, b.v
		end := st + n - 1
		k := handedKey{w.ri, w.group, p, ""}
		if en.known(k, v, func() []string {
			return w.windowOps(events, st*bs, (end+1)*bs, false)
		}) {
			return
		}
		f := en.newFinding(w, p, "")
		f.WindowStart = time.Unix(st*bs, 0).UTC()
		f.WindowEnd = time.Unix((end+1)*bs, 0).UTC()
		f.Window = r.Window
		f.Count, f.Threshold = v, int64(r.Count)
		ev := evidence(w, events, inWindow(w, f.WindowStart.Unix(), f.WindowEnd.Unix(), false))
		ev.fill(&f)
		f.Summary = summary(&f, r)
		out.add(f, k)
	}
	var cur best
	for _, st := range starts {
		p := period(st*bs, cd)
		if cur.ok && p != cur.p {
			raise(cur)
			cur = best{}
		}
		if !anchored(st) {
			continue
		}
		v, ok := cond(st + n - 1)
		if ok && (!cur.ok || v > cur.v) {
			cur = best{p, st, v, true}
		}
	}
	if cur.ok {
		raise(cur)
	}
}

// scanSuffix counts, for every bucket from `from` on, the distinct values
// of the buckets from it to the range's end, reading the buckets once from
// the end (each value counted where it is last seen), and returns the last
// bucket holding a value: a window from st that ends at or after it counts
// suf[st-lo]. set is a scratch set, left empty.
func scanSuffix(values [][]string, lo, from int64, set map[string]int32, sc *scratch) (suf []int64, last int64) {
	suf = zeroed(sc.suffix, len(values)+1)
	sc.suffix = suf
	clear(set)
	last = lo - 1
	for i := len(values) - 1; i >= int(from-lo); i-- {
		vs := values[i]
		if len(vs) > 0 && last < lo {
			last = lo + int64(i)
		}
		for _, v := range vs {
			set[v] = 1
		}
		suf[i] = int64(len(set))
	}
	clear(set)
	return suf, last
}

// reachable reports whether some n consecutive buckets of values hold
// count values between them. A window's distinct values are at most that
// many, so where none do, no window of the group can reach count and its
// set is not filled (most groups of a tenant's (vault, caller) rules: a
// caller reads a secret or two of a vault in a quarter of an hour).
func reachable(values [][]string, n, count int64) bool {
	var sum int64
	for i := range values {
		sum += int64(len(values[i]))
		if j := int64(i) - n; j >= 0 {
			sum -= int64(len(values[j]))
		}
		if sum >= count {
			return true
		}
	}
	return false
}

// windowOps returns the operations of the group's contributions in
// [from, to) (with sequence's A events of the first bucket when second):
// the group's own operations when it has only one, which is the usual case.
func (w *groupWork) windowOps(events []audit.Event, from, to int64, second bool) []string {
	if w.ops == nil {
		w.ops = opsOf(w, events, nil)
	}
	if len(w.ops) <= 1 {
		return w.ops
	}
	idx := inWindow(w, from, to, false)
	if second {
		idx = append(inWindow(w, from, to, true), idx...)
	}
	return opsOf(w, events, idx)
}

func inWindow(w *groupWork, from, to int64, second bool) []int {
	var idx []int
	for i, c := range w.contribs {
		if c.t >= from && c.t < to && c.second == second {
			idx = append(idx, i)
		}
	}
	return idx
}

// evalSequence looks, for every bucket holding an A event, for Count B
// events in the window that follows it.
func (en *Engine) evalSequence(w *groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates, sc *scratch) {
	r := w.rule
	bs := int64(en.settings.Bucket / time.Second)
	n := int64(r.Window / time.Second / time.Duration(bs))
	cd := int64(r.Cooldown / time.Second)
	_, tlo, thi := en.touched(w, bs, sc)
	lo, hi := tlo-n, thi+n
	sr := en.series(w, ents, lo, hi, bs, false, sc)
	prefix := zeroed(sc.prefix, len(sr.second)+1)
	sc.prefix = prefix
	for i, c := range sr.second {
		prefix[i+1] = prefix[i] + c
	}
	// Candidate A buckets: touched A buckets, and A buckets up to a window
	// before touched B buckets.
	cands := zeroed(sc.cands, int(hi-lo+1))
	sc.cands = cands
	for _, c := range w.contribs {
		b := floorDiv(c.t, bs)
		if c.second {
			for a := max(b-n, lo); a <= b; a++ {
				cands[a-lo] = true
			}
		} else {
			cands[b-lo] = true
		}
	}
	// Candidates ascend, so do their periods: the period done is the last.
	done, anyDone := int64(0), false
	for i, ok := range cands {
		if !ok || sr.counts[i] == 0 {
			continue
		}
		a := lo + int64(i)
		p := period(a*bs, cd)
		if anyDone && done == p {
			continue
		}
		// The window is the n buckets starting with A's own bucket (the same
		// width as threshold windows; order within a bucket is not known).
		to := min(a+n-1, hi)
		sum := prefix[to-lo+1] - prefix[a-lo]
		if sum < int64(r.Count) {
			continue
		}
		done, anyDone = p, true
		k := handedKey{w.ri, w.group, p, ""}
		if en.known(k, sum, func() []string { return w.windowOps(events, a*bs, (a+n)*bs, true) }) {
			continue
		}
		f := en.newFinding(w, p, "")
		f.WindowStart = time.Unix(a*bs, 0).UTC()
		f.WindowEnd = time.Unix((a+n)*bs, 0).UTC()
		f.Window = r.Window
		f.Count, f.Threshold = sum, int64(r.Count)
		idx := inWindow(w, f.WindowStart.Unix(), f.WindowEnd.Unix(), true)
		idx = append(inWindow(w, f.WindowStart.Unix(), f.WindowStart.Unix()+bs, false), idx...)
		ev := evidence(w, events, idx)
		ev.fill(&f)
		f.Summary = summary(&f, r)
		out.add(f, k)
	}
}

// evalSpike compares each touched slot's count with the mean and deviation
// of the group's previous slots over the baseline days.
func (en *Engine) evalSpike(w *groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates) {
	r := w.rule
	ws := int64(r.Window / time.Second)
	cd := int64(r.Cooldown / time.Second)
	meta := ents[state.Key{Rule: r.ID, Group: w.group, Block: state.BlockMeta}]
	if meta == nil || meta.First == 0 {
		return
	}
	// A slot's count, from its day's entity; the baseline reads two
	// weeks of slots in order, so the day's entity is looked up once a
	// day, not once a slot.
	day, dayEnt := int64(math.MinInt64), (*state.Entity)(nil)
	get := func(slot int64) int64 {
		if d := floorDiv(slot*ws, 86400); d != day {
			day, dayEnt = d, ents[state.Key{Rule: r.ID, Group: w.group, Block: d}]
		}
		if dayEnt == nil {
			return 0
		}
		return dayEnt.Counts[slot]
	}
	touched := map[int64]bool{}
	for _, c := range w.contribs {
		touched[floorDiv(c.t, ws)] = true
	}
	slots := make([]int64, 0, len(touched))
	for s := range touched {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	for _, s := range slots {
		start := s * ws
		if start-meta.First < int64(r.Learning/time.Second) {
			continue // not enough history yet
		}
		from := max(floorDiv(meta.First, ws), s-int64(r.Baseline.Days)*86400/ws)
		var sum, sq float64
		k := 0
		for h := from; h < s; h++ {
			v := float64(get(h))
			sum += v
			sq += v * v
			k++
		}
		if k == 0 {
			continue
		}
		mean := sum / float64(k)
		std := math.Sqrt(max(0, sq/float64(k)-mean*mean))
		c := get(s)
		need := max(float64(r.Baseline.MinCount), mean+r.Baseline.K*std, r.Baseline.Ratio*mean)
		if float64(c) < need || c == 0 {
			continue
		}
		hk := handedKey{w.ri, w.group, period(start, cd), ""}
		if en.known(hk, c, func() []string { return w.windowOps(events, start, start+ws, false) }) {
			continue
		}
		f := en.newFinding(w, hk.period, "")
		f.WindowStart, f.WindowEnd, f.Window = time.Unix(start, 0).UTC(), time.Unix(start+ws, 0).UTC(), r.Window
		f.Count, f.Threshold = c, int64(math.Ceil(need))
		f.Baseline = &finding.Baseline{Mean: round2(mean), StdDev: round2(std), Slots: k}
		ev := evidence(w, events, inWindow(w, start, start+ws, false))
		ev.fill(&f)
		f.Summary = summary(&f, r)
		out.add(f, hk)
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// evalNewValue raises a finding for every value whose current run of
// appearances began with an event of this batch, once the group's learning
// is over. Learning is per group (the rule's group_by: a vault, a vault and
// a caller), from the group's first event: a vault first seen on day 9
// learns its callers until day 16 instead of reporting each as new.
func (en *Engine) evalNewValue(w *groupWork, ents map[state.Key]*state.Entity, events []audit.Event, out *candidates) {
	r := w.rule
	meta := ents[state.Key{Rule: r.ID, Group: w.group, Block: state.BlockMeta}]
	if meta == nil || meta.First == 0 {
		return
	}
	learnedAt := meta.First + int64(r.Learning/time.Second)
	hz := int64(r.Horizon / time.Second)
	done := map[string]bool{}
	for i, c := range w.contribs {
		s, ok := meta.Seen[c.value]
		if !ok || s.First != c.t || c.t < learnedAt || done[c.value] {
			continue
		}
		done[c.value] = true
		k := handedKey{w.ri, w.group, period(s.First, hz), c.value}
		if en.known(k, 1, func() []string { return nil }) {
			continue
		}
		f := en.newFinding(w, k.period, c.value)
		f.Value = tupleText(c.value, r.Fields)
		f.WindowStart, f.WindowEnd = time.Unix(c.t, 0).UTC(), time.Unix(c.t, 0).UTC()
		f.Count = 1
		var idx []int
		for j := i; j < len(w.contribs); j++ {
			if w.contribs[j].value == c.value {
				idx = append(idx, j)
			}
		}
		ev := evidence(w, events, idx)
		ev.fill(&f)
		f.Summary = summary(&f, r)
		out.add(f, k)
	}
}

// sweptGroups remembers, per new_value group, the hour of event time its
// history was last swept in. Safe for concurrent use; bounded (forgotten
// whole past 100,000 groups, which only means one more sweep each).
type sweptGroups struct {
	mu sync.Mutex
	at map[state.Key]int64
}

// due reports whether k's history should be swept at event time t (unix
// seconds), and records that it is.
func (s *sweptGroups) due(k state.Key, t int64) bool {
	h := floorDiv(t, 3600)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil || len(s.at) > 100_000 {
		s.at = map[state.Key]int64{}
	}
	if last, ok := s.at[k]; ok && h <= last {
		return false
	}
	s.at[k] = h
	return true
}
