package detect

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/state"
)

// What an engine handed on is remembered per process (handed.go), so an
// engine that starts - a restart, a scale-out, an Event Hubs partition
// moved to this instance - knew nothing of it: its first batch built,
// recorded and handed on again every finding its windows held (about 950
// after a million records of a 300-caller tenant's history: three quarters
// of a second of a fresh handler's first batch, answered by delivery as
// repeats). So, with a store shared by instances and restored by a new one
// (one that defers updates: state.Flusher, the Table journal), the engine
// also marks in state what it handed on, once the sink accepted it: a
// mark entity per rule, group and day of periods, written lazily with the
// partition's next batch (state.Lazy: no transaction of its own; a mark
// lost with a crash costs one more handing on, nothing else). Before it
// evaluates a group, the engine reads the group's marks with the rest of
// the window state (one range, from the view: no round trip) and takes
// them into its memory: a candidate another engine handed on with the same
// count and operations is skipped, exactly as one it handed on itself.
//
// A mark entity (Rule "~handed/" and the rule's ID, the group, Block the
// day of the periods):
//   - Applied maps "period:value" to the count handed on (merged by
//     maximum, as positions are: two instances marking the same finding
//     keep the larger count);
//   - Values[period] lists the operations handed on with the period's
//     findings, each as markOp(value, op), sorted (merged as a set).
//
// Bounds: at most maxMarks (256) findings and maxMarkOps (512) operations a
// day per rule and group, values up to maxMarkValue (256) and operation
// names up to maxMarkOp (128) bytes: under 300 KB an entity, whatever the
// input. A finding, or an operation, past them is not marked: a fresh
// engine hands the finding on once more, and its delivery tells it a
// repeat. Marks go when their
// day, plus the rule's cooldown and state horizon, ended before the
// watermark (PruneBefore).

const (
	markPrefix   = "~handed/"
	markDay      = int64(86400)
	maxMarks     = 256
	maxMarkOps   = 512
	maxMarkValue = 256
	maxMarkOp    = 128
)

// IsMark reports whether k is a mark entity's key: bookkeeping of what was
// handed on, kept only in a store that defers updates (state.Flusher).
func IsMark(k state.Key) bool { return strings.HasPrefix(k.Rule, markPrefix) }

func markEntry(period int64, value string) string {
	return strconv.FormatInt(period, 10) + ":" + value
}

// markOp names an operation handed on with a finding's value: the value's
// length first, so that no two (value, operation) pairs share a name.
func markOp(value, op string) string { return strconv.Itoa(len(value)) + ":" + value + op }

// markRanges appends, for each group, the range of its mark entities a
// batch's candidates may need: the days of its contributions and the day
// before (a window, a day-long one at most, starts before its events).
func (en *Engine) markRanges(order []*groupWork, rs []state.Range) []state.Range {
	if !en.marks {
		return rs
	}
	for _, w := range order {
		lo, hi := w.contribs[0].t, w.contribs[0].t
		for _, c := range w.contribs[1:] {
			lo, hi = min(lo, c.t), max(hi, c.t)
		}
		rs = append(rs, state.Range{Rule: markPrefix + w.rule.ID, Group: w.group,
			From: floorDiv(lo, markDay) - 1, To: floorDiv(hi, markDay)})
	}
	return rs
}

// seedMarks takes the marks among ents into the engine's memory of what
// was handed on.
func (en *Engine) seedMarks(ents map[state.Key]*state.Entity) {
	if !en.marks {
		return
	}
	type mark struct {
		k  state.Key
		ri int
		e  *state.Entity
	}
	var marks []mark // found before the lock: ents holds the windows too
	for k, e := range ents {
		id, ok := strings.CutPrefix(k.Rule, markPrefix)
		if !ok || e == nil {
			continue
		}
		if ri, ok := en.ruleIndex[id]; ok {
			marks = append(marks, mark{k, ri, e})
		}
	}
	if len(marks) == 0 {
		return
	}
	en.handed.Lock()
	defer en.handed.Unlock()
	for _, mk := range marks {
		k, ri, e := mk.k, mk.ri, mk.e
		if en.handed.seeded[k] == e {
			continue
		}
		if en.handed.m == nil || len(en.handed.m)+len(e.Applied) > maxHanded {
			en.handed.m = make(map[handedKey]handedState)
			en.handed.seeded = nil
		}
		if en.handed.seeded == nil {
			en.handed.seeded = map[state.Key]*state.Entity{}
		}
		en.handed.seeded[k] = e
		for entry, count := range e.Applied {
			ps, value, ok := strings.Cut(entry, ":")
			p, err := strconv.ParseInt(ps, 10, 64)
			if !ok || err != nil {
				continue
			}
			hk := handedKey{ri, k.Group, p, value}
			s := en.handed.m[hk]
			s.recorded = true // marked once the sink took it: recorded before
			s.count = max(s.count, count)
			prefix := strconv.Itoa(len(value)) + ":" + value
			var ops []string
			for _, m := range e.Values[p] {
				if op, ok := strings.CutPrefix(m, prefix); ok && len(m) > len(prefix) {
					ops = append(ops, op)
				}
			}
			slices.Sort(ops)
			s.ops = unionSorted(s.ops, ops)
			en.handed.m[hk] = s
		}
	}
}

type markItem struct {
	period, count int64
	value         string
	ops           []string
}

// markHanded records, lazily, that the sink accepted fs (keys[i] is fs[i]'s).
func (en *Engine) markHanded(ctx context.Context, keys []handedKey, fs []finding.Finding) {
	if !en.marks || en.sink == nil || state.StreamOf(ctx) == "" {
		return
	}
	items := map[state.Key][]markItem{}
	var mkeys []state.Key
	for i, k := range keys {
		mk := state.Key{Rule: markPrefix + en.rules[k.ri].ID, Group: k.group, Block: floorDiv(k.period, markDay)}
		if _, ok := items[mk]; !ok {
			mkeys = append(mkeys, mk)
		}
		items[mk] = append(items[mk], markItem{period: k.period, count: max(fs[i].Count, 1), value: k.value, ops: fs[i].Operations})
	}
	if len(mkeys) == 0 {
		return
	}
	if _, err := en.store.Update(state.Lazy(ctx), mkeys, markApply(items)); err != nil {
		// The findings were handed on; a mark not kept costs a fresh
		// engine one more handing on of them, nothing else.
		en.log.Warn().Err(err).Msg("detect: marking findings handed on failed; a restarted instance hands them on again")
	}
}

// markApply returns the update that marks items in their mark entities,
// within the bounds: maxMarks findings and maxMarkOps operations an entity,
// values up to maxMarkValue and operations up to maxMarkOp bytes.
func markApply(items map[state.Key][]markItem) state.ApplyFunc {
	return func(k state.Key, e *state.Entity) bool {
		changed := false
		ops := 0
		for _, slot := range e.Values {
			ops += len(slot)
		}
		for _, it := range items[k] {
			if len(it.value) > maxMarkValue {
				continue
			}
			entry := markEntry(it.period, it.value)
			cur, ok := e.Applied[entry]
			if !ok && len(e.Applied) >= maxMarks {
				continue
			}
			if !ok || it.count > cur {
				if e.Applied == nil {
					e.Applied = map[string]int64{}
				}
				e.Applied[entry] = it.count
				changed = true
			}
			slot := e.Values[it.period]
			n := len(slot)
			for _, op := range it.ops {
				if len(op) > maxMarkOp {
					continue
				}
				m := markOp(it.value, op)
				j, found := slices.BinarySearch(slot, m)
				if found {
					continue
				}
				if ops >= maxMarkOps {
					break
				}
				slot = slices.Insert(slot, j, m)
				ops++
			}
			if len(slot) != n {
				if e.Values == nil {
					e.Values = map[int64][]string{}
				}
				e.Values[it.period] = slot
				changed = true
			}
		}
		return changed
	}
}

// pruneMark reports whether a mark entity can go at watermark wm: its day
// ended, plus the rule's cooldown and state horizon (forgetHandedBefore),
// before wm.
func (en *Engine) pruneMark(k state.Key, wm int64) bool {
	id, _ := strings.CutPrefix(k.Rule, markPrefix)
	keep := int64(blockDur / time.Second) // a rule no longer configured
	if ri, ok := en.ruleIndex[id]; ok {
		keep = en.handedKeep(ri)
	}
	return (k.Block+1)*markDay+keep < wm
}
