package state_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kvwatch/kvwatch/internal/state"
)

func canon(e *state.Entity) string {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// randomEntity builds an entity from a seed: the shapes detect, stats and
// heartbeat write (sorted and chronological value lists, spans, tallies).
func randomEntity(r *rand.Rand) *state.Entity {
	e := &state.Entity{}
	str := func() string { return string(rune('a' + r.IntN(8))) }
	if r.IntN(2) == 0 {
		e.Applied = map[string]int64{}
		for range r.IntN(3) + 1 {
			e.Applied["p:"+str()] = r.Int64N(100)
		}
	}
	fill := func(m *map[int64]int64) {
		if r.IntN(2) == 0 {
			*m = map[int64]int64{}
			for range r.IntN(4) + 1 {
				(*m)[r.Int64N(6)-1] = r.Int64N(5)
			}
		}
	}
	fill(&e.Counts)
	fill(&e.Counts2)
	if r.IntN(2) == 0 {
		e.Tally = map[string]int64{}
		for range r.IntN(4) + 1 {
			e.Tally[str()] = r.Int64N(9) + 1 // a tally at 0 is absent
		}
	}
	if r.IntN(2) == 0 {
		e.Values = map[int64][]string{}
		for range r.IntN(3) + 1 {
			var vs []string
			for range r.IntN(5) + 1 {
				if v := str(); !slices.Contains(vs, v) {
					vs = append(vs, v)
				}
			}
			if r.IntN(2) == 0 {
				slices.Sort(vs)
			}
			e.Values[r.Int64N(4)] = vs
		}
	}
	if r.IntN(2) == 0 {
		e.Seen = map[string]state.Span{}
		for range r.IntN(4) + 1 {
			f := r.Int64N(50)
			e.Seen[str()] = state.Span{First: f, Last: f + r.Int64N(50)}
		}
	}
	if r.IntN(2) == 0 {
		e.First = r.Int64N(100) + 1
	}
	return e
}

// A single writer's view is exactly what it wrote: merging the diff of
// any change reproduces the changed entity.
func TestDiffMergeReproducesAfter(t *testing.T) {
	for seed := range uint64(5000) {
		r := rand.New(rand.NewPCG(seed, 7))
		before, after := randomEntity(r), randomEntity(r)
		if seed%3 == 0 {
			before = nil
		}
		checkDiffMerge(t, before, after)
	}
}

func checkDiffMerge(t *testing.T, before, after *state.Entity) {
	t.Helper()
	got := before.Clone()
	if got == nil {
		got = &state.Entity{}
	}
	d := state.Diff(before, after)
	// The delta travels as JSON.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back *state.Delta
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	state.Merge(got, back)
	norm := func(e *state.Entity) string {
		// nil and empty maps alike, as the stores treat them.
		c := e.Clone()
		if c == nil {
			c = &state.Entity{}
		}
		var x state.Entity
		js, _ := json.Marshal(c)
		json.Unmarshal(js, &x)
		return canon(&x)
	}
	if norm(got) != norm(after) {
		t.Fatalf("before %s\nafter  %s\ndelta  %s\nmerged %s", norm(before), norm(after), b, norm(got))
	}
	if (d == nil) != (norm(before) == norm(after)) {
		t.Fatalf("Diff of %s → %s is %s", norm(before), norm(after), b)
	}
}

// Deltas of two writers that started from the same entity compose in
// either order: counts add, positions and first times only move one way.
func TestMergeCommutes(t *testing.T) {
	base := &state.Entity{Applied: map[string]int64{"p:0": 4, "p:1": 9}, Counts: map[int64]int64{1: 3},
		Seen: map[string]state.Span{"x": {First: 10, Last: 20}}, First: 10}
	a := base.Clone()
	a.Applied["p:0"] = 6
	a.Counts[1] += 2
	a.Counts[2] = 1
	a.Seen["x"] = state.Span{First: 10, Last: 30}
	b := base.Clone()
	b.Applied["p:1"] = 12
	b.Counts[1] += 5
	b.Seen["x"] = state.Span{First: 5, Last: 20}
	b.First = 5
	da, db := state.Diff(base, a), state.Diff(base, b)
	ab, ba := base.Clone(), base.Clone()
	state.Merge(ab, da)
	state.Merge(ab, db)
	state.Merge(ba, db)
	state.Merge(ba, da)
	if canon(ab) != canon(ba) {
		t.Fatalf("order matters: %s vs %s", canon(ab), canon(ba))
	}
	want := `{"a":{"p:0":6,"p:1":12},"c":{"1":10,"2":1},"s":{"x":{"f":5,"l":30}},"f":5}`
	if canon(ab) != want {
		t.Fatalf("merged %s, want %s", canon(ab), want)
	}
}

func FuzzDiffMerge(f *testing.F) {
	f.Add(uint64(1), uint64(2), false)
	f.Add(uint64(3), uint64(3), true)
	f.Fuzz(func(t *testing.T, s1, s2 uint64, nilBefore bool) {
		r := rand.New(rand.NewPCG(s1, s2))
		before, after := randomEntity(r), randomEntity(r)
		if nilBefore {
			before = nil
		}
		checkDiffMerge(t, before, after)
	})
}

// An entity remembers at most MaxFileMarks replayed files; partitions are
// never forgotten.
func TestMarkAppliedBoundsFiles(t *testing.T) {
	e := &state.Entity{}
	e.MarkApplied("p:ns/hub/0", 7)
	for i := range state.MaxFileMarks + 10 {
		e.MarkApplied(fmt.Sprintf("f:blob/%03d.json", i), 1)
	}
	if got := len(e.Applied); got != state.MaxFileMarks+1 {
		t.Fatalf("%d marks, want %d files and the partition", got, state.MaxFileMarks)
	}
	if e.Applied["p:ns/hub/0"] != 7 {
		t.Fatal("the partition's mark was forgotten")
	}
	if _, ok := e.Applied[fmt.Sprintf("f:blob/%03d.json", state.MaxFileMarks+9)]; !ok {
		t.Fatal("the newest file's mark was forgotten")
	}
}

// BenchmarkDiff: one update's diff of a window entity (30 counted buckets,
// 6 buckets of 20 distinct values, 2 positions) that added to a count, a
// value list and a position, as most updates do.
func BenchmarkDiff(b *testing.B) {
	before := &state.Entity{Applied: map[string]int64{"p:ns/hub/0": 7, "p:ns/hub/1": 9},
		Counts: map[int64]int64{}, Values: map[int64][]string{}, Tally: map[string]int64{"a": 1, "b": 2}}
	for k := range 30 {
		before.Counts[int64(29923740+k)] = int64(k)
	}
	for s := range 6 {
		var vs []string
		for v := range 20 {
			vs = append(vs, fmt.Sprintf("caller-%04d", v*7+s))
		}
		slices.Sort(vs)
		before.Values[int64(29923740+s)] = vs
	}
	after := state.CloneForUpdate(before)
	after.MarkApplied("p:ns/hub/0", 8)
	after.Counts[29923769]++
	vs := after.Values[29923740]
	i, _ := slices.BinarySearch(vs, "caller-0002x")
	after.Values[29923740] = slices.Insert(vs, i, "caller-0002x")
	for b.Loop() {
		if state.Diff(before, after) == nil {
			b.Fatal("no diff")
		}
	}
}

// For value lists kept as sorted sets, Diff's single walk finds what the
// general method (a map of before's members) finds.
func TestDiffSortedSlots(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	list := func() []string {
		var vs []string
		for range r.IntN(8) {
			vs = append(vs, string(rune('a'+r.IntN(10))))
		}
		slices.Sort(vs)
		return slices.Compact(vs)
	}
	for range 5000 {
		old, vs := list(), list()
		d := state.Diff(&state.Entity{Values: map[int64][]string{7: old}}, &state.Entity{Values: map[int64][]string{7: vs}})
		in := map[string]bool{}
		for _, v := range old {
			in[v] = true
		}
		var added, removed []string
		for _, v := range vs {
			if !in[v] {
				added = append(added, v)
			}
			delete(in, v)
		}
		for _, v := range old {
			if in[v] {
				removed = append(removed, v)
			}
		}
		if slices.Equal(old, vs) {
			if d != nil {
				t.Fatalf("%q to %q: a delta for nothing", old, vs)
			}
			continue
		}
		sd := d.Values[7]
		if !sd.Sorted || !slices.Equal(sd.Added, added) || !slices.Equal(sd.Removed, removed) ||
			(sd.Added == nil) != (added == nil) || (sd.Removed == nil) != (removed == nil) {
			t.Fatalf("%q to %q: +%q -%q, want +%q -%q", old, vs, sd.Added, sd.Removed, added, removed)
		}
	}
}

// Statistics lists are trimmed (their smallest entries dropped) by
// whichever instance's update takes them over their bound, while other
// instances add to the same day's lists. Every view folds the same deltas,
// each in its own order (its own at once, the others' when it catches up):
// a trim and an addition to the entry it dropped must end the same in
// either order, or two instances' digests disagree.
func TestTallyTrimAndAddCommute(t *testing.T) {
	base := &state.Entity{Tally: map[string]int64{"s:a": 5, "s:b": 3, "s:c": 1}}
	// Instance A: one more read of b, a new secret d, and the list
	// trimmed: a and c dropped.
	trimmed := base.Clone()
	trimmed.Tally["s:b"]++
	trimmed.Tally["s:d"] = 1
	delete(trimmed.Tally, "s:a")
	delete(trimmed.Tally, "s:c")
	dA := state.Diff(base, trimmed)
	// Instance B, not yet knowing A's trim: two more reads of a.
	added := base.Clone()
	added.Tally["s:a"] += 2
	dB := state.Diff(base, added)

	fold := func(ds ...*state.Delta) *state.Entity {
		e := base.Clone()
		for _, d := range ds {
			state.Merge(e, d.Clone())
		}
		return e
	}
	ab, ba := fold(dA, dB), fold(dB, dA)
	if canon(ab) != canon(ba) {
		t.Fatalf("the views disagree:\n trim, then add: %s\n add, then trim: %s", canon(ab), canon(ba))
	}
	// What each instance saw of a is kept: B's two reads after A dropped it.
	want := map[string]int64{"s:a": 2, "s:b": 4, "s:d": 1}
	if !maps.Equal(ab.Tally, want) {
		t.Errorf("tally %v, want %v", ab.Tally, want)
	}

	// A view that folds the trim before the additions it undid (a
	// third instance, behind on B's stream) holds a negative entry until
	// it folds them, then what the others hold.
	behind := &state.Entity{Tally: map[string]int64{"s:b": 3, "s:c": 1}} // a's reads not folded yet
	state.Merge(behind, dA.Clone())
	if behind.Tally["s:a"] >= 0 {
		t.Fatalf("a trimmed before its additions were folded: %d, want below 0", behind.Tally["s:a"])
	}
	state.Merge(behind, state.Diff(&state.Entity{}, &state.Entity{Tally: map[string]int64{"s:a": 5}}))
	state.Merge(behind, dB.Clone())
	if !maps.Equal(behind.Tally, want) {
		t.Errorf("behind view, caught up: %v, want %v", behind.Tally, want)
	}
}
