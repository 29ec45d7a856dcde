package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cofferhq/coffer/tools/internal/benchdb"
)

// What the subscribers watch and the writer writes to.
const (
	tenantSlug  = "default"
	projectSlug = "web"
	envSlug     = "staging"
	namePrefix  = "EVENTBENCH_"
)

// result is one dialect's measurement.
type result struct {
	dialect string
	skipped bool // Postgres was unreachable: reported, not a failure
	err     error

	subscribers int           // subscribed before the first write
	openTime    time.Duration // to open and subscribe all of them
	writes      int           // acknowledged writes
	writeTime   time.Duration // from the first write's start to the last's acknowledgement
	put         stats         // PUT round trips

	expected   int // writes × subscribers
	received   int // deliveries of this run's writes, duplicates excluded
	duplicates int
	unexpected int            // events that were not this run's writes
	closed     map[string]int // subscribers whose stream ended early, by why
	fromCommit stats          // occurred_at → receipt
	fromAck    stats          // PUT response at the writer → receipt
	worst      worstWrite     // the write whose deliveries took longest at the median

	serverDropped float64 // coffer_event_stream_dropped_total; -1 when unread

	load      string        // the machine's 1-minute load average before the writes
	window    time.Duration // from the first write to the end of the wait for deliveries
	cpuBefore cpuTimes
	cpuAfter  cpuTimes
}

func (r result) missing() int { return r.expected - r.received }

// measure runs one dialect against a fresh server and database. Every failure is reported
// in the result.
func measure(ctx context.Context, o options, bin, dialect string, stderr io.Writer) (res result) {
	res = result{dialect: dialect, serverDropped: -1}
	fmt.Fprintf(stderr, "eventbench: %s: starting the server\n", dialect)
	dataDir, err := os.MkdirTemp("", "coffer-eventbench-data-")
	if err != nil {
		res.err = err
		return res
	}
	defer os.RemoveAll(dataDir)
	var dbURL string
	if dialect == postgres {
		db, err := benchdb.Create(ctx, o.postgresURL, "coffer_eventbench_")
		if err != nil {
			res.skipped, res.err = true, err
			return res
		}
		defer func() {
			if err := db.Drop(); err != nil && res.err == nil {
				res.err = err
			}
		}()
		dbURL = db.URL
	}
	srv, err := startServer(ctx, o, bin, dataDir, dbURL, stderr)
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := srv.stop(); err != nil && res.err == nil {
			res.err = err
		}
	}()
	if _, err := srv.call(ctx, http.MethodPost, "/api/v1/tenants/"+tenantSlug+"/projects",
		map[string]string{"slug": projectSlug, "name": "Web"}, http.StatusCreated); err != nil {
		res.err = fmt.Errorf("create the project: %w", err)
		return res
	}

	fmt.Fprintf(stderr, "eventbench: %s: opening %d subscribers\n", dialect, o.subscribers)
	start := time.Now()
	subs, err := openSubscribers(ctx, o, srv)
	defer closeSubscribers(subs)
	if err != nil {
		res.err = err
		return res
	}
	res.subscribers, res.openTime = len(subs), time.Since(start)

	fmt.Fprintf(stderr, "eventbench: %s: writing %d secrets every %s\n", dialect, o.writes, o.interval)
	res.load = loadAverage()
	res.cpuBefore = readCPU(srv.PID())
	windowStart := time.Now()
	acks, put, err := write(ctx, o, srv)
	res.put = put
	if len(acks) > 0 {
		res.writes, res.writeTime = len(acks), acks[len(acks)-1].ack.Sub(acks[0].start)
	}
	if err != nil {
		res.err = err
		return res
	}
	awaitDeliveries(ctx, subs, len(acks), o.drain)
	res.window, res.cpuAfter = time.Since(windowStart), readCPU(srv.PID())
	if v, ok := srv.metric(ctx, "coffer_event_stream_dropped_total"); ok {
		res.serverDropped = v
	}
	res.tally(subs, acks)
	return res
}

// subscriber is one WebSocket stream. Only its reader goroutine touches got and end until
// done is closed.
type subscriber struct {
	conn     *websocket.Conn
	received *atomic.Int64 // shared by every subscriber of the run
	got      []delivery
	end      string // why the stream ended, if the server ended it
	done     chan struct{}
}

// delivery is one event as a subscriber received it.
type delivery struct {
	write    int // index of the write, -1 for an event that is not this run's
	recv     time.Time
	occurred time.Time
}

// eventMsg holds the only fields the readers decode.
type eventMsg struct {
	Type       string    `json:"type"`
	Name       string    `json:"name"`
	OccurredAt time.Time `json:"occurred_at"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
}

// openSubscribers connects and subscribes o.subscribers streams, o.dialConcurrency at a time,
// and returns once every one of them has been answered "subscribed".
func openSubscribers(ctx context.Context, o options, srv *server) ([]*subscriber, error) {
	var (
		received atomic.Int64
		mu       sync.Mutex
		subs     = make([]*subscriber, 0, o.subscribers)
		errs     []error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, o.dialConcurrency)
	)
	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	sub := map[string]any{"type": "subscribe", "tenant": tenantSlug, "project": projectSlug, "environments": []string{envSlug}}
	for i := 0; i < o.subscribers && ctx.Err() == nil; i++ {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s, err := subscribe(ctx, dialer, srv, sub)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			s.received = &received
			subs = append(subs, s)
			go s.read(o.writes)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return subs, fmt.Errorf("%d of %d subscribers failed to subscribe; the first: %w", len(errs), o.subscribers, errs[0])
	}
	return subs, ctx.Err()
}

func subscribe(ctx context.Context, dialer websocket.Dialer, srv *server, msg any) (*subscriber, error) {
	conn, resp, err := dialer.DialContext(ctx, srv.WSURL, srv.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("open the stream: %w (status %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("open the stream: %w", err)
	}
	if err := conn.WriteJSON(msg); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("send subscribe: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var m eventMsg
	if err := conn.ReadJSON(&m); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("await subscribed: %w", err)
	}
	if m.Type != "subscribed" {
		_ = conn.Close()
		return nil, fmt.Errorf("subscribe answered %q: %s %s", m.Type, m.Code, m.Message)
	}
	// No deadline from here: the server pings every 25 s and the reader's default ping
	// handler answers while it reads; closeSubscribers ends the reads.
	_ = conn.SetReadDeadline(time.Time{})
	return &subscriber{conn: conn, done: make(chan struct{})}, nil
}

// read records every event until the stream ends. The receipt time is taken before any
// decoding, so the subscriber's own parsing is not counted against the server.
func (s *subscriber) read(writes int) {
	defer close(s.done)
	s.got = make([]delivery, 0, writes)
	for {
		_, data, err := s.conn.ReadMessage()
		recv := time.Now()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				s.end = fmt.Sprintf("closed by the server with %d %s", ce.Code, ce.Text)
			} else {
				s.end = "read: " + err.Error()
			}
			return
		}
		var m eventMsg
		if err := json.Unmarshal(data, &m); err != nil {
			s.end = "undecodable message: " + err.Error()
			return
		}
		if m.Type != "event" {
			s.end = fmt.Sprintf("unexpected %q message: %s %s", m.Type, m.Code, m.Message)
			return
		}
		s.got = append(s.got, delivery{write: writeIndex(m.Name, writes), recv: recv, occurred: m.OccurredAt})
		s.received.Add(1)
	}
}

// closeSubscribers ends every stream and waits for its reader; a reader that already
// stopped keeps the reason it recorded.
func closeSubscribers(subs []*subscriber) {
	for _, s := range subs {
		_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(time.Second))
		_ = s.conn.Close()
	}
	for _, s := range subs {
		<-s.done
	}
}

// secretName is write i's secret; writeIndex inverts it, -1 for any other name.
func secretName(i int) string { return fmt.Sprintf("%s%05d", namePrefix, i) }

func writeIndex(name string, writes int) int {
	if len(name) != len(namePrefix)+5 || name[:len(namePrefix)] != namePrefix {
		return -1
	}
	i, err := strconv.Atoi(name[len(namePrefix):])
	if err != nil || i < 0 || i >= writes {
		return -1
	}
	return i
}

// ack is when one write was sent and when its response reached the writer.
type ack struct{ start, ack time.Time }

// write PUTs o.writes new secrets one at a time, starting write i at o.interval × i from the
// first (or at once when the previous one took longer). It returns the acknowledged writes.
func write(ctx context.Context, o options, srv *server) ([]ack, stats, error) {
	acks := make([]ack, 0, o.writes)
	rtts := make([]time.Duration, 0, o.writes)
	base := "/api/v1/tenants/" + tenantSlug + "/projects/" + projectSlug + "/environments/" + envSlug + "/secrets/"
	first := time.Now()
	for i := range o.writes {
		if wait := time.Until(first.Add(time.Duration(i) * o.interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return acks, percentiles(rtts), ctx.Err()
			case <-time.After(wait):
			}
		}
		start := time.Now()
		if _, err := srv.call(ctx, http.MethodPut, base+secretName(i), map[string]string{"value": "v-" + strconv.Itoa(i)},
			http.StatusCreated, http.StatusOK); err != nil {
			return acks, percentiles(rtts), fmt.Errorf("write %d: %w", i, err)
		}
		now := time.Now()
		acks = append(acks, ack{start: start, ack: now})
		rtts = append(rtts, now.Sub(start))
	}
	return acks, percentiles(rtts), nil
}

// awaitDeliveries returns once every subscriber has received every write, every stream has
// ended, or drain has passed.
func awaitDeliveries(ctx context.Context, subs []*subscriber, writes int, drain time.Duration) {
	if len(subs) == 0 {
		return
	}
	want := int64(len(subs) * writes)
	deadline := time.Now().Add(drain)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for subs[0].received.Load() < want && time.Now().Before(deadline) && !allEnded(subs) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func allEnded(subs []*subscriber) bool {
	for _, s := range subs {
		select {
		case <-s.done:
		default:
			return false
		}
	}
	return true
}

// tally closes the streams and works out both latencies of every delivery.
func (r *result) tally(subs []*subscriber, acks []ack) {
	// Streams the server ended have already recorded why; the ones still open are closed
	// here, after which got and end may be read.
	ended := map[*subscriber]bool{}
	for _, s := range subs {
		select {
		case <-s.done:
			ended[s] = true
		default:
		}
	}
	closeSubscribers(subs)
	r.closed = map[string]int{}
	r.expected = len(subs) * len(acks)
	fromCommit := make([]time.Duration, 0, r.expected)
	fromAck := make([]time.Duration, 0, r.expected)
	seen := make([]bool, len(acks))
	perWrite := make([][]time.Duration, len(acks))
	for _, s := range subs {
		if ended[s] {
			r.closed[s.end]++
		}
		clear(seen)
		for _, d := range s.got {
			switch {
			case d.write < 0 || d.write >= len(acks):
				r.unexpected++
			case seen[d.write]:
				r.duplicates++
			default:
				seen[d.write] = true
				r.received++
				fromCommit = append(fromCommit, d.recv.Sub(d.occurred))
				perWrite[d.write] = append(perWrite[d.write], d.recv.Sub(d.occurred))
				fromAck = append(fromAck, d.recv.Sub(acks[d.write].ack))
			}
		}
	}
	r.fromCommit, r.fromAck = percentiles(fromCommit), percentiles(fromAck)
	for i, ds := range perWrite {
		if st := percentiles(ds); st.n > 0 && st.p50 > r.worst.s.p50 {
			r.worst = worstWrite{index: i, at: acks[i].start.Sub(acks[0].start), put: acks[i].ack.Sub(acks[i].start), s: st}
		}
	}
}

// worstWrite tells a stall (one write late for everyone) from a tail spread over the run.
type worstWrite struct {
	index int
	at    time.Duration // from the first write's start
	put   time.Duration // its PUT round trip: long when the commit itself was slow
	s     stats
}
