package httpapi

import (
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

// tenantProviders keeps the discovery of tenants' providers, by public id and issuer (a
// replaced issuer is discovered afresh), through the guarded client.
type tenantProviders struct {
	client *http.Client
	mu     sync.Mutex
	byKey  map[string]*discovery
}

// maxDiscoveries bounds the cache; past it, it starts over, which costs a discovery each.
const maxDiscoveries = 1000

func (t *tenantProviders) get(idp auth.IdP) *discovery {
	key := idp.ID + "\x00" + idp.Issuer
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.byKey[key]; ok {
		return d
	}
	if len(t.byKey) >= maxDiscoveries {
		clear(t.byKey)
	}
	d := &discovery{issuer: idp.Issuer, client: t.client}
	t.byKey[key] = d
	return d
}

// tenantIdPStart begins a sign-in (or, with link=1, a link) through a tenant's provider.
// Unknown, deleted and malformed ids answer the same 404 page.
func (s *Server) tenantIdPStart(c *gin.Context, id string) {
	if s.idps == nil || s.logins == nil {
		s.oidcFail(c, auth.ErrIdPNotFound)
		return
	}
	ip := c.ClientIP()
	if !s.idpStarts.allow(ip) {
		s.oidcFail(c, coffer.Errorf(coffer.ERATELIMITED, "too many sign-ins started from this address; wait a minute"))
		return
	}
	s.idpStarts.spend(ip)
	ctx := c.Request.Context()
	idp, err := s.idps.ByID(ctx, id)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	c.Set(ctxRetryURL, oidcStartPath+"?idp="+url.QueryEscape(idp.ID))
	var linkUser string
	if c.Query("link") == "1" {
		c.Set(ctxRetryURL, "/account")
		// A link changes the account, so another site must not start one in the user's
		// browser (with, say, the attacker signed in at the provider): only a navigation
		// from this site, or typed in, is taken.
		if site := c.GetHeader("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
			s.oidcFail(c, coffer.Errorf(coffer.EFORBIDDEN, "start linking from your account page"))
			return
		}
		p, ok := s.signedIn(c)
		if !ok {
			c.Redirect(http.StatusSeeOther, "/login?return_to="+url.QueryEscape(c.Request.URL.RequestURI()))
			return
		}
		if p.IdPID != "" && p.IdPID != idp.ID {
			s.oidcFail(c, coffer.Errorf(coffer.EFORBIDDEN, "this session was started through another tenant's identity provider; sign in another way to link this one"))
			return
		}
		linkUser = p.User.ID
	}
	d := s.tenantIdPs.get(idp)
	prov, err := d.discover(ctx)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	verifier := oauth2.GenerateVerifier()
	returnTo := c.Query("return_to")
	if linkUser != "" && returnTo == "" {
		returnTo = "/account"
	}
	login, err := s.logins.StartLoginFor(ctx, verifier, returnTo, idp.ID, linkUser)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	s.setCookie(c, loginCookie, login.State, auth.LoginStateTTL)
	// The authorization URL needs no client secret: it is opened only at the callback.
	u := oauth2Config(prov, idp.ClientID, "", callbackURL(s.cfg.BaseURL)).AuthCodeURL(login.State, oidc.Nonce(login.Nonce), oauth2.S256ChallengeOption(verifier))
	c.Redirect(http.StatusFound, u)
}

// tenantIdPCallback finishes a sign-in or link through a tenant's provider. The provider is
// looked up again: one deleted since the start is unknown, one whose secret changed uses the
// new secret.
func (s *Server) tenantIdPCallback(c *gin.Context, st auth.LoginState) {
	ctx := c.Request.Context()
	if s.idps == nil {
		s.oidcFail(c, auth.ErrIdPNotFound)
		return
	}
	idp, secret, err := s.idps.ForLogin(ctx, st.IdPID)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	if st.LinkUserID != "" {
		c.Set(ctxRetryURL, "/account")
	} else {
		c.Set(ctxRetryURL, oidcStartPath+"?idp="+url.QueryEscape(idp.ID))
	}
	claims, ok := s.finishAtProvider(c, st, s.tenantIdPs.get(idp), idp.ClientID, secret, callbackURL(s.cfg.BaseURL))
	if !ok {
		return
	}
	if st.LinkUserID != "" {
		// The browser must still be signed in as the user who asked: a link finished in
		// another browser, or after signing out, links nothing.
		p, ok := s.signedIn(c)
		if !ok || p.User.ID != st.LinkUserID {
			s.oidcFail(c, coffer.Errorf(coffer.EFORBIDDEN, "sign in as the user who started linking, and start again from your account page"))
			return
		}
		if err := s.idps.Link(ctx, actor(c), idp, p.User.ID, claims); err != nil {
			s.oidcFail(c, err)
			return
		}
		c.Redirect(http.StatusSeeOther, st.ReturnTo)
		return
	}
	u, err := s.idps.SignIn(ctx, idp, claims)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	if err := s.beginSession(c, u, auth.IdPSessionMethod(idp.ID)); err != nil {
		s.oidcFail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, st.ReturnTo)
}

type idpView struct {
	ID        string    `json:"id"`
	Issuer    string    `json:"issuer"`
	ClientID  string    `json:"client_id"`
	Required  bool      `json:"required"`
	SignInURL string    `json:"sign_in_url"`
	LinkURL   string    `json:"link_url"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (s *Server) viewIdP(idp auth.IdP) idpView {
	start := s.cfg.BaseURL + oidcStartPath + "?idp=" + url.QueryEscape(idp.ID)
	return idpView{ID: idp.ID, Issuer: idp.Issuer, ClientID: idp.ClientID, Required: idp.Required,
		SignInURL: start, LinkURL: start + "&link=1", CreatedAt: idp.CreatedAt, UpdatedAt: idp.UpdatedAt}
}

type putIdPReq struct {
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Required     bool   `json:"required"`
}

// idpsOn answers 404 when the server was built without tenant providers (route-table tests).
func (s *Server) idpsOn(c *gin.Context) bool {
	if s.idps == nil {
		s.fail(c, coffer.Errorf(coffer.ENOTFOUND, "identity providers are not available"))
		return false
	}
	return true
}

// putIdP creates or replaces the tenant's provider; the secret is never answered back.
func (s *Server) putIdP(c *gin.Context) {
	if !s.idpsOn(c) {
		return
	}
	// Owners only, decided before the body is read, like every other refusal.
	if _, ok := s.allowed(c, tenant.ManageIdentityProvider); !ok {
		return
	}
	var req putIdPReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	idp, created, err := s.idps.Put(c.Request.Context(), actor(c), s.scope(c),
		auth.IdPSettings{Issuer: req.Issuer, ClientID: req.ClientID, ClientSecret: req.ClientSecret, Required: req.Required})
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, s.viewIdP(idp))
}

func (s *Server) getIdP(c *gin.Context) {
	if !s.idpsOn(c) {
		return
	}
	idp, err := s.idps.Get(c.Request.Context(), s.scope(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, s.viewIdP(idp))
}

func (s *Server) deleteIdP(c *gin.Context) {
	if !s.idpsOn(c) {
		return
	}
	if err := s.idps.Delete(c.Request.Context(), actor(c), s.scope(c)); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
