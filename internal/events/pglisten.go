package events

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Channel is the Postgres notification channel the events table's trigger notifies, with
// "<tenant>:<id>" as payload, when the inserting transaction commits.
const Channel = "coffer_events"

// Listener holds one Postgres connection that LISTENs on Channel and tells the hub which
// tenants have new events. This is how a change made through one replica reaches the
// subscribers of every other. When the connection is lost it reconnects with backoff and,
// once listening again, has every feed reread, so that nothing committed meanwhile is missed.
//
// It also hears ChangesChannel (tenants whose credentials' scopes changed without an event)
// and tells Changed of every tenant named on either channel. To prove that it still hears,
// it notifies itself on a channel of its own every Heartbeat: Postgres delivers notifications
// in commit order, so once a heartbeat sent at t is back, every change committed before t has
// been told to Changed. Fresh reports how recent that proof is.
type Listener struct {
	URL string
	Hub *Hub
	Log *slog.Logger
	// ChangesChannel is the Postgres channel of scope changes (store.ChangesChannel).
	ChangesChannel string
	// Changed is told of every tenant with a change ("" for every tenant), and of "" on
	// every (re)connection, since whatever committed meanwhile was not heard. It must not
	// block.
	Changed func(tenantID string)
	// Heartbeat is how often the listener proves the connection; 0 means 250 ms.
	Heartbeat time.Duration

	up    atomic.Bool
	base  time.Time    // heartbeats' times are offsets from base, on the monotonic clock
	heard atomic.Int64 // send time of the newest heartbeat back; 0: none on this connection
}

// Fresh reports whether every change committed more than maxAge ago has been heard of: the
// listener is up and a heartbeat sent less than maxAge ago came back.
func (l *Listener) Fresh(maxAge time.Duration) bool {
	heard := l.heard.Load()
	return l.up.Load() && heard != 0 && time.Since(l.base)-time.Duration(heard) < maxAge
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	l.base = time.Now()
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

// silentAfter is how many heartbeats may go unanswered before the connection is given up as
// dead (a half-open TCP connection blocks reads for much longer).
const silentAfter = 12

func (l *Listener) listen(ctx context.Context) error {
	beat := l.Heartbeat
	if beat <= 0 {
		beat = 250 * time.Millisecond
	}
	cfg, err := pgx.ParseConfig(l.URL)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 10*time.Second {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A channel of this connection's own: no other replica hears its heartbeats.
	own := fmt.Sprintf("coffer_heartbeat_%d", conn.PgConn().PID())
	channels := []string{Channel, own}
	if l.ChangesChannel != "" {
		channels = append(channels, l.ChangesChannel)
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	// Whatever committed while no one listened was not heard: every cached scope goes, and
	// the cache stays bypassed until this connection's first heartbeat is back.
	l.heard.Store(0)
	l.changed("")
	l.up.Store(true)
	l.Hub.NotifyAll()
	var sent time.Time
	connected := time.Since(l.base)
	for {
		if time.Since(sent) >= beat {
			if silent := time.Since(l.base) - max(time.Duration(l.heard.Load()), connected); silent > silentAfter*beat {
				return fmt.Errorf("no heartbeat back for %s", silent.Round(time.Millisecond))
			}
			sent = time.Now()
			// Never 0, which means none.
			at := max(sent.Sub(l.base), 1)
			if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", own, strconv.FormatInt(int64(at), 10)); err != nil {
				return err
			}
		}
		wait, cancel := context.WithTimeout(ctx, beat-time.Since(sent))
		n, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil {
			if ctx.Err() == nil && pgconn.Timeout(err) {
				continue
			}
			return err
		}
		switch n.Channel {
		case own:
			if at, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
				l.heard.Store(at)
			}
		case Channel:
			tenantID, _, ok := strings.Cut(n.Payload, ":")
			if !ok {
				continue
			}
			l.changed(tenantID)
			l.Hub.Notify(tenantID)
		default:
			l.changed(n.Payload)
		}
	}
}

// ListenerApplicationName names the listener's connection in pg_stat_activity.
const ListenerApplicationName = "coffer-events-listener"

func (l *Listener) changed(tenantID string) {
	if l.Changed != nil {
		l.Changed(tenantID)
	}
}
