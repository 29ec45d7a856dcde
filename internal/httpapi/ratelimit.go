package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// failLimiter throttles addresses that keep presenting bad credentials: each failure spends
// a token from a per-address bucket, and an empty bucket refuses further attempts until it
// refills. Successful requests spend nothing, so busy clients with good tokens are never
// slowed.
type failLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	buckets map[string]*rate.Limiter
	swept   time.Time
}

func newFailLimiter(perMinute, burst int) *failLimiter {
	return &failLimiter{every: rate.Limit(float64(perMinute) / 60), burst: burst, buckets: map[string]*rate.Limiter{}}
}

func (l *failLimiter) bucket(ip string) *rate.Limiter {
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
	b, ok := l.buckets[ip]
	if !ok {
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[ip] = b
	}
	return b
}

// allow reports whether ip may try to authenticate now. Addresses without failures have no
// bucket and pass without one being made.
func (l *failLimiter) allow(ip string) bool {
	l.mu.Lock()
	b, ok := l.buckets[ip]
	l.mu.Unlock()
	return !ok || b.Tokens() >= 1
}

// failed records a failed attempt.
func (l *failLimiter) failed(ip string) { l.bucket(ip).Allow() }
