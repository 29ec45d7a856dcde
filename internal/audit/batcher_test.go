package audit_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
)

// waitFor bounds every wait so that a deadlock fails the test instead of hanging it.
const waitFor = 10 * time.Second

// settle is how long the test lets goroutines that have started reach the batcher's queue.
// Nothing in the batcher exposes its queue, so this is a pause, not a signal; assertions that
// depend on it are written to hold even if a few goroutines are late.
const settle = 200 * time.Millisecond

var errSink = errors.New("sink: disk full")

// fakeSink is an Appender that records what it wrote. Call n (from 1) may be held until
// release is closed, and may fail.
type fakeSink struct {
	hold    func(call int) bool  // whether call waits for release
	fail    func(call int) error // error for call, or nil
	release chan struct{}
	entered chan int // receives each call number as it starts (buffered)

	mu      sync.Mutex
	calls   int
	batches [][]audit.Entry // written batches only
	written map[string]bool // TargetID of every entry written
	failed  map[string]bool // TargetID of every entry in a failed call
}

func newFakeSink() *fakeSink {
	return &fakeSink{
		release: make(chan struct{}),
		entered: make(chan int, 10000),
		written: map[string]bool{},
		failed:  map[string]bool{},
	}
}

// holdFirst makes the first call wait for release.
func (s *fakeSink) holdFirst() *fakeSink {
	s.hold = func(call int) bool { return call == 1 }
	return s
}

func (s *fakeSink) AppendAudit(ctx context.Context, entries []audit.Entry) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.mu.Unlock()
	s.entered <- call
	if s.hold != nil && s.hold(call) {
		<-s.release
	}
	var err error
	if s.fail != nil {
		err = s.fail(call)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if err != nil {
			s.failed[e.TargetID] = true
		} else {
			s.written[e.TargetID] = true
		}
	}
	if err == nil {
		s.batches = append(s.batches, append([]audit.Entry(nil), entries...))
	}
	return err
}

func (s *fakeSink) wasWritten(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written[id]
}

func (s *fakeSink) wasFailed(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed[id]
}

func (s *fakeSink) snapshot() (calls int, batches [][]audit.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([][]audit.Entry(nil), s.batches...)
}

// awaitCall waits until the sink has started call n.
func (s *fakeSink) awaitCall(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case c := <-s.entered:
			if c >= n {
				return
			}
		case <-deadline:
			t.Fatalf("sink call %d never started", n)
		}
	}
}

func entry(id string) audit.Entry {
	return audit.Entry{Action: audit.ActionSecretReveal, TargetType: "secret", TargetID: id}
}

// result is one Append's outcome.
type result struct {
	id  string
	err error
}

// appendAll starts n goroutines each appending one entry with ids prefix-0..n-1, waits until
// all have started, and returns a channel that yields every outcome.
func appendAll(t *testing.T, b *audit.Batcher, prefix string, n int) <-chan result {
	t.Helper()
	out := make(chan result, n)
	var started sync.WaitGroup
	started.Add(n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		go func() {
			started.Done()
			out <- result{id, b.Append(context.Background(), entry(id))}
		}()
	}
	started.Wait()
	return out
}

// collect receives n outcomes or fails.
func collect(t *testing.T, ch <-chan result, n int) []result {
	t.Helper()
	deadline := time.After(waitFor)
	rs := make([]result, 0, n)
	for len(rs) < n {
		select {
		case r := <-ch:
			rs = append(rs, r)
		case <-deadline:
			t.Fatalf("only %d of %d appends returned", len(rs), n)
		}
	}
	return rs
}

// appendAsync runs one Append in a goroutine.
func appendAsync(ctx context.Context, b *audit.Batcher, id string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- b.Append(ctx, entry(id)) }()
	return ch
}

// closeWithin closes b, failing if Close does not return.
func closeWithin(t *testing.T, b *audit.Batcher) {
	t.Helper()
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
}

func TestBatcherAppendReturnsAfterFlush(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		sink := newFakeSink()
		b := audit.NewBatcher(sink, 16, 0)
		defer closeWithin(t, b)
		for i := range 20 {
			id := fmt.Sprintf("seq-%d", i)
			if err := b.Append(context.Background(), entry(id)); err != nil {
				t.Fatalf("Append(%s) = %v", id, err)
			}
			// No waiting: the entry must already be written when Append returns.
			if !sink.wasWritten(id) {
				t.Fatalf("Append(%s) returned before its entry was written", id)
			}
		}
	})
	t.Run("held sink", func(t *testing.T) {
		sink := newFakeSink().holdFirst()
		b := audit.NewBatcher(sink, 16, 0)
		defer closeWithin(t, b)
		done := appendAsync(context.Background(), b, "held")
		sink.awaitCall(t, 1)
		select {
		case err := <-done:
			t.Fatalf("Append returned %v while its batch was still being written", err)
		case <-time.After(settle):
		}
		close(sink.release)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Append = %v", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Append did not return after the sink finished")
		}
		if !sink.wasWritten("held") {
			t.Fatal("entry not written")
		}
	})
	t.Run("several entries in one call", func(t *testing.T) {
		sink := newFakeSink()
		b := audit.NewBatcher(sink, 16, 0)
		defer closeWithin(t, b)
		if err := b.Append(context.Background(), entry("multi-a"), entry("multi-b"), entry("multi-c")); err != nil {
			t.Fatalf("Append = %v", err)
		}
		for _, id := range []string{"multi-a", "multi-b", "multi-c"} {
			if !sink.wasWritten(id) {
				t.Errorf("%s not written", id)
			}
		}
		// All or none: one call's entries belong to one batch.
		_, batches := sink.snapshot()
		if len(batches) != 1 || len(batches[0]) != 3 {
			t.Fatalf("batches = %d (%v), want one batch of 3", len(batches), batches)
		}
	})
}

func TestBatcherGroupsConcurrentAppends(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		callers  int
	}{
		{"queue larger than callers", 256, 200},
		{"queue smaller than callers", 32, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newFakeSink().holdFirst()
			b := audit.NewBatcher(sink, tc.maxBatch, 0)
			defer closeWithin(t, b)

			first := appendAsync(context.Background(), b, "first")
			sink.awaitCall(t, 1)
			results := appendAll(t, b, "c", tc.callers)
			time.Sleep(settle)
			close(sink.release)

			if err := <-first; err != nil {
				t.Fatalf("first Append = %v", err)
			}
			for _, r := range collect(t, results, tc.callers) {
				if r.err != nil {
					t.Errorf("Append(%s) = %v", r.id, r.err)
				}
				if !sink.wasWritten(r.id) {
					t.Errorf("Append(%s) returned nil but the entry was not written", r.id)
				}
			}

			calls, batches := sink.snapshot()
			total, largest := 0, 0
			for _, batch := range batches {
				total += len(batch)
				largest = max(largest, len(batch))
				if len(batch) > tc.maxBatch {
					t.Errorf("batch of %d entries exceeds maxBatch %d", len(batch), tc.maxBatch)
				}
			}
			if total != tc.callers+1 {
				t.Errorf("%d entries written, want %d (each exactly once)", total, tc.callers+1)
			}
			// The callers queued behind the held first flush must share commits.
			if calls >= (tc.callers+1)/2 {
				t.Errorf("%d sink calls for %d callers: appends were not grouped", calls, tc.callers+1)
			}
			if want := min(tc.maxBatch, tc.callers) / 2; largest < want {
				t.Errorf("largest batch has %d entries, want at least %d", largest, want)
			}
		})
	}
}

func TestBatcherErrorReachesEveryCallerOfTheBatch(t *testing.T) {
	tests := []struct {
		name string
		fail func(call int) error
	}{
		{"every call fails", func(int) error { return errSink }},
		{"grouped batch fails", func(call int) error {
			if call == 2 {
				return errSink
			}
			return nil
		}},
		{"alternate calls fail", func(call int) error {
			if call%2 == 0 {
				return errSink
			}
			return nil
		}},
		{"no call fails", func(int) error { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newFakeSink().holdFirst()
			sink.fail = tc.fail
			b := audit.NewBatcher(sink, 16, 0)
			defer closeWithin(t, b)

			first := appendAsync(context.Background(), b, "first")
			sink.awaitCall(t, 1)
			const n = 60
			results := appendAll(t, b, "e", n)
			time.Sleep(settle)
			close(sink.release)

			rs := collect(t, results, n)
			rs = append(rs, result{"first", <-first})
			for _, r := range rs {
				written, failed := sink.wasWritten(r.id), sink.wasFailed(r.id)
				if written == failed {
					t.Fatalf("%s: written=%v failed=%v, want exactly one", r.id, written, failed)
				}
				switch {
				case r.err == nil && !written:
					t.Errorf("Append(%s) = nil but its entry was not written", r.id)
				case r.err != nil && !errors.Is(r.err, errSink):
					t.Errorf("Append(%s) = %v, want the sink's error", r.id, r.err)
				case r.err != nil && written:
					t.Errorf("Append(%s) = %v but its entry was written", r.id, r.err)
				}
			}
		})
	}
}

func TestBatcherErrorGroupedBatch(t *testing.T) {
	// Every caller queued behind the held first call ends up in batches that fail: all of
	// them, not just the one whose context the batch used, must see the error.
	sink := newFakeSink().holdFirst()
	sink.fail = func(call int) error {
		if call == 1 {
			return nil
		}
		return errSink
	}
	b := audit.NewBatcher(sink, 256, 0)
	defer closeWithin(t, b)
	first := appendAsync(context.Background(), b, "first")
	sink.awaitCall(t, 1)
	const n = 100
	results := appendAll(t, b, "g", n)
	time.Sleep(settle)
	close(sink.release)
	if err := <-first; err != nil {
		t.Fatalf("first Append = %v", err)
	}
	for _, r := range collect(t, results, n) {
		if !errors.Is(r.err, errSink) {
			t.Errorf("Append(%s) = %v, want %v", r.id, r.err, errSink)
		}
	}
	if calls, _ := sink.snapshot(); calls >= n/2 {
		t.Errorf("%d sink calls for %d callers: the failing batch was not grouped", calls, n)
	}
}

func TestBatcherCloseFlushesQueued(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		callers  int
	}{
		{"all queued in buffer", 64, 40},
		{"senders blocked on a full queue", 8, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newFakeSink().holdFirst()
			b := audit.NewBatcher(sink, tc.maxBatch, 0)

			first := appendAsync(context.Background(), b, "first")
			sink.awaitCall(t, 1)
			results := appendAll(t, b, "q", tc.callers)
			time.Sleep(settle)

			closed := make(chan struct{})
			go func() { b.Close(); close(closed) }()
			select {
			case <-closed:
				t.Fatal("Close returned while a batch was still being written")
			case <-time.After(settle):
			}
			close(sink.release)
			select {
			case <-closed:
			case <-time.After(waitFor):
				t.Fatal("Close did not return after the sink finished")
			}

			if err := <-first; err != nil {
				t.Fatalf("first Append = %v", err)
			}
			for _, r := range collect(t, results, tc.callers) {
				if r.err != nil {
					t.Errorf("queued Append(%s) = %v, want nil (Close must flush it)", r.id, r.err)
				}
				if !sink.wasWritten(r.id) {
					t.Errorf("queued entry %s was not written by Close", r.id)
				}
			}

			callsBefore, _ := sink.snapshot()
			if err := b.Append(context.Background(), entry("late")); !errors.Is(err, audit.ErrClosed) {
				t.Fatalf("Append after Close = %v, want ErrClosed", err)
			}
			if callsAfter, _ := sink.snapshot(); callsAfter != callsBefore || sink.wasWritten("late") {
				t.Fatal("Append after Close reached the sink")
			}
			closeWithin(t, b) // a second Close is harmless
		})
	}
}

func TestBatcherContextCancelledBeforeEnqueue(t *testing.T) {
	t.Run("queue full", func(t *testing.T) {
		// maxBatch 1 gives a queue of one: the held first call plus a few fillers leave no
		// room, so a cancelled caller can never be enqueued.
		sink := newFakeSink().holdFirst()
		b := audit.NewBatcher(sink, 1, 0)
		defer closeWithin(t, b)
		first := appendAsync(context.Background(), b, "first")
		sink.awaitCall(t, 1)
		fillers := appendAll(t, b, "fill", 4)
		time.Sleep(settle)

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Append(ctx, entry("cancelled")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Append with cancelled ctx = %v, want context.Canceled", err)
		}

		// A deadline that passes while waiting for room also gives up.
		dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer dcancel()
		if err := b.Append(dctx, entry("timed-out")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Append with expiring ctx = %v, want context.DeadlineExceeded", err)
		}

		close(sink.release)
		if err := <-first; err != nil {
			t.Fatalf("first Append = %v", err)
		}
		for _, r := range collect(t, fillers, 4) {
			if r.err != nil {
				t.Errorf("Append(%s) = %v", r.id, r.err)
			}
		}
		closeWithin(t, b)
		for _, id := range []string{"cancelled", "timed-out"} {
			if sink.wasWritten(id) {
				t.Errorf("entry %s was written although its caller was told it failed", id)
			}
		}
	})
	t.Run("idle batcher", func(t *testing.T) {
		// With room in the queue a cancelled caller must still be refused: it has no
		// outcome to wait for and must not be written on its behalf.
		sink := newFakeSink()
		b := audit.NewBatcher(sink, 64, 0)
		defer closeWithin(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for i := range 50 {
			id := fmt.Sprintf("idle-%d", i)
			err := b.Append(ctx, entry(id))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("attempt %d: Append with cancelled ctx = %v, want context.Canceled", i, err)
			}
			if sink.wasWritten(id) {
				t.Fatalf("attempt %d: entry written although ctx was cancelled before Append", i)
			}
		}
	})
	t.Run("cancelled after enqueue still waits for the outcome", func(t *testing.T) {
		sink := newFakeSink().holdFirst()
		b := audit.NewBatcher(sink, 16, 0)
		defer closeWithin(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		done := appendAsync(ctx, b, "enqueued")
		sink.awaitCall(t, 1)
		cancel()
		select {
		case err := <-done:
			t.Fatalf("Append returned %v before its batch finished", err)
		case <-time.After(settle):
		}
		close(sink.release)
		if err := <-done; err != nil {
			t.Fatalf("Append = %v, want nil: the entry was written", err)
		}
		if !sink.wasWritten("enqueued") {
			t.Fatal("entry not written")
		}
	})
}

func TestBatcherCloseLeavesNoGoroutine(t *testing.T) {
	tests := []struct {
		name    string
		appends int
	}{
		{"idle", 0},
		{"after use", 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			sink := newFakeSink()
			b := audit.NewBatcher(sink, 8, 0)
			for _, r := range collect(t, appendAll(t, b, "l", tc.appends), tc.appends) {
				if r.err != nil {
					t.Fatalf("Append(%s) = %v", r.id, r.err)
				}
			}
			closeWithin(t, b)
			deadline := time.Now().Add(waitFor)
			for runtime.NumGoroutine() > before {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestFlushDeadline: a write that hangs fails its callers at the deadline, requests arriving
// while it hangs fail at once without reaching the sink, and writing resumes once it returns.
func TestFlushDeadline(t *testing.T) {
	sink := newFakeSink().holdFirst()
	b := audit.NewBatcher(sink, 16, 200*time.Millisecond)
	defer b.Close()
	ctx := context.Background()
	start := time.Now()
	if err := b.Append(ctx, audit.Entry{TargetID: "hung"}); !errors.Is(err, audit.ErrFlushDeadline) {
		t.Fatalf("a hung write: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the hung write held its caller %v", took)
	}
	start = time.Now()
	if err := b.Append(ctx, audit.Entry{TargetID: "while hung"}); !errors.Is(err, audit.ErrFlushDeadline) || time.Since(start) > time.Second {
		t.Fatalf("a request while the write hangs: %v after %v", err, time.Since(start))
	}
	sink.mu.Lock()
	calls := sink.calls
	sink.mu.Unlock()
	if calls != 1 {
		t.Fatalf("the sink was called %d times while hung, want 1", calls)
	}
	close(sink.release)
	deadline := time.Now().Add(waitFor)
	for {
		err := b.Append(ctx, audit.Entry{TargetID: "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing did not resume: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
