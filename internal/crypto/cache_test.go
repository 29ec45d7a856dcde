package crypto

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// loader hands out fresh keys for a fixed id and counts how often it was asked.
type loader struct {
	id    uuid.UUID
	calls atomic.Int64
}

// testOwner is the environment the tests' keys belong to.
const testOwner = "env-a"

func newLoader() *loader { return &loader{id: uuid.New()} }

func (l *loader) load(context.Context) (*DataKey, error) {
	l.calls.Add(1)
	material := make([]byte, KeySize)
	material[0] = byte(l.calls.Load())
	material[1] = 1 // never all zero, so a wipe is visible
	return DataKeyFrom(l.id, material)
}

func get(t *testing.T, c *KeyCache, l *loader) *DataKey {
	t.Helper()
	k, err := c.Get(t.Context(), testOwner, l.id, l.load)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if k.ID() != l.id {
		t.Fatalf("Get returned key %s, want %s", k.ID(), l.id)
	}
	return k
}

func assertWiped(t *testing.T, raw []byte, k *DataKey) {
	t.Helper()
	for _, b := range raw {
		if b != 0 {
			t.Fatal("evicted key's bytes were not wiped")
		}
	}
	if m := k.Material(); m != nil {
		t.Fatal("evicted key still exports material")
	}
}

func TestKeyCacheHit(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()
	first := get(t, c, l)
	second := get(t, c, l)
	if first != second {
		t.Fatal("second Get returned a different key")
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("load called %d times, want 1", n)
	}
	if first.Material() == nil {
		t.Fatal("cached key was wiped")
	}
}

func TestKeyCacheSingleflight(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()
	slowLoad := func(ctx context.Context) (*DataKey, error) {
		time.Sleep(20 * time.Millisecond) // let the other goroutines pile up on the miss
		return l.load(ctx)
	}
	start := make(chan struct{})
	keys := make([]*DataKey, 100)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			<-start
			keys[i], errs[i] = c.Get(t.Context(), testOwner, l.id, slowLoad)
		})
	}
	close(start)
	wg.Wait()
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("load called %d times, want 1", n)
	}
	for i := range keys {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("goroutine %d got a different key", i)
		}
	}
}

func TestKeyCacheMaxAge(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewKeyCache(CacheOptions{Now: clock.Now}) // default MaxAge: 5 minutes
	l := newLoader()
	first := get(t, c, l)
	raw := first.key

	clock.Advance(5*time.Minute - time.Second)
	if get(t, c, l) != first || l.calls.Load() != 1 {
		t.Fatal("key reloaded before MaxAge")
	}
	clock.Advance(time.Second)
	second := get(t, c, l)
	if second == first || l.calls.Load() != 2 {
		t.Fatalf("key not reloaded at MaxAge (load calls %d)", l.calls.Load())
	}
	assertWiped(t, raw, first)
}

func TestKeyCacheMaxUses(t *testing.T) {
	c := NewKeyCache(CacheOptions{MaxUses: 3})
	l := newLoader()
	first := get(t, c, l)
	raw := first.key
	for range 2 {
		if get(t, c, l) != first {
			t.Fatal("key reloaded before MaxUses")
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("load called %d times within MaxUses, want 1", n)
	}
	if get(t, c, l) == first || l.calls.Load() != 2 {
		t.Fatal("key not reloaded after MaxUses")
	}
	assertWiped(t, raw, first)
}

func TestKeyCacheCapacityEvictsOldest(t *testing.T) {
	c := NewKeyCache(CacheOptions{MaxEntries: 2})
	a, b, d := newLoader(), newLoader(), newLoader()
	ka := get(t, c, a)
	rawA := ka.key
	kb := get(t, c, b)
	get(t, c, a) // a use does not refresh load order: eviction is by insertion
	get(t, c, d)

	assertWiped(t, rawA, ka)
	if kb.Material() == nil {
		t.Fatal("newer key was wiped")
	}
	if get(t, c, b) != kb || b.calls.Load() != 1 {
		t.Fatal("newer key was evicted")
	}
	if get(t, c, a) == ka || a.calls.Load() != 2 {
		t.Fatal("oldest key was not evicted")
	}
	if len(c.entries) != 2 {
		t.Fatalf("cache holds %d entries, want 2", len(c.entries))
	}
}

func TestKeyCachePurge(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	a, b := newLoader(), newLoader()
	ka, kb := get(t, c, a), get(t, c, b)
	rawA, rawB := ka.key, kb.key
	c.Purge()
	assertWiped(t, rawA, ka)
	assertWiped(t, rawB, kb)
	if get(t, c, a) == ka || a.calls.Load() != 2 {
		t.Fatal("Get after Purge did not reload")
	}
}

func TestKeyCacheLoadFailures(t *testing.T) {
	id := uuid.New()
	errKMS := errors.New("kms unavailable")
	tests := []struct {
		name    string
		load    func(context.Context) (*DataKey, error)
		wantErr error
	}{
		{"loader error", func(context.Context) (*DataKey, error) { return nil, errKMS }, errKMS},
		{"nil key", func(context.Context) (*DataKey, error) { return nil, nil }, nil},
		{"key with another id", func(context.Context) (*DataKey, error) { return NewDataKey() }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewKeyCache(CacheOptions{})
			k, err := c.Get(t.Context(), testOwner, id, tt.load)
			if err == nil || k != nil {
				t.Fatalf("Get = %v, %v; want an error", k, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get error = %v, want %v", err, tt.wantErr)
			}
			if len(c.entries) != 0 {
				t.Fatal("failed load left an entry behind")
			}
		})
	}
}

func TestKeyCacheFollowerOutlivesCancelledLeader(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()

	leaderCtx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Get(leaderCtx, testOwner, l.id, func(ctx context.Context) (*DataKey, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
		leaderErr <- err
	}()
	<-started

	followerKey := make(chan *DataKey, 1)
	followerErr := make(chan error, 1)
	go func() {
		k, err := c.Get(t.Context(), testOwner, l.id, l.load)
		followerKey <- k
		followerErr <- err
	}()
	time.Sleep(10 * time.Millisecond) // give the follower time to join the leader's flight
	cancel()

	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader error = %v, want context.Canceled", err)
	}
	if err := <-followerErr; err != nil {
		t.Fatalf("follower error = %v", err)
	}
	if k := <-followerKey; k == nil || k.ID() != l.id {
		t.Fatal("follower got no key")
	}
}

func TestKeyCacheHitDoesNotAllocate(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()
	get(t, c, l)
	ctx, load := t.Context(), l.load // a method value allocates; keep it out of the measurement
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Get(ctx, testOwner, l.id, load); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("cache hit allocates %v times, want 0", allocs)
	}
}

func BenchmarkKeyCacheHit(b *testing.B) {
	c := NewKeyCache(CacheOptions{MaxUses: 1 << 62})
	l := newLoader()
	ctx, load := b.Context(), l.load
	if _, err := c.Get(ctx, testOwner, l.id, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, testOwner, l.id, load); err != nil {
			b.Fatal(err)
		}
	}
}

func TestKeyCachePurgeDuringLoadDoesNotCache(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan *DataKey, 1)
	go func() {
		k, err := c.Get(t.Context(), testOwner, l.id, func(ctx context.Context) (*DataKey, error) {
			close(started)
			<-release
			return l.load(ctx)
		})
		if err != nil {
			t.Error(err)
		}
		done <- k
	}()
	<-started
	c.Purge()
	close(release)
	if k := <-done; k == nil || k.Material() == nil {
		t.Fatal("in-flight caller did not get a usable key")
	}
	get(t, c, l)
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("load called %d times, want 2: a load begun before Purge was cached", n)
	}
}

func TestKeyCacheKeysAreScopedToTheirOwner(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	l := newLoader()
	get(t, c, l) // warm for env-a
	refused := errors.New("data key belongs to another environment")
	k, err := c.Get(t.Context(), "env-b", l.id, func(context.Context) (*DataKey, error) { return nil, refused })
	if !errors.Is(err, refused) || k != nil {
		t.Fatalf("lookup for env-b got (%v, %v); want the loader's refusal, not env-a's cached key", k, err)
	}
	if hits, misses := c.Stats(); hits != 0 || misses != 2 {
		t.Fatalf("Stats = %d hits, %d misses; want 0 and 2", hits, misses)
	}
	get(t, c, l)
	if hits, _ := c.Stats(); hits != 1 {
		t.Fatalf("hits = %d after a warm lookup, want 1", hits)
	}
}

func TestKeyCacheAddAndEvict(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	raw := k.key
	c.Add(testOwner, k)
	got, err := c.Get(t.Context(), testOwner, k.ID(), func(context.Context) (*DataKey, error) {
		return nil, errors.New("an added key must not be loaded")
	})
	if err != nil || got != k {
		t.Fatalf("Get after Add = (%v, %v)", got, err)
	}
	c.Evict(testOwner, k.ID())
	assertWiped(t, raw, k)
	if len(c.entries) != 0 {
		t.Fatal("Evict left the entry")
	}
}

func TestKeyCacheEvictOwner(t *testing.T) {
	c := NewKeyCache(CacheOptions{})
	a, b := newLoader(), newLoader()
	ka := get(t, c, a)
	raw := ka.key
	kb, err := c.Get(t.Context(), "env-b", b.id, b.load)
	if err != nil {
		t.Fatal(err)
	}
	c.EvictOwner(testOwner)
	assertWiped(t, raw, ka)
	if kb.Material() == nil || len(c.entries) != 1 {
		t.Fatalf("EvictOwner dropped another owner's key (%d entries left)", len(c.entries))
	}
}

func TestKeyCacheDisabledLoadsEveryTime(t *testing.T) {
	c := NewKeyCache(CacheOptions{Disabled: true})
	l := newLoader()
	for range 3 {
		get(t, c, l)
	}
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("disabled cache loaded %d times for 3 Gets, want 3", n)
	}
	if len(c.entries) != 0 {
		t.Fatal("disabled cache kept an entry")
	}
}
