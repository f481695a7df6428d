// Package state holds detection state behind a small interface: entities
// keyed by (rule, group, block), each recording which input it has already
// absorbed, so that a store — in memory here, Table Storage later — can
// apply a batch exactly once however often the batch is delivered.
package state

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"
)

// Key names one entity: a rule, a group of that rule, and a block (a time
// block index, or one of the special blocks below).
type Key struct {
	Rule  string
	Group string
	Block int64
}

// Special blocks.
const (
	// BlockMeta holds a group's first event time and its seen values.
	BlockMeta int64 = -1
)

// Entity is the state of one key. Its fields are used as each rule kind
// needs; all are optional.
type Entity struct {
	// Applied records, per input stream (an Event Hubs partition, a file),
	// the highest position whose events this entity has absorbed. Applying
	// input at or below it again changes nothing.
	Applied map[string]int64 `json:"a,omitempty"`
	// Counts and Counts2 count events per bucket (a unix-time bucket index).
	Counts  map[int64]int64 `json:"c,omitempty"`
	Counts2 map[int64]int64 `json:"c2,omitempty"`
	// Values holds distinct values per bucket, sorted, capped.
	Values map[int64][]string `json:"v,omitempty"`
	// Seen maps a value to the first (unix seconds) of its current run of
	// appearances and the last time it was seen.
	Seen map[string]Span `json:"s,omitempty"`
	// First is the earliest event time (unix seconds) absorbed; 0 if none.
	First int64 `json:"f,omitempty"`
	// Tally counts occurrences per string (statistics: top callers, IPs,
	// secrets); its users bound its size.
	Tally map[string]int64 `json:"t,omitempty"`
}

// Span is a run of appearances of a value.
type Span struct {
	First int64 `json:"f"`
	Last  int64 `json:"l"`
}

// Clone returns a deep copy.
func (e *Entity) Clone() *Entity {
	if e == nil {
		return nil
	}
	c := &Entity{
		Applied: maps.Clone(e.Applied),
		Counts:  maps.Clone(e.Counts),
		Counts2: maps.Clone(e.Counts2),
		Seen:    maps.Clone(e.Seen),
		First:   e.First,
		Tally:   maps.Clone(e.Tally),
	}
	if e.Values != nil {
		c.Values = make(map[int64][]string, len(e.Values))
		for k, v := range e.Values {
			c.Values[k] = slices.Clone(v)
		}
	}
	return c
}

// Absorbed reports whether input at position pos of stream was already
// applied. Input without a stream ("") is never considered applied.
func (e *Entity) Absorbed(stream string, pos int64) bool {
	if stream == "" {
		return false
	}
	p, ok := e.Applied[stream]
	return ok && pos <= p
}

// MaxFileMarks bounds the replayed files an entity remembers positions
// for (Event Hubs partitions are bounded by the hubs read: 32 per Standard
// hub). Past it, the file marks that sort first are forgotten: replaying
// such a file again counts it again. Replays of that many files into the
// same state are a backfill, not a redelivery.
const MaxFileMarks = 64

// MarkApplied raises the stream's applied position to pos.
func (e *Entity) MarkApplied(stream string, pos int64) {
	if stream == "" {
		return
	}
	if e.Applied == nil {
		e.Applied = make(map[string]int64, 1)
	}
	p, ok := e.Applied[stream]
	if !ok || pos > p {
		e.Applied[stream] = pos
	}
	if !ok && strings.HasPrefix(stream, "f:") && len(e.Applied) > MaxFileMarks {
		var files []string
		for s := range e.Applied {
			if strings.HasPrefix(s, "f:") {
				files = append(files, s)
			}
		}
		if len(files) > MaxFileMarks {
			slices.Sort(files)
			for _, s := range files[:len(files)-MaxFileMarks] {
				if s != stream {
					delete(e.Applied, s)
				}
			}
		}
	}
}

// ApplyFunc changes one entity (never nil: a missing entity starts empty)
// and reports whether it changed anything. A store may call it more than
// once for the same key (after a concurrent write) with fresh state, so it
// must depend only on its arguments. It changes a copy that replaces the
// entity if it reports a change, or, under InPlace, maybe the entity itself.
type ApplyFunc func(k Key, e *Entity) (changed bool)

// Store is where detection state lives.
type Store interface {
	// Update applies fn to the entity of every key, atomically per entity,
	// and returns the entities as written (or as read, where fn changed
	// nothing). The caller must not modify what is returned. A key whose
	// block was pruned is closed: fn is not applied to it and it is absent
	// from the result (a record later than the prune's horizon is not
	// counted; the memory store and the Table journal close them).
	Update(ctx context.Context, keys []Key, fn ApplyFunc) (map[Key]*Entity, error)
	// Get returns the entities that exist among keys.
	Get(ctx context.Context, keys []Key) (map[Key]*Entity, error)
	// AddFinding records a finding ID and its encoded body if the ID is
	// new; added is false if it was recorded before (by another attempt
	// or another instance).
	AddFinding(ctx context.Context, id string, body []byte) (added bool, err error)
	// Prune deletes the entities with a time block (Block >= 0) for which
	// drop returns true, and reports how many it deleted. Special blocks
	// (negative) are never offered to drop.
	Prune(ctx context.Context, drop func(Key) bool) (int, error)
}

type streamKey struct{}

// WithStream says which input stream (an Event Hubs partition, a file:
// audit.Source.Position's stream) the updates made with ctx apply. A store
// that logs updates per stream (tablestore.Journal) writes them to that
// stream's log, whose single writer at a time makes applying the stream's
// positions exactly once hold across instances.
func WithStream(ctx context.Context, stream string) context.Context {
	return context.WithValue(ctx, streamKey{}, stream)
}

// StreamOf returns the stream WithStream set, or "".
func StreamOf(ctx context.Context) string {
	s, _ := ctx.Value(streamKey{}).(string)
	return s
}

type writeOnlyKey struct{}

// WriteOnly says that the caller of Update with ctx does not need other
// writers' changes in what Update returns (statistics, which nothing
// evaluates at once): a store that reads other streams' logs after writing
// (tablestore.Journal) may skip that read.
func WriteOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, writeOnlyKey{}, true)
}

// IsWriteOnly reports whether WriteOnly marked ctx.
func IsWriteOnly(ctx context.Context) bool {
	b, _ := ctx.Value(writeOnlyKey{}).(bool)
	return b || IsDeferred(ctx)
}

type deferredKey struct{}

// Deferred says that the caller of Update with ctx lets a store that
// implements Flusher write the update with the next write of ctx's stream
// (state.WithStream), and calls Flush before it counts on the update
// being stored: a batch's statistics go in the same Table transaction as
// its detection state, not one of their own. What Update returns is the
// entities as the update made them. A store that cannot defer writes at
// once. Deferred implies WriteOnly.
func Deferred(ctx context.Context) context.Context {
	return context.WithValue(ctx, deferredKey{}, true)
}

// IsDeferred reports whether Deferred marked ctx.
func IsDeferred(ctx context.Context) bool { b, _ := ctx.Value(deferredKey{}).(bool); return b }

type lazyKey struct{}

// Lazy marks a Deferred update that may wait for the next write of ctx's
// stream however late it comes: Flush leaves it for that write (unless
// too many wait), and one that is never written loses nothing its caller
// needs. The engine's record of what it handed on (detect/handed.go) is
// one: written with the partition's next batch, not in a transaction of
// its own. Lazy implies Deferred; what Update returns for it may hold
// nothing (the caller wants nothing back).
func Lazy(ctx context.Context) context.Context {
	return context.WithValue(Deferred(ctx), lazyKey{}, true)
}

// IsLazy reports whether Lazy marked ctx.
func IsLazy(ctx context.Context) bool { b, _ := ctx.Value(lazyKey{}).(bool); return b }

// Flusher is implemented by stores that defer updates (Deferred).
type Flusher interface {
	// Flush writes the updates deferred for ctx's stream, if any, but
	// for Lazy ones alone (those it writes when others are due, or when
	// too many wait). An update deferred and then dropped — the write
	// that was to carry it failed — is not written: it failed with that
	// write, whose caller's batch fails and is retried.
	Flush(ctx context.Context) error
}

// Range names blocks From to To (inclusive) of one rule's group.
type Range struct {
	Rule, Group string
	From, To    int64
}

// RangeGetter is implemented by stores that find a group's entities in a
// range of blocks at the cost of the entities that exist, not of the
// blocks named: a day-long window names 49 hourly blocks of its group,
// most of them absent, and a batch names such ranges for hundreds of
// groups.
type RangeGetter interface {
	// GetRanges returns the entities that exist in the ranges.
	GetRanges(ctx context.Context, rs []Range) (map[Key]*Entity, error)
}

// FindingRecord is a finding to record: its ID, its encoded body, and the
// start of its period (a store may keep a period's findings together).
type FindingRecord struct {
	ID     string
	Body   []byte
	Period time.Time
}

// FindingsAdder is implemented by stores that record several findings in
// fewer requests than one each. AddFindings reports, per record, whether
// its ID was new, exactly as AddFinding would.
type FindingsAdder interface {
	AddFindings(ctx context.Context, recs []FindingRecord) ([]bool, error)
}
