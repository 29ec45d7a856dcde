package events

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the Postgres notification channel the events table's trigger notifies, with
// "<tenant>:<id>" as payload, when the inserting transaction commits.
const Channel = "coffer_events"

// Listener holds one Postgres connection that LISTENs on Channel and tells the hub which
// tenants have new events. This is how a change made through one replica reaches the
// subscribers of every other. When the connection is lost it reconnects with backoff and,
// once listening again, has every feed reread, so that nothing committed meanwhile is missed.
type Listener struct {
	URL string
	Hub *Hub
	Log *slog.Logger

	up atomic.Bool
}

// Up reports whether the listener is connected and listening.
func (l *Listener) Up() bool { return l.up.Load() }

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx)
		l.up.Store(false)
		if ctx.Err() != nil {
			return
		}
		l.Log.Warn("events: the Postgres listener lost its connection; reconnecting", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (l *Listener) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, l.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	l.up.Store(true)
	// Whatever committed while no one listened is read now.
	l.Hub.NotifyAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		tenantID, _, ok := strings.Cut(n.Payload, ":")
		if !ok {
			continue
		}
		l.Hub.Notify(tenantID)
	}
}
