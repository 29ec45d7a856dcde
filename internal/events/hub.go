// Package events delivers committed changes to live subscribers (the WebSocket and SSE stream)
// and to anyone else who wants to know that a tenant has new events (webhooks).
//
// The events table is the source of truth: the one audit writer stores each change's event in
// the change's transaction, with an id that increases per tenant and commits in order.
// Announcements (the store's after-commit hook in this process, Postgres NOTIFY from every
// replica) carry no event, only the tenant: the Hub then reads what is new from the table.
// Lost announcements are therefore harmless, and a periodic poll catches up after any of them.
package events

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer"
)

// Store reads the events table.
type Store interface {
	EventsAfter(ctx context.Context, tenantID string, afterID int64, limit int) ([]coffer.Event, error)
	EventBounds(ctx context.Context, tenantID string) (oldest, newest int64, err error)
}

// page is how many events one read of the table returns.
const page = 500

// Options tune a Hub.
type Options struct {
	// Queue is how many batches of events (each what one read of the table returned) a
	// subscription buffers; a subscriber that lets it fill is dropped.
	Queue int
	// Poll is how often every tenant with subscribers is read even without an announcement.
	Poll time.Duration
}

// Hub fans events out to subscriptions. One goroutine (Run) reads the table and hands each
// event to the subscriptions of its tenant without ever waiting for one of them.
type Hub struct {
	store Store
	log   *slog.Logger
	opts  Options

	wake chan struct{}

	mu       sync.Mutex
	dirty    map[string]bool
	feeds    map[string]*feed // by tenant; "" is the instance
	all      map[*Subscription]bool
	watchers []func(tenantID string)
	closed   bool
	stopped  chan struct{}

	// Counters for /metrics.
	dropped   atomic.Int64
	delivered atomic.Int64
}

// feed is one tenant's place in the table and its subscriptions.
type feed struct {
	cursor int64 // the last event id handed out
	subs   map[*Subscription]bool
}

// NewHub makes a hub; Run must be running for events to flow.
func NewHub(store Store, log *slog.Logger, opts Options) *Hub {
	if opts.Queue <= 0 {
		opts.Queue = 64
	}
	if opts.Poll <= 0 {
		opts.Poll = 30 * time.Second
	}
	return &Hub{store: store, log: log, opts: opts, wake: make(chan struct{}, 1), dirty: map[string]bool{},
		feeds: map[string]*feed{}, all: map[*Subscription]bool{}, stopped: make(chan struct{})}
}

// Stopped is closed once the hub has stopped (the server is shutting down): streams that
// have not subscribed yet end then too.
func (h *Hub) Stopped() <-chan struct{} { return h.stopped }

// Notify tells the hub that a tenant ("" for the instance) may have new events. It never
// blocks.
func (h *Hub) Notify(tenantID string) {
	h.mu.Lock()
	h.dirty[tenantID] = true
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// NotifyAll marks every tenant with subscribers as possibly changed, after announcements may
// have been lost (the Postgres listener reconnected).
func (h *Hub) NotifyAll() {
	h.mu.Lock()
	for t := range h.feeds {
		h.dirty[t] = true
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Publish implements coffer.Publisher: the services' announcement after commit.
func (h *Hub) Publish(_ context.Context, events ...coffer.Event) {
	for i, ev := range events {
		if i == 0 || ev.TenantID != events[i-1].TenantID {
			h.Notify(ev.TenantID)
		}
	}
}

// Watch registers a function told of every announced tenant (and, at each poll or after a
// reconnect, of every tenant with subscribers), such as the webhook dispatcher's wake-up. It
// must not block.
func (h *Hub) Watch(fn func(tenantID string)) {
	h.mu.Lock()
	h.watchers = append(h.watchers, fn)
	h.mu.Unlock()
}

// Stats are the hub's counters.
type Stats struct {
	Subscriptions int
	Delivered     int64
	Dropped       int64
}

// Stats returns the current counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	n := len(h.all)
	h.mu.Unlock()
	return Stats{Subscriptions: n, Delivered: h.delivered.Load(), Dropped: h.dropped.Load()}
}

// Run reads and hands out events until ctx ends, then closes every subscription.
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(h.opts.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			h.closeAll()
			return
		case <-h.wake:
		case <-tick.C:
			h.mu.Lock()
			for t := range h.feeds {
				h.dirty[t] = true
			}
			h.mu.Unlock()
		}
		h.mu.Lock()
		dirty := h.dirty
		h.dirty = map[string]bool{}
		watchers := h.watchers
		h.mu.Unlock()
		for t := range dirty {
			for _, w := range watchers {
				w(t)
			}
			h.dispatch(ctx, t)
		}
	}
}

// dispatch hands a tenant's new events to its subscriptions; instance events go to every
// subscription, which rechecks its credential when one names it.
func (h *Hub) dispatch(ctx context.Context, tenantID string) {
	for {
		h.mu.Lock()
		f := h.feeds[tenantID]
		h.mu.Unlock()
		if f == nil {
			return
		}
		// Only this goroutine moves a feed's cursor, so it may be read without the lock.
		evs, err := h.store.EventsAfter(ctx, tenantID, f.cursor, page)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("events: reading new events failed; retrying at the next poll", "err", err)
			}
			return
		}
		if len(evs) > 0 {
			all := newBatch(evs)
			h.mu.Lock()
			f.cursor = evs[len(evs)-1].ID
			targets := f.subs
			if tenantID == "" {
				targets = h.all
			}
			for s := range targets {
				if !s.live {
					continue
				}
				batch := all
				if tenantID != "" {
					// A tenant's events reach a subscription once each, after what it
					// replayed; instance events carry another chain's ids and only prompt
					// rechecks.
					batch = all.from(sort.Search(len(evs), func(i int) bool { return evs[i].ID > s.cursor }))
				}
				if len(batch.Events) > 0 {
					h.offer(s, batch)
				}
			}
			h.mu.Unlock()
		}
		if len(evs) < page {
			return
		}
	}
}

// Batch is events in id order as one read of the table returned them, shared read-only by
// every subscription they are queued for.
type Batch struct {
	Events []coffer.Event
	memo   []memo
}

type memo struct {
	once sync.Once
	v    any
}

func newBatch(evs []coffer.Event) *Batch { return &Batch{Events: evs, memo: make([]memo, len(evs))} }

// from is the batch's events from index i on, sharing its memos.
func (b *Batch) from(i int) *Batch { return &Batch{Events: b.Events[i:], memo: b.memo[i:]} }

// Memo returns what make returned for event i when a subscriber first asked: something that
// depends on the event alone (its encoding for the wire) is made once, not once per
// subscriber.
func (b *Batch) Memo(i int, make func() any) any {
	m := &b.memo[i]
	m.once.Do(func() { m.v = make() })
	return m.v
}

// offer queues a batch for s or drops s if its queue is full. The caller holds h.mu.
func (h *Hub) offer(s *Subscription, batch *Batch) {
	if batch.Events[0].TenantID == s.tenantID {
		s.cursor = batch.Events[len(batch.Events)-1].ID
	}
	select {
	case s.queue <- batch:
		h.delivered.Add(int64(len(batch.Events)))
	default:
		h.dropped.Add(1)
		h.remove(s, ErrSlow)
	}
}

// feedFor returns a tenant's feed, made at the table's newest event if it had none. The
// caller holds h.mu, which is released while the table is read.
func (h *Hub) feedFor(ctx context.Context, tenantID string) (*feed, error) {
	if f := h.feeds[tenantID]; f != nil {
		return f, nil
	}
	h.mu.Unlock()
	_, newest, err := h.store.EventBounds(ctx, tenantID)
	h.mu.Lock()
	if err != nil {
		return nil, err
	}
	if f := h.feeds[tenantID]; f != nil {
		return f, nil
	}
	f := &feed{cursor: newest, subs: map[*Subscription]bool{}}
	h.feeds[tenantID] = f
	// Anything committed since the read above is picked up by a dispatch right away.
	h.dirty[tenantID] = true
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return f, nil
}

// remove ends a subscription. The caller holds h.mu.
func (h *Hub) remove(s *Subscription, why error) {
	if s.err != nil {
		return
	}
	s.err = why
	close(s.done)
	delete(h.all, s)
	if f := h.feeds[s.tenantID]; f != nil {
		delete(f.subs, s)
		if len(f.subs) == 0 {
			delete(h.feeds, s.tenantID)
		}
	}
	if len(h.all) == 0 {
		delete(h.feeds, "")
	}
}

func (h *Hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.stopped)
	for s := range h.all {
		h.remove(s, ErrClosed)
	}
}
