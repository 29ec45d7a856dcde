package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

const (
	ctxRequestID       = "coffer.request_id"
	ctxClientRequestID = "coffer.client_request_id"
	ctxPrincipal       = "coffer.principal"
	ctxScope           = "coffer.scope"
)

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// withRequestID gives every request an id of the server's own, echoed in X-Request-ID, logs,
// errors and audit entries: what the audit log correlates on is never chosen by a client. A
// well-formed X-Request-ID the client sent is kept apart as the client request id, in logs and
// audit entries under that name, so the client's traces can still be joined up.
func withRequestID(c *gin.Context) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if cid := c.GetHeader("X-Request-ID"); requestIDRE.MatchString(cid) {
		c.Set(ctxClientRequestID, cid)
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-ID", id)
	c.Next()
}

// secureHeaders sets the headers every response carries (shared/SECURITY.md).
func (s *Server) secureHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if c.Request.TLS != nil || s.cfg.BehindTLSProxy {
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
	}
	c.Next()
}

// limitBody bounds every request body: MaxBodyBytes, or the larger limit of a route that
// takes more (bulk writes). It is one reader, set before any handler reads, so the limit a
// route documents is the one that applies; a second, larger reader wrapped later could not
// lift the first.
func (s *Server) limitBody(c *gin.Context) {
	limit := s.cfg.MaxBodyBytes
	if n, ok := s.bodyLimits[c.Request.Method+" "+c.FullPath()]; ok {
		limit = n
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Next()
}

// accessLog writes one line per request: never bodies, headers, tokens or query values.
func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	attrs := []any{
		"request_id", requestID(c),
		"method", c.Request.Method,
		"route", c.FullPath(),
		"status", c.Writer.Status(),
		"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
		"ip", c.ClientIP(),
	}
	if cid := c.GetString(ctxClientRequestID); cid != "" {
		attrs = append(attrs, "client_request_id", cid)
	}
	if v, ok := c.Get(ctxPrincipal); ok {
		if p := v.(auth.Principal); p.Kind == auth.KindServiceToken {
			attrs = append(attrs, "service_token", p.TokenID)
		} else {
			attrs = append(attrs, "user", p.User.ID)
		}
	}
	s.log.InfoContext(c.Request.Context(), "request", attrs...)
}

// recoverPanic turns a panic into a 500. The panic value is not logged, since it could hold
// anything the failing code had in hand, including plaintext; the stack shows where.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.ErrorContext(c.Request.Context(), "panic recovered", "request_id", requestID(c), "route", c.FullPath(), "stack", string(debug.Stack()))
			s.fail(c, coffer.Errorf(coffer.EINTERNAL, "internal error"))
		}
	}()
	c.Next()
}

// authenticate requires a valid bearer token or session cookie.
func (s *Server) authenticate(c *gin.Context) {
	if secret, ok := s.sessionCredential(c); ok {
		p, err := s.auth.AuthenticateSession(c.Request.Context(), secret)
		if s.sessionAuthenticated(c, secret, p, err) && !s.confined(c, p) {
			c.Next()
		}
		return
	}
	tok, ok := s.bearer(c)
	if !ok {
		return
	}
	if auth.IsServiceToken(tok) {
		// A service token reaches its project's environments and nothing of an account.
		s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "service tokens only reach the environments of their project, under /api/v1/tenants/…"))
		return
	}
	p, err := s.auth.Authenticate(c.Request.Context(), tok)
	if !s.authenticated(c, p, err) {
		return
	}
	c.Next()
}

// authorizeScope requires a valid bearer token or session cookie and resolves, in the same
// query, the tenant, project and environment the URL names. A scope the caller cannot see
// answers 404 to an authenticated caller only: a bad credential is always 401 first.
func (s *Server) authorizeScope(c *gin.Context) {
	var (
		p   auth.Principal
		sc  tenant.Scope
		err error
	)
	if secret, ok := s.sessionCredential(c); ok {
		p, sc, err = s.auth.AuthorizeSessionScope(c.Request.Context(), secret, c.Param("tenant"), c.Param("project"), c.Param("env"))
		if !s.sessionAuthenticated(c, secret, p, err) {
			return
		}
	} else {
		tok, ok := s.bearer(c)
		if !ok {
			return
		}
		// A read may be answered from the replica's scope cache; a write always asks the
		// database, so that it is authorized against the latest grants.
		read := c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead
		authorize := s.auth.AuthorizeScope
		switch {
		case auth.IsServiceToken(tok) && read:
			authorize = s.auth.AuthorizeServiceScopeForRead
		case auth.IsServiceToken(tok):
			authorize = s.auth.AuthorizeServiceScope
		case read:
			authorize = s.auth.AuthorizeScopeForRead
		}
		p, sc, err = authorize(c.Request.Context(), tok, c.Param("tenant"), c.Param("project"), c.Param("env"))
		if !s.authenticated(c, p, err) {
			return
		}
	}
	if err != nil { // authenticated, but the scope is not theirs to see
		s.fail(c, err)
		return
	}
	c.Set(ctxScope, sc)
	c.Next()
}

func (s *Server) bearer(c *gin.Context) (string, bool) {
	tok, ok := auth.ParseBearer(c.GetHeader("Authorization"))
	if !ok {
		s.fail(c, coffer.Errorf(coffer.EUNAUTHORIZED, "sign in, or send a personal access token: Authorization: Bearer cfr_pat_…"))
		return "", false
	}
	if !s.authLimiter.allow(failureKey(c, tok)) {
		s.fail(c, coffer.Errorf(coffer.ERATELIMITED, "too many failed authentications with this token from this address; wait a minute"))
		return "", false
	}
	return tok, true
}

// failureKey is what failed authentications are counted against: the client's address and the
// presented token's display prefix. A valid token from the same address (a shared proxy, a NAT)
// has another key and is never refused because someone else failed; guessing a 256-bit token
// is hopeless anyway, so the limiter exists to slow a client retrying a bad credential, not to
// lock an address out.
func failureKey(c *gin.Context, tok string) string {
	return c.ClientIP() + "|" + auth.DisplayPrefix(tok)
}

// authenticated records the principal, or answers the failure and counts it against the
// caller's address.
func (s *Server) authenticated(c *gin.Context, p auth.Principal, err error) bool {
	if err != nil && p.User.ID == "" && p.TokenID == "" {
		if coffer.ErrorCode(err) == coffer.EUNAUTHORIZED {
			tok, _ := auth.ParseBearer(c.GetHeader("Authorization"))
			s.authLimiter.spend(failureKey(c, tok))
		}
		s.fail(c, err)
		return false
	}
	c.Set(ctxPrincipal, p)
	return true
}

func principal(c *gin.Context) auth.Principal {
	return c.MustGet(ctxPrincipal).(auth.Principal)
}

// requestActor is the audit actor of a request before anyone is authenticated (sign-in,
// password reset): where it came from, not yet who.
func requestActor(c *gin.Context) audit.Actor {
	ua := c.Request.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return audit.Actor{Type: "user", RequestID: requestID(c), SourceIP: c.ClientIP(), ClientRequestID: c.GetString(ctxClientRequestID),
		UserAgent: strings.ToValidUTF8(ua, "")}
}

// actor is who the audit log names for this request.
func actor(c *gin.Context) audit.Actor {
	a := requestActor(c)
	p := principal(c)
	a.Kind, a.ID = p.Kind, p.User.ID
	if p.Kind == auth.KindServiceToken {
		a.Type, a.ID = "service_token", p.TokenID
	}
	return a
}
