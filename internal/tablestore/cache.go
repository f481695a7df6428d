package tablestore

import (
	"container/list"
	"sync"

	"github.com/kvwatch/kvwatch/internal/state"
)

// cache keeps, per instance, the entities this instance last read or
// wrote with their ETags, so that a batch writes a warm entity without
// reading it first. It is only a guess at the current version: a write
// with a stale ETag fails (412) and the entity is read again. Bounded by
// entries and by bytes, least recently used first out.
type cache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	ll         *list.List
	m          map[state.Key]*list.Element
}

func newCache(maxEntries, maxBytes int) *cache {
	return &cache{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), m: map[state.Key]*list.Element{}}
}

func (c *cache) get(k state.Key) (*stored, bool) {
	if c.maxEntries <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*stored), true
}

// put records s (which must not change afterwards) as k's current entity.
func (c *cache) put(s *stored) {
	if c.maxEntries <= 0 || s.size > c.maxBytes {
		c.remove(s.key)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[s.key]; ok {
		c.bytes += s.size - el.Value.(*stored).size
		el.Value = s
		c.ll.MoveToFront(el)
	} else {
		c.m[s.key] = c.ll.PushFront(s)
		c.bytes += s.size
	}
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		el := c.ll.Back()
		old := el.Value.(*stored)
		c.ll.Remove(el)
		delete(c.m, old.key)
		c.bytes -= old.size
	}
}

func (c *cache) remove(k state.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.bytes -= el.Value.(*stored).size
		c.ll.Remove(el)
		delete(c.m, k)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
