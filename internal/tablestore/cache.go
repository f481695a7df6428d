package tablestore

import (
	"container/list"
	"sync"
)

// cache keeps, per instance, what this instance last read or wrote: state
// entities with their ETags (Store.cache), so that a batch writes a warm
// entity without reading it first, and decoded outbox entries
// (entryCache). What it holds is only a guess at the current version: a
// write with a stale ETag fails (412) and the row is read again. Bounded
// by entries and by bytes (each value's estimated memory), least recently
// used first out.
type cache[K comparable, V any] struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	ll         *list.List
	m          map[K]*list.Element
}

type cacheItem[K comparable, V any] struct {
	key  K
	val  V
	size int
}

func newCache[K comparable, V any](maxEntries, maxBytes int) *cache[K, V] {
	return &cache[K, V]{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), m: map[K]*list.Element{}}
}

func (c *cache[K, V]) get(k K) (V, bool) {
	var zero V
	if c.maxEntries <= 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return zero, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheItem[K, V]).val, true
}

// put records v (which must not change afterwards), of about size bytes,
// as k's current value.
func (c *cache[K, V]) put(k K, v V, size int) {
	if c.maxEntries <= 0 || size > c.maxBytes {
		c.remove(k)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		it := el.Value.(*cacheItem[K, V])
		c.bytes += size - it.size
		it.val, it.size = v, size
		c.ll.MoveToFront(el)
	} else {
		c.m[k] = c.ll.PushFront(&cacheItem[K, V]{key: k, val: v, size: size})
		c.bytes += size
	}
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		el := c.ll.Back()
		old := el.Value.(*cacheItem[K, V])
		c.ll.Remove(el)
		delete(c.m, old.key)
		c.bytes -= old.size
	}
}

func (c *cache[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.bytes -= el.Value.(*cacheItem[K, V]).size
		c.ll.Remove(el)
		delete(c.m, k)
	}
}

func (c *cache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
