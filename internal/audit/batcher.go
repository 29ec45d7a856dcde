package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned for entries submitted after the batcher stopped.
var ErrClosed = errors.New("audit: batcher closed")

// Batcher group-commits entries: concurrent callers each wait for their own entry to be
// durable, but many entries share one transaction. This keeps reveal auditing fail-closed
// without one commit (and one fsync) per request.
type Batcher struct {
	sink     Appender
	maxBatch int
	// deadline bounds one flush: a database that hangs fails the waiting requests instead of
	// stalling them (and the writer) for ever.
	deadline time.Duration
	reqs     chan request
	done     chan struct{}
	wg       sync.WaitGroup

	// mu makes Close wait for senders in flight, so no request is queued after the
	// writer's final drain.
	mu     sync.RWMutex
	closed bool
}

type request struct {
	ctx     context.Context
	entries []Entry
	result  chan error
}

// DefaultFlushDeadline is how long one group commit may take before its requests fail.
const DefaultFlushDeadline = 5 * time.Second

// ErrFlushDeadline is the cause when a group commit did not finish within its deadline.
var ErrFlushDeadline = errors.New("audit: the audit log did not answer in time")

// NewBatcher starts a batcher writing to sink with at most maxBatch entries per commit, each
// commit bounded by deadline (DefaultFlushDeadline when zero). The caller owns it and must
// call Close.
func NewBatcher(sink Appender, maxBatch int, deadline time.Duration) *Batcher {
	if maxBatch <= 0 {
		maxBatch = 256
	}
	if deadline <= 0 {
		deadline = DefaultFlushDeadline
	}
	b := &Batcher{
		sink:     sink,
		maxBatch: maxBatch,
		deadline: deadline,
		reqs:     make(chan request, maxBatch),
		done:     make(chan struct{}),
	}
	b.wg.Add(1)
	go b.loop()
	return b
}

// Append returns once entries are durable, or with the error that kept them from being so.
func (b *Batcher) Append(ctx context.Context, entries ...Entry) error {
	// A caller that already gave up must not have its entry written behind its back.
	if err := ctx.Err(); err != nil {
		return err
	}
	r := request{ctx: ctx, entries: entries, result: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	// Wait for the outcome even if ctx ends: once queued, the entry may still be written,
	// and the caller must not report failure for something that was recorded.
	return <-r.result
}

// Close stops accepting entries, flushes what is queued and waits for the writer to exit.
func (b *Batcher) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.wg.Wait()
}

func (b *Batcher) loop() {
	defer b.wg.Done()
	batch := make([]request, 0, b.maxBatch)
	for {
		var first request
		select {
		case first = <-b.reqs:
		case <-b.done:
			b.drain()
			return
		}
		batch = append(batch[:0], first)
		n := len(first.entries)
		// Take whatever else is already waiting: the writer never sleeps to wait for more,
		// so a lone request pays no extra latency while a busy server batches naturally.
	more:
		for n < b.maxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				n += len(r.entries)
			default:
				break more
			}
		}
		b.flush(batch)
	}
}

func (b *Batcher) drain() {
	for {
		select {
		case r := <-b.reqs:
			b.flush([]request{r})
		default:
			return
		}
	}
}

func (b *Batcher) flush(batch []request) {
	entries := make([]Entry, 0, len(batch))
	for _, r := range batch {
		entries = append(entries, r.entries...)
	}
	// The write is not tied to any one caller's context: a caller that gave up must not
	// abort the commit of everyone else's entries. It has a deadline of its own, so that a
	// hung database fails everyone waiting (503) instead of holding them. A database that
	// honours cancellation rolls the write back at the deadline; one that does not (SQLite
	// waiting on a lock) may still finish it later, which only ever records a read that was
	// refused, never loses one that was answered.
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(batch[0].ctx), b.deadline, ErrFlushDeadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.sink.AppendAudit(ctx, entries) }()
	var err error
	select {
	case err = <-done:
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrFlushDeadline, err)
		}
	case <-ctx.Done():
		err = ErrFlushDeadline
		for _, r := range batch {
			r.result <- err
		}
		b.waitStuck(done)
		return
	}
	for _, r := range batch {
		r.result <- err
	}
}

// waitStuck waits for a write that overran its deadline to come back, failing every request
// that arrives meanwhile at once: the log is not answering, and they must not queue behind it.
func (b *Batcher) waitStuck(done <-chan error) {
	for {
		select {
		case <-done:
			return
		case r := <-b.reqs:
			r.result <- ErrFlushDeadline
		case <-b.done:
			<-done
			return
		}
	}
}
