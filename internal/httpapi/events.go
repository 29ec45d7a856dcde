package httpapi

// This file is the live event stream, GET /api/v1/events: a WebSocket (or, with
// ?transport=sse, Server-Sent Events) that delivers a tenant's committed changes. The request
// is authenticated and its Origin checked before any upgrade; every event is checked against
// what the subscriber may see when it is sent; a credential that stops working closes the
// stream. See docs/events.md for the protocol.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/events"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Stream limits and timings.
const (
	streamReadLimit    = 4 << 10 // a subscribe message is small; larger frames close with 1009
	streamSocketBuffer = 64 << 10
	streamWriteTimeout = 10 * time.Second
	streamPingEvery    = 25 * time.Second
	streamPongWait     = 60 * time.Second
	// streamRecheckEvery re-authenticates an idle stream's credential, so that expiry ends
	// it even when nothing announces it.
	streamRecheckEvery = 30 * time.Second
)

// Close codes beyond RFC 6455's, as documented in docs/events.md.
const (
	closeUnauthorized = 4401 // the credential was revoked, expired or ended
	closeForbidden    = 4403 // the subscriber may no longer see what it subscribed to
)

// Stream messages, server to client.
type streamEvent struct {
	Type        string      `json:"type"` // "event"
	ID          string      `json:"id"`
	Event       string      `json:"event"`
	Tenant      string      `json:"tenant"`
	Project     string      `json:"project,omitempty"`
	Environment string      `json:"environment,omitempty"`
	Name        string      `json:"name,omitempty"`
	Version     int         `json:"version,omitempty"`
	Actor       streamActor `json:"actor"`
	OccurredAt  time.Time   `json:"occurred_at"`
}

type streamActor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type streamNotice struct {
	Type         string   `json:"type"` // "subscribed", "error", "reset"
	Code         string   `json:"code,omitempty"`
	Message      string   `json:"message,omitempty"`
	Tenant       string   `json:"tenant,omitempty"`
	Project      string   `json:"project,omitempty"`
	Environments []string `json:"environments,omitempty"`
	LastEventID  string   `json:"last_event_id,omitempty"`
}

// subscribeRequest is the client's one message.
type subscribeRequest struct {
	Type         string   `json:"type"`
	Tenant       string   `json:"tenant"`
	Project      string   `json:"project"`
	Environments []string `json:"environments"`
	LastEventID  string   `json:"last_event_id"`
}

// streamCredential is what a stream request authenticated with: a session cookie's secret or
// a bearer token (personal or service).
type streamCredential struct {
	session string
	token   string
}

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4 << 10,
	WriteBufferSize:  4 << 10,
	// The Origin was checked before the upgrade (streamAdmit), against the configured list.
	CheckOrigin: func(*http.Request) bool { return true },
}

// events serves GET /api/v1/events.
func (s *Server) events(c *gin.Context) {
	if s.hub == nil {
		s.fail(c, coffer.Errorf(coffer.EUNAVAILABLE, "the event stream is not running"))
		return
	}
	cred, p, ok := s.streamAdmit(c)
	if !ok {
		return
	}
	st := &stream{srv: s, cred: cred, p: p, requestID: requestID(c)}
	if c.Query("transport") == "sse" {
		s.serveSSE(c, st)
		return
	}
	if !websocket.IsWebSocketUpgrade(c.Request) {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "open this as a WebSocket, or add ?transport=sse for Server-Sent Events"))
		return
	}
	conn, err := upgrader.Upgrade(c.Writer, c.Request, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	c.Abort()
	st.serveWS(conn)
}

// streamAdmit authenticates a stream request and checks its Origin, answering 401 or 403
// itself: nothing is upgraded before both pass.
func (s *Server) streamAdmit(c *gin.Context) (streamCredential, auth.Principal, bool) {
	var cred streamCredential
	if secret, ok := s.sessionCredential(c); ok {
		cred.session = secret
	} else {
		tok, ok := s.bearer(c)
		if !ok {
			return cred, auth.Principal{}, false
		}
		cred.token = tok
	}
	origin := c.GetHeader("Origin")
	switch {
	case origin == "" && cred.session != "":
		// Browsers always send Origin on a WebSocket handshake; a cookie without one is not
		// a browser we can judge.
		s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "a stream authenticated by cookie must carry an Origin header"))
		return cred, auth.Principal{}, false
	case origin != "" && !s.allowedOrigin(origin):
		s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "cross-origin stream refused: open it from %s", s.cfg.BaseURL))
		return cred, auth.Principal{}, false
	}
	p, _, err := s.streamScope(c.Request.Context(), cred, "", "")
	if p.User.ID == "" && p.TokenID == "" {
		if err == nil {
			err = auth.ErrBadToken
		}
		if cred.token != "" && coffer.ErrorCode(err) == coffer.EUNAUTHORIZED {
			s.authLimiter.spend(failureKey(c, cred.token))
		}
		s.fail(c, err)
		return cred, auth.Principal{}, false
	}
	c.Set(ctxPrincipal, p)
	return cred, p, true
}

// allowedOrigin reports whether origin is the base URL's or one of COFFER_ALLOWED_ORIGINS.
func (s *Server) allowedOrigin(origin string) bool {
	o := strings.TrimRight(origin, "/")
	return o == originOf(s.cfg.BaseURL) || slices.Contains(s.cfg.AllowedOrigins, o)
}

// originOf is scheme://host[:port] of a URL.
func originOf(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return ""
	}
	return pu.Scheme + "://" + pu.Host
}

// streamScope authenticates the stream's credential and resolves a tenant (and project) for
// it, the way the REST routes do. The principal is empty when the credential itself failed.
func (s *Server) streamScope(ctx context.Context, cred streamCredential, tenantSlug, projectSlug string) (auth.Principal, tenant.Scope, error) {
	switch {
	case cred.session != "":
		return s.auth.AuthorizeSessionScope(ctx, cred.session, tenantSlug, projectSlug, "")
	case auth.IsServiceToken(cred.token):
		return s.auth.AuthorizeServiceScope(ctx, cred.token, tenantSlug, projectSlug, "")
	default:
		return s.auth.AuthorizeScope(ctx, cred.token, tenantSlug, projectSlug, "")
	}
}

// stream is one subscriber's state, shared by both transports.
type stream struct {
	srv       *Server
	cred      streamCredential
	p         auth.Principal
	requestID string

	req       subscribeRequest
	view      tenant.View
	projectID string          // the subscribed project, "" for the whole tenant
	envs      map[string]bool // the subscribed environments, nil for all
	sub       *events.Subscription
}

// errSubscriberGone ends a stream whose credential no longer authenticates.
var errSubscriberGone = errors.New("credential no longer valid")

// resolve works out what the subscriber may see of what it asked for. A credential that no
// longer authenticates is errSubscriberGone; a tenant, project or environment it may not
// see is not found, whether or not it exists.
func (st *stream) resolve(ctx context.Context) error {
	p, sc, err := st.srv.streamScope(ctx, st.cred, st.req.Tenant, st.req.Project)
	if p.User.ID == "" && p.TokenID == "" {
		if err == nil || coffer.ErrorCode(err) == coffer.EUNAUTHORIZED {
			return errSubscriberGone
		}
		return err
	}
	if err != nil {
		return err
	}
	view, err := st.srv.tenants.View(ctx, sc)
	if err != nil {
		return err
	}
	var envs map[string]bool
	if len(st.req.Environments) > 0 {
		envs = map[string]bool{}
		for _, slug := range st.req.Environments {
			found := false
			for id, e := range view.Environments {
				if e.Slug == slug && e.ProjectID == projectIDOf(sc) {
					envs[id], found = true, true
				}
			}
			if !found {
				return coffer.Errorf(coffer.ENOTFOUND, "environment %s not found", slug)
			}
		}
	}
	st.p, st.view, st.projectID, st.envs = p, view, projectIDOf(sc), envs
	return nil
}

func projectIDOf(sc tenant.Scope) string {
	if sc.Project == nil {
		return ""
	}
	return sc.Project.ID
}

// validate checks a subscribe request's shape.
func (r *subscribeRequest) validate() (*int64, error) {
	if r.Type != "subscribe" {
		return nil, coffer.Errorf(coffer.EINVALID, `the only message a client sends is {"type":"subscribe",…}`)
	}
	if err := tenant.ValidateSlug("tenant", r.Tenant); err != nil {
		return nil, err
	}
	if r.Project != "" {
		if err := tenant.ValidateSlug("project", r.Project); err != nil {
			return nil, err
		}
	}
	if len(r.Environments) > 0 && r.Project == "" {
		return nil, coffer.Errorf(coffer.EINVALID, "environments belong to a project: name the project too")
	}
	if len(r.Environments) > 50 {
		return nil, coffer.Errorf(coffer.EINVALID, "subscribe to at most 50 environments")
	}
	for _, e := range r.Environments {
		if err := tenant.ValidateSlug("environment", e); err != nil {
			return nil, err
		}
	}
	if r.LastEventID == "" {
		return nil, nil
	}
	id, err := strconv.ParseInt(r.LastEventID, 10, 64)
	if err != nil || id < 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "last_event_id is the id of an event this stream sent")
	}
	return &id, nil
}

// streamSink is a transport: how messages reach the client.
type streamSink interface {
	send(msg any) error
	event(id int64, w *wireEvent) error
	ping() error
	end(code int, reason string)
}

// subscribe resolves the request, replays what the client missed and starts the live feed.
// A refusal is reported to the client and the stream stays open for another attempt.
func (st *stream) subscribe(ctx context.Context, out streamSink, req subscribeRequest) error {
	if st.sub != nil {
		return out.send(streamNotice{Type: "error", Code: string(coffer.ECONFLICT), Message: "this stream is already subscribed; open another for another subscription"})
	}
	after, err := req.validate()
	if err != nil {
		return out.send(noticeOf(err))
	}
	st.req = req
	if err := st.resolve(ctx); err != nil {
		if errors.Is(err, errSubscriberGone) {
			return err
		}
		return out.send(noticeOf(err))
	}
	if after != nil {
		err := st.srv.hub.Resumable(ctx, st.view.Tenant.ID, *after)
		if errors.Is(err, events.ErrReset) {
			return out.send(streamNotice{Type: "reset", Message: "the events after last_event_id are no longer kept: reload, then subscribe without it"})
		}
		if err != nil {
			return err
		}
	}
	sub, err := st.srv.hub.Subscribe(ctx, st.view.Tenant.ID, after)
	if err != nil {
		return err
	}
	st.sub = sub
	// A revocation or a change of access committed between the check above and the
	// registration announced nothing this subscription heard: check again now.
	if err := st.recheck(ctx); err != nil {
		return err
	}
	if err := out.send(streamNotice{Type: "subscribed", Tenant: req.Tenant, Project: req.Project, Environments: req.Environments, LastEventID: req.LastEventID}); err != nil {
		return err
	}
	if after != nil {
		return sub.Replay(ctx, func(ev coffer.Event) error {
			return st.deliver(ctx, out, ev, func() *wireEvent { return st.encode(ev) })
		})
	}
	return nil
}

// noticeOf is the error message for a refused subscription, in the REST error codes.
func noticeOf(err error) streamNotice {
	code := coffer.ErrorCode(err)
	if _, ok := statusOf[code]; !ok {
		code = coffer.EINTERNAL
	}
	return streamNotice{Type: "error", Code: string(code), Message: coffer.ErrorMessage(err)}
}

// structural are changes after which what exists (and so what the subscriber sees) differs.
var structural = map[string]bool{
	audit.ActionProjectCreate:     true,
	audit.ActionEnvironmentCreate: true,
	audit.ActionProjectDelete:     true,
	audit.ActionEnvironmentDelete: true,
	audit.ActionTenantDelete:      true,
}

// deliver sends ev if the subscriber may see it now, and rechecks the subscriber when ev
// changes who may see what. It returns errSubscriberGone or a *closeError when the stream
// must end.
func (st *stream) deliver(ctx context.Context, out streamSink, ev coffer.Event, wire func() *wireEvent) error {
	// A change that names this credential or its user (a revocation, a sign-out, a
	// disabled account) rechecks it, whichever chain recorded it.
	mine := ev.TargetID != "" && (ev.TargetID == st.p.SessionID || ev.TargetID == st.p.TokenID || ev.TargetID == st.p.User.ID)
	if ev.TenantID == "" { // instance changes are never shown
		if mine {
			return st.recheck(ctx)
		}
		return nil
	}
	sent := false
	if st.allowed(ev) {
		if err := out.event(ev.ID, wire()); err != nil {
			return err
		}
		sent = true
	}
	if mine || structural[ev.Type] || accessChange(ev.Type) {
		if err := st.recheck(ctx); err != nil {
			return err
		}
		// A creation becomes visible only with the view that includes it.
		if !sent && st.allowed(ev) {
			return out.event(ev.ID, wire())
		}
	}
	return nil
}

// accessChange reports whether events of this type change what someone may see.
func accessChange(t string) bool {
	switch t {
	case audit.ActionTenantMemberRemove, audit.ActionProjectMemberAdd, audit.ActionProjectMemberRemove,
		audit.ActionEnvironmentUpdate, audit.ActionServiceTokenRevoke, audit.ActionTenantIdPSet,
		audit.ActionTenantIdPDelete, tenant.ActionInvitationAccept:
		return true
	}
	return false
}

// closeError ends a stream with a WebSocket close code.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return e.reason }

// recheck authenticates the credential again and works out the view anew.
func (st *stream) recheck(ctx context.Context) error {
	err := st.resolve(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errSubscriberGone):
		return &closeError{closeUnauthorized, "the credential was revoked or has expired"}
	case coffer.ErrorCode(err) == coffer.ENOTFOUND || coffer.ErrorCode(err) == coffer.EFORBIDDEN:
		return &closeError{closeForbidden, "access to this subscription was removed"}
	}
	st.srv.log.Warn("event stream: rechecking a subscriber failed; closing it", "request_id", st.requestID, "err", err)
	return &closeError{websocket.CloseInternalServerErr, "the subscriber could not be rechecked; reconnect"}
}

// allowed decides, with the current view, whether the subscriber sees ev: a secret or
// environment change needs ViewSecrets on that environment, a project change ViewProject,
// a tenant change an owner or admin; the subscription's own filters apply on top.
func (st *stream) allowed(ev coffer.Event) bool {
	if ev.TenantID != st.view.Tenant.ID {
		return false
	}
	switch {
	case ev.EnvironmentID != "":
		e, ok := st.view.Environments[ev.EnvironmentID]
		return ok && (st.projectID == "" || e.ProjectID == st.projectID) && (st.envs == nil || st.envs[ev.EnvironmentID])
	case ev.ProjectID != "":
		_, ok := st.view.Projects[ev.ProjectID]
		return ok && (st.projectID == "" || ev.ProjectID == st.projectID) && st.envs == nil
	}
	return st.view.TenantWide && st.projectID == ""
}

// wireEvent is an event encoded for the client: JSON for SSE, a prepared frame for WebSockets.
type wireEvent struct {
	json []byte
	ws   *websocket.PreparedMessage
	err  error
}

// encode is ev on the wire. It depends on ev alone (the slugs are those of ev's own project
// and environment), so one encoding serves every subscriber allowed to see it.
func (st *stream) encode(ev coffer.Event) *wireEvent {
	w := &wireEvent{}
	if w.json, w.err = json.Marshal(st.message(ev)); w.err == nil {
		w.ws, w.err = websocket.NewPreparedMessage(websocket.TextMessage, w.json)
	}
	return w
}

// message is ev as the client receives it, with slugs from the view.
func (st *stream) message(ev coffer.Event) streamEvent {
	m := streamEvent{Type: "event", ID: strconv.FormatInt(ev.ID, 10), Event: ev.Type, Tenant: st.view.Tenant.Slug,
		Project: st.view.Projects[ev.ProjectID], Name: ev.Name, Version: ev.Version,
		Actor: streamActor{Type: ev.ActorType, ID: ev.ActorID}, OccurredAt: ev.OccurredAt}
	if e, ok := st.view.Environments[ev.EnvironmentID]; ok {
		m.Environment = e.Slug
	}
	return m
}

// run delivers the subscription's events until it ends, the client goes (reqs closes) or the
// server shuts down. reqs carries the client's messages (nil for SSE).
func (st *stream) run(ctx context.Context, out streamSink, reqs <-chan subscribeRequest) {
	ping := time.NewTicker(streamPingEvery)
	defer ping.Stop()
	recheck := time.NewTicker(streamRecheckEvery)
	defer recheck.Stop()
	defer func() {
		if st.sub != nil {
			st.sub.Close()
		}
	}()
	end := func(err error) {
		var ce *closeError
		switch {
		case errors.As(err, &ce):
			out.end(ce.code, ce.reason)
		case errors.Is(err, errSubscriberGone):
			out.end(closeUnauthorized, "the credential was revoked or has expired")
		default:
			out.end(websocket.CloseGoingAway, "")
		}
	}
	for {
		var evs <-chan *events.Batch
		var done <-chan struct{}
		if st.sub != nil {
			evs, done = st.sub.Events(), st.sub.Done()
		}
		select {
		case <-ctx.Done():
			out.end(websocket.CloseGoingAway, "the server is shutting down")
			return
		case <-st.srv.hubStopped:
			out.end(websocket.CloseGoingAway, "the server is shutting down")
			return
		case req, ok := <-reqs:
			if !ok {
				return
			}
			if err := st.subscribe(ctx, out, req); err != nil {
				end(err)
				return
			}
		case batch := <-evs:
			for i, ev := range batch.Events {
				// Every subscriber that may see an event sends the same bytes: they are
				// encoded once per batch.
				wire := func() *wireEvent { return batch.Memo(i, func() any { return st.encode(ev) }).(*wireEvent) }
				if err := st.deliver(ctx, out, ev, wire); err != nil {
					end(err)
					return
				}
			}
		case <-done:
			switch st.sub.Err() {
			case events.ErrSlow:
				out.end(websocket.CloseTryAgainLater, "too slow: events were arriving faster than this client read them")
			default:
				out.end(websocket.CloseGoingAway, "the server is shutting down")
			}
			return
		case <-ping.C:
			if err := out.ping(); err != nil {
				return
			}
		case <-recheck.C:
			if st.sub == nil {
				continue
			}
			if err := st.recheck(ctx); err != nil {
				end(err)
				return
			}
		}
	}
}

// wsSink is the WebSocket transport. Only run writes data frames; control frames
// (WriteControl) may be written from the reader too.
type wsSink struct{ conn *websocket.Conn }

func (w wsSink) send(msg any) error {
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	return w.conn.WriteJSON(msg)
}

func (w wsSink) event(_ int64, ev *wireEvent) error {
	if ev.err != nil {
		return ev.err
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	return w.conn.WritePreparedMessage(ev.ws)
}

func (w wsSink) ping() error {
	return w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(streamWriteTimeout))
}

func (w wsSink) end(code int, reason string) {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

// serveWS runs a WebSocket stream: a reader goroutine parses the client's messages and
// answers pongs; run writes.
func (st *stream) serveWS(conn *websocket.Conn) {
	defer conn.Close()
	// A fixed kernel send buffer (instead of one that grows to megabytes) bounds what a
	// subscriber that stopped reading holds, with its queue, and lets its queue fill soon.
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(streamSocketBuffer)
	}
	// The HTTP server's deadlines were for the handshake; from here the stream sets its own.
	_ = conn.SetWriteDeadline(time.Time{})
	conn.SetReadLimit(streamReadLimit)
	_ = conn.SetReadDeadline(time.Now().Add(streamPongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(streamPongWait)) })
	reqs := make(chan subscribeRequest)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(reqs)
		for {
			kind, data, err := conn.ReadMessage()
			if err != nil {
				return // closed, too large (the library sent 1009), or timed out
			}
			var req subscribeRequest
			if kind != websocket.TextMessage || json.Unmarshal(data, &req) != nil {
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation,
					"messages are JSON text: {\"type\":\"subscribe\",…}"), time.Now().Add(time.Second))
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	st.srv.streamOpened()
	defer st.srv.streamClosed()
	st.run(ctx, wsSink{conn}, reqs)
}

func (s *Server) streamOpened() { s.streamConns.Add(1) }
func (s *Server) streamClosed() { s.streamConns.Add(-1) }

// StreamConnections is how many event streams are open.
func (s *Server) StreamConnections() int64 { return s.streamConns.Load() }

// sseSink is the Server-Sent Events transport.
type sseSink struct {
	c  *gin.Context
	rc *http.ResponseController
}

func (s sseSink) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := s.c.Writer.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s sseSink) send(msg any) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return s.write(sseFrame(0, data))
}

func (s sseSink) event(id int64, ev *wireEvent) error {
	if ev.err != nil {
		return ev.err
	}
	return s.write(sseFrame(id, ev.json))
}

// sseFrame is one SSE message: an id line for events, then the data line.
func sseFrame(id int64, data []byte) []byte {
	b := make([]byte, 0, len(data)+32)
	if id > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

func (s sseSink) ping() error { return s.write([]byte(": ping\n\n")) }

// sseEndCodes name the WebSocket close codes for SSE, which has none.
var sseEndCodes = map[int]string{
	closeUnauthorized:                string(coffer.EUNAUTHORIZED),
	closeForbidden:                   string(coffer.EFORBIDDEN),
	websocket.CloseTryAgainLater:     "too_slow",
	websocket.CloseGoingAway:         "shutting_down",
	websocket.CloseInternalServerErr: string(coffer.EINTERNAL),
	websocket.ClosePolicyViolation:   string(coffer.EINVALID),
}

func (s sseSink) end(code int, reason string) {
	if reason == "" {
		return // the client went away
	}
	_ = s.send(streamNotice{Type: "error", Code: sseEndCodes[code], Message: reason})
}

// serveSSE runs a Server-Sent Events stream. The subscription comes from the query
// (tenant, project, environments as a comma-separated list) and Last-Event-ID; a refusal is
// a plain HTTP error, since nothing has been streamed yet.
func (s *Server) serveSSE(c *gin.Context, st *stream) {
	req := subscribeRequest{Type: "subscribe", Tenant: c.Query("tenant"), Project: c.Query("project"),
		LastEventID: c.GetHeader("Last-Event-ID")}
	if req.LastEventID == "" {
		req.LastEventID = c.Query("last_event_id")
	}
	if envs := c.Query("environments"); envs != "" {
		req.Environments = strings.Split(envs, ",")
	}
	if _, err := req.validate(); err != nil {
		s.fail(c, err)
		return
	}
	st.req = req
	if err := st.resolve(c.Request.Context()); err != nil {
		if errors.Is(err, errSubscriberGone) {
			err = auth.ErrBadToken
		}
		s.fail(c, err)
		return
	}
	rc := http.NewResponseController(c.Writer)
	// Every write sets its own deadline (the server's WriteTimeout would end the stream).
	if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
		s.fail(c, fmt.Errorf("event stream: the response writer has no write deadline: %w", err))
		return
	}
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-store")
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	out := sseSink{c: c, rc: rc}
	if err := out.write([]byte(": coffer events\n\n")); err != nil {
		return
	}
	reqs := make(chan subscribeRequest, 1)
	reqs <- req
	s.streamOpened()
	defer s.streamClosed()
	// A subscribe request on a channel that then stays open: run's loop is the same as for
	// WebSockets, and ends with the request's context when the client goes.
	st.run(c.Request.Context(), out, reqs)
}
