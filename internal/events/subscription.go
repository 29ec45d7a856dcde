package events

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer"
)

var (
	// ErrSlow ends a subscription whose reader fell a whole queue behind.
	ErrSlow = errors.New("events: the subscriber did not keep up")
	// ErrClosed ends subscriptions when the hub stops (the server shuts down).
	ErrClosed = errors.New("events: the server is shutting down")
	// ErrReset answers a resume from an event the table no longer holds (or never held):
	// the client must reload what it shows and subscribe afresh.
	ErrReset = errors.New("events: cannot resume from that event")
)

// Subscription receives a tenant's events in id order, each once, and every instance-level
// event (for credential rechecks). Events arrive unfiltered: the subscriber decides, at send
// time, what its viewer may see.
type Subscription struct {
	hub      *Hub
	tenantID string
	queue    chan *Batch
	done     chan struct{}

	// Guarded by hub.mu.
	cursor int64 // the last event of the tenant queued (or, before live, read back)
	live   bool  // the hub queues new events; before that, Subscribe is reading back
	err    error
}

// Events is the subscription's queue: batches of events in id order, to be read only.
func (s *Subscription) Events() <-chan *Batch { return s.queue }

// Done is closed when the subscription ends; Err then says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended, nil while it runs.
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s, ErrClosed)
}

// Subscribe registers a subscription to a tenant's events. With after nil it is live at once:
// every event committed from now on reaches its queue. With after set (a resume, checked
// first with Resumable) the caller must then call Replay, which sends what followed after and
// makes the subscription live, with no gap and no duplicate.
func (h *Hub) Subscribe(ctx context.Context, tenantID string, after *int64) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	// feedFor may release the lock, and a feed left without subscriptions meanwhile is
	// dropped: take both feeds again until neither moved.
	var f *feed
	for {
		inst, err := h.feedFor(ctx, "")
		if err != nil {
			return nil, err
		}
		if f, err = h.feedFor(ctx, tenantID); err != nil {
			return nil, err
		}
		if h.feeds[""] == inst && h.feeds[tenantID] == f {
			break
		}
	}
	s := &Subscription{hub: h, tenantID: tenantID, queue: make(chan *Batch, h.opts.Queue), done: make(chan struct{})}
	f.subs[s] = true
	h.all[s] = true
	if after == nil {
		s.cursor, s.live = f.cursor, true
	} else {
		s.cursor = *after
	}
	return s, nil
}

// Replay passes every stored event after the resume point to send (which may block; ctx
// ends it), then makes the subscription live: the hub's next event for it is the first one
// after the last replayed. Instance events committed meanwhile are not replayed: they only
// prompt rechecks, which the caller does after subscribing anyway.
func (s *Subscription) Replay(ctx context.Context, send func(coffer.Event) error) error {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feeds[s.tenantID]
	for s.err == nil && f != nil && s.cursor < f.cursor {
		from := s.cursor
		h.mu.Unlock()
		evs, err := h.store.EventsAfter(ctx, s.tenantID, from, page)
		if err == nil {
			for _, ev := range evs {
				if err = send(ev); err != nil {
					break
				}
			}
		}
		h.mu.Lock()
		if err != nil {
			h.remove(s, err)
			return err
		}
		if len(evs) == 0 {
			break // the feed is ahead of the table (events pruned meanwhile)
		}
		// Events the table had but the hub has not handed out yet are sent now; the
		// cursor keeps the hub from queueing them again.
		s.cursor = evs[len(evs)-1].ID
	}
	if s.err != nil {
		return s.err
	}
	s.live = true
	return nil
}

// Resumable checks that the events of a tenant after id are all still stored, or returns
// ErrReset: the event id itself is stored (so retention removed nothing after it), or id is
// the newest, or id is 0 and nothing was ever removed.
func (h *Hub) Resumable(ctx context.Context, tenantID string, id int64) error {
	oldest, newest, err := h.store.EventBounds(ctx, tenantID)
	if err != nil {
		return err
	}
	switch {
	case id < 0 || id > newest:
		return ErrReset
	case id == newest || id >= oldest && oldest > 0 && h.stored(ctx, tenantID, id):
		return nil
	case id == 0 && oldest <= 1:
		return nil
	}
	return ErrReset
}

// stored reports whether the table holds the event id of the tenant.
func (h *Hub) stored(ctx context.Context, tenantID string, id int64) bool {
	evs, err := h.store.EventsAfter(ctx, tenantID, id-1, 1)
	return err == nil && len(evs) == 1 && evs[0].ID == id
}
