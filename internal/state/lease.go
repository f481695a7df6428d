package state

import (
	"context"
	"sync"
)

// Copying an entity before changing it is what lets a store hand entities
// out without copying them again: whoever holds one keeps reading it while
// an update replaces it. On a tenant's traffic, where a batch touches
// mostly groups no earlier record of it touched, those copies were a
// quarter of detection's CPU with memory state (docs/performance.md). A
// Memory store skips the copy for an InPlace update of an entity no one
// holds, and knows who holds one by the leases its callers take.

// slot is one version of an entity in a Memory store, with who holds it.
// An update that copies the entity puts the copy in a new slot, so a
// holder's release never counts against a later version.
type slot struct {
	e       *Entity
	readers int32 // leases holding this version
	pinned  bool  // handed out without a lease: held for good
}

// Lease collects the entities a Memory store hands out under a context
// (WithLease) until Release: until then an InPlace update copies them
// instead of changing them. What a store hands out without a lease is held
// for good (the next InPlace update of it copies it: never wrong, only
// slower). Safe for concurrent use; a Lease may be released and used again.
type Lease struct {
	mu   sync.Mutex
	held []leased
}

type leased struct {
	m     *Memory
	slots []*slot
}

// Release gives back everything held under the lease.
func (l *Lease) Release() {
	l.mu.Lock()
	held := l.held
	l.held = nil
	l.mu.Unlock()
	for _, h := range held {
		h.m.mu.Lock()
		for _, s := range h.slots {
			s.readers--
		}
		h.m.mu.Unlock()
	}
}

type leaseKey struct{}

// WithLease says that what a store hands out with ctx is held under l
// until l.Release, and no longer.
func WithLease(ctx context.Context, l *Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

type inPlaceKey struct{}

// InPlace says that the ApplyFunc of an Update with ctx reports every
// change it makes (it returns true whenever it changed the entity), so a
// store may apply it to the stored entity itself, not a copy, when no one
// holds that entity (Memory; the Table journal copies either way, since it
// writes the difference). Without InPlace, a change fn made and did not
// report is dropped with the copy; with it, it may be kept.
func InPlace(ctx context.Context) context.Context {
	return context.WithValue(ctx, inPlaceKey{}, true)
}

// IsInPlace reports whether InPlace marked ctx.
func IsInPlace(ctx context.Context) bool { b, _ := ctx.Value(inPlaceKey{}).(bool); return b }

// holder records, for one call of a Memory store, what it hands out: under
// the context's lease, or pinned for good without one. Its methods run
// under the store's lock.
type holder struct {
	m     *Memory
	l     *Lease
	slots []*slot
}

func (m *Memory) holder(ctx context.Context) holder {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return holder{m: m, l: l}
}

func (h *holder) hold(s *slot) {
	if h.l == nil {
		s.pinned = true
		return
	}
	s.readers++
	h.slots = append(h.slots, s)
}

// done hands the call's slots to the lease.
func (h *holder) done() {
	if h.l == nil || len(h.slots) == 0 {
		return
	}
	h.l.mu.Lock()
	h.l.held = append(h.l.held, leased{h.m, h.slots})
	h.l.mu.Unlock()
}
