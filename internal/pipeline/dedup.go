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
// absorbs by itself, so it passes. It remembers the last Size records of
// this instance; duplicates further apart, or split across instances, are
// not caught.
type Dedup struct {
	mu   sync.Mutex
	seed maphash.Seed
	pos  map[uint64]uint64 // fingerprint → position hash
	ring []uint64
	next int
}

// NewDedup returns a deduplicator remembering size records.
func NewDedup(size int) *Dedup {
	return &Dedup{seed: maphash.MakeSeed(), pos: make(map[uint64]uint64, size), ring: make([]uint64, size)}
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

func (d *Dedup) position(s *audit.Source) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(s.Partition)
	h.WriteString(s.File)
	var b [8 * 4]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(s.Sequence))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.Line))
	binary.LittleEndian.PutUint64(b[16:], uint64(s.Event))
	binary.LittleEndian.PutUint64(b[24:], uint64(s.Record))
	h.Write(b[:])
	return h.Sum64()
}

// Filter returns events without the duplicates (reusing the slice) and
// how many it dropped.
func (d *Dedup) Filter(events []audit.Event) ([]audit.Event, int) {
	if d == nil || len(d.ring) == 0 {
		return events, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := events[:0]
	dropped := 0
	for i := range events {
		e := &events[i]
		fp, p := d.fingerprint(e), d.position(&e.Source)
		if seen, ok := d.pos[fp]; ok {
			if seen != p {
				dropped++
				continue
			}
		} else {
			if old := d.ring[d.next]; old != 0 {
				delete(d.pos, old)
			}
			d.ring[d.next] = fp
			d.next = (d.next + 1) % len(d.ring)
			d.pos[fp] = p
		}
		out = append(out, *e)
	}
	return out, dropped
}
