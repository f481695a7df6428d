package state

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is an in-memory Store: for replay, tests and as the fallback when
// no durable store is configured. What it hands out is shared with it and
// must not be changed (Store); an update copies an entity before changing
// it, as a durable store would, but for an InPlace update of an entity no
// one holds (Lease).
type Memory struct {
	mu       sync.Mutex
	entities map[Key]*slot
	index    BlockIndex // by rule and group (GetRanges)
	// closed are the keys pruned (when, unix seconds), closedQ the same in
	// order: a pruned block is not re-created by a later update (a record
	// later than the prune's horizon, redelivered from an old checkpoint),
	// as the Table journal's views do not (its tombstones, kept as long):
	// replay with either store finds the same. Kept for ClosedFor, at most
	// MaxClosed.
	closed  map[Key]int64
	closedQ []Key
	// Now is the clock closed keys are kept by (nil: time.Now).
	Now func() time.Time
	// findings are the finding IDs recorded (the oldest first in
	// findingQ), bodies the last recorded bodies; both bounded
	// (MaxFindings, MaxFindingBodies).
	findings map[string]struct{}
	findingQ []string
	bodies   [][]byte

	// Counters, for benchmarks and tests.
	Reads, Writes int64
}

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{entities: map[Key]*slot{}, findings: map[string]struct{}{}}
}

// MaxFindings bounds the finding IDs the store remembers, to tell a new
// finding from one recorded before (about 100 bytes each with its map
// entry and queue slot: 10 MB at the bound), and MaxFindingBodies the
// bodies it keeps for Findings. Past either the oldest are forgotten: the
// store lives as long as its process (serve without Table Storage, replay)
// and must not grow with it. A finding forgotten and raised again is
// recorded again; detection raises an ID again only while its period is in
// a window (the rule's cooldown and horizon), long after which 100,000
// newer findings are rare.
const (
	MaxFindings      = 100_000
	MaxFindingBodies = 1_000
)

// ClosedFor and MaxClosed bound the pruned keys a store remembers as
// closed (the memory store here, the Table journal alike): for an hour of
// wall clock, at most 100,000 (about 20 MB); past either the oldest are
// forgotten, and a change to a block so old re-creates it.
const (
	ClosedFor = time.Hour
	MaxClosed = 100_000
)

// drop deletes k, from the index too, and closes it.
func (m *Memory) drop(k Key, now int64) {
	delete(m.entities, k)
	m.index.Remove(k)
	if m.closed == nil {
		m.closed = map[Key]int64{}
	}
	m.closed[k] = now
	m.closedQ = append(m.closedQ, k)
}

// forgetClosed forgets the closed keys older than ClosedFor, and the
// oldest past MaxClosed.
func (m *Memory) forgetClosed(now int64) {
	cut := now - int64(ClosedFor/time.Second)
	n := 0
	for n < len(m.closedQ) && (len(m.closedQ)-n > MaxClosed || m.closed[m.closedQ[n]] < cut) {
		delete(m.closed, m.closedQ[n])
		n++
	}
	if n > 0 {
		m.closedQ = append(m.closedQ[:0:0], m.closedQ[n:]...)
	}
}

// Update implements Store. An InPlace update changes an entity no one
// holds in place; every other update changes a copy, which replaces the
// entity (copy on write: whoever holds the old one keeps reading it).
func (m *Memory) Update(ctx context.Context, keys []Key, fn ApplyFunc) (map[Key]*Entity, error) {
	inPlace := IsInPlace(ctx)
	h := m.holder(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Key]*Entity, len(keys))
	for _, k := range keys {
		if _, done := out[k]; done {
			continue
		}
		if _, closed := m.closed[k]; closed {
			continue // pruned: a late change is not applied
		}
		m.Reads++
		cur := m.entities[k]
		var e *Entity
		own := inPlace && cur != nil && cur.readers == 0 && !cur.pinned
		if own {
			e = cur.e
		} else if cur != nil {
			e = CloneForUpdate(cur.e)
		} else {
			e = &Entity{}
		}
		// What is returned is shared with the store: the interface forbids
		// callers to modify it, and the store changes in place only what no
		// one holds, so no second copy is needed.
		if fn(k, e) {
			m.Writes++
			s := cur
			if !own {
				s = &slot{e: e}
				m.entities[k] = s
				if cur == nil {
					m.index.Add(k)
				}
			}
			out[k] = e
			h.hold(s)
			continue
		}
		if cur != nil {
			out[k] = cur.e
			h.hold(cur)
		} else {
			out[k] = e // not stored: no one else has it
		}
	}
	h.done()
	return out, nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, keys []Key) (map[Key]*Entity, error) {
	h := m.holder(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[Key]*Entity, len(keys))
	for _, k := range keys {
		m.Reads++
		if s, ok := m.entities[k]; ok {
			out[k] = s.e // shared, read-only: see Update
			h.hold(s)
		}
	}
	h.done()
	return out, nil
}

// GetRanges implements RangeGetter.
func (m *Memory) GetRanges(ctx context.Context, rs []Range) (map[Key]*Entity, error) {
	h := m.holder(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[Key]*Entity{}
	for _, r := range rs {
		m.index.Keys(r, func(k Key) {
			m.Reads++
			s := m.entities[k]
			out[k] = s.e
			h.hold(s)
		})
	}
	h.done()
	return out, nil
}

// AddFinding implements Store.
func (m *Memory) AddFinding(_ context.Context, id string, body []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.findings[id]; ok {
		return false, nil
	}
	m.findings[id] = struct{}{}
	m.findingQ = append(m.findingQ, id)
	if len(m.findingQ) > MaxFindings {
		// Forget the oldest tenth at once: the queue is copied once per
		// MaxFindings/10 findings, not at every one.
		n := len(m.findingQ) - MaxFindings*9/10
		for _, old := range m.findingQ[:n] {
			delete(m.findings, old)
		}
		m.findingQ = append(m.findingQ[:0:0], m.findingQ[n:]...)
	}
	m.bodies = append(m.bodies, append([]byte(nil), body...))
	if len(m.bodies) > MaxFindingBodies {
		n := len(m.bodies) - MaxFindingBodies*9/10
		clear(m.bodies[:n])
		m.bodies = append(m.bodies[:0:0], m.bodies[n:]...)
	}
	return true, nil
}

// AddFindings implements FindingsAdder.
func (m *Memory) AddFindings(ctx context.Context, recs []FindingRecord) ([]bool, error) {
	out := make([]bool, len(recs))
	for i, r := range recs {
		out[i], _ = m.AddFinding(ctx, r.ID, r.Body)
	}
	return out, nil
}

// Prune implements Store.
func (m *Memory) Prune(_ context.Context, drop func(Key) bool) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	clock := m.Now
	if clock == nil {
		clock = time.Now
	}
	now := clock().Unix()
	for k := range m.entities {
		if k.Block >= 0 && drop(k) {
			m.drop(k, now)
			n++
		}
	}
	m.forgetClosed(now)
	return n, nil
}

// Len returns the number of entities held.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entities)
}

// Findings returns the bodies of the findings recorded last, in the order
// they were added: all of them up to MaxFindingBodies, then at least the
// last nine tenths of that.
func (m *Memory) Findings() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.bodies)
}

// CloneForUpdate copies e for an ApplyFunc or Merge: its maps are copied,
// the value slices of Values are shared, clipped to their length, so that
// a writer that adds to one (append, slices.Insert) makes a new array.
// Every writer of Values does (detect, stats, Merge); none assigns an
// element of a slice it did not make, or sorts or deletes from one in
// place (Merge clones before it does). With many buckets of distinct
// values this is most of what copying an entity cost. Use Clone for a copy
// whose slices may be changed in place.
func CloneForUpdate(e *Entity) *Entity {
	if e == nil || e.Values == nil {
		return e.Clone()
	}
	vs := e.Values
	e2 := *e
	e2.Values = nil
	c := e2.Clone()
	c.Values = make(map[int64][]string, len(vs))
	for k, v := range vs {
		c.Values[k] = slices.Clip(v)
	}
	return c
}
