package httpapi

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// mfaCookie holds the secret of a login whose second factor is still owed.
const mfaCookie = "coffer_mfa"

// Failed sign-ins allowed per window, per account and per client address. The account limit
// stops guessing one person's password from many addresses; the address limit stops one
// client trying a common password on many accounts. Bearer-token requests are not counted
// here: the API has its own limiter, keyed by token.
const (
	loginWindow         = 15 * time.Minute
	loginFailsPerUser   = 5
	loginFailsPerClient = 20
)

// localLogin is the local-account side of the server: nil when COFFER_LOCAL_LOGIN=false.
type localLogin struct {
	svc      *auth.Local
	accounts *failureWindow
	clients  *failureWindow
}

func newLocalLogin(svc *auth.Local) *localLogin {
	if svc == nil {
		return nil
	}
	return &localLogin{svc: svc, accounts: newFailureWindow(loginFailsPerUser, loginWindow), clients: newFailureWindow(loginFailsPerClient, loginWindow)}
}

// localOn answers every local-account route with 404 while local accounts are off, as if the
// route did not exist.
func (s *Server) localOn(c *gin.Context) {
	if s.local == nil {
		s.fail(c, coffer.Errorf(coffer.EROUTENOTFOUND, "no such route"))
		return
	}
	c.Next()
}

// accountKey is what failures against one account are counted under: the address as typed,
// normalised, whether or not an account has it, so the limiter answers alike for both.
func accountKey(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	if len(email) > 254 {
		email = email[:254]
	}
	return email
}

// wait is how long the caller must wait before another attempt on account from client; zero
// if it may try now.
func (l *localLogin) wait(account, client string) time.Duration {
	now := time.Now()
	return max(l.accounts.wait(account, now), l.clients.wait(client, now))
}

func (l *localLogin) failed(account, client string) {
	now := time.Now()
	l.accounts.fail(account, now)
	l.clients.fail(client, now)
}

// succeeded forgets an account's failures once its owner proved every factor: only they can
// do that, so nobody else can reset a count they are running up. The address's count stays,
// or a client could clear it by signing in to an account of its own between guesses.
func (l *localLogin) succeeded(account string) { l.accounts.forget(account) }

// loginPage is the sign-in choice: the password form when local accounts are on, and the
// OpenID provider's button when one is configured.
type loginPage struct {
	ReturnTo string
	Error    string
	Local    bool
	SSO      string // the URL that starts sign-in at the OpenID provider; empty without one
}

// loginChoice fills in what this instance offers.
func (s *Server) loginChoice(returnTo, problem string) loginPage {
	p := loginPage{ReturnTo: returnTo, Error: problem, Local: s.local != nil}
	if s.oidc != nil {
		p.SSO = oidcStartPath + "?return_to=" + url.QueryEscape(returnTo)
	}
	return p
}

type loginReq struct {
	Email    string `json:"email" form:"email"`
	Password string `json:"password" form:"password"`
	ReturnTo string `json:"return_to" form:"return_to"`
}

func (s *Server) loginForm(c *gin.Context) {
	returnTo := auth.SafeReturnPath(c.Query("return_to"))
	if _, ok := s.signedIn(c); ok {
		c.Redirect(http.StatusSeeOther, returnTo)
		return
	}
	if s.local == nil && s.oidc == nil {
		s.fail(c, coffer.Errorf(coffer.EROUTENOTFOUND, "no sign-in is configured on this instance: use an API token"))
		return
	}
	s.render(c, http.StatusOK, "login.html", s.loginChoice(returnTo, ""))
}

// loginSubmit checks an e-mail address and password. Form posts get pages and redirects;
// JSON requests (scripts) get JSON and the same cookies. Every wrong answer is the same,
// whether the address has an account or not.
func (s *Server) loginSubmit(c *gin.Context) {
	var req loginReq
	wantJSON, ok := s.bindPost(c, &req)
	if !ok {
		return
	}
	returnTo := auth.SafeReturnPath(req.ReturnTo)
	account, client := accountKey(req.Email), c.ClientIP()
	if wait := s.local.wait(account, client); wait > 0 {
		s.loginRefused(c, wantJSON, wait, "login.html", s.loginChoice(returnTo, ""))
		return
	}
	res, err := s.local.svc.Login(c.Request.Context(), req.Email, req.Password, returnTo)
	if errors.Is(err, auth.ErrBadLogin) {
		s.local.failed(account, client)
		s.loginFailed(c, wantJSON, err, "login.html", s.loginChoice(returnTo, coffer.ErrorMessage(err)))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if res.Challenge != "" {
		s.setCookie(c, mfaCookie, res.Challenge, auth.ChallengeLifetime)
		if wantJSON {
			c.JSON(http.StatusOK, gin.H{"mfa_required": true, "next": "/login/totp"})
			return
		}
		c.Redirect(http.StatusSeeOther, "/login/totp")
		return
	}
	s.local.succeeded(account)
	s.signIn(c, wantJSON, res.User, auth.MethodPassword, returnTo)
}

// signIn starts the session of a completed login and sends the browser on.
func (s *Server) signIn(c *gin.Context, wantJSON bool, u auth.User, method, returnTo string) {
	if err := s.beginSession(c, u, method); err != nil {
		s.fail(c, err)
		return
	}
	s.log.InfoContext(c.Request.Context(), "signed in", "user", u.ID, "method", method)
	if wantJSON {
		c.JSON(http.StatusOK, gin.H{"user": viewUser(u), "return_to": returnTo})
		return
	}
	c.Redirect(http.StatusSeeOther, returnTo)
}

// loginRefused answers an attempt the limiter stops: 429 with Retry-After, as JSON or as the
// page again.
func (s *Server) loginRefused(c *gin.Context, wantJSON bool, wait time.Duration, view string, data any) {
	secs := int(math.Ceil(wait.Seconds()))
	c.Header("Retry-After", strconv.Itoa(max(secs, 1)))
	err := coffer.Errorf(coffer.ERATELIMITED, "too many failed attempts; wait %d minutes and try again", max(1, (secs+59)/60))
	s.loginFailed(c, wantJSON, err, view, withError(data, coffer.ErrorMessage(err)))
}

// loginFailed answers a failed attempt with err's status, as JSON or as the page again.
func (s *Server) loginFailed(c *gin.Context, wantJSON bool, err error, view string, data any) {
	if wantJSON {
		s.fail(c, err)
		return
	}
	status, ok := statusOf[coffer.ErrorCode(err)]
	if !ok {
		status = http.StatusInternalServerError
	}
	s.render(c, status, view, data)
}

// withError sets the message of a local-account page.
func withError(data any, msg string) any {
	switch d := data.(type) {
	case loginPage:
		d.Error = msg
		return d
	case totpLoginPage:
		d.Error = msg
		return d
	case totpPage:
		d.Error = msg
		return d
	case resetPage:
		d.Error = msg
		return d
	}
	return data
}

type totpLoginPage struct {
	Error string
}

// challenge returns the pending login this browser's mfa cookie names.
func (s *Server) challenge(c *gin.Context) (string, auth.Credentials, error) {
	secret, _ := s.cookie(c, mfaCookie)
	_, cred, err := s.local.svc.ChallengeUser(c.Request.Context(), secret)
	return secret, cred, err
}

func (s *Server) totpLoginForm(c *gin.Context) {
	if _, _, err := s.challenge(c); err != nil {
		if errors.Is(err, auth.ErrNoChallenge) {
			s.clearCookie(c, mfaCookie)
			c.Redirect(http.StatusSeeOther, "/login")
			return
		}
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "login_totp.html", totpLoginPage{})
}

type totpLoginReq struct {
	Code string `json:"code" form:"code"`
}

// totpLoginSubmit finishes a login with a TOTP code or a recovery code. Wrong codes count
// against the account and the address like wrong passwords.
func (s *Server) totpLoginSubmit(c *gin.Context) {
	var req totpLoginReq
	wantJSON, ok := s.bindPost(c, &req)
	if !ok {
		return
	}
	secret, cred, err := s.challenge(c)
	if err != nil {
		if errors.Is(err, auth.ErrNoChallenge) && !wantJSON {
			s.clearCookie(c, mfaCookie)
			c.Redirect(http.StatusSeeOther, "/login")
			return
		}
		s.fail(c, err)
		return
	}
	account, client := accountKey(cred.User.Email), c.ClientIP()
	if wait := s.local.wait(account, client); wait > 0 {
		s.loginRefused(c, wantJSON, wait, "login_totp.html", totpLoginPage{})
		return
	}
	u, method, returnTo, err := s.local.svc.CompleteLogin(c.Request.Context(), requestActor(c), secret, req.Code)
	if errors.Is(err, auth.ErrBadCode) {
		s.local.failed(account, client)
		s.loginFailed(c, wantJSON, err, "login_totp.html", totpLoginPage{Error: coffer.ErrorMessage(err)})
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	s.local.succeeded(account)
	s.clearCookie(c, mfaCookie)
	s.signIn(c, wantJSON, u, method, auth.SafeReturnPath(returnTo))
}

// failureWindow counts failures per key over a sliding window and refuses a key that has
// reached its limit until the oldest failure leaves the window. It lives in the process: each
// replica counts on its own, which bounds guessing to replicas x limit per window.
type failureWindow struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	fails  map[string][]time.Time // oldest first, at most limit entries
	swept  time.Time
}

// maxTrackedKeys bounds the memory the windows can take; past it, the oldest state is dropped
// wholesale, the same trade-off the API limiter makes.
const maxTrackedKeys = 100_000

func newFailureWindow(limit int, window time.Duration) *failureWindow {
	return &failureWindow{limit: limit, window: window, fails: map[string][]time.Time{}}
}

// recent returns key's failures still inside the window; the caller holds mu.
func (w *failureWindow) recent(key string, now time.Time) []time.Time {
	fs := w.fails[key]
	i := 0
	for i < len(fs) && !fs[i].After(now.Add(-w.window)) {
		i++
	}
	if i == len(fs) {
		delete(w.fails, key)
		return nil
	}
	fs = fs[i:]
	w.fails[key] = fs
	return fs
}

// wait is how long key must wait before another attempt; zero if it may try now.
func (w *failureWindow) wait(key string, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	fs := w.recent(key, now)
	if len(fs) < w.limit {
		return 0
	}
	return fs[len(fs)-w.limit].Add(w.window).Sub(now)
}

// forget drops key's failures.
func (w *failureWindow) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.fails, key)
}

// fail records a failure of key.
func (w *failureWindow) fail(key string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.swept) > time.Minute {
		for k := range w.fails {
			w.recent(k, now)
		}
		w.swept = now
		if len(w.fails) > maxTrackedKeys {
			clear(w.fails)
		}
	}
	fs := append(w.recent(key, now), now)
	if len(fs) > w.limit {
		fs = fs[len(fs)-w.limit:]
	}
	w.fails[key] = fs
}

// setupPasswordError checks the first owner's password on the setup form before anything is
// created: the browser form must choose one, a script may leave it out and use the token.
func (s *Server) setupPasswordError(password string, browser bool) error {
	if s.local == nil {
		if password != "" {
			return coffer.Errorf(coffer.EINVALID, "local accounts are off on this instance (COFFER_LOCAL_LOGIN=false): leave the password out")
		}
		return nil
	}
	if password == "" && !browser {
		return nil
	}
	return auth.ValidatePassword(password)
}

// setupOwner gives the first owner the password chosen at setup and, in the browser, signs
// them in. The owner exists by now and their token is about to be shown, so a failure here is
// logged rather than hiding the token: an admin can still issue a reset link with it.
func (s *Server) setupOwner(c *gin.Context, u auth.User, password string, browser bool) (passwordSet bool) {
	if s.local == nil || password == "" {
		return false
	}
	a := requestActor(c)
	a.ID = u.ID
	if err := s.local.svc.SetPassword(c.Request.Context(), a, u, password); err != nil {
		s.log.ErrorContext(c.Request.Context(), "set the first owner's password", "request_id", requestID(c), "err", err)
		return false
	}
	if browser {
		if err := s.beginSession(c, u, auth.MethodSetup); err != nil {
			s.log.ErrorContext(c.Request.Context(), "sign the first owner in", "request_id", requestID(c), "err", err)
		}
	}
	return true
}
