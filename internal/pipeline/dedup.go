package pipeline

import (
	"encoding/binary"
	"hash/maphash"
	"sync"

	"github.com/kvwatch/kvwatch/internal/audit"
)

// Dedup drops records Azure Monitor delivered twice: the same record (same
// time, correlation id, operation, vault, caller, object and status)
// arriving again at a different input position. A record seen again at
// the same position is a redelivery of the same event, which state
// absorbs by itself, so it passes.
//
// It works in two steps, as Alertmanager's notification log does: Check
// before a batch is applied drops the duplicates, and Record after the
// batch was applied remembers its records. A batch that fails is not
// remembered (Release forgets what Check reserved), so when the host
// delivers it again — from an earlier sequence number, cut differently —
// every record of it is applied. A record's position is the one
// audit.Source.Position gives (an Event Hubs partition of one hub and the
// event's sequence number, or a file and line) and the record's index in
// its event: it does not depend on how the batch was cut.
//
// While a batch is in flight its records are reserved: a copy at another
// position in a batch checked meanwhile (another partition) is dropped,
// since the batch that holds the first copy applies it, now or when it
// is delivered again.
//
// It remembers the last Size applied records of this instance; duplicates
// further apart, or split across instances, are not caught.
type Dedup struct {
	mu      sync.Mutex
	seed    maphash.Seed
	pos     map[uint64]uint64 // fingerprint → position hash, of applied records
	ring    []uint64
	next    int
	pending map[uint64]uint64 // fingerprint → position hash, reserved by batches in flight
}

// NewDedup returns a deduplicator remembering size records.
func NewDedup(size int) *Dedup {
	return &Dedup{seed: maphash.MakeSeed(), pos: make(map[uint64]uint64, size), ring: make([]uint64, size),
		pending: map[uint64]uint64{}}
}

// Checked is what Check reserved for one batch: hand it to Record once the
// batch was applied, or to Release if it was not.
type Checked struct {
	fps, pos []uint64
}

func (d *Dedup) fingerprint(e *audit.Event) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(e.Time.UnixNano()))
	h.Write(b[:])
	for _, s := range [...]string{e.CorrelationID, e.Operation, e.ResourceID, e.Vault, e.Caller.Key,
		e.CallerIP, e.ObjectType, e.ObjectName, e.ObjectVersion, e.RequestURI} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	binary.LittleEndian.PutUint64(b[:], uint64(e.HTTPStatus))
	h.Write(b[:])
	return h.Sum64()
}

// position hashes where a record was read: its stream and position in it
// (audit.Source.Position) and its index in its event. Only a source with
// no stream at all (an invocation without sequence numbers) falls back
// on the event's index within the invocation.
func (d *Dedup) position(streams *audit.Streams, s *audit.Source) uint64 {
	stream, pos := streams.Position(s)
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(stream)
	h.WriteByte(0)
	var b [8 * 3]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(pos))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.Record))
	if stream == "" {
		binary.LittleEndian.PutUint64(b[16:], uint64(s.Event))
	}
	h.Write(b[:])
	return h.Sum64()
}

// Check returns events without the duplicates (reusing the slice), how
// many it dropped, and what it reserved for the batch. It records
// nothing: call Record once the batch was applied, Release if it was not.
func (d *Dedup) Check(events []audit.Event) ([]audit.Event, int, Checked) {
	if d == nil || len(d.ring) == 0 {
		return events, 0, Checked{}
	}
	var streams audit.Streams
	c := Checked{fps: make([]uint64, 0, len(events)), pos: make([]uint64, 0, len(events))}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := events[:0]
	dropped := 0
	for i := range events {
		e := &events[i]
		fp, p := d.fingerprint(e), d.position(&streams, &e.Source)
		if seen, ok := d.pos[fp]; ok {
			if seen != p {
				dropped++
				continue
			}
		} else if seen, ok := d.pending[fp]; ok {
			if seen != p {
				dropped++
				continue
			}
		} else {
			d.pending[fp] = p
			c.fps, c.pos = append(c.fps, fp), append(c.pos, p)
		}
		out = append(out, *e)
	}
	return out, dropped, c
}

// Record remembers the records of a batch Check passed, once the batch
// was applied.
func (d *Dedup) Record(c Checked) {
	if d == nil || len(c.fps) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, fp := range c.fps {
		if d.pending[fp] == c.pos[i] {
			delete(d.pending, fp)
		}
		if _, ok := d.pos[fp]; ok {
			continue
		}
		if old := d.ring[d.next]; old != 0 {
			delete(d.pos, old)
		}
		d.ring[d.next] = fp
		d.next = (d.next + 1) % len(d.ring)
		d.pos[fp] = c.pos[i]
	}
}

// Release forgets what Check reserved for a batch that was not applied.
func (d *Dedup) Release(c Checked) {
	if d == nil || len(c.fps) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, fp := range c.fps {
		if d.pending[fp] == c.pos[i] {
			delete(d.pending, fp)
		}
	}
}

// Filter is Check and Record at once, for input applied as soon as it is
// filtered (tests, tools); the pipeline uses Check and Record.
func (d *Dedup) Filter(events []audit.Event) ([]audit.Event, int) {
	out, n, c := d.Check(events)
	d.Record(c)
	return out, n
}
