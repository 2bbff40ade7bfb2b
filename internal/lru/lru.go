// Package lru is a bounded map that evicts its least recently used entry,
// one at a time, when full: caches that a caller can fill (one key per id
// it names) stay bounded without a cliff where everything is dropped.
package lru

import "container/list"

// Cache maps keys to values, holding at most Max entries. It is not safe
// for concurrent use; callers hold their own lock.
type Cache[K comparable, V any] struct {
	max   int
	order *list.List // front = most recently used
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// New makes a cache of at most max (≥ 1) entries.
func New[K comparable, V any](max int) *Cache[K, V] {
	if max < 1 {
		max = 1
	}
	return &Cache[K, V]{max: max, order: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value under k and marks it most recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*entry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Put stores v under k as the most recently used entry and, if the cache
// was full, evicts the least recently used one, which it returns.
func (c *Cache[K, V]) Put(k K, v V) (evicted K, didEvict bool) {
	if e, ok := c.items[k]; ok {
		e.Value.(*entry[K, V]).val = v
		c.order.MoveToFront(e)
		return evicted, false
	}
	c.items[k] = c.order.PushFront(&entry[K, V]{key: k, val: v})
	if c.order.Len() <= c.max {
		return evicted, false
	}
	last := c.order.Back()
	c.order.Remove(last)
	old := last.Value.(*entry[K, V]).key
	delete(c.items, old)
	return old, true
}

// Delete removes k.
func (c *Cache[K, V]) Delete(k K) {
	if e, ok := c.items[k]; ok {
		c.order.Remove(e)
		delete(c.items, k)
	}
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int { return len(c.items) }

// Max is the capacity.
func (c *Cache[K, V]) Max() int { return c.max }
