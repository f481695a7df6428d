// Package detect evaluates rules over batches of events against state: it
// folds a batch into per-entity contributions, applies them to the store
// once per entity (exactly once per input position), evaluates each
// touched group's condition in event time, and raises findings whose IDs
// make them unique across attempts and instances.
package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/finding"
	"github.com/kvwatch/kvwatch/internal/groupkey"
	"github.com/kvwatch/kvwatch/internal/pipeline"
	"github.com/kvwatch/kvwatch/internal/rules"
	"github.com/kvwatch/kvwatch/internal/state"
)

// Sink receives the findings a batch raised: the delivery stage, or a
// printer. A finding may be handed on more than once (a retried batch, a
// condition that still holds in the next batch of the same period): a
// sink must be idempotent by Finding.ID.
type Sink interface {
	Found(ctx context.Context, findings []finding.Finding) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, findings []finding.Finding) error

// Found implements Sink.
func (f SinkFunc) Found(ctx context.Context, fs []finding.Finding) error { return f(ctx, fs) }

// blockDur is the time span of one window entity.
const blockDur = time.Hour

// Engine evaluates rules. It is safe for concurrent use by batches of
// different partitions: state consistency is the store's job.
type Engine struct {
	rules    []*rules.Rule
	settings *rules.Settings
	store    state.Store
	sink     Sink
	now      func() time.Time
	log      zerolog.Logger
	horizon  map[string]time.Duration
	swept    sweptGroups // when each new_value group's history was last swept

	// byClass lists, for each (family, kind) an event can have, the rules
	// whose match or `then` could accept it: most rules never look at most
	// events.
	byClass map[classKey][]int
	// sig[ri] numbers rule ri's group_by list, so rules grouping by the
	// same fields share one computed key per event.
	sig  []int
	sigs int
	// bucket[ri] is rule ri's bucket width in seconds (ruleBucket).
	bucket []int64

	// handed remembers the findings this engine recorded and handed on
	// (handed.go): a window still over its threshold is not built, encoded,
	// recorded and handed on again at every batch that adds to it.
	handed handedMemo
	// marks: the store is shared and restored by new instances
	// (state.Flusher), and what was handed on is marked in it (marks.go).
	marks bool
	// ruleIndex maps a rule's ID to its index in rules.
	ruleIndex map[string]int
	// routineCounts: the largest counts of routine groups' recent periods
	// (routine.go).
	routineCounts routineCounts
	// distinct indexes long distinct windows' values by group (distinct.go).
	distinct distinctIndexes
	// batchBufs pools batches' contribution arrays (*batchBuf).
	batchBufs sync.Pool

	// progress is the event time seen, which decides when to prune state.
	progress struct {
		mu        sync.Mutex
		watermark int64 // newest event time seen (unix seconds)
		// partitions holds, per Event Hubs partition this process served
		// lately, its newest event time and when it was last heard from:
		// pruning waits for the slowest of them.
		partitions map[string][2]int64
		pruned     int64 // watermark at the last prune
	}
}

// Options configure an engine.
type Options struct {
	Store state.Store
	Sink  Sink
	Now   func() time.Time
	Log   zerolog.Logger
}

// New returns an engine for the rules that are on.
func New(rs []*rules.Rule, s *rules.Settings, o Options) *Engine {
	en := &Engine{settings: s, store: o.Store, sink: o.Sink, now: o.Now, log: o.Log,
		horizon: map[string]time.Duration{}}
	en.batchBufs.New = func() any { return &batchBuf{} }
	if en.now == nil {
		en.now = time.Now
	}
	for _, r := range rs {
		if r.Off != "" {
			continue
		}
		en.rules = append(en.rules, r)
		en.horizon[r.ID] = r.StateHorizon(s)
		en.bucket = append(en.bucket, ruleBucket(r, int64(s.Bucket/time.Second)))
	}
	_, en.marks = o.Store.(state.Flusher)
	en.ruleIndex = make(map[string]int, len(en.rules))
	for ri, r := range en.rules {
		en.ruleIndex[r.ID] = ri
	}
	sigIndex := map[string]int{}
	for _, r := range en.rules {
		k := strings.Join(r.GroupBy, ",")
		if _, ok := sigIndex[k]; !ok {
			sigIndex[k] = len(sigIndex)
		}
		en.sig = append(en.sig, sigIndex[k])
	}
	en.sigs = len(sigIndex)
	en.byClass = map[classKey][]int{}
	for _, f := range audit.Families {
		for _, k := range audit.Kinds {
			ck := classKey{f, k}
			for ri, r := range en.rules {
				if r.Match.MayMatch(f, k) || (r.Then != nil && r.Then.MayMatch(f, k)) {
					en.byClass[ck] = append(en.byClass[ck], ri)
				}
			}
		}
	}
	return en
}

type classKey struct {
	f audit.Family
	k audit.Kind
}

// candidates returns the indices of the rules that may match e.
func (en *Engine) candidates(e *audit.Event) []int {
	if c, ok := en.byClass[classKey{e.Family, e.Kind}]; ok {
		return c
	}
	return en.all()
}

func (en *Engine) all() []int {
	idx := make([]int, len(en.rules))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// Rules returns the rules the engine runs.
func (en *Engine) Rules() []*rules.Rule { return en.rules }

// contrib is one event's contribution to one rule's group.
type contrib struct {
	ev     int32 // index in the batch
	second bool  // sequence: a `then` event
	t      int64 // event time, unix seconds
	stream string
	pos    int64
	value  string // distinct / new_value
}

// pending is a contribution before it is placed with its group's.
type pending struct {
	w *groupWork
	c contrib
}

// batchBuf holds a batch's contributions; Consume takes one from
// Engine.batchBufs and puts it back when it returns: nothing of a batch's
// work outlives Consume (the store applies the batch's update before
// Update returns; the findings copy what they keep).
type batchBuf struct {
	pend []pending
	all  []contrib
}

// putBatchBuf clears buf (its strings are the batch's) and pools it,
// unless one batch made it large.
func (en *Engine) putBatchBuf(buf *batchBuf) {
	if cap(buf.all) > 1<<16 {
		return
	}
	clear(buf.pend)
	clear(buf.all)
	buf.pend, buf.all = buf.pend[:0], buf.all[:0]
	en.batchBufs.Put(buf)
}

type groupWork struct {
	rule     *rules.Rule
	ri       int
	group    string
	contribs []contrib
	n        int      // contributions, counted before they are placed
	ops      []string // the operations of contribs, once windowOps needs them
}

type gkey struct {
	ri    int
	group string
}

// skey names a group of the rules of one group_by signature (Engine.sig).
type skey struct {
	sig   int
	group string
}

// Position returns the input stream and position an event's source gives,
// used to apply input exactly once: audit.Source.Position, which is the
// one place a stream key is made.
func Position(s audit.Source) (string, int64) { return s.Position() }

// Consume implements pipeline.Stage.
func (en *Engine) Consume(ctx context.Context, events []audit.Event) (pipeline.Result, error) {
	ctx = withBatchStream(ctx, events)
	// A batch's work by group: for most rules one map lookup per event and
	// group_by signature (bySig, then by rule index), not one per rule (the
	// default pack's secret reads match ten rules of two signatures);
	// access_grant groups, whose key depends on the grant, by rule and key.
	bySig := map[skey][]*groupWork{}
	work := map[gkey]*groupWork{}
	var order []*groupWork
	buf := en.batchBufs.Get().(*batchBuf)
	defer en.putBatchBuf(buf)
	var newest int64
	partition := ""
	gkeys := make([]string, en.sigs)
	have := make([]bool, en.sigs)
	slots := make([][]*groupWork, en.sigs) // this event's groups' work, by signature
	var streams audit.Streams
	for i := range events {
		e := &events[i]
		clear(have)
		t := e.Time.Unix()
		if e.Source.HasSequence && partition == "" {
			// The batch's stream (namespace, hub and partition: two
			// regions' partition 0 are two streams); a batch is one.
			partition, _ = streams.Position(&e.Source)
		}
		if t > newest {
			newest = t
		}
		var stream string
		var pos int64
		posDone := false
		for _, ri := range en.candidates(e) {
			r := en.rules[ri]
			a := r.Matches(e)
			b := false
			if (r.Kind == rules.Sequence || r.Kind == rules.AccessGrant) && !a && r.Then != nil && r.Then.Match(e) {
				b = true
				for _, x := range r.Except {
					if x.Match(e) {
						b = false
						break
					}
				}
			}
			if !a && !b {
				continue
			}
			if !posDone {
				stream, pos = streams.Position(&e.Source)
				posDone = true
			}
			sg := en.sig[ri]
			if !have[sg] {
				gkeys[sg], have[sg] = r.GroupKey(e), true
				slots[sg] = nil
			}
			// A value to count comes first: an event without one gives its
			// group no work (a group with no contributions is not evaluated).
			c := contrib{ev: int32(i), second: b, t: t, stream: stream, pos: pos}
			switch r.Kind {
			case rules.Distinct:
				if c.value = e.Field(r.Field); c.value == "" {
					continue
				}
			case rules.NewValue:
				if c.value = tuple(e, r.Fields); c.value == "" {
					continue
				}
			case rules.ConfigChange:
				if c.value = configValue(e.Config); c.value == "" {
					continue
				}
			}
			g := gkeys[sg]
			var w *groupWork
			if r.Kind == rules.AccessGrant {
				var ok bool
				if g, ok = grantContrib(e, g, &c); !ok {
					continue
				}
				k := gkey{ri, g}
				if w = work[k]; w == nil {
					w = &groupWork{rule: r, ri: ri, group: g}
					work[k] = w
					order = append(order, w)
				}
			} else {
				if slots[sg] == nil {
					k := skey{sg, g}
					if slots[sg] = bySig[k]; slots[sg] == nil {
						slots[sg] = make([]*groupWork, len(en.rules))
						bySig[k] = slots[sg]
					}
				}
				if w = slots[sg][ri]; w == nil {
					w = &groupWork{rule: r, ri: ri, group: g}
					slots[sg][ri] = w
					order = append(order, w)
				}
			}
			w.n++
			buf.pend = append(buf.pend, pending{w, c})
		}
	}
	// Each group's contributions, in batch order, in one array the batches
	// reuse (batchBufs): not a slice of each group's own, grown as it fills
	// (two thirds of the bytes the rules allocated on the demo's traffic).
	buf.all = slices.Grow(buf.all[:0], len(buf.pend))[:len(buf.pend)]
	off := 0
	for _, w := range order {
		w.contribs = buf.all[off : off : off+w.n]
		off += w.n
	}
	for _, p := range buf.pend {
		p.w.contribs = append(p.w.contribs, p.c)
	}
	// The groups stay in the order the batch first touched them: the same
	// for the same batch, and nothing downstream needs another (the
	// findings are sorted on their own, candidates.Less; the store takes
	// keys in any order). Sorting them by rule and group key was 6% of the
	// rules' CPU on the demo's traffic.

	var found []finding.Finding
	var fkeys []handedKey
	keys, apply := en.plan(order)
	if len(keys) > 0 && partition != "" {
		// The partition's progress goes with its batch's state.
		keys = append(keys, WatermarkKey)
		inner, now := apply, en.now().Unix()
		apply = func(k state.Key, e *state.Entity) bool {
			if k == WatermarkKey {
				return markProgress(e, partition, newest, now)
			}
			return inner(k, e)
		}
	}
	// What the batch reads of the state is held until it is evaluated
	// (state.Lease), and apply reports every change it makes: a store may
	// change an entity no other batch holds in place (state.InPlace), not
	// copy it.
	lease := &state.Lease{}
	defer lease.Release()
	lctx := state.WithLease(ctx, lease)
	var ents map[state.Key]*state.Entity
	if len(keys) > 0 {
		var err error
		if ents, err = en.store.Update(state.InPlace(lctx), keys, apply); err != nil {
			return pipeline.Result{}, fmt.Errorf("update state: %w", err)
		}
	}
	found, fkeys, err := en.evaluate(lctx, order, ents, events)
	if err != nil {
		return pipeline.Result{}, err
	}
	lease.Release()
	// Groups that fire routinely (rules with routine:) are judged against
	// what they learned: routine.go.
	if err := en.judgeRoutine(ctx, found, fkeys); err != nil {
		return pipeline.Result{}, err
	}

	// Every candidate is recorded insert-if-absent; all of them go to the
	// sink, new or not, because a batch retried after the sink failed must
	// hand its findings on again: the sink is idempotent by finding ID.
	// (Candidates this engine handed on before, whose facts did not grow,
	// were skipped before they were built: handed.go.)
	added := 0
	var recs []state.FindingRecord
	for i := range found {
		if en.wasRecorded(fkeys[i]) {
			found[i].Fit()
			continue
		}
		body, err := found[i].Encode() // fitted to finding.MaxBodyBytes
		if err != nil {
			return pipeline.Result{}, fmt.Errorf("encode finding: %w", err)
		}
		recs = append(recs, state.FindingRecord{ID: found[i].ID, Body: body, Period: found[i].Period})
	}
	if len(recs) > 0 {
		// A store that can records the batch's findings together (a
		// period's findings share a Table partition: a transaction or a
		// few, not one request each).
		var ok []bool
		var err error
		if fa, can := en.store.(state.FindingsAdder); can {
			ok, err = fa.AddFindings(ctx, recs)
		} else {
			ok = make([]bool, len(recs))
			for i, r := range recs {
				if ok[i], err = en.store.AddFinding(ctx, r.ID, r.Body); err != nil {
					break
				}
			}
		}
		if err != nil {
			return pipeline.Result{}, fmt.Errorf("record finding: %w", err)
		}
		for _, a := range ok {
			if a {
				added++
			}
		}
	}
	if len(found) > 0 {
		if en.sink != nil {
			if err := en.sink.Found(ctx, found); err != nil {
				en.remember(fkeys, found, false)
				return pipeline.Result{}, fmt.Errorf("hand on findings: %w", err)
			}
		}
		en.remember(fkeys, found, true)
		en.markHanded(ctx, fkeys, found)
	}
	if err := en.maybePrune(ctx, newest, partition); err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Findings: added}, nil
}

// tuple is a new_value rule's value: its fields encoded by groupkey
// (injectively, whatever bytes they hold), "" when every field is empty.
func tuple(e *audit.Event, fields []string) string {
	if len(fields) == 1 {
		return e.Field(fields[0])
	}
	var buf [128]byte
	b := buf[:0]
	empty := true
	for i, f := range fields {
		if i > 0 {
			b = append(b, groupkey.Sep)
		}
		v := e.Field(f)
		if v != "" {
			empty = false
		}
		b = groupkey.AppendValue(b, v)
	}
	if empty {
		return ""
	}
	return string(b)
}

// tupleText is a new_value rule's value as the user reads it: its fields
// joined by " / ".
func tupleText(value string, fields []string) string {
	return strings.Join(groupkey.Split(value, len(fields)), " / ")
}

// WatermarkKey holds every input stream's progress (Seen, by stream:
// First the newest event time a batch of it applied, Last when, in wall
// clock seconds), written with each batch's state: every instance sharing
// the state sees the partitions the others read, and none prunes state a
// partition behind still needs. Streams not heard from for a day are
// forgotten (the entity is bounded by the partitions read lately).
var WatermarkKey = state.Key{Rule: "~progress", Block: state.BlockMeta}

// markProgress records that partition applied events up to newest at now.
func markProgress(e *state.Entity, partition string, newest, now int64) bool {
	changed := false
	for p, s := range e.Seen {
		if now-s.Last > 24*3600 {
			delete(e.Seen, p)
			changed = true
		}
	}
	cur, ok := e.Seen[partition]
	if ok && cur.First >= newest && now-cur.Last < 60 {
		return changed // heard from within the minute, no further on
	}
	if e.Seen == nil {
		e.Seen = map[string]state.Span{}
	}
	e.Seen[partition] = state.Span{First: max(cur.First, newest), Last: max(cur.Last, now)}
	return true
}

// maybePrune drops state older than each rule's horizon behind the newest
// event seen, at most once per bucket of event-time progress.
func (en *Engine) maybePrune(ctx context.Context, newest int64, partition string) error {
	en.progress.mu.Lock()
	if newest > en.progress.watermark {
		en.progress.watermark = newest
	}
	wm := en.progress.watermark
	// A partition behind the others (a slow one, one retrying a batch)
	// holds pruning back, as long as it was heard from in the last
	// ten minutes: state its late records need is kept for it.
	if partition != "" {
		if en.progress.partitions == nil {
			en.progress.partitions = map[string][2]int64{}
		}
		p := en.progress.partitions[partition]
		en.progress.partitions[partition] = [2]int64{max(p[0], newest), en.now().Unix()}
	}
	now := en.now().Unix()
	for id, p := range en.progress.partitions {
		switch {
		case now-p[1] > 600:
			delete(en.progress.partitions, id)
		case p[0] < wm:
			wm = p[0]
		}
	}
	step := int64(blockDur / time.Second)
	due := wm-en.progress.pruned >= step
	en.progress.mu.Unlock()
	if !due {
		return nil
	}
	// The partitions other instances read (the state is shared through
	// the store): one behind holds pruning back as a partition of this
	// instance would, or its late records would find their state gone.
	ents, err := en.store.Get(ctx, []state.Key{WatermarkKey})
	if err != nil {
		return fmt.Errorf("prune state: %w", err)
	}
	if e := ents[WatermarkKey]; e != nil {
		for _, p := range e.Seen {
			if now-p.Last <= 600 && p.First < wm {
				wm = p.First
			}
		}
	}
	en.progress.mu.Lock()
	due = wm-en.progress.pruned >= step
	if due {
		en.progress.pruned = wm
	}
	en.progress.mu.Unlock()
	if !due {
		return nil
	}
	en.forgetHandedBefore(wm)
	_, err = en.PruneBefore(ctx, time.Unix(wm, 0))
	return err
}

// PruneBefore deletes the window state no rule needs any more when the
// newest event is at wm: blocks that ended more than the rule's horizon
// (window plus lateness, or its history) before wm. It returns how many
// entities it deleted.
func (en *Engine) PruneBefore(ctx context.Context, wm time.Time) (int, error) {
	n, err := en.store.Prune(ctx, func(k state.Key) bool {
		if IsMark(k) {
			return en.pruneMark(k, wm.Unix())
		}
		h, ok := en.horizon[k.Rule]
		if !ok || k.Block < 0 {
			return false
		}
		end := blockEnd(en.ruleKind(k.Rule), k.Block)
		return end < wm.Unix()-int64(h/time.Second)
	})
	if err != nil {
		return n, fmt.Errorf("prune state: %w", err)
	}
	return n, nil
}

func (en *Engine) ruleKind(id string) rules.Kind {
	if ri, ok := en.ruleIndex[id]; ok {
		return en.rules[ri].Kind
	}
	return ""
}

// blockEnd is the end (unix seconds) of a block of a rule kind.
func blockEnd(k rules.Kind, block int64) int64 {
	if k == rules.Spike {
		return (block + 1) * 86400
	}
	return (block + 1) * int64(blockDur/time.Second)
}

// withBatchStream names the batch's input stream for the store, unless
// the caller did: a store that logs per stream keeps one writer per
// stream at a time.
func withBatchStream(ctx context.Context, events []audit.Event) context.Context {
	if state.StreamOf(ctx) == "" {
		if s := audit.BatchStream(events); s != "" {
			return state.WithStream(ctx, s)
		}
	}
	return ctx
}
