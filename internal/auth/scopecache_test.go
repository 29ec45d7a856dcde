package auth

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/tenant"
)

func cacheEntry(tenantID, envID string) scopeEntry {
	return scopeEntry{tenantID: tenantID, tok: TokenRecord{Token: Token{ID: "tok-" + tenantID}},
		sc: tenant.Scope{Tenant: tenant.Tenant{ID: tenantID}, Environment: &tenant.Environment{ID: envID, Revision: 1}}}
}

func TestScopeCache(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	fresh := true
	c := NewScopeCache(time.Minute, 3, func() bool { return fresh })
	c.now = func() time.Time { return now }
	key := func(s string) scopeKey { return scopeKey{kind: 't', hash: s, tenantSlug: s} }

	// A lookup racing an invalidation is not kept: it may predate the change.
	_, gen, hit, usable := c.get(key("a"))
	if hit || !usable {
		t.Fatalf("empty cache: hit %v usable %v", hit, usable)
	}
	c.Invalidate("t2")
	c.put(key("a"), cacheEntry("t1", "e1"), gen)
	if _, _, hit, _ := c.get(key("a")); hit {
		t.Fatal("an answer read before an invalidation was kept")
	}

	// Kept, it is served; each caller gets its own copy of the scope's levels.
	_, gen, _, _ = c.get(key("a"))
	c.put(key("a"), cacheEntry("t1", "e1"), gen)
	e, _, hit, _ := c.get(key("a"))
	if !hit || e.tok.ID != "tok-t1" {
		t.Fatalf("kept entry: hit %v %+v", hit, e)
	}
	e.sc.Environment.Revision = 99
	if again, _, _, _ := c.get(key("a")); again.sc.Environment.Revision != 1 {
		t.Fatal("a caller's change reached the cached scope")
	}

	// Invalidating another tenant leaves it; invalidating its tenant, or all, drops it.
	_, gen, _, _ = c.get(key("b"))
	c.put(key("b"), cacheEntry("t2", "e2"), gen)
	c.Invalidate("t2")
	if _, _, hit, _ := c.get(key("a")); !hit {
		t.Fatal("invalidating t2 dropped t1's entry")
	}
	if _, _, hit, _ := c.get(key("b")); hit {
		t.Fatal("invalidating t2 kept its entry")
	}
	c.Invalidate("")
	if _, _, hit, _ := c.get(key("a")); hit {
		t.Fatal("invalidating everything kept t1's entry")
	}

	// Not fresh: neither read nor filled.
	_, gen, _, _ = c.get(key("a"))
	c.put(key("a"), cacheEntry("t1", "e1"), gen)
	fresh = false
	if _, _, hit, usable := c.get(key("a")); hit || usable {
		t.Fatalf("stale listener: hit %v usable %v", hit, usable)
	}
	fresh = true

	// An entry lives TTL at most.
	now = now.Add(time.Minute)
	if _, _, hit, _ := c.get(key("a")); hit {
		t.Fatal("an entry outlived its TTL")
	}

	// Full, the cache drops one entry to keep another.
	for _, k := range []string{"1", "2", "3", "4"} {
		_, gen, _, _ := c.get(key(k))
		c.put(key(k), cacheEntry("t"+k, "e"), gen)
	}
	if st := c.Stats(); st.Entries != 3 {
		t.Fatalf("entries %d, want the bound 3", st.Entries)
	}
	if st := c.Stats(); st.Bypassed != 1 || st.Hits == 0 || st.Misses == 0 {
		t.Fatalf("counters: %+v", st)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, keys := range c.byTenant {
		n += len(keys)
	}
	if n != len(c.entries) {
		t.Fatalf("the tenant index holds %d keys for %d entries", n, len(c.entries))
	}
}
