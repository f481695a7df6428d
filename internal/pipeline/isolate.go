package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvwatch/kvwatch/internal/audit"
	"github.com/kvwatch/kvwatch/internal/deadletter"
	"github.com/kvwatch/kvwatch/internal/ingest"
	"github.com/kvwatch/kvwatch/internal/state"
)

// A record that can never be stored must not stall its partition: the host
// retries a failed batch for ever. When the next stage fails with an error
// the data caused (state.ErrUnstorable), the pipeline isolates the records
// responsible, dead-letters exactly those (with partition, sequence number,
// record index and raw bytes) and applies the rest; the batch succeeds.
// Any other error (throttling, a server error, a timeout) still fails the
// batch so that the host retries it.
//
// Granularity. State marks input applied per position, and the records of
// one Event Hubs event share a position (audit.Source.Position): applying
// some of an event's records marks the event applied for every entity they
// touch, and the event's other records would then be taken as absorbed
// there. So an event is never split between attempts that could each
// succeed. The batch is bisected at event boundaries, in order; each
// attempt covers a subset of the input of every failed attempt before it
// over the same positions, and the attempts that succeed cover disjoint,
// increasing ranges of positions. When one event fails on its own, its
// records are taken out one at a time, largest first (limits are about
// size), each new attempt holding a subset of the previous one, until the
// rest of the event is stored. So every record finally applied was part of
// every attempt that could have marked its position, and is counted
// exactly once; a record taken out was, at most, counted by entities a
// failed attempt managed to write before it failed (the letter says so).
//
// Cost: a batch with u unstorable events costs about 2u·log2(events)
// attempts more; a batch whose every event is refused (a store that
// refuses everything) costs about twice the number of events.

// maxShrink bounds the attempts spent taking records out of one event that
// fails on its own; after them the records still in it are dead-lettered
// together.
const maxShrink = 8

type unit struct{ lo, hi int } // events[lo:hi] share one position

type isolation struct {
	p       *Pipeline
	b       *ingest.Batch
	events  []audit.Event
	res     Result
	letters []deadletter.Letter
	cause   map[int]error // event index → the error its isolation met
}

// consume hands events to the next stage, isolating unstorable records.
// It returns what the stage reported and the letters of the records taken
// out (already stored in the pipeline's sink).
func (p *Pipeline) consume(ctx context.Context, b *ingest.Batch, events []audit.Event) (Result, int, error) {
	res, err := p.Next.Consume(ctx, events)
	if err == nil || !state.IsUnstorable(err) || ctx.Err() != nil {
		return res, 0, err
	}
	iso := &isolation{p: p, b: b, events: events, cause: map[int]error{}}
	units := unitsOf(events)
	p.Log.Warn().Err(err).Str("partition", b.Partition.PartitionID).Int("events", len(units)).
		Int("records", len(events)).Msg("the store refused part of the batch's data: isolating the records responsible")
	if err := iso.failed(ctx, units, err); err != nil {
		return Result{}, 0, err
	}
	if err := iso.store(ctx); err != nil {
		return Result{}, 0, err
	}
	return iso.res, len(iso.letters), nil
}

// unitsOf cuts events into runs that share one input position.
func unitsOf(events []audit.Event) []unit {
	var us []unit
	for i := 0; i < len(events); {
		j := i + 1
		for j < len(events) && samePosition(&events[i].Source, &events[j].Source) {
			j++
		}
		us = append(us, unit{i, j})
		i = j
	}
	return us
}

func samePosition(a, b *audit.Source) bool {
	if a.HasSequence || b.HasSequence {
		return a.HasSequence == b.HasSequence && a.Partition == b.Partition && a.Sequence == b.Sequence
	}
	return a.File == b.File && a.Line == b.Line && a.Event == b.Event
}

// try runs the stage over sub; it reports whether the stage succeeded, and
// returns an error only when it failed otherwise than by unstorable data.
func (iso *isolation) try(ctx context.Context, sub []audit.Event) (bool, error, error) {
	res, err := iso.p.Next.Consume(ctx, sub)
	if err == nil {
		iso.res.Findings += res.Findings
		return true, nil, nil
	}
	if !state.IsUnstorable(err) || ctx.Err() != nil {
		return false, nil, err
	}
	return false, err, nil
}

// gather returns the events of units, in order.
func (iso *isolation) gather(units []unit) []audit.Event {
	if len(units) == 1 {
		return iso.events[units[0].lo:units[0].hi:units[0].hi]
	}
	n := 0
	for _, u := range units {
		n += u.hi - u.lo
	}
	out := make([]audit.Event, 0, n)
	for _, u := range units {
		out = append(out, iso.events[u.lo:u.hi]...)
	}
	return out
}

// failed isolates within units, which failed together with cause.
func (iso *isolation) failed(ctx context.Context, units []unit, cause error) error {
	if len(units) == 1 {
		return iso.shrink(ctx, units[0], cause)
	}
	half := len(units) / 2
	for _, part := range [][]unit{units[:half], units[half:]} {
		ok, perm, err := iso.try(ctx, iso.gather(part))
		if err != nil {
			return err
		}
		if !ok {
			if err := iso.failed(ctx, part, perm); err != nil {
				return err
			}
		}
	}
	return nil
}

// shrink takes records out of one event that fails on its own, largest
// first, each attempt holding a subset of the one before, until the rest
// is stored or maxShrink attempts were made.
func (iso *isolation) shrink(ctx context.Context, u unit, cause error) error {
	idx := make([]int, 0, u.hi-u.lo)
	for i := u.lo; i < u.hi; i++ {
		idx = append(idx, i)
	}
	suspects := slices.Clone(idx)
	slices.SortStableFunc(suspects, func(a, b int) int {
		return cmp.Compare(size(&iso.events[b]), size(&iso.events[a]))
	})
	for tries := 0; len(idx) > 1 && tries < maxShrink; tries++ {
		out := suspects[tries]
		iso.cause[out] = cause
		idx = slices.DeleteFunc(idx, func(i int) bool { return i == out })
		sub := make([]audit.Event, len(idx))
		for j, i := range idx {
			sub[j] = iso.events[i]
		}
		ok, perm, err := iso.try(ctx, sub)
		if err != nil {
			return err
		}
		if ok {
			for i := u.lo; i < u.hi; i++ {
				if _, out := iso.cause[i]; out {
					iso.letter(i, iso.cause[i], false)
				}
			}
			return nil
		}
		cause = perm
	}
	// Nothing smaller was stored: every record still in the event goes,
	// with those taken out before.
	for i := u.lo; i < u.hi; i++ {
		c, out := iso.cause[i]
		if !out {
			c = cause
		}
		iso.letter(i, c, u.hi-u.lo > 1)
	}
	return nil
}

// size is how much of an event a store keeps: its strings.
func size(e *audit.Event) int {
	c := &e.Caller
	return len(e.ResourceID) + len(e.SubscriptionID) + len(e.ResourceGroup) + len(e.Vault) +
		len(e.Operation) + len(e.OperationVersion) + len(e.ObjectType) + len(e.ObjectName) +
		len(e.ObjectVersion) + len(e.RequestURI) + len(e.ResultType) + len(e.ResultDescription) +
		len(e.CallerIP) + len(e.ClientInfo) + len(e.TLSVersion) + len(e.CorrelationID) +
		len(c.ObjectID) + len(c.AppID) + len(c.UPN) + len(c.Name) + len(c.TenantID) + len(c.Key)
}

// letter dead-letters event i of the batch, which could not be stored.
func (iso *isolation) letter(i int, cause error, together bool) {
	e := &iso.events[i]
	src := e.Source
	reason := "record could not be stored, dead-lettered so that its partition goes on"
	if together {
		reason = "record could not be stored (nor the rest of its event body without it), dead-lettered so that its partition goes on"
	}
	if cause != nil {
		reason += ": " + oneLine(cause.Error(), 400)
	}
	reason += "; it may have been counted by state written before the failure"
	if len(e.Truncated) > 0 {
		reason += fmt.Sprintf("; fields truncated at normalization: %v", e.Truncated)
	}
	l := deadletter.Letter{
		Reason:      reason,
		Partition:   src.Partition,
		Sequence:    src.Sequence,
		HasSequence: src.HasSequence,
		File:        src.File,
		Line:        src.Line,
		Event:       src.Event,
		Record:      src.Record,
	}
	if raw, ok := iso.b.RecordRaw(src); ok {
		l.SetRaw(raw)
	} else if b, err := json.Marshal(e); err == nil {
		// The input is gone (it should not be): keep the normalized event.
		l.Reason += "; raw bytes unavailable, the normalized event is kept instead"
		l.SetRaw(b)
	}
	iso.letters = append(iso.letters, l)
}

// store writes the letters and applies them to the batch's counts.
func (iso *isolation) store(ctx context.Context) error {
	if len(iso.letters) == 0 {
		return nil
	}
	now := time.Now
	if iso.p.Now != nil {
		now = iso.p.Now
	}
	at := now().UTC()
	for i := range iso.letters {
		iso.letters[i].At = at
	}
	p, b := iso.p, iso.b
	for i, l := range iso.letters {
		if i == 5 {
			p.Log.Error().Int("more", len(iso.letters)-i).Msg("more records dead-lettered")
			break
		}
		p.Log.Error().Str("partition", l.Partition).Int64("sequence", l.Sequence).Str("file", l.File).
			Int("line", l.Line).Int("event", l.Event).Int("record", l.Record).Str("reason", l.Reason).
			Msg("record dead-lettered: it could not be stored")
	}
	if p.Letters != nil {
		if err := p.Letters.Put(ctx, iso.letters); err != nil {
			return fmt.Errorf("store %d dead letters of records that could not be stored: %w", len(iso.letters), err)
		}
	}
	b.Stats.DeadLettered += len(iso.letters)
	for i, l := range iso.letters {
		if i == 5 {
			b.Problems = append(b.Problems, fmt.Sprintf("%d more records could not be stored and were dead-lettered", len(iso.letters)-i))
			break
		}
		b.Problems = append(b.Problems, fmt.Sprintf("%s: dead-lettered: %s", where(&l), l.Reason))
	}
	return nil
}

func where(l *deadletter.Letter) string {
	var s string
	switch {
	case l.File != "" && l.Line > 0:
		s = fmt.Sprintf("%s:%d", l.File, l.Line)
	case l.File != "":
		s = l.File
	case l.HasSequence:
		s = fmt.Sprintf("partition %s sequence %d", l.Partition, l.Sequence)
	default:
		s = fmt.Sprintf("event %d", l.Event)
	}
	return s + fmt.Sprintf(" record %d", l.Record)
}

// oneLine keeps an error message to one line of at most n bytes (service
// errors span lines).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
