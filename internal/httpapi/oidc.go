package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// loginCookie holds the state of a sign-in in progress, binding the callback to the browser
// that started it.
const loginCookie = "coffer_login"

// oidcCallbackPath is where the provider sends the browser back; the redirect URI registered
// at the provider is the base URL followed by exactly this.
const oidcCallbackPath = "/auth/oidc/callback"

// oidcStartPath starts a sign-in at the provider (the sign-in page links to it).
const oidcStartPath = "/auth/oidc/login"

// providerTimeout bounds each call to the provider (discovery, code exchange, keys), so a
// provider that hangs costs a request a few seconds, not the server's write timeout.
const providerTimeout = 10 * time.Second

// OIDCProvider is the instance's OpenID provider for browser sign-in.
type OIDCProvider struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Service      *auth.OIDC
	// HTTPClient talks to the provider; nil: a client with providerTimeout.
	HTTPClient *http.Client
}

// oidcLogin is the protocol half of sign-in: discovery (lazy, then cached), the authorization
// redirect with PKCE, the code exchange and ID-token verification. Who the identity becomes is
// auth.OIDC's decision.
type oidcLogin struct {
	*discovery
	cfg         OIDCProvider
	redirectURL string
	// starts limits sign-in starts per address: each one writes a row before anyone is
	// authenticated. The limit is far above what people behind one address click.
	starts *attemptLimiter
}

// discovery is one provider's configuration, fetched on first use and then kept.
type discovery struct {
	issuer string
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	// failedAt and failure remember the last failed discovery for retryAfter, so that while
	// the provider is down sign-ins fail at once instead of queueing behind a timeout each.
	failedAt time.Time
	failure  error
}

// retryAfter is how long a failed discovery is answered from memory.
const retryAfter = 5 * time.Second

func newOIDCLogin(baseURL string, p *OIDCProvider) *oidcLogin {
	if p == nil || p.Issuer == "" {
		return nil
	}
	client := p.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: providerTimeout}
	}
	return &oidcLogin{discovery: &discovery{issuer: p.Issuer, client: client}, cfg: *p,
		redirectURL: callbackURL(baseURL), starts: newAttemptLimiter(60, 30)}
}

// callbackURL is the redirect URI every provider, the instance's and tenants', is registered
// with: the callback tells them apart by the login state.
func callbackURL(baseURL string) string { return strings.TrimRight(baseURL, "/") + oidcCallbackPath }

// errProviderDown is what a sign-in shows while the provider cannot be reached or answers
// nonsense; the cause is logged.
func errProviderDown(cause error) error {
	return coffer.Wrap(coffer.EUNAVAILABLE, cause, "the identity provider cannot be reached right now, or did not answer as expected; try again in a moment")
}

// discover returns the provider's configuration, fetching it on first use. Discovery is not
// done at start-up, so a provider that is down does not keep the server from starting; a
// failure is not cached, so the next sign-in tries again.
func (o *discovery) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	if o.failure != nil && time.Since(o.failedAt) < retryAfter {
		return nil, o.failure
	}
	dctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	// go-oidc refuses a discovery document naming another issuer than the one configured.
	// The keys are fetched later with the client this context carries.
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, o.client), o.issuer)
	if err != nil {
		if ctx.Err() != nil {
			// This request went away; the provider may be fine.
			return nil, coffer.Wrap(coffer.EUNAVAILABLE, err, "the request was cancelled")
		}
		o.failedAt, o.failure = time.Now(), errProviderDown(err)
		return nil, o.failure
	}
	o.provider, o.failure = p, nil
	return p, nil
}

func (o *oidcLogin) oauth2Config(p *oidc.Provider) *oauth2.Config {
	return oauth2Config(p, o.cfg.ClientID, o.cfg.ClientSecret, o.redirectURL)
}

func oauth2Config(p *oidc.Provider, clientID, clientSecret, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
	}
}

// verifyIDToken checks an ID token: signature, issuer, audience and expiry by go-oidc, then
// the nonce and azp (auth.CheckIDClaims). Every failure is unauthorized.
func verifyIDToken(ctx context.Context, v *oidc.IDTokenVerifier, raw, clientID, nonce string) (auth.IDClaims, error) {
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return auth.IDClaims{}, coffer.Wrap(coffer.EUNAUTHORIZED, err, auth.ErrIDToken.Message)
	}
	var extra struct {
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		Name          string          `json:"name"`
		AZP           string          `json:"azp"`
	}
	if err := tok.Claims(&extra); err != nil {
		return auth.IDClaims{}, coffer.Wrap(coffer.EUNAUTHORIZED, err, auth.ErrIDToken.Message)
	}
	c := auth.IDClaims{
		Issuer: tok.Issuer, Subject: tok.Subject, Audience: tok.Audience, AuthorizedParty: extra.AZP, Nonce: tok.Nonce,
		Email: extra.Email, Name: extra.Name,
		// Some providers send the boolean as a string; anything else is "not verified".
		EmailVerified: string(extra.EmailVerified) == "true" || string(extra.EmailVerified) == `"true"`,
	}
	if err := auth.CheckIDClaims(c, clientID, nonce); err != nil {
		return auth.IDClaims{}, err
	}
	return c, nil
}

// oidcStart begins a sign-in: a login state with a fresh state, nonce and PKCE verifier is
// stored, the state goes into the pre-login cookie, and the browser is sent to the provider.
// With ?idp= the provider is a tenant's (tenantIdPStart), whether or not the instance has one.
func (s *Server) oidcStart(c *gin.Context) {
	if id, ok := c.GetQuery("idp"); ok {
		s.tenantIdPStart(c, id)
		return
	}
	if s.oidc == nil {
		s.oidcFail(c, errOIDCNotConfigured)
		return
	}
	ip := c.ClientIP()
	if !s.oidc.starts.allow(ip) {
		s.oidcFail(c, coffer.Errorf(coffer.ERATELIMITED, "too many sign-ins started from this address; wait a minute"))
		return
	}
	s.oidc.starts.spend(ip)
	ctx := c.Request.Context()
	p, err := s.oidc.discover(ctx)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	verifier := oauth2.GenerateVerifier()
	login, err := s.oidc.cfg.Service.StartLogin(ctx, verifier, c.Query("return_to"))
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	s.setCookie(c, loginCookie, login.State, auth.LoginStateTTL)
	u := s.oidc.oauth2Config(p).AuthCodeURL(login.State, oidc.Nonce(login.Nonce), oauth2.S256ChallengeOption(verifier))
	c.Redirect(http.StatusFound, u)
}

// providerErrorRE is the shape of an OAuth error code (RFC 6749 §4.1.2.1) worth naming back;
// anything else from the query is not shown.
var providerErrorRE = regexp.MustCompile(`^[a-z_]{1,64}$`)

// oidcCallback finishes a sign-in. The login state is consumed before anything else, so that
// whatever happens after, the same callback cannot be tried again; every failure leaves no
// session behind and writes nothing. The state says which provider it was: the instance's,
// or a tenant's (sign-in or link).
func (s *Server) oidcCallback(c *gin.Context) {
	if s.logins == nil {
		s.oidcFail(c, errOIDCNotConfigured)
		return
	}
	ctx := c.Request.Context()
	cookieState, _ := s.cookie(c, loginCookie)
	s.clearCookie(c, loginCookie)
	st, err := s.logins.TakeLogin(ctx, c.Query("state"), cookieState)
	if err != nil {
		if s.oidc == nil && cookieState == "" {
			// No sign-in of this browser in progress, and no instance provider: what was
			// always answered here before tenants had providers.
			err = errOIDCNotConfigured
		}
		s.oidcFail(c, err)
		return
	}
	if st.IdPID != "" {
		s.tenantIdPCallback(c, st)
		return
	}
	if s.oidc == nil {
		s.oidcFail(c, errOIDCNotConfigured)
		return
	}
	claims, ok := s.finishAtProvider(c, st, s.oidc.discovery, s.oidc.cfg.ClientID, s.oidc.cfg.ClientSecret, s.oidc.redirectURL)
	if !ok {
		return
	}
	u, err := s.oidc.cfg.Service.SignIn(ctx, requestActor(c), claims)
	if err != nil {
		s.oidcFail(c, err)
		return
	}
	if err := s.beginSession(c, u, "oidc"); err != nil {
		s.oidcFail(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, st.ReturnTo)
}

var errOIDCNotConfigured = coffer.Errorf(coffer.ENOTFOUND, "sign-in with an identity provider is not configured on this server")

// finishAtProvider is the protocol end of a callback, the same for every provider: the answer
// must come from the provider the sign-in started at (RFC 9207), carry a code, which is
// exchanged with the PKCE verifier, for an ID token that go-oidc and verifyIDToken accept.
// On failure the page is answered and ok is false.
func (s *Server) finishAtProvider(c *gin.Context, st auth.LoginState, d *discovery, clientID, clientSecret, redirectURL string) (auth.IDClaims, bool) {
	ctx := c.Request.Context()
	// RFC 9207: a provider that names itself in the response must be ours; an answer from
	// another provider is a mix-up attack or a misconfiguration.
	if iss := c.Query("iss"); iss != "" && iss != d.issuer {
		s.oidcFail(c, coffer.Errorf(coffer.EUNAUTHORIZED, "the answer came from another identity provider; start the sign-in again"))
		return auth.IDClaims{}, false
	}
	if e := c.Query("error"); e != "" {
		msg := "the identity provider did not sign you in"
		if providerErrorRE.MatchString(e) {
			msg += " (" + e + ")"
		}
		s.oidcFail(c, coffer.Errorf(coffer.EUNAUTHORIZED, "%s; start the sign-in again", msg))
		return auth.IDClaims{}, false
	}
	code := c.Query("code")
	if code == "" || len(code) > 4096 {
		s.oidcFail(c, coffer.Errorf(coffer.EBADREQUEST, "the identity provider sent no authorization code; start the sign-in again"))
		return auth.IDClaims{}, false
	}
	p, err := d.discover(ctx)
	if err != nil {
		s.oidcFail(c, err)
		return auth.IDClaims{}, false
	}
	xctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, d.client), providerTimeout)
	defer cancel()
	tok, err := oauth2Config(p, clientID, clientSecret, redirectURL).Exchange(xctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The provider answered and refused the code (used, expired, wrong verifier).
			s.oidcFail(c, coffer.Wrap(coffer.EUNAUTHORIZED, err, "the identity provider refused to complete the sign-in; start it again"))
			return auth.IDClaims{}, false
		}
		s.oidcFail(c, errProviderDown(err))
		return auth.IDClaims{}, false
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.oidcFail(c, coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("no id_token in the token response"), auth.ErrIDToken.Message))
		return auth.IDClaims{}, false
	}
	claims, err := verifyIDToken(xctx, p.Verifier(&oidc.Config{ClientID: clientID}), raw, clientID, st.Nonce)
	if err != nil {
		s.oidcFail(c, err)
		return auth.IDClaims{}, false
	}
	return claims, true
}

type oidcErrorPage struct {
	Title   string
	Message string
	Retry   bool
	// RetryURL starts the same kind of sign-in again.
	RetryURL string
}

// ctxRetryURL is where a failed sign-in's page offers to start again, when it is not the
// instance provider's sign-in (a tenant's provider, a link).
const ctxRetryURL = "coffer.oidc_retry"

// oidcFail answers a failed sign-in: a page for browsers, the usual error shape for clients
// asking for JSON. Refusals (4xx) are logged with their cause for the operator; the person
// sees only the safe message.
func (s *Server) oidcFail(c *gin.Context, err error) {
	accept := c.GetHeader("Accept")
	if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html") {
		s.fail(c, err)
		return
	}
	code := coffer.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status, code = http.StatusInternalServerError, coffer.EINTERNAL
	}
	if status >= 500 {
		s.log.ErrorContext(c.Request.Context(), "sign-in failed", "request_id", requestID(c), "code", code, "err", err)
	} else {
		s.log.WarnContext(c.Request.Context(), "sign-in refused", "request_id", requestID(c), "code", code, "err", err)
	}
	if code == coffer.EUNAVAILABLE {
		c.Header("Retry-After", "5")
	}
	page := oidcErrorPage{Title: "Sign-in failed", Message: coffer.ErrorMessage(err), Retry: code != coffer.ENOTFOUND, RetryURL: oidcStartPath}
	if u := c.GetString(ctxRetryURL); u != "" {
		page.RetryURL = u
	}
	switch status {
	case http.StatusForbidden:
		page.Title = "Sign-in refused"
	case http.StatusServiceUnavailable:
		page.Title = "Sign-in unavailable"
	}
	s.render(c, status, "oidc_error.html", page)
	c.Abort()
}
