package auth

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/tenant"
)

// ScopeCache remembers, on one replica, what a bearer token and a tenant route's slugs
// resolved to: the token's record and the scope. A read answered from it skips the
// token-and-scope query, the one query left on the path every app takes at start-up.
//
// It holds no secret: token hashes (as stored), identifiers, roles and the environment's
// revision. The record is checked again on every use (revoked, expired, user disabled), so
// only a change the cache has not heard of could be missed, and three rules bound that:
//   - every commit that changes what credentials resolve to (a revocation, a membership, a
//     role, an environment's revision) drops the entries of its tenant, or all of them, on
//     the replica that made it before the change's response is sent, and on the others when
//     Postgres tells them (Invalidate);
//   - the cache is bypassed whenever Fresh says that other replicas' changes may not have
//     been heard of lately (the Postgres listener down or silent);
//   - an entry lives at most TTL, whatever happens.
//
// Only successful lookups are kept: a refusal is always answered from the database.
type ScopeCache struct {
	// TTL bounds an entry's life.
	TTL time.Duration
	// Max bounds the number of entries; when full, an arbitrary one is dropped.
	Max int
	// Fresh reports whether changes committed by other processes have been heard of; nil
	// means there are no other processes.
	Fresh func() bool

	now func() time.Time

	mu       sync.Mutex
	gen      uint64 // moves on every invalidation, so that a lookup racing one is not kept
	entries  map[scopeKey]*scopeEntry
	byTenant map[string]map[scopeKey]struct{}

	hits, misses, bypassed atomic.Uint64
}

type scopeKey struct {
	kind                                   byte // 't' personal token, 's' service token
	hash, tenantSlug, projectSlug, envSlug string
}

type scopeEntry struct {
	tenantID string
	filled   time.Time
	tok      TokenRecord
	svc      ServiceTokenRecord
	sc       tenant.Scope
}

// NewScopeCache returns an empty cache.
func NewScopeCache(ttl time.Duration, max int, fresh func() bool) *ScopeCache {
	return &ScopeCache{TTL: ttl, Max: max, Fresh: fresh, now: time.Now,
		entries: map[scopeKey]*scopeEntry{}, byTenant: map[string]map[scopeKey]struct{}{}}
}

// ScopeCacheStats are the cache's counters.
type ScopeCacheStats struct {
	Entries                int
	Hits, Misses, Bypassed uint64
}

// Stats returns the counters.
func (c *ScopeCache) Stats() ScopeCacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return ScopeCacheStats{Entries: n, Hits: c.hits.Load(), Misses: c.misses.Load(), Bypassed: c.bypassed.Load()}
}

// get returns the entry for k if it may be used, and otherwise the generation a lookup
// starting now must present to put its answer. ok is false and usable is false when the
// cache is bypassed: the caller then neither reads nor fills it.
func (c *ScopeCache) get(k scopeKey) (e scopeEntry, gen uint64, ok, usable bool) {
	if c.Fresh != nil && !c.Fresh() {
		c.bypassed.Add(1)
		return scopeEntry{}, 0, false, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, found := c.entries[k]
	if found && now.Sub(p.filled) < c.TTL {
		c.hits.Add(1)
		e = *p
		// The scope's levels are pointers: each caller gets its own copies.
		if e.sc.Project != nil {
			pr := *e.sc.Project
			e.sc.Project = &pr
		}
		if e.sc.Environment != nil {
			env := *e.sc.Environment
			e.sc.Environment = &env
		}
		return e, c.gen, true, true
	}
	if found {
		c.remove(k, p.tenantID)
	}
	c.misses.Add(1)
	return scopeEntry{}, c.gen, false, true
}

// put keeps a lookup's answer unless an invalidation happened since gen was read: the answer
// may predate the change.
func (c *ScopeCache) put(k scopeKey, e scopeEntry, gen uint64) {
	e.filled = c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if old, ok := c.entries[k]; ok {
		c.remove(k, old.tenantID)
	}
	if len(c.entries) >= c.Max {
		for victim, v := range c.entries {
			c.remove(victim, v.tenantID)
			break
		}
	}
	c.entries[k] = &e
	keys := c.byTenant[e.tenantID]
	if keys == nil {
		keys = map[scopeKey]struct{}{}
		c.byTenant[e.tenantID] = keys
	}
	keys[k] = struct{}{}
}

func (c *ScopeCache) remove(k scopeKey, tenantID string) {
	delete(c.entries, k)
	if keys := c.byTenant[tenantID]; keys != nil {
		delete(keys, k)
		if len(keys) == 0 {
			delete(c.byTenant, tenantID)
		}
	}
}

// lookup answers k from the cache when it may, else calls fill, and keeps fill's answer when
// fill says it may be kept (a successful lookup) and no invalidation happened meanwhile. A nil
// cache, or cached false, always calls fill.
func (c *ScopeCache) lookup(k scopeKey, cached bool, fill func() (e scopeEntry, keep bool, err error)) (scopeEntry, error) {
	if c == nil || !cached {
		e, _, err := fill()
		return e, err
	}
	e, gen, hit, usable := c.get(k)
	if hit {
		return e, nil
	}
	e, keep, err := fill()
	if usable && keep && err == nil {
		c.put(k, e, gen)
	}
	return e, err
}

// Invalidate drops the entries of a tenant, or every entry when tenantID is "" (a change to
// a principal that may reach several tenants, or to the instance).
func (c *ScopeCache) Invalidate(tenantID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if tenantID == "" {
		clear(c.entries)
		clear(c.byTenant)
		return
	}
	for k := range c.byTenant[tenantID] {
		delete(c.entries, k)
	}
	delete(c.byTenant, tenantID)
}
