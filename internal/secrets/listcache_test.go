package secrets

import (
	"strings"
	"testing"
)

func recs(n int, size int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Secret: Secret{Name: "S"}, Ciphertext: make([]byte, size)}
	}
	return out
}

func TestListCacheRevisions(t *testing.T) {
	c := newListCache(1 << 20)
	k := listKey("env", ListOptions{Limit: 101, WithValues: true})
	if _, ok := c.get(k, 1); ok {
		t.Fatal("hit on an empty cache")
	}
	c.put(k, 2, recs(2, 10))
	if _, ok := c.get(k, 1); ok {
		t.Fatal("a listing read at revision 2 served revision 1")
	}
	if got, ok := c.get(k, 2); !ok || len(got) != 2 {
		t.Fatalf("get at revision 2 = %v %v", got, ok)
	}
	// A slow reader finishing late must not replace a newer listing with its older one.
	c.put(k, 1, recs(5, 10))
	if got, ok := c.get(k, 2); !ok || len(got) != 2 {
		t.Fatalf("an older listing replaced a newer one: %d items", len(got))
	}
	c.put(k, 3, recs(3, 10))
	if got, ok := c.get(k, 3); !ok || len(got) != 3 {
		t.Fatal("a newer listing did not replace the older one")
	}
	if _, ok := c.get(listKey("env", ListOptions{Limit: 101}), 3); ok {
		t.Fatal("a listing with values served a listing without")
	}
}

func TestListCacheBound(t *testing.T) {
	c := newListCache(64 << 10)
	for i := range 50 {
		c.put(listKey("env"+strings.Repeat("x", i), ListOptions{}), 1, recs(1, 2<<10))
	}
	if c.bytes > c.maxBytes {
		t.Fatalf("cache holds %d bytes, bound %d", c.bytes, c.maxBytes)
	}
	if _, ok := c.get(listKey("env", ListOptions{}), 1); ok {
		t.Fatal("the oldest entry survived past the bound")
	}
	if _, ok := c.get(listKey("env"+strings.Repeat("x", 49), ListOptions{}), 1); !ok {
		t.Fatal("the newest entry was evicted")
	}
	// One listing larger than an eighth of the budget is not cached at all.
	big := listKey("big", ListOptions{})
	c.put(big, 1, recs(1, 16<<10))
	if _, ok := c.get(big, 1); ok {
		t.Fatal("an oversized listing was cached")
	}
}

// TestListCacheStaysBoundedUnderRewrites: one hot listing rewritten at every revision keeps
// one entry, not one per revision.
func TestListCacheStaysBoundedUnderRewrites(t *testing.T) {
	c := newListCache(1 << 20)
	k := listKey("hot", ListOptions{})
	for rev := range int64(10000) {
		c.put(k, rev, recs(1, 10))
	}
	if len(c.entries) != 1 || c.order.Len() != 1 {
		t.Fatalf("%d entries, %d in eviction order; want 1 and 1", len(c.entries), c.order.Len())
	}
}
