package detect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/rules"
)

// BenchmarkDefaultPackFloor measures the least CPU a design that keeps
// per-group state in Go maps could spend on the default pack, on the
// tenant traffic of BenchmarkDefaultPack (same records, same interleaving
// with ingest alone, same cpu-ratio): the floor under issue 11.8's goal.
//
// Per event it does what any such design must: the pack's real matchers
// (only those that may match the event's family and kind, as the
// engine's byClass) and group keys, one map lookup per group_by
// signature, and per matching rule one constant-time update, amortized:
// a ring of bucket counts with a running total (threshold; sequence and
// access_grant `then` events, with the last `match` time; spike's hourly
// counts), a value's last-seen bucket and the ring of values last seen in
// each bucket (distinct, with a day's window in 96 buckets as ruleBucket
// gives it), a seen set (new_value). It leaves out everything else the
// engine does: building, deduplicating and recording findings (hits
// counts the events that found their window at or over its count),
// exactly-once input positions, pruning, state bounds, late records and
// handing state to a store. It is an estimate, not a proof: a design
// that reaches the goal must come close to it, and the engine, which
// does all of it and more, is measured beside it (docs/performance.md,
// "The floor under the default pack").
func BenchmarkDefaultPackFloor(b *testing.B) {
	rs, s := defaultPack(b)
	for _, callers := range []int{300, 3000} {
		b.Run(fmt.Sprintf("tenant-%d", callers), func(b *testing.B) {
			benchPack(b, tenantBodies(b, benchTenant(callers, 300_000)), 1, func() packDetector { return newFloor(rs, s) })
		})
	}
}

// floor is BenchmarkDefaultPackFloor's evaluator.
type floor struct {
	rules  []*rules.Rule
	sig    []int // rule index -> group_by signature
	slot   []int // rule index -> its place among its signature's rules
	perSig []int // rules per signature
	groups []map[string][]floorRule
	bucket int64         // seconds
	cur    [][]floorRule // this event's groups, by signature
	// byClass lists the rules that may match an event of a (family, kind),
	// as the engine's does.
	byClass map[floorClass][]int
	all     []int
	hits    int
}

type floorClass struct {
	f audit.Family
	k audit.Kind
}

// floorRule is one rule's state in one group.
type floorRule struct {
	ring floorRing
	last map[string]int64 // distinct: value -> bucket last seen; new_value: seen
	a    int64            // sequence, access_grant: the last `match` event's time
}

func newFloor(rs []*rules.Rule, s *rules.Settings) *floor {
	f := &floor{bucket: int64(s.Bucket / time.Second)}
	index := map[string]int{}
	for _, r := range rs {
		if r.Off != "" {
			continue
		}
		k := strings.Join(r.GroupBy, ",")
		si, ok := index[k]
		if !ok {
			si = len(index)
			index[k] = si
			f.perSig = append(f.perSig, 0)
		}
		f.rules = append(f.rules, r)
		f.sig = append(f.sig, si)
		f.slot = append(f.slot, f.perSig[si])
		f.perSig[si]++
	}
	for range f.perSig {
		f.groups = append(f.groups, map[string][]floorRule{})
	}
	f.byClass = map[floorClass][]int{}
	for _, fam := range audit.Families {
		for _, k := range audit.Kinds {
			c := floorClass{fam, k}
			f.byClass[c] = []int{}
			for ri, r := range f.rules {
				if r.Match.MayMatch(fam, k) || (r.Then != nil && r.Then.MayMatch(fam, k)) {
					f.byClass[c] = append(f.byClass[c], ri)
				}
			}
		}
	}
	for ri := range f.rules {
		f.all = append(f.all, ri)
	}
	f.cur = make([][]floorRule, len(f.perSig))
	return f
}

func (f *floor) consume(_ testing.TB, events []audit.Event) {
	for i := range events {
		f.event(&events[i])
	}
}

func (f *floor) report(b *testing.B) { b.ReportMetric(float64(f.hits), "hits") }

func (f *floor) event(e *audit.Event) {
	clear(f.cur)
	t := e.Time.Unix()
	cands, ok := f.byClass[floorClass{e.Family, e.Kind}]
	if !ok {
		cands = f.all
	}
	for _, ri := range cands {
		r := f.rules[ri]
		a := r.Matches(e)
		if !a && (r.Then == nil || !r.Then.Match(e)) {
			continue
		}
		sg := f.sig[ri]
		if f.cur[sg] == nil {
			key := r.GroupKey(e)
			g := f.groups[sg][key]
			if g == nil {
				g = make([]floorRule, f.perSig[sg])
				f.groups[sg][key] = g
			}
			f.cur[sg] = g
		}
		st := &f.cur[sg][f.slot[ri]]
		n, bs := int64(r.Window/time.Second)/f.bucket, f.bucket
		if r.Window >= 6*time.Hour {
			n, bs = 96, int64(r.Window/time.Second)/96
		}
		b := t / bs
		switch r.Kind {
		case rules.Threshold:
			st.ring.add(b, 1, n)
			if st.ring.total >= int32(r.Count) {
				f.hits++
			}
		case rules.Sequence, rules.AccessGrant:
			if a {
				st.a = t
				continue
			}
			st.ring.add(b, 1, n)
			if t-st.a < int64(r.Window/time.Second) && st.ring.total >= int32(r.Count) {
				f.hits++
			}
		case rules.Spike:
			st.ring.add(t/3600, 1, 7*24)
		case rules.Distinct:
			v := e.Field(r.Field)
			if v == "" {
				continue
			}
			if st.last == nil {
				st.last = map[string]int64{}
			}
			if old, ok := st.last[v]; ok {
				if old == b {
					continue
				}
				st.ring.add(old, -1, n)
			}
			st.last[v] = b
			st.ring.add(b, 1, n)
			if st.ring.total >= int32(r.Count) {
				f.hits++
			}
		case rules.NewValue:
			v := e.Field(r.Fields[0])
			if st.last == nil {
				st.last = map[string]int64{}
			}
			if _, ok := st.last[v]; !ok {
				st.last[v] = t
			}
		}
	}
}

// floorRing holds the counts of the last n buckets and their total.
type floorRing struct {
	stamp []int64
	n     []int32
	head  int64
	total int32
}

// add adds d to bucket b of a ring of size buckets; buckets the head
// leaves behind drop out of the total (amortized constant time for events
// in time order, as a tenant's are).
func (r *floorRing) add(b int64, d int32, size int64) {
	if r.n == nil {
		r.stamp, r.n = make([]int64, size), make([]int32, size)
		for i := range r.stamp {
			r.stamp[i] = -1
		}
	}
	if b > r.head {
		for x := max(r.head+1, b-size+1); x <= b; x++ {
			r.clearSlot(x, size)
		}
		r.head = b
	}
	if b <= r.head-size {
		return // out of the window
	}
	r.clearSlot(b, size)
	r.n[b%size] += d
	r.total += d
}

func (r *floorRing) clearSlot(b, size int64) {
	if i := b % size; r.stamp[i] != b {
		r.total -= r.n[i]
		r.stamp[i], r.n[i] = b, 0
	}
}
