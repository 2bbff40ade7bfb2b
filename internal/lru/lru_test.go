package lru

import (
	"fmt"
	"testing"
)

func TestCacheEvictsLeastRecentlyUsedOneAtATime(t *testing.T) {
	c := New[string, int](3)
	for i, k := range []string{"a", "b", "c"} {
		if _, ev := c.Put(k, i); ev {
			t.Fatalf("Put %s evicted below capacity", k)
		}
	}
	c.Get("a") // a is now the most recent; b the least
	if old, ev := c.Put("d", 3); !ev || old != "b" {
		t.Fatalf("Put d evicted %q (%v); want b, the least recently used", old, ev)
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3: eviction drops one entry, not all", c.Len())
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("%s was evicted; only b should be", k)
		}
	}
	if _, ok := c.Get("b"); ok {
		t.Error("b is still cached")
	}
}

func TestCacheUpdateDeleteAndBound(t *testing.T) {
	c := New[int, string](100)
	for i := 0; i < 10000; i++ {
		c.Put(i, fmt.Sprint(i))
		if c.Len() > 100 {
			t.Fatalf("Len = %d after %d puts; want at most 100", c.Len(), i+1)
		}
	}
	// The 100 most recent survive, in full.
	for i := 9900; i < 10000; i++ {
		if v, ok := c.Get(i); !ok || v != fmt.Sprint(i) {
			t.Fatalf("Get(%d) = %q, %v", i, v, ok)
		}
	}
	if _, ev := c.Put(9950, "new"); ev {
		t.Fatal("updating an existing key evicted another")
	}
	if v, _ := c.Get(9950); v != "new" {
		t.Fatalf("updated value = %q", v)
	}
	c.Delete(9950)
	if _, ok := c.Get(9950); ok || c.Len() != 99 {
		t.Fatalf("after Delete: present=%v Len=%d", ok, c.Len())
	}
	if New[int, int](0).Max() != 1 {
		t.Fatal("a cache of size 0 must still hold one entry")
	}
}
