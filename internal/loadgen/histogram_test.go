package loadgen

import (
	"math"
	"testing"
	"time"
)

func within(t *testing.T, name string, got, want time.Duration, tol float64) {
	t.Helper()
	if rel := math.Abs(float64(got-want)) / float64(want); rel > tol {
		t.Errorf("%s = %v, want %v ±%.1f%% (off by %.2f%%)", name, got, want, tol*100, rel*100)
	}
}

func TestHistogramPercentilesKnownInputs(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	if h.n != 1000 {
		t.Fatalf("count = %d, want 1000", h.n)
	}
	within(t, "p50", h.quantile(0.50), 500*time.Millisecond, 0.01)
	within(t, "p90", h.quantile(0.90), 900*time.Millisecond, 0.01)
	within(t, "p99", h.quantile(0.99), 990*time.Millisecond, 0.01)
	within(t, "p0.1", h.quantile(0.001), 1*time.Millisecond, 0.01)
	if got := h.quantile(1); got != time.Second {
		t.Errorf("p100 = %v, want exactly 1s", got)
	}
	if h.max != time.Second {
		t.Errorf("max = %v, want exactly 1s", h.max)
	}
}

func TestHistogramSkewedDistribution(t *testing.T) {
	// 990 fast requests and 10 slow ones: p99 must still be fast and only
	// the tail beyond it sees the slow ones.
	h := newHistogram()
	for range 990 {
		h.record(200 * time.Microsecond)
	}
	for range 10 {
		h.record(3 * time.Second)
	}
	within(t, "p50", h.quantile(0.50), 200*time.Microsecond, 0.01)
	within(t, "p99", h.quantile(0.99), 200*time.Microsecond, 0.01)
	within(t, "p99.9", h.quantile(0.999), 3*time.Second, 0.01)
}

func TestHistogramMergeEqualsSingle(t *testing.T) {
	all, a, b := newHistogram(), newHistogram(), newHistogram()
	for i := 1; i <= 5000; i++ {
		d := time.Duration(i*i) * time.Microsecond / 7
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	if a.n != all.n || a.max != all.max {
		t.Fatalf("merged n=%d max=%v, want n=%d max=%v", a.n, a.max, all.n, all.max)
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		if got, want := a.quantile(q), all.quantile(q); got != want {
			t.Errorf("merged q%v = %v, want %v", q, got, want)
		}
	}
}

func TestHistogramBucketPrecision(t *testing.T) {
	// Percentiles are reported as bucket midpoints, so every value from 1µs
	// to 60s must land in a bucket whose midpoint is within 1% of it.
	for v := float64(time.Microsecond); v <= float64(histMax); v *= 1.0137 {
		d := uint64(v)
		i := bucketOf(d)
		lo, w := bucketRange(i)
		if d < lo || d >= lo+w {
			t.Fatalf("value %d mapped to bucket %d = [%d,%d)", d, i, lo, lo+w)
		}
		if mid := float64(lo + w/2); math.Abs(mid-v)/v > 0.01 {
			t.Fatalf("value %v reported as %v: worse than 1%%", time.Duration(d), time.Duration(mid))
		}
	}
	// Buckets must tile the range with no gaps or overlaps.
	next := uint64(0)
	for i := range numBuckets {
		lo, w := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		next = lo + w
	}
	if next <= uint64(histMax) {
		t.Fatalf("buckets end at %v, below histMax %v", time.Duration(next), histMax)
	}
}

func TestHistogramClampsOutOfRange(t *testing.T) {
	h := newHistogram()
	h.record(-time.Second)
	h.record(2 * time.Minute)
	if h.n != 2 {
		t.Fatalf("count = %d, want 2", h.n)
	}
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("p50 = %v, want 0 for the negative sample", got)
	}
	if got := h.quantile(1); got != 2*time.Minute {
		t.Errorf("p100 = %v, want the exact max 2m", got)
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := newHistogram()
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("empty p50 = %v, want 0", got)
	}
}
