package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// attemptLimiter throttles attempts per key (an address presenting bad credentials, a user
// minting tokens): each attempt that counts spends from the key's bucket, and an empty bucket
// refuses further attempts until it refills. Keys that spend nothing get no bucket, so busy
// clients with good tokens are never slowed.
type attemptLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	buckets map[string]*rate.Limiter
	swept   time.Time
}

func newAttemptLimiter(perMinute, burst int) *attemptLimiter {
	return &attemptLimiter{every: rate.Limit(float64(perMinute) / 60), burst: burst, buckets: map[string]*rate.Limiter{}}
}

func (l *attemptLimiter) bucket(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	// Forget full buckets now and then so the map cannot grow without bound.
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.burst) {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	return b
}

// allow reports whether key may make another attempt now. Keys that never spent have no
// bucket and pass without one being made.
func (l *attemptLimiter) allow(key string) bool {
	l.mu.Lock()
	b, ok := l.buckets[key]
	l.mu.Unlock()
	return !ok || b.Tokens() >= 1
}

// spend records an attempt that counts.
func (l *attemptLimiter) spend(key string) { l.bucket(key).Allow() }
