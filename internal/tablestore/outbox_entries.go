package tablestore

import (
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/kvwatch/kvwatch/internal/delivery"
)

// entryCacheBytes bounds the memory of the entries an Outbox keeps decoded
// (estimated from their JSON's length: memSize).
const entryCacheBytes = 8 << 20

// entryCache keeps the outbox entries an instance decoded last, by row and
// ETag. A due list is read again at every round of a sender, and while
// alerts wait (a group wait, an inhibition's wait, a receiver that is
// down) the same entries are listed round after round: inflating and
// decoding each of them every time was most of a Table-state handler's
// delivery CPU in an alert storm (a backlog of 500-650 due entries read
// about 30 times over). An ETag names one content of a row, so an entry
// found under the ETag it was decoded with is the same entry.
//
// What it hands out shares the decoded alert (delivery.Entry.Copy): the
// receivers' states, which senders change, are copied each time.
type entryCache struct {
	mu    sync.Mutex
	byRow map[string]cachedEntry
	order []string // rows, oldest first; a row may appear more than once
	bytes int
}

type cachedEntry struct {
	etag  string
	e     *delivery.Entry
	bytes int
}

// get returns a copy of the entry decoded from row under etag, if kept.
func (c *entryCache) get(row, etag string) (*delivery.Entry, bool) {
	if etag == "" {
		return nil, false
	}
	c.mu.Lock()
	it, ok := c.byRow[row]
	c.mu.Unlock()
	if !ok || it.etag != etag {
		return nil, false
	}
	e := it.e.Copy()
	e.Version = etag
	return e, true
}

// put keeps e, decoded from row under etag (size: its estimated memory), and
// forgets the oldest entries beyond entryCacheBytes. e must not be
// changed afterwards: put keeps a copy of its receivers' states.
func (c *entryCache) put(row, etag string, e *delivery.Entry, size int) {
	if etag == "" || size > entryCacheBytes/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byRow == nil {
		c.byRow = map[string]cachedEntry{}
	}
	if old, ok := c.byRow[row]; ok {
		c.bytes -= old.bytes
	}
	c.byRow[row] = cachedEntry{etag: etag, e: e.Copy(), bytes: size}
	c.order = append(c.order, row)
	c.bytes += size
	n := 0
	for c.bytes > entryCacheBytes && n < len(c.order) {
		r := c.order[n]
		n++
		if it, ok := c.byRow[r]; ok {
			c.bytes -= it.bytes
			delete(c.byRow, r)
		}
	}
	// A row put again is in order twice; the order is rebuilt when it
	// holds twice as many rows as are kept.
	if n > 0 || len(c.order) > 2*len(c.byRow)+64 {
		kept := make([]string, 0, len(c.byRow))
		seen := make(map[string]bool, len(c.byRow))
		for _, r := range c.order[n:] {
			if _, ok := c.byRow[r]; ok && !seen[r] {
				seen[r] = true
				kept = append(kept, r)
			}
		}
		c.order = kept
	}
}

// keep keeps e, just written to partition pk under its new Version (an
// entity of about stored bytes), so that the next due list reads it from
// memory: the entries an instance adds, claims and records the outcome of
// are most of what its senders list. Its receivers' states are copied.
func (o *Outbox) keep(pk string, e *delivery.Entry, stored int) {
	if e.Version == "" || e.Alert == nil {
		return
	}
	o.entries.put(pk+"/"+rkEntry+outboxKey(e.Alert.ID), e.Version, e, memSize(entryInflation*stored))
}

// entryInflation estimates how much larger an entry's JSON is than its
// stored (deflated, base64) entity: alerts' findings deflate about
// fivefold, and base64 adds a third.
const entryInflation = 4

// entityBytes is about the size of an entity of props: its binary chunks.
func entityBytes(props map[string]any) int {
	n := 0
	for _, v := range props {
		if b, ok := v.(aztables.EDMBinary); ok {
			n += len(b)
		}
	}
	return n
}
