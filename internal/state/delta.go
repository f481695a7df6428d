package state

import (
	"maps"
	"slices"
)

// Delta is what one update changed in one entity, in a form that can be
// applied to another copy of the entity that other writers changed
// meanwhile: counts are added, sets gain and lose members, positions and
// first times only move one way. A store that keeps a log of deltas per
// input stream (tablestore.Journal) folds every stream's log into one view
// this way; the order in which deltas of different streams are folded
// does not change counts, positions, values or spans.
//
// Merge(before, Diff(before, after)) equals after exactly (as JSON), so a
// single writer's view is what it wrote.
type Delta struct {
	// Applied: input positions raised (merged by maximum).
	Applied map[string]int64 `json:"a,omitempty"`
	// AppliedSet and AppliedGone: positions lowered or removed (no update
	// of detection does that; kept so that a delta reproduces any change).
	AppliedSet  map[string]int64 `json:"as,omitempty"`
	AppliedGone []string         `json:"ag,omitempty"`
	// Counts, Counts2: amounts added (a key new in after is added even
	// with 0, so that it exists); the Gone lists are keys removed.
	Counts      map[int64]int64 `json:"c,omitempty"`
	CountsGone  []int64         `json:"cg,omitempty"`
	Counts2     map[int64]int64 `json:"c2,omitempty"`
	Counts2Gone []int64         `json:"c2g,omitempty"`
	// Tally: amounts added, a key removed as its amount taken away (a
	// tally at 0 is absent), so that tallies commute as counts do: a
	// statistics list trimmed by one writer (the smallest entries dropped)
	// while another adds to a dropped entry ends the same in every view,
	// whatever order they fold the two in. A view may hold a negative
	// entry for a while (a removal folded before the additions it undid);
	// readers take entries at or below 0 as absent. TallyGone: keys removed
	// outright, as deltas written before tallies commuted say it.
	Tally     map[string]int64 `json:"t,omitempty"`
	TallyGone []string         `json:"tg,omitempty"`
	// Values: per slot, members added (in after's order) and removed.
	// Sorted says after's slot was sorted: merged members are then kept
	// sorted; otherwise added members are appended (a chronological list).
	Values map[int64]SlotDelta `json:"v,omitempty"`
	// Seen: spans set or extended; Restart marks a span whose run started
	// again (its first appearance moved later), which replaces rather than
	// widens. SeenGone: values forgotten.
	Seen     map[string]SpanDelta `json:"s,omitempty"`
	SeenGone []string             `json:"sg,omitempty"`
	// First: the earliest event time, when it changed (merged by minimum).
	First int64 `json:"f,omitempty"`
	// FirstSet: First moved later or was cleared: set exactly.
	FirstSet *int64 `json:"fs,omitempty"`
}

// SlotDelta is what changed in one Values slot.
type SlotDelta struct {
	Added   []string `json:"+,omitempty"`
	Removed []string `json:"-,omitempty"`
	Sorted  bool     `json:"o,omitempty"`
	// Drop: the slot is gone.
	Drop bool `json:"x,omitempty"`
	// Set: the slot's members in an order neither sorted nor old ones
	// followed by new ones: it is replaced whole.
	Set []string `json:"=,omitempty"`
}

// SpanDelta is a span as after has it, and whether its run restarted.
type SpanDelta struct {
	Span
	Restart bool `json:"r,omitempty"`
}

// Empty reports whether d changes nothing.
func (d *Delta) Empty() bool {
	return d == nil || (len(d.Applied) == 0 && len(d.AppliedSet) == 0 && len(d.AppliedGone) == 0 && d.FirstSet == nil && len(d.Counts) == 0 && len(d.CountsGone) == 0 && len(d.Counts2) == 0 &&
		len(d.Counts2Gone) == 0 && len(d.Tally) == 0 && len(d.TallyGone) == 0 && len(d.Values) == 0 &&
		len(d.Seen) == 0 && len(d.SeenGone) == 0 && d.First == 0)
}

// Diff returns what turns before into after (before may be nil: absent).
// It returns nil when nothing changed.
func Diff(before, after *Entity) *Delta {
	if before == nil {
		before = &Entity{}
	}
	d := &Delta{}
	// Keys of after found in before: when they are all of before's, none
	// is gone, and before is not walked again (most updates add).
	common := 0
	for s, p := range after.Applied {
		q, ok := before.Applied[s]
		if ok {
			common++
		}
		if ok && p < q {
			if d.AppliedSet == nil {
				d.AppliedSet = map[string]int64{}
			}
			d.AppliedSet[s] = p
		} else if !ok || q != p {
			if d.Applied == nil {
				d.Applied = map[string]int64{}
			}
			d.Applied[s] = p
		}
	}
	if common < len(before.Applied) {
		for s := range before.Applied {
			if _, ok := after.Applied[s]; !ok {
				d.AppliedGone = append(d.AppliedGone, s)
			}
		}
		slices.Sort(d.AppliedGone)
	}
	d.Counts, d.CountsGone = diffCounts(before.Counts, after.Counts)
	d.Counts2, d.Counts2Gone = diffCounts(before.Counts2, after.Counts2)
	d.Tally = diffTally(before.Tally, after.Tally)
	common = 0
	for slot, vs := range after.Values {
		old, had := before.Values[slot]
		if had {
			common++
		}
		if had && slices.Equal(old, vs) {
			continue
		}
		sd := SlotDelta{Sorted: slices.IsSorted(vs)}
		if sd.Sorted && increasing(vs) && increasing(old) {
			// Sets, as detection and statistics keep them: one walk
			// gives what the walks below give, without a map.
			sd.Added, sd.Removed = diffSorted(old, vs)
		} else {
			in := make(map[string]bool, len(old))
			for _, v := range old {
				in[v] = true
			}
			for _, v := range vs {
				if !in[v] {
					sd.Added = append(sd.Added, v)
				}
				delete(in, v)
			}
			for _, v := range old { // in old's order, for determinism
				if in[v] {
					sd.Removed = append(sd.Removed, v)
				}
			}
		}
		if !sd.Sorted {
			// Chronological: after must be old's survivors, then the added.
			kept := slices.DeleteFunc(slices.Clone(old), func(v string) bool { return slices.Contains(sd.Removed, v) })
			if !slices.Equal(append(kept, sd.Added...), vs) || len(vs) == 0 {
				sd = SlotDelta{Set: slices.Clone(vs)}
				if sd.Set == nil {
					sd.Set = []string{}
				}
			}
		}
		if d.Values == nil {
			d.Values = map[int64]SlotDelta{}
		}
		d.Values[slot] = sd
	}
	for slot := range before.Values {
		if common == len(before.Values) {
			break
		}
		if _, ok := after.Values[slot]; !ok {
			if d.Values == nil {
				d.Values = map[int64]SlotDelta{}
			}
			d.Values[slot] = SlotDelta{Drop: true}
		}
	}
	common = 0
	for v, s := range after.Seen {
		o, ok := before.Seen[v]
		if ok {
			common++
		}
		if ok && o == s {
			continue
		}
		if d.Seen == nil {
			d.Seen = map[string]SpanDelta{}
		}
		d.Seen[v] = SpanDelta{Span: s, Restart: ok && (s.First > o.First || s.Last < o.Last)}
	}
	if common < len(before.Seen) {
		for v := range before.Seen {
			if _, ok := after.Seen[v]; !ok {
				d.SeenGone = append(d.SeenGone, v)
			}
		}
		slices.Sort(d.SeenGone)
	}
	switch {
	case after.First == before.First:
	case after.First != 0 && (before.First == 0 || after.First < before.First):
		d.First = after.First
	default:
		f := after.First
		d.FirstSet = &f
	}
	if d.Empty() {
		return nil
	}
	return d
}

// increasing reports whether vs is sorted without repeats.
func increasing(vs []string) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i-1] >= vs[i] {
			return false
		}
	}
	return true
}

// diffSorted returns the members of after not in before and those of
// before not in after, in order, of two increasing lists.
func diffSorted(before, after []string) (added, removed []string) {
	i, j := 0, 0
	for i < len(before) || j < len(after) {
		switch {
		case j == len(after) || (i < len(before) && before[i] < after[j]):
			removed = append(removed, before[i])
			i++
		case i == len(before) || after[j] < before[i]:
			added = append(added, after[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

func diffCounts[K comparable](before, after map[K]int64) (map[K]int64, []K) {
	var add map[K]int64
	common := 0
	for k, v := range after {
		o, ok := before[k]
		if ok {
			common++
		}
		if !ok || o != v {
			if add == nil {
				add = map[K]int64{}
			}
			add[k] = v - o
		}
	}
	var gone []K
	if common == len(before) {
		return add, nil
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			gone = append(gone, k)
		}
	}
	return add, gone
}

// diffTally returns the amounts that turn before into after, a key absent
// from after (or 0 in it) taken as 0.
func diffTally(before, after map[string]int64) map[string]int64 {
	var add map[string]int64
	put := func(k string, v int64) {
		if add == nil {
			add = map[string]int64{}
		}
		add[k] = v
	}
	common := 0
	for k, v := range after {
		o, ok := before[k]
		if ok {
			common++
		}
		if o != v {
			put(k, v-o)
		}
	}
	if common < len(before) {
		for k, o := range before {
			if _, ok := after[k]; !ok && o != 0 {
				put(k, -o)
			}
		}
	}
	return add
}

// mergeTally adds amounts to a tally, a key whose sum is 0 removed, and
// removes the keys of gone (deltas of before tallies commuted).
func mergeTally(m *map[string]int64, add map[string]int64, gone []string) {
	if len(add) > 0 && *m == nil {
		*m = make(map[string]int64, len(add))
	}
	for k, v := range add {
		if n := (*m)[k] + v; n != 0 {
			(*m)[k] = n
		} else {
			delete(*m, k)
		}
	}
	for _, k := range gone {
		delete(*m, k)
	}
}

// Merge applies d to e in place. e must be the caller's own copy.
func Merge(e *Entity, d *Delta) {
	if d == nil {
		return
	}
	for s, p := range d.Applied {
		e.MarkApplied(s, p)
	}
	for s, p := range d.AppliedSet {
		e.Applied[s] = p
	}
	for _, s := range d.AppliedGone {
		delete(e.Applied, s)
	}
	mergeCounts(&e.Counts, d.Counts, d.CountsGone)
	mergeCounts(&e.Counts2, d.Counts2, d.Counts2Gone)
	mergeTally(&e.Tally, d.Tally, d.TallyGone)
	for slot, sd := range d.Values {
		if sd.Drop {
			delete(e.Values, slot)
			continue
		}
		if sd.Set != nil {
			if e.Values == nil {
				e.Values = map[int64][]string{}
			}
			e.Values[slot] = slices.Clone(sd.Set)
			continue
		}
		vs := e.Values[slot]
		if len(sd.Removed) > 0 {
			vs = slices.DeleteFunc(slices.Clone(vs), func(v string) bool { return slices.Contains(sd.Removed, v) })
		}
		if sd.Sorted && !slices.IsSorted(vs) {
			vs = slices.Clone(vs)
			slices.Sort(vs)
		}
		for _, v := range sd.Added {
			if sd.Sorted {
				if i, found := slices.BinarySearch(vs, v); !found {
					vs = slices.Insert(slices.Clip(vs), i, v)
				}
				continue
			}
			if !slices.Contains(vs, v) {
				vs = append(slices.Clip(vs), v)
			}
		}
		if vs == nil {
			vs = []string{}
		}
		if e.Values == nil {
			e.Values = map[int64][]string{}
		}
		e.Values[slot] = vs
	}
	if len(d.Seen) > 0 && e.Seen == nil {
		e.Seen = make(map[string]Span, len(d.Seen))
	}
	for v, sd := range d.Seen {
		cur, ok := e.Seen[v]
		if !ok || sd.Restart {
			e.Seen[v] = sd.Span
			continue
		}
		e.Seen[v] = Span{First: min(cur.First, sd.First), Last: max(cur.Last, sd.Last)}
	}
	for _, v := range d.SeenGone {
		delete(e.Seen, v)
	}
	if d.First != 0 && (e.First == 0 || d.First < e.First) {
		e.First = d.First
	}
	if d.FirstSet != nil {
		e.First = *d.FirstSet
	}
}

func mergeCounts[K comparable](m *map[K]int64, add map[K]int64, gone []K) {
	if len(add) > 0 && *m == nil {
		*m = make(map[K]int64, len(add))
	}
	for k, v := range add {
		(*m)[k] += v
	}
	for _, k := range gone {
		delete(*m, k)
	}
}

// Clone returns a deep copy of d.
func (d *Delta) Clone() *Delta {
	if d == nil {
		return nil
	}
	c := *d
	c.Applied, c.AppliedSet = maps.Clone(d.Applied), maps.Clone(d.AppliedSet)
	c.Counts, c.Counts2, c.Tally = maps.Clone(d.Counts), maps.Clone(d.Counts2), maps.Clone(d.Tally)
	c.Values = maps.Clone(d.Values)
	c.Seen = maps.Clone(d.Seen)
	return &c
}
