package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// sessionCookie is the session cookie's name before the __Host- prefix (see cookieName).
const sessionCookie = "coffer_session"

const ctxSessionSecret = "coffer.session_secret"

// cookieName is a cookie's name as sent: with the __Host- prefix when the server is reached
// over HTTPS, which makes browsers insist on Secure, Path=/ and no Domain, so no other host
// or path can set or shadow it. Over plain HTTP (loopback, development) the prefix would make
// browsers drop the cookie, so the bare name is used there.
func (s *Server) cookieName(name string) string {
	if s.secureCookies {
		return "__Host-" + name
	}
	return name
}

// setCookie sets a first-party cookie the page's scripts cannot read and other sites' requests
// do not carry on a POST.
func (s *Server) setCookie(c *gin.Context, name, value string, maxAge time.Duration) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: s.cookieName(name), Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie tells the browser to drop a cookie.
func (s *Server) clearCookie(c *gin.Context, name string) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name: s.cookieName(name), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies, SameSite: http.SameSiteLaxMode,
	})
}

// cookie reads a cookie set by setCookie.
func (s *Server) cookie(c *gin.Context, name string) (string, bool) {
	v, err := c.Cookie(s.cookieName(name))
	return v, err == nil && v != ""
}

// beginSession signs u in on this browser: a new session, whatever session cookie the browser
// held is ended (an id planted before sign-in is never promoted), and the cookie lives as long
// as the session's absolute timeout.
func (s *Server) beginSession(c *gin.Context, u auth.User, method string) error {
	old, _ := s.cookie(c, sessionCookie)
	sess, secret, err := s.auth.StartSession(c.Request.Context(), requestActor(c), u, method, c.Request.UserAgent(), old)
	if err != nil {
		return err
	}
	s.setCookie(c, sessionCookie, secret, s.auth.SessionPolicy().Absolute)
	// From here the request acts as the user it signed in (access log, later audit entries).
	c.Set(ctxPrincipal, auth.Principal{Kind: auth.KindSession, User: u, SessionID: sess.ID})
	c.Set(ctxSessionSecret, secret)
	return nil
}

// signedIn returns the principal of the browser's session, for pages that show something
// else to visitors who are not signed in. It writes no response.
func (s *Server) signedIn(c *gin.Context) (auth.Principal, bool) {
	if v, ok := c.Get(ctxPrincipal); ok {
		p := v.(auth.Principal)
		return p, p.Kind == auth.KindSession
	}
	secret, ok := s.cookie(c, sessionCookie)
	if !ok {
		return auth.Principal{}, false
	}
	p, err := s.auth.AuthenticateSession(c.Request.Context(), secret)
	if err != nil {
		return auth.Principal{}, false
	}
	c.Set(ctxPrincipal, p)
	c.Set(ctxSessionSecret, secret)
	return p, true
}

// csrfToken is the signed-in session's form token, for a hidden csrf_token field in every
// form of a signed-in page; empty without a session.
func (s *Server) csrfToken(c *gin.Context) string {
	secret := c.GetString(ctxSessionSecret)
	if secret == "" {
		return ""
	}
	return auth.CSRFToken(secret)
}

// crossOrigin refuses a state-changing request a browser sent from another origin, judged by
// Sec-Fetch-Site or, from older browsers, Origin against Host and the base URL (Go's
// CrossOriginProtection). Requests with an Authorization header are exempt: a browser never
// attaches one on its own, so they cannot be forged by another site. This also covers forms
// posted before sign-in (login, setup), where there is no session to bind a token to.
func (s *Server) crossOrigin(c *gin.Context) {
	if c.GetHeader("Authorization") == "" {
		if err := s.cop.Check(c.Request); err != nil {
			s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "cross-origin request refused: this form or call must come from %s", s.cfg.BaseURL))
			return
		}
	}
	c.Next()
}

// safeMethod reports whether a request changes nothing by definition.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sessionCredential returns the session cookie when the request authenticates by cookie: it
// has no Authorization header (a bearer token wins, and is judged alone) and carries one.
func (s *Server) sessionCredential(c *gin.Context) (string, bool) {
	if c.GetHeader("Authorization") != "" {
		return "", false
	}
	return s.cookie(c, sessionCookie)
}

// checkCSRF requires, on a state-changing cookie-authenticated request, the session's form
// token in the X-CSRF-Token header (scripts) or the csrf_token form field (forms). A token from
// another session does not match: each is derived from its own session's secret.
func (s *Server) checkCSRF(c *gin.Context, secret string) bool {
	if safeMethod(c.Request.Method) {
		return true
	}
	presented := c.GetHeader("X-CSRF-Token")
	if presented == "" && strings.HasPrefix(c.ContentType(), "application/x-www-form-urlencoded") {
		presented = c.PostForm("csrf_token")
	}
	if !auth.CheckCSRFToken(secret, presented) {
		s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "missing or wrong CSRF token: send the page's csrf_token with the form, or X-CSRF-Token"))
		return false
	}
	return true
}

// sessionAuthenticated records a session principal after its CSRF check, or answers the
// failure. A bad session is not counted by the failed-authentication limiter: its secret has
// 256 bits, and an expired cookie is the everyday case.
func (s *Server) sessionAuthenticated(c *gin.Context, secret string, p auth.Principal, err error) bool {
	if err != nil && p.User.ID == "" {
		s.fail(c, err)
		return false
	}
	if !s.checkCSRF(c, secret) {
		return false
	}
	c.Set(ctxPrincipal, p)
	c.Set(ctxSessionSecret, secret)
	return true
}

// confinedRoutes are what a session started through a tenant's provider may use besides that
// tenant's routes (where auth.AuthorizeSessionScope decides): seeing who it is and its
// sessions, and ending them. The provider's owner vouches for membership of one tenant, so
// such a session must not reach the user's account at large (tokens, second factor,
// invitations to other tenants, instance administration).
var confinedRoutes = map[string]bool{
	"GET /api/v1/me":                    true,
	"GET /api/v1/sessions":              true,
	"DELETE /api/v1/sessions/:id":       true,
	"GET /account":                      true,
	"POST /account/sessions/:id/revoke": true,
}

// confined answers 403 and reports true when p is a session started through a tenant's
// provider and the route is not one such a session may use.
func (s *Server) confined(c *gin.Context, p auth.Principal) bool {
	if p.IdPID == "" || confinedRoutes[c.Request.Method+" "+c.FullPath()] {
		return false
	}
	s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "this session was started through a tenant's identity provider and reaches only that tenant; sign in another way for this"))
	return true
}

// logout ends the browser's session and drops the cookie. It is a POST (a link cannot sign
// anyone out) and needs the CSRF token like every cookie-authenticated change.
func (s *Server) logout(c *gin.Context) {
	secret, ok := s.sessionCredential(c)
	if ok {
		p, err := s.auth.AuthenticateSession(c.Request.Context(), secret)
		if err == nil {
			if !s.checkCSRF(c, secret) {
				return
			}
			c.Set(ctxPrincipal, p)
			if err := s.auth.EndSession(c.Request.Context(), actor(c), p); err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
				s.fail(c, err)
				return
			}
		}
	}
	s.clearCookie(c, sessionCookie)
	c.Redirect(http.StatusSeeOther, "/")
}

type sessionView struct {
	ID         string    `json:"id"`
	Method     string    `json:"method"`
	UserAgent  string    `json:"user_agent"`
	SourceIP   string    `json:"source_ip"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Current    bool      `json:"current"`
}

// listSessions lists the caller's live sessions; the one making the request is marked.
func (s *Server) listSessions(c *gin.Context) {
	p := principal(c)
	all, err := s.auth.ListSessions(c.Request.Context(), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	items := make([]sessionView, len(all))
	for i, x := range all {
		items[i] = sessionView{ID: x.ID, Method: x.Method, UserAgent: x.UserAgent, SourceIP: x.SourceIP,
			CreatedAt: x.CreatedAt, LastSeenAt: x.LastSeenAt, ExpiresAt: x.ExpiresAt, Current: x.ID == p.SessionID}
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

// revokeSession ends one of the caller's sessions at once: its next request is unauthenticated.
func (s *Server) revokeSession(c *gin.Context) {
	if err := s.auth.RevokeSession(c.Request.Context(), actor(c), principal(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
