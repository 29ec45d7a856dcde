package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear: values below subCount nanoseconds get one
// bucket each, and every power-of-two range above that is split into
// subCount/2 equal buckets. A bucket is therefore never wider than 1/128 of
// its lower bound, which keeps every percentile within 0.8% of the true
// sample while the whole table stays a fixed ~30 KiB per worker, so a long
// run costs no more memory than a short one.
const (
	subBits  = 8
	subCount = 1 << subBits
	halfSub  = subCount / 2

	// Latencies beyond this are folded into the last bucket; the exact
	// maximum is still kept separately so Max is never understated.
	histMax = 60 * time.Second
)

var numBuckets = bucketOf(uint64(histMax)) + 1

// histogram is deliberately not safe for concurrent use: each worker owns
// one, so recording is a plain increment and the hot path has no shared
// cache lines. Workers' histograms are merged once the run is over.
type histogram struct {
	counts []int64
	n      int64
	max    time.Duration
}

func newHistogram() *histogram {
	return &histogram{counts: make([]int64, numBuckets)}
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	// shift is chosen so that v>>shift keeps exactly subBits significant
	// bits, i.e. lands in [halfSub, subCount).
	shift := bits.Len64(v) - subBits
	return shift*halfSub + int(v>>uint(shift))
}

// bucketRange returns the smallest value in bucket i and the bucket width.
func bucketRange(i int) (lo, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	shift := uint(i/halfSub - 1)
	mant := uint64(i%halfSub + halfSub)
	return mant << shift, 1 << shift
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if d > h.max {
		h.max = d
	}
	if d > histMax {
		d = histMax
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the nearest-rank q-quantile, reported as the midpoint of
// the bucket holding that rank so the error is symmetric around the sample.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			v := time.Duration(lo + w/2)
			// The midpoint of the top occupied bucket can exceed what was
			// actually observed; a percentile above Max would be nonsense.
			return min(v, h.max)
		}
	}
	return h.max
}
