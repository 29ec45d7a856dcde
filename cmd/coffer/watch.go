package main

// This file is `coffer run --watch`: the command is restarted with new values when the
// environment's secrets change, as the server's event stream (GET /api/v1/events, a
// WebSocket; docs/events.md) announces. The stream is subscribed before the first read, so
// no change falls between the read and the subscription; a dropped stream is reopened with
// backoff and resumed after the last event seen (the server replays what was missed), or,
// when it cannot be resumed, the values are read again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Stream timings.
const (
	watchHandshakeTimeout = 10 * time.Second
	// watchIdle is how long a stream may stay silent: the server pings every 25 s.
	watchIdle         = 70 * time.Second
	watchReadLimit    = 64 << 10
	watchBackoffFirst = 250 * time.Millisecond
	watchBackoffMax   = 30 * time.Second
	// watchStable is how long a connection must last for the backoff to start again.
	watchStable = time.Minute
)

// streamStatus maps the stream's error codes (the REST API's) to HTTP statuses, so that a
// refused subscription exits like the same refusal of a request would.
var streamStatus = map[string]int{
	"bad_request": http.StatusBadRequest, "validation_failed": http.StatusUnprocessableEntity,
	"unauthorized": http.StatusUnauthorized, "forbidden": http.StatusForbidden,
	"not_found": http.StatusNotFound, "rate_limited": http.StatusTooManyRequests,
	"unavailable": http.StatusServiceUnavailable,
}

// subscribeMessage is the one message a client sends.
type subscribeMessage struct {
	Type         string   `json:"type"`
	Tenant       string   `json:"tenant"`
	Project      string   `json:"project"`
	Environments []string `json:"environments,omitempty"`
	LastEventID  string   `json:"last_event_id,omitempty"`
}

// streamMessage is any message of the server: an event, or a notice.
type streamMessage struct {
	Type        string `json:"type"` // event, subscribed, error, reset
	ID          string `json:"id"`
	Event       string `json:"event"`
	Tenant      string `json:"tenant"`
	Project     string `json:"project"`
	Environment string `json:"environment"`
	Code        string `json:"code"`
	Message     string `json:"message"`
}

// eventWatch follows one environment's changes. Only the goroutine running follow uses it
// once the first open has returned.
type eventWatch struct {
	a   *cli
	c   *apiClient
	sub subscribeMessage
	// env is the environment whose secret changes matter. With --resolve the subscription
	// is to the whole project (sub.Environments empty), since references may name its other
	// environments; a reference into another project is not watched (its changes show at the
	// next restart or re-read).
	env    string
	lastID string
}

func newEventWatch(a *cli, c *apiClient, f *runFlags) *eventWatch {
	w := &eventWatch{a: a, c: c, env: f.scope.env,
		sub: subscribeMessage{Type: "subscribe", Tenant: f.scope.tenant, Project: f.scope.project}}
	if !f.resolve {
		w.sub.Environments = []string{f.scope.env}
	}
	return w
}

// streamURL is the event stream's ws:// or wss:// address.
func (w *eventWatch) streamURL() string {
	u := w.c.server + "/api/v1/events"
	if rest, ok := strings.CutPrefix(u, "https://"); ok {
		return "wss://" + rest
	}
	return "ws://" + strings.TrimPrefix(u, "http://")
}

// open dials the stream (the token goes in the handshake, which the server checks before
// upgrading) and subscribes, resuming after the last event seen when there is one. resumed
// says whether the server will replay what was missed; a refusal is an *apiError and no
// answer an *unreachableError, as for requests.
func (w *eventWatch) open(ctx context.Context) (conn *websocket.Conn, resumed bool, err error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+w.c.token)
	h.Set("User-Agent", "coffer-cli/"+version())
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: watchHandshakeTimeout}
	conn, resp, err := d.DialContext(ctx, w.streamURL(), h)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			return nil, false, readAPIError(resp)
		}
		return nil, false, &unreachableError{server: w.c.server, err: err}
	}
	conn.SetReadLimit(watchReadLimit)
	sub := w.sub
	sub.LastEventID = w.lastID
	for {
		_ = conn.SetWriteDeadline(time.Now().Add(watchHandshakeTimeout))
		if err := conn.WriteJSON(sub); err != nil {
			conn.Close()
			return nil, false, &unreachableError{server: w.c.server, err: err}
		}
		var m streamMessage
		_ = conn.SetReadDeadline(time.Now().Add(watchHandshakeTimeout))
		if err := conn.ReadJSON(&m); err != nil {
			conn.Close()
			return nil, false, &unreachableError{server: w.c.server, err: err}
		}
		switch m.Type {
		case "subscribed":
			return conn, sub.LastEventID != "", nil
		case "reset":
			// The events after lastID are no longer kept: subscribe afresh, and re-read.
			w.lastID, sub.LastEventID = "", ""
			continue
		case "error":
			conn.Close()
			status, ok := streamStatus[m.Code]
			if !ok {
				status = http.StatusInternalServerError
			}
			return nil, false, &apiError{Status: status, Code: m.Code, Message: "event stream: " + m.Message}
		}
		conn.Close()
		return nil, false, &unreachableError{server: w.c.server, err: fmt.Errorf("unexpected %q message on the event stream", m.Type)}
	}
}

// relevant reports whether an event changes the values this run reads.
func (w *eventWatch) relevant(m streamMessage) bool {
	return m.Type == "event" && strings.HasPrefix(m.Event, "secret.") && m.Tenant == w.sub.Tenant &&
		m.Project == w.sub.Project && (len(w.sub.Environments) == 0 || m.Environment == w.env)
}

// notify tells the run loop to re-read; one pending notice stands for any number.
func notify(changes chan<- struct{}) {
	select {
	case changes <- struct{}{}:
	default:
	}
}

// read delivers a subscribed stream's events until it drops or ctx ends.
func (w *eventWatch) read(ctx context.Context, conn *websocket.Conn, changes chan<- struct{}) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetReadDeadline(time.Now().Add(watchIdle))
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(watchIdle))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(watchHandshakeTimeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(watchIdle))
		var m streamMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("unreadable message on the event stream: %w", err)
		}
		switch m.Type {
		case "event":
			if m.ID != "" {
				w.lastID = m.ID
			}
			if w.relevant(m) {
				notify(changes)
			}
		case "error", "reset":
			return fmt.Errorf("the event stream said %s: %s", m.Type, m.Message)
		}
	}
}

// follow reads the stream from conn (nil: not connected yet) and reopens it with backoff
// whenever it drops, until ctx ends or the server refuses the credential or subscription
// for good (the command then keeps the values it has). A stream reopened without a resume
// may have missed changes: changes is told to re-read. The backoff starts again only after
// a connection that lasted, so a server that accepts and drops at once is not hammered.
func (w *eventWatch) follow(ctx context.Context, conn *websocket.Conn, changes chan<- struct{}) {
	backoff := watchBackoffFirst
	for {
		if conn != nil {
			opened := time.Now()
			err := w.read(ctx, conn, changes)
			conn.Close()
			if ctx.Err() != nil {
				return
			}
			if time.Since(opened) > watchStable {
				backoff = watchBackoffFirst
			}
			w.a.warn("event stream lost (%v); reconnecting", err)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(backoff*2, watchBackoffMax)
			var resumed bool
			var err error
			conn, resumed, err = w.open(ctx)
			if ctx.Err() != nil {
				if conn != nil {
					conn.Close()
				}
				return
			}
			if err == nil {
				if resumed {
					w.a.warn("event stream reconnected, resuming after event %s", w.lastID)
				} else {
					w.a.warn("event stream reconnected; re-reading the secrets")
					notify(changes)
				}
				break
			}
			var ae *apiError
			if errors.As(err, &ae) && ae.Status < 500 && ae.Status != http.StatusTooManyRequests {
				w.a.warn("no longer watching for changes: %v; the command keeps running with the values it has", exitOf(err))
				return
			}
			w.a.warn("event stream: %v; retrying in about %s", err, backoff.Round(time.Millisecond))
		}
	}
}

// fetched is the outcome of one re-read.
type fetched struct {
	vars map[string]string
	at   time.Time
	err  error
}

// runWatch runs the command and restarts it whenever the environment's secrets change; it
// returns when the command exits on its own (or on a signal passed on), with its code. With
// an error the code is unused: the error's exit code is coffer's.
func (a *cli) runWatch(ctx context.Context, c *apiClient, f *runFlags, args []string) (int, error) {
	path, err := lookCommand(args[0])
	if err != nil {
		return exitNotFoundCmd, err
	}
	w := newEventWatch(a, c, f)
	// Subscribe first: a change committed after this is announced, so the read below (or a
	// later one) sees it.
	conn, _, err := w.open(ctx)
	if err != nil {
		if f.fallback == "" || !unavailable(err) {
			return 0, exitOf(err)
		}
		a.warn("event stream: %v; will keep trying", err)
	}
	vars, err := a.readValues(ctx, c, f)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return 0, err
	}

	ctx, cancel := context.WithCancel(ctx)
	changes := make(chan struct{}, 1)
	following := make(chan struct{})
	go func() {
		defer close(following)
		w.follow(ctx, conn, changes)
	}()
	defer func() {
		cancel()
		<-following
	}()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	start := func() (*child, error) {
		return startChild(path, args, childEnv(os.Environ(), vars, *f), a.stdin, a.stdout, a.stderr)
	}
	ch, err := start()
	if err != nil {
		return exitCannotExec, err
	}
	results := make(chan fetched, 1)
	fetch := func() {
		v, err := fetchValues(ctx, c, &f.scope, f.resolve)
		results <- fetched{v, time.Now(), err}
	}
	fetching, again := false, false
	for {
		select {
		case <-ch.done:
			return ch.code, ch.err
		case s := <-sigs:
			_ = ch.cmd.Process.Signal(s)
		case <-changes:
			if fetching {
				again = true
				continue
			}
			fetching = true
			go fetch()
		case r := <-results:
			fetching = false
			if again {
				again, fetching = false, true
				go fetch()
			}
			if r.err != nil {
				a.warn("re-reading the secrets after a change: %v; the command keeps its values", exitOf(r.err))
				continue
			}
			a.keepFallback(c, f, r.vars, r.at)
			if sameInjection(vars, r.vars, f.only) {
				continue
			}
			vars = r.vars
			select {
			case <-ch.done: // it ended on its own meanwhile
				return ch.code, ch.err
			default:
			}
			a.warn("the secrets of %s changed: restarting the command", f.scope.env)
			if quit := a.stopChild(ch, f.watchGrace, sigs); quit {
				return ch.code, ch.err
			}
			if ch, err = start(); err != nil {
				return exitCannotExec, err
			}
		}
	}
}

// stopChild ends a command for a restart: SIGTERM, then SIGKILL after grace. Signals that
// arrive meanwhile are passed on; quit says one of them (SIGINT, SIGTERM) asked coffer to
// stop rather than restart.
func (a *cli) stopChild(ch *child, grace time.Duration, sigs <-chan os.Signal) (quit bool) {
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case <-ch.done:
			return quit
		case <-t.C:
			a.warn("the command did not exit within %s of SIGTERM: killing it", grace)
			_ = ch.cmd.Process.Kill()
		case s := <-sigs:
			_ = ch.cmd.Process.Signal(s)
			quit = quit || s != syscall.SIGHUP
		}
	}
}
