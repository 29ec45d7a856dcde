package crypto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
)

// CacheOptions bound a KeyCache. Zero values take the defaults.
type CacheOptions struct {
	MaxEntries int           // default 1024
	MaxAge     time.Duration // default 5 minutes, counted from when the key was loaded
	MaxUses    int64         // default 100000 Gets per load
	Now        func() time.Time
	// Disabled makes every Get call load, with nothing cached or shared between callers:
	// benchmarks compare against it. Keys it returns are the caller's.
	Disabled bool
}

// KeyCache holds unwrapped DEKs so that only a miss calls the key-encryption service. Entries
// leave by age, by use count and, when full, oldest-loaded first; a leaving key is wiped.
//
// Entries are keyed by owner (the environment a key belongs to) and DEK id together: a lookup
// made for one environment never receives another environment's key from the cache, even when
// a ciphertext names it; it misses and goes to load, whose scope checks refuse it.
//
// Callers may keep using a key after it has been evicted: Wipe zeroes only the raw material and
// leaves the AEAD working, so an in-flight Seal or Open never sees a half-wiped key.
type KeyCache struct {
	maxEntries int
	maxAge     time.Duration
	maxUses    int64
	now        func() time.Time
	disabled   bool

	flight singleflight.Group

	hits, misses atomic.Uint64

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	// oldest and newest ends of the load-order list; with a single MaxAge, load order is also
	// expiry order, so evicting from the oldest end drops expired keys first.
	oldest, newest *cacheEntry
	// generation changes on Purge so a load that began before it does not repopulate the cache.
	generation uint64
}

type cacheKey struct {
	owner string
	id    uuid.UUID
}

type cacheEntry struct {
	ck         cacheKey
	key        *DataKey
	expires    time.Time
	uses       int64
	prev, next *cacheEntry
}

// NewKeyCache returns an empty cache.
func NewKeyCache(opts CacheOptions) *KeyCache {
	c := &KeyCache{
		maxEntries: opts.MaxEntries,
		maxAge:     opts.MaxAge,
		maxUses:    opts.MaxUses,
		now:        opts.Now,
		disabled:   opts.Disabled,
		entries:    make(map[cacheKey]*cacheEntry),
	}
	if c.maxEntries <= 0 {
		c.maxEntries = 1024
	}
	if c.maxAge <= 0 {
		c.maxAge = 5 * time.Minute
	}
	if c.maxUses <= 0 {
		c.maxUses = 100000
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Get returns owner's DEK with this id, counting one use. On a miss, or when the cached key is
// too old or used up, it calls load; concurrent misses for one key share a single load. load
// must return the key with exactly this id, and only if it belongs to owner.
func (c *KeyCache) Get(ctx context.Context, owner string, id uuid.UUID, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	if c.disabled {
		c.misses.Add(1)
		return loadChecked(ctx, id, load)
	}
	ck := cacheKey{owner, id}
	c.mu.Lock()
	k := c.useLocked(ck)
	c.mu.Unlock()
	if k != nil {
		c.hits.Add(1)
		return k, nil
	}
	c.misses.Add(1)
	return c.getSlow(ctx, ck, load)
}

// Stats returns how many Gets were served from the cache and how many had to load.
func (c *KeyCache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// Add caches a key its caller has just made (a new data key, whose material it already holds),
// so the first use after a roll does not unwrap what was wrapped a moment ago. The cache takes
// ownership of k and wipes it on eviction.
func (c *KeyCache) Add(owner string, k *DataKey) {
	if c.disabled {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insertLocked(cacheKey{owner, k.ID()}, k)
}

// Evict drops and wipes one key, for example when rotation retires it.
func (c *KeyCache) Evict(owner string, id uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[cacheKey{owner, id}]; e != nil {
		c.removeLocked(e)
	}
}

// EvictOwner drops and wipes every key of one owner, for example a deleted environment.
func (c *KeyCache) EvictOwner(owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.oldest; e != nil; {
		next := e.next
		if e.ck.owner == owner {
			c.removeLocked(e)
		}
		e = next
	}
}

func (c *KeyCache) getSlow(ctx context.Context, ck cacheKey, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	flightKey := ck.owner + "/" + ck.id.String()
	for {
		var led bool
		ch := c.flight.DoChan(flightKey, func() (any, error) {
			led = true
			return c.fill(ctx, ck, load)
		})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				// The shared load ran under another caller's context; if that caller gave up,
				// its cancellation says nothing about this one, so try again.
				if !led && ctx.Err() == nil && isContextErr(r.Err) {
					continue
				}
				return nil, r.Err
			}
			return r.Val.(*DataKey), nil
		}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// fill runs once per id at a time. Each caller sharing its result is one use: the leader's is
// counted here, followers are few and short-lived, so they are not counted.
func (c *KeyCache) fill(ctx context.Context, ck cacheKey, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	id := ck.id
	c.mu.Lock()
	// A previous flight may have filled the entry between our miss and this flight starting.
	k := c.useLocked(ck)
	gen := c.generation
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}

	k, err := loadChecked(ctx, id, load)
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.generation {
		return k, nil
	}
	c.insertLocked(ck, k)
	return k, nil
}

// loadChecked calls load and checks it returned the key asked for.
func loadChecked(ctx context.Context, id uuid.UUID, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	k, err := load(ctx)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, errors.New("crypto: key loader returned no key")
	}
	if k.ID() != id {
		return nil, fmt.Errorf("crypto: key loader returned data key %s for %s", k.ID(), id)
	}
	return k, nil
}

// insertLocked caches k under ck as used once, replacing any entry there.
func (c *KeyCache) insertLocked(ck cacheKey, k *DataKey) {
	if old := c.entries[ck]; old != nil {
		if old.key == k {
			return
		}
		c.removeLocked(old)
	}
	for len(c.entries) >= c.maxEntries {
		c.removeLocked(c.oldest)
	}
	e := &cacheEntry{ck: ck, key: k, expires: c.now().Add(c.maxAge), uses: 1}
	c.entries[ck] = e
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
}

// useLocked returns the live cached key and counts a use, or evicts a stale entry and returns nil.
func (c *KeyCache) useLocked(ck cacheKey) *DataKey {
	e := c.entries[ck]
	if e == nil {
		return nil
	}
	if e.uses >= c.maxUses || !c.now().Before(e.expires) {
		c.removeLocked(e)
		return nil
	}
	e.uses++
	return e.key
}

func (c *KeyCache) removeLocked(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.newest = e.prev
	}
	e.prev, e.next = nil, nil
	delete(c.entries, e.ck)
	e.key.Wipe()
}

// Purge wipes and drops every cached key, for example after a key-encryption key is revoked.
// Loads already in flight return their key to their callers but do not cache it.
func (c *KeyCache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.oldest; e != nil; e = e.next {
		e.key.Wipe()
	}
	clear(c.entries)
	c.oldest, c.newest = nil, nil
	c.generation++
}
