package tablestore

import (
	"encoding/base64"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvwatch/kvwatch/internal/delivery"
)

// entryCacheBytes bounds the memory of the entries an Outbox keeps decoded
// (estimated from their JSON's length: memSize), and entryCacheEntries
// their number.
const (
	entryCacheBytes   = 8 << 20
	entryCacheEntries = 4096
)

// entryCache keeps the outbox entries an instance decoded or wrote last,
// by row and ETag. A due list is read again at every round of a sender,
// and while alerts wait (a group wait, an inhibition's wait, a receiver
// that is down) the same entries are listed round after round: inflating
// and decoding each of them every time was most of a Table-state
// handler's delivery CPU in an alert storm (a backlog of 500-650 due
// entries read about 30 times over). An ETag names one content of a row,
// so an entry found under the ETag it was decoded with is the same entry.
//
// What it hands out shares the decoded alert (delivery.Entry.Copy): the
// receivers' states, which senders change, are copied each time.
type entryCache struct {
	c *cache[string, cachedEntry]
}

type cachedEntry struct {
	etag string
	e    *delivery.Entry
}

func newEntryCache() *entryCache {
	return &entryCache{c: newCache[string, cachedEntry](entryCacheEntries, entryCacheBytes)}
}

// get returns a copy of the entry decoded from row under etag, if kept.
func (c *entryCache) get(row, etag string) (*delivery.Entry, bool) {
	if etag == "" {
		return nil, false
	}
	it, ok := c.c.get(row)
	if !ok || it.etag != etag {
		return nil, false
	}
	e := it.e.Copy()
	e.Version = etag
	return e, true
}

// put keeps e, decoded from row under etag (size: its estimated memory);
// it keeps a copy of e's receivers' states. An entry of more than a
// sixteenth of the budget is not kept.
func (c *entryCache) put(row, etag string, e *delivery.Entry, size int) {
	if etag == "" || size > entryCacheBytes/16 {
		c.c.remove(row)
		return
	}
	c.c.put(row, cachedEntry{etag: etag, e: e.Copy()}, size)
}

// keep keeps e, just written to partition pk under its new Version, so
// that the next due list reads it from memory: the entries an instance
// adds, claims and records the outcome of are most of what its senders
// list. sent is the length of the entity as sent (JSON, its deflated body
// in base64).
func (o *Outbox) keep(pk string, e *delivery.Entry, sent int) {
	if e.Version == "" || e.Alert == nil {
		return
	}
	o.entries.put(pk+"/"+rkEntry+outboxKey(e.Alert.ID), e.Version, e, memSize(entryInflation*sent))
}

// entryInflation estimates how much longer an entry's JSON is than its
// entity as sent: alerts' findings deflate about fivefold, and base64
// adds a third.
const entryInflation = 4

// sentBytes is about the length of an entity of props as sent: its binary
// chunks in base64.
func sentBytes(props map[string]any) int {
	n := 0
	for _, v := range props {
		if b, ok := v.(aztables.EDMBinary); ok {
			n += base64.StdEncoding.EncodedLen(len(b))
		}
	}
	return n
}
