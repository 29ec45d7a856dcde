package crypto

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
}

// KeyCache holds unwrapped DEKs so that only a miss calls the key-encryption service. Entries
// leave by age, by use count and, when full, oldest-loaded first; a leaving key is wiped.
//
// Lookups are by DEK id alone and skip whatever scope checks load performs, so a DEK served from
// the cache is only as bound to its tenant as the AAD of the values it opens.
//
// Callers may keep using a key after it has been evicted: Wipe zeroes only the raw material and
// leaves the AEAD working, so an in-flight Seal or Open never sees a half-wiped key.
type KeyCache struct {
	maxEntries int
	maxAge     time.Duration
	maxUses    int64
	now        func() time.Time

	flight singleflight.Group

	mu      sync.Mutex
	entries map[uuid.UUID]*cacheEntry
	// oldest and newest ends of the load-order list; with a single MaxAge, load order is also
	// expiry order, so evicting from the oldest end drops expired keys first.
	oldest, newest *cacheEntry
	// generation changes on Purge so a load that began before it does not repopulate the cache.
	generation uint64
}

type cacheEntry struct {
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
		entries:    make(map[uuid.UUID]*cacheEntry),
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

// Get returns the DEK with this id, counting one use. On a miss, or when the cached key is too
// old or used up, it calls load; concurrent misses for one id share a single load. load must
// return the key with exactly this id.
func (c *KeyCache) Get(ctx context.Context, id uuid.UUID, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	c.mu.Lock()
	k := c.useLocked(id)
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}
	return c.getSlow(ctx, id, load)
}

func (c *KeyCache) getSlow(ctx context.Context, id uuid.UUID, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	for {
		var led bool
		ch := c.flight.DoChan(id.String(), func() (any, error) {
			led = true
			return c.fill(ctx, id, load)
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
func (c *KeyCache) fill(ctx context.Context, id uuid.UUID, load func(ctx context.Context) (*DataKey, error)) (*DataKey, error) {
	c.mu.Lock()
	// A previous flight may have filled the entry between our miss and this flight starting.
	k := c.useLocked(id)
	gen := c.generation
	c.mu.Unlock()
	if k != nil {
		return k, nil
	}

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

	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.generation {
		return k, nil
	}
	if old := c.entries[id]; old != nil {
		if old.key == k {
			return k, nil
		}
		c.removeLocked(old)
	}
	for len(c.entries) >= c.maxEntries {
		c.removeLocked(c.oldest)
	}
	e := &cacheEntry{key: k, expires: c.now().Add(c.maxAge), uses: 1}
	c.entries[id] = e
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
	return k, nil
}

// useLocked returns the live cached key and counts a use, or evicts a stale entry and returns nil.
func (c *KeyCache) useLocked(id uuid.UUID) *DataKey {
	e := c.entries[id]
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
	delete(c.entries, e.key.ID())
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
