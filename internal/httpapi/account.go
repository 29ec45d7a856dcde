package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// pageSession is the middleware of signed-in pages: a visitor without a session is sent to
// sign in and brought back (GET), or refused (POST); a POST also needs the session's CSRF
// token. The principal is then available as for the API.
func (s *Server) pageSession(c *gin.Context) {
	p, ok := s.signedIn(c)
	if !ok {
		if safeMethod(c.Request.Method) {
			c.Redirect(http.StatusSeeOther, "/login?return_to="+url.QueryEscape(c.Request.URL.RequestURI()))
			c.Abort()
			return
		}
		s.fail(c, auth.ErrBadSession)
		return
	}
	secret, _ := s.cookie(c, sessionCookie)
	if !s.checkCSRF(c, secret) || s.confined(c, p) {
		return
	}
	c.Set(ctxPrincipal, p)
	c.Next()
}

type accountPage struct {
	User     auth.User
	CSRF     string
	Sessions []sessionView
	Tokens   []auth.Token
	// NewToken is a token just created, shown this once.
	NewToken string
	Error    string
	// IdPs are the user's tenants with their own identity provider.
	IdPs []auth.TenantIdPLink
	// Confined is a session started through a tenant's provider.
	Confined bool
}

// account shows the signed-in user's sessions, personal tokens and tenants' identity providers.
func (s *Server) account(c *gin.Context) { s.renderAccount(c, http.StatusOK, "", "") }

func (s *Server) renderAccount(c *gin.Context, status int, newToken, problem string) {
	p := principal(c)
	ctx := c.Request.Context()
	sessions, err := s.auth.ListSessions(ctx, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	var tokens []auth.Token
	if p.IdPID == "" {
		if tokens, err = s.auth.ListTokens(ctx, p, "", 200); err != nil {
			s.fail(c, err)
			return
		}
	}
	page := accountPage{User: p.User, CSRF: s.csrfToken(c), Tokens: tokens, NewToken: newToken, Error: problem}
	if s.idps != nil {
		if page.IdPs, err = s.idps.Links(ctx, p.User.ID); err != nil {
			s.fail(c, err)
			return
		}
	}
	if p.IdPID != "" {
		// A session started through a tenant's provider sees nothing of the account beyond
		// that tenant: not the tokens it may not manage, nor the user's other tenants.
		page.Confined = true
		page.IdPs = slices.DeleteFunc(page.IdPs, func(l auth.TenantIdPLink) bool { return l.IdPID != p.IdPID })
	}
	for _, x := range sessions {
		page.Sessions = append(page.Sessions, sessionView{ID: x.ID, Method: x.Method, UserAgent: x.UserAgent, SourceIP: x.SourceIP,
			CreatedAt: x.CreatedAt, LastSeenAt: x.LastSeenAt, ExpiresAt: x.ExpiresAt, Current: x.ID == p.SessionID})
	}
	s.render(c, status, "account.html", page)
}

// accountRevokeSession ends one of the user's sessions from the account page.
func (s *Server) accountRevokeSession(c *gin.Context) {
	if err := s.auth.RevokeSession(c.Request.Context(), actor(c), principal(c), c.Param("id")); err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/account")
}

type accountTokenForm struct {
	Name          string `form:"name"`
	ExpiresInDays int    `form:"expires_in_days"`
}

// accountCreateToken mints a personal token from the account page and shows it once. A
// token made in a browser session is a root token: it does not die with the session.
func (s *Server) accountCreateToken(c *gin.Context) {
	if !s.minting(c) {
		return
	}
	var f accountTokenForm
	if err := c.ShouldBindWith(&f, formBinding{}); err != nil {
		s.fail(c, err)
		return
	}
	_, secret, err := s.auth.CreateToken(c.Request.Context(), actor(c), principal(c), f.Name, time.Duration(f.ExpiresInDays)*24*time.Hour)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.EINVALID {
			s.renderAccount(c, http.StatusUnprocessableEntity, "", coffer.ErrorMessage(err))
			return
		}
		s.fail(c, err)
		return
	}
	s.renderAccount(c, http.StatusCreated, secret, "")
}

// accountRevokeToken revokes one of the user's tokens (and what it minted).
func (s *Server) accountRevokeToken(c *gin.Context) {
	if err := s.auth.RevokeToken(c.Request.Context(), actor(c), principal(c), c.Param("id")); err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
		s.fail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/account")
}
