package app_test

import (
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/oidctest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

const oidcEmail = "ada@example.com"

// freeAddr returns a loopback address nothing listens on right now: the server's address must
// be known before it starts, since Dex is told the exact redirect URI.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// startOIDC runs Dex and a Coffer that signs in with it on dialect; extra adds settings.
func startOIDC(t *testing.T, dialect string, extra map[string]string) (*server, *oidctest.Provider) {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	p := oidctest.Start(t, oidctest.Options{RedirectURI: base + "/auth/oidc/callback", Email: oidcEmail, Username: "Ada"})
	env := map[string]string{
		"COFFER_LISTEN": addr, "COFFER_BASE_URL": base,
		"COFFER_OIDC_ISSUER": p.Issuer, "COFFER_OIDC_CLIENT_ID": p.ClientID, "COFFER_OIDC_CLIENT_SECRET": p.ClientSecret,
	}
	for k, v := range extra {
		env[k] = v
	}
	return start(t, dialect, env), p
}

// forEachOIDC runs fn on each database against its own Dex.
func forEachOIDC(t *testing.T, extra map[string]string, fn func(t *testing.T, s *server, p *oidctest.Provider)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			s, p := startOIDC(t, d, extra)
			fn(t, s, p)
		})
	}
}

// browser is a cookie-keeping HTTP client that follows redirects, like a browser. With
// stopAtCallback it stops at Coffer's callback instead, so a test can tamper with it.
type browser struct {
	t              *testing.T
	c              *http.Client
	callback       *url.URL // the last callback URL the provider sent the browser to
	stopAtCallback bool
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t}
	b.c = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > 10 {
			return http.ErrUseLastResponse
		}
		if req.URL.Path == "/auth/oidc/callback" {
			b.callback = req.URL
			if b.stopAtCallback {
				return http.ErrUseLastResponse
			}
		}
		return nil
	}}
	return b
}

type page struct {
	status int
	url    *url.URL
	body   string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{status: res.StatusCode, url: res.Request.URL, body: string(body)}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

var dexFormRE = regexp.MustCompile(`<form method="post" action="([^"]*)"`)

// signIn starts a sign-in at Coffer and submits Dex's password form; it returns the page the
// browser ends on (or the callback's redirect, with stopAtCallback).
func (b *browser) signIn(s *server, p *oidctest.Provider, path string) page {
	b.t.Helper()
	form := b.get(s.base + path)
	if form.status != http.StatusOK {
		b.t.Fatalf("GET %s: %d, want Dex's login form: %s", path, form.status, form.body)
	}
	m := dexFormRE.FindStringSubmatch(form.body)
	if m == nil {
		b.t.Fatalf("no password form at %s:\n%s", form.url, form.body)
	}
	action, err := form.url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, action.String(),
		strings.NewReader(url.Values{"login": {p.Email}, "password": {p.Password}}.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out := b.do(req)
	if b.callback == nil {
		b.t.Fatalf("Dex did not send the browser back to Coffer; last page %s (%d):\n%s", out.url, out.status, out.body)
	}
	return out
}

// me asks who the browser's session belongs to.
func (b *browser) me(s *server) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.base+"/api/v1/me", nil)
	if err != nil {
		b.t.Fatal(err)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{status: res.StatusCode, raw: raw}
}

// count runs a COUNT(*) query on the server's database.
func (s *server) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.rawDB().QueryRow(s.q(query), args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// requireNoSignIn checks that a refused sign-in left nothing: no session, no identity, no user
// with the provider's address, no audit entry of a sign-up.
func requireNoSignIn(t *testing.T, s *server, sessionsBefore int) {
	t.Helper()
	if n := s.count(`SELECT COUNT(*) FROM sessions`); n != sessionsBefore {
		t.Errorf("%d sessions, want %d: a refused sign-in left one behind", n, sessionsBefore)
	}
	if n := s.count(`SELECT COUNT(*) FROM user_identities`); n != 0 {
		t.Errorf("%d identities linked by a refused sign-in", n)
	}
	if n := s.count(`SELECT COUNT(*) FROM users WHERE email = ?`, oidcEmail); n != 0 {
		t.Errorf("a refused sign-in created the user")
	}
	if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action IN ('user.identity.link', 'auth.login')`); n != 0 {
		t.Errorf("a refused sign-in wrote %d sign-in audit entries", n)
	}
}

func requireStatus(t *testing.T, pg page, want int, mention string) {
	t.Helper()
	if pg.status != want || !strings.Contains(pg.body, mention) {
		t.Fatalf("status %d at %s, want %d mentioning %q:\n%s", pg.status, pg.url, want, mention, pg.body)
	}
}

// TestOIDCSignInWithInvitation: an invited address signs in through Dex, becomes a user with
// the invited membership and a working session, and signs in as the same user next time.
func TestOIDCSignInWithInvitation(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.invite(s.owner, "default", oidcEmail, "member")
		b := newBrowser(t)
		end := b.signIn(s, p, "/auth/oidc/login?return_to=/api/v1/me")
		if end.status != http.StatusOK || end.url.Path != "/api/v1/me" || !strings.Contains(end.body, `"email":"`+oidcEmail+`"`) {
			t.Fatalf("sign-in ended at %s (%d), want /api/v1/me with the user:\n%s", end.url, end.status, end.body)
		}
		if r := b.me(s); r.status != http.StatusOK || !strings.Contains(string(r.raw), `"kind":"session"`) {
			t.Fatalf("GET /api/v1/me with the session: %d %s", r.status, r.raw)
		}
		var userID string
		if err := s.rawDB().QueryRow(s.q(`SELECT user_id FROM user_identities WHERE issuer = ? AND email = ?`), p.Issuer, oidcEmail).Scan(&userID); err != nil {
			t.Fatalf("no identity linked: %v", err)
		}
		if n := s.count(`SELECT COUNT(*) FROM tenant_members m JOIN tenants t ON t.id = m.tenant_id
			WHERE t.slug = 'default' AND m.user_id = ? AND m.role = 'member'`, userID); n != 1 {
			t.Fatalf("the invitation made %d memberships, want 1", n)
		}
		if n := s.count(`SELECT COUNT(*) FROM invitations WHERE accepted_by = ?`, userID); n != 1 {
			t.Fatalf("%d invitations accepted, want 1", n)
		}
		for _, action := range []string{"user.create", "user.identity.link", "tenant.invitation.accept", "auth.login"} {
			if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action = ? AND actor_id = ?`, action, userID); n != 1 {
				t.Errorf("%d %s audit entries by the new user, want 1", n, action)
			}
		}
		if n := s.count(`SELECT COUNT(*) FROM oidc_login_states`); n != 0 {
			t.Errorf("%d login states left after the callback", n)
		}

		// Signing in again (the invitation is used up) is the same user, by its identity.
		again := newBrowser(t)
		if end := again.signIn(s, p, "/auth/oidc/login"); end.status != http.StatusOK || end.url.Path != "/" {
			t.Fatalf("second sign-in ended at %s (%d)", end.url, end.status)
		}
		if r := again.me(s); r.status != http.StatusOK || !strings.Contains(string(r.raw), userID) {
			t.Fatalf("second session: %d %s", r.status, r.raw)
		}
		if n := s.count(`SELECT COUNT(*) FROM users WHERE email = ?`, oidcEmail); n != 1 {
			t.Fatalf("%d users with the address, want 1", n)
		}
	})
}

// TestOIDCReturnToStaysOnSite: a return path pointing elsewhere lands on / instead.
func TestOIDCReturnToStaysOnSite(t *testing.T) {
	s, p := startOIDC(t, "sqlite", map[string]string{"COFFER_OIDC_SIGNUP": "open"})
	for _, rt := range []string{"//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"} {
		b := newBrowser(t)
		end := b.signIn(s, p, "/auth/oidc/login?return_to="+url.QueryEscape(rt))
		if end.url.Host != strings.TrimPrefix(s.base, "http://") || end.url.Path != "/" {
			t.Errorf("return_to %q ended at %s", rt, end.url)
		}
	}
}

// TestOIDCSignupRefusedWithoutInvitation: with sign-up by invitation, an identity nobody
// invited is refused with 403 and nothing is written.
func TestOIDCSignupRefusedWithoutInvitation(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		b := newBrowser(t)
		end := b.signIn(s, p, "/auth/oidc/login")
		requireStatus(t, end, http.StatusForbidden, "invit")
		if r := b.me(s); r.status != http.StatusUnauthorized {
			t.Fatalf("GET /api/v1/me after a refused sign-in: %d %s", r.status, r.raw)
		}
		requireNoSignIn(t, s, 0)
	})
}

// TestOIDCSignupOpen: with COFFER_OIDC_SIGNUP=open anyone the provider verified becomes a user,
// a member of nothing.
func TestOIDCSignupOpen(t *testing.T) {
	forEachOIDC(t, map[string]string{"COFFER_OIDC_SIGNUP": "open"}, func(t *testing.T, s *server, p *oidctest.Provider) {
		b := newBrowser(t)
		if end := b.signIn(s, p, "/auth/oidc/login"); end.status != http.StatusOK || end.url.Path != "/" {
			t.Fatalf("sign-in ended at %s (%d): %s", end.url, end.status, end.body)
		}
		if r := b.me(s); r.status != http.StatusOK || !strings.Contains(string(r.raw), oidcEmail) {
			t.Fatalf("GET /api/v1/me: %d %s", r.status, r.raw)
		}
		if n := s.count(`SELECT COUNT(*) FROM tenant_members m JOIN users u ON u.id = m.user_id WHERE u.email = ?`, oidcEmail); n != 0 {
			t.Fatalf("open sign-up made %d memberships", n)
		}
	})
}

// TestOIDCExistingEmailNotLinked: an identity whose address belongs to a user it is not linked
// to is refused, even with sign-up open and an invitation pending: matching on e-mail would
// hand that user's account to whoever holds the address at some provider.
func TestOIDCExistingEmailNotLinked(t *testing.T) {
	forEachOIDC(t, map[string]string{"COFFER_OIDC_SIGNUP": "open"}, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.newUser(oidcEmail)
		s.invite(s.owner, "default", oidcEmail, "admin")
		b := newBrowser(t)
		end := b.signIn(s, p, "/auth/oidc/login")
		requireStatus(t, end, http.StatusForbidden, "ask an instance admin")
		if r := b.me(s); r.status != http.StatusUnauthorized {
			t.Fatalf("GET /api/v1/me: %d %s", r.status, r.raw)
		}
		if n := s.count(`SELECT COUNT(*) FROM sessions`); n != 0 {
			t.Errorf("%d sessions", n)
		}
		if n := s.count(`SELECT COUNT(*) FROM user_identities`); n != 0 {
			t.Errorf("%d identities linked", n)
		}
		if n := s.count(`SELECT COUNT(*) FROM invitations WHERE accepted_at IS NOT NULL`); n != 0 {
			t.Errorf("the invitation was used")
		}
	})
}

// stopAtCallback runs a sign-in up to the provider's redirect to Coffer and returns the
// callback URL the provider made, without following it.
func stopAtCallback(t *testing.T, s *server, p *oidctest.Provider) (*browser, *url.URL) {
	t.Helper()
	b := newBrowser(t)
	b.stopAtCallback = true
	b.signIn(s, p, "/auth/oidc/login")
	return b, b.callback
}

// TestOIDCTamperedState: a callback whose state differs from the pre-login cookie, or that
// comes without the cookie, is refused with 400; the genuine callback still works after.
func TestOIDCTamperedState(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.invite(s.owner, "default", oidcEmail, "member")
		b, cb := stopAtCallback(t, s, p)
		q := cb.Query()
		state := q.Get("state")
		last := "A"
		if strings.HasSuffix(state, "A") {
			last = "B"
		}
		q.Set("state", state[:len(state)-1]+last)
		tampered := *cb
		tampered.RawQuery = q.Encode()
		b.stopAtCallback = false
		requireStatus(t, b.get(tampered.String()), http.StatusBadRequest, "start the sign-in again")
		requireNoSignIn(t, s, 0)

		// The real callback in another browser, which has no pre-login cookie.
		requireStatus(t, newBrowser(t).get(cb.String()), http.StatusBadRequest, "start the sign-in again")
		requireNoSignIn(t, s, 0)

		// A state that matches its cookie but that this server never issued.
		forged := *cb
		fq := cb.Query()
		fq.Set("state", "forged-state-forged-state-forged-state-forged")
		forged.RawQuery = fq.Encode()
		req, _ := http.NewRequest(http.MethodGet, forged.String(), nil)
		req.AddCookie(&http.Cookie{Name: "coffer_login", Value: "forged-state-forged-state-forged-state-forged"})
		requireStatus(t, newBrowser(t).do(req), http.StatusBadRequest, "start the sign-in again")
		requireNoSignIn(t, s, 0)
	})
}

// TestOIDCReplayedState: the callback URL of a finished sign-in, replayed with its pre-login
// cookie (as by someone who copied both) or by the same browser, is refused with 400 and
// makes no second session.
func TestOIDCReplayedState(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.invite(s.owner, "default", oidcEmail, "member")
		b := newBrowser(t)
		if end := b.signIn(s, p, "/auth/oidc/login"); end.status != http.StatusOK {
			t.Fatalf("sign-in: %d %s", end.status, end.body)
		}
		cb := b.callback
		if n := s.count(`SELECT COUNT(*) FROM sessions`); n != 1 {
			t.Fatalf("%d sessions after sign-in, want 1", n)
		}
		requireStatus(t, b.get(cb.String()), http.StatusBadRequest, "already used")

		req, _ := http.NewRequest(http.MethodGet, cb.String(), nil)
		req.AddCookie(&http.Cookie{Name: "coffer_login", Value: cb.Query().Get("state")})
		thief := newBrowser(t)
		requireStatus(t, thief.do(req), http.StatusBadRequest, "already used")
		if r := thief.me(s); r.status != http.StatusUnauthorized {
			t.Fatalf("the replaying browser is signed in: %d %s", r.status, r.raw)
		}
		if n := s.count(`SELECT COUNT(*) FROM sessions`); n != 1 {
			t.Fatalf("%d sessions after the replays, want 1", n)
		}
	})
}

// TestOIDCProviderError: a callback carrying the provider's error is refused with 401, and
// its state is used up.
func TestOIDCProviderError(t *testing.T) {
	s, p := startOIDC(t, "sqlite", nil)
	s.invite(s.owner, "default", oidcEmail, "member")
	b, cb := stopAtCallback(t, s, p)
	b.stopAtCallback = false
	bad := *cb
	bad.RawQuery = url.Values{"state": {cb.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"<script>"}}.Encode()
	end := b.get(bad.String())
	requireStatus(t, end, http.StatusUnauthorized, "access_denied")
	if strings.Contains(end.body, "<script>") {
		t.Fatal("the provider's error description was echoed into the page")
	}
	requireNoSignIn(t, s, 0)

	// A callback naming another provider (RFC 9207) is refused too.
	b, cb = stopAtCallback(t, s, p)
	b.stopAtCallback = false
	mixed := *cb
	q := cb.Query()
	q.Set("iss", "https://evil.example.com")
	mixed.RawQuery = q.Encode()
	requireStatus(t, b.get(mixed.String()), http.StatusUnauthorized, "another identity provider")
	requireNoSignIn(t, s, 0)
}

// TestOIDCProviderDown: a server whose provider does not answer still starts (discovery is
// lazy); a sign-in answers 503 and stores nothing.
func TestOIDCProviderDown(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			down := "http://" + freeAddr(t) + "/dex"
			s := start(t, d, map[string]string{
				"COFFER_OIDC_ISSUER": down, "COFFER_OIDC_CLIENT_ID": "coffer", "COFFER_OIDC_CLIENT_SECRET": "secret",
			})
			b := newBrowser(t)
			requireStatus(t, b.get(s.base+"/auth/oidc/login"), http.StatusServiceUnavailable, "cannot be reached")
			if n := s.count(`SELECT COUNT(*) FROM oidc_login_states`); n != 0 {
				t.Errorf("%d login states stored while the provider is down", n)
			}
			// Scripts asking for JSON get the usual error shape.
			req, _ := http.NewRequest(http.MethodGet, s.base+"/auth/oidc/login", nil)
			req.Header.Set("Accept", "application/json")
			if r := s.send(req); r.status != http.StatusServiceUnavailable || r.errCode() != "unavailable" {
				t.Errorf("JSON answer: %d %s", r.status, r.raw)
			}
			requireNoSignIn(t, s, 0)
		})
	}
}

// TestOIDCUnknownIssuer: a provider whose discovery document names another issuer than the
// configured one is not used: its tokens would name an issuer Coffer does not trust.
func TestOIDCUnknownIssuer(t *testing.T) {
	addr := freeAddr(t)
	base := "http://" + addr
	p := oidctest.Start(t, oidctest.Options{RedirectURI: base + "/auth/oidc/callback", Email: oidcEmail})
	// The same Dex under another name: discovery answers, naming 127.0.0.1.
	alias := strings.Replace(p.Issuer, "127.0.0.1", "localhost", 1)
	s := start(t, "sqlite", map[string]string{
		"COFFER_LISTEN": addr, "COFFER_BASE_URL": base,
		"COFFER_OIDC_ISSUER": alias, "COFFER_OIDC_CLIENT_ID": p.ClientID, "COFFER_OIDC_CLIENT_SECRET": p.ClientSecret,
	})
	requireStatus(t, newBrowser(t).get(s.base+"/auth/oidc/login"), http.StatusServiceUnavailable, "identity provider")
	if n := s.count(`SELECT COUNT(*) FROM oidc_login_states`); n != 0 {
		t.Errorf("%d login states stored", n)
	}
	requireNoSignIn(t, s, 0)
}

// TestOIDCNotConfigured: without an issuer the routes answer 404 and nothing else changes.
func TestOIDCNotConfigured(t *testing.T) {
	s := start(t, "sqlite", nil)
	requireStatus(t, newBrowser(t).get(s.base+"/auth/oidc/login"), http.StatusNotFound, "not configured")
	requireStatus(t, newBrowser(t).get(s.base+"/auth/oidc/callback?state=x&code=y"), http.StatusNotFound, "not configured")
}

// TestOIDCConfig: the issuer must be HTTPS except on loopback, and needs its client.
func TestOIDCConfig(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string // "" accepts
	}{
		{map[string]string{"COFFER_OIDC_ISSUER": "https://idp.example.com", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s"}, ""},
		{map[string]string{"COFFER_OIDC_ISSUER": "http://127.0.0.1:5556/dex", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s"}, ""},
		{map[string]string{"COFFER_OIDC_ISSUER": "http://idp.example.com", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s"}, "https"},
		{map[string]string{"COFFER_OIDC_ISSUER": "http://dex:5556/dex", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s", "COFFER_DEV": "true"}, ""},
		{map[string]string{"COFFER_OIDC_ISSUER": "ftp://idp.example.com", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s"}, "https"},
		{map[string]string{"COFFER_OIDC_ISSUER": "https://idp.example.com?x=1", "COFFER_OIDC_CLIENT_ID": "c", "COFFER_OIDC_CLIENT_SECRET": "s"}, "query"},
		{map[string]string{"COFFER_OIDC_ISSUER": "https://idp.example.com", "COFFER_OIDC_CLIENT_ID": "c"}, "COFFER_OIDC_CLIENT_SECRET"},
		{map[string]string{"COFFER_OIDC_CLIENT_ID": "c"}, "COFFER_OIDC_ISSUER"},
		{map[string]string{"COFFER_OIDC_SIGNUP": "everyone"}, "COFFER_OIDC_SIGNUP"},
	} {
		vars := map[string]string{"COFFER_LISTEN": "127.0.0.1:8080"}
		for k, v := range tc.env {
			vars[k] = v
		}
		_, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		}
	}
}

// TestOIDCExpiredState: a sign-in finished after its ten minutes is refused with 400, and its
// login state is gone.
func TestOIDCExpiredState(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.invite(s.owner, "default", oidcEmail, "member")
		b, cb := stopAtCallback(t, s, p)
		if _, err := s.rawDB().Exec(s.q(`UPDATE oidc_login_states SET expires_at = ?`), time.Now().UTC().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		b.stopAtCallback = false
		requireStatus(t, b.get(cb.String()), http.StatusBadRequest, "expired")
		requireNoSignIn(t, s, 0)
		if n := s.count(`SELECT COUNT(*) FROM oidc_login_states`); n != 0 {
			t.Errorf("%d login states left", n)
		}
	})
}

// TestOIDCConcurrentCallbacks: the same callback sent twice at once signs in once.
func TestOIDCConcurrentCallbacks(t *testing.T) {
	forEachOIDC(t, nil, func(t *testing.T, s *server, p *oidctest.Provider) {
		s.invite(s.owner, "default", oidcEmail, "member")
		_, cb := stopAtCallback(t, s, p)
		statuses := make(chan int, 2)
		for range 2 {
			go func() {
				req, _ := http.NewRequest(http.MethodGet, cb.String(), nil)
				req.AddCookie(&http.Cookie{Name: "coffer_login", Value: cb.Query().Get("state")})
				c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				res, err := c.Do(req)
				if err != nil {
					statuses <- 0
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				statuses <- res.StatusCode
			}()
		}
		got := map[int]int{}
		for range 2 {
			got[<-statuses]++
		}
		if got[http.StatusSeeOther] != 1 || got[http.StatusBadRequest] != 1 {
			t.Fatalf("statuses %v, want one 303 and one 400", got)
		}
		if n := s.count(`SELECT COUNT(*) FROM sessions`); n != 1 {
			t.Fatalf("%d sessions, want 1", n)
		}
	})
}

// TestOIDCPreLoginCookie: the pre-login cookie is HttpOnly, SameSite=Lax, on Path=/ and lives
// as long as the sign-in; the provider gets a PKCE S256 challenge, a state and a nonce, and
// the exact redirect URI. Nothing secret reaches the logs.
func TestOIDCPreLoginCookie(t *testing.T) {
	s, p := startOIDC(t, "sqlite", nil)
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(s.base + "/auth/oidc/login")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", res.StatusCode)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), p.Issuer+"/auth") {
		t.Fatalf("redirected to %q, want the provider", res.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("nonce") == "" ||
		q.Get("redirect_uri") != s.base+"/auth/oidc/callback" || q.Get("client_id") != p.ClientID {
		t.Fatalf("authorization request %v", q)
	}
	var cookie *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "coffer_login" {
			cookie = ck
		}
	}
	if cookie == nil || cookie.Value != q.Get("state") || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode ||
		cookie.Path != "/" || cookie.MaxAge != 600 {
		t.Fatalf("pre-login cookie %+v, want HttpOnly, Lax, Path=/, 10 minutes, holding the state", cookie)
	}
	var stored string
	if err := s.rawDB().QueryRow(`SELECT state_hash FROM oidc_login_states`).Scan(&stored); err != nil || stored == q.Get("state") {
		t.Fatalf("stored state %q (%v): want only its hash", stored, err)
	}

	s.invite(s.owner, "default", oidcEmail, "member")
	b := newBrowser(t)
	b.signIn(s, p, "/auth/oidc/login")
	logs := s.logs.String()
	for name, secret := range map[string]string{"client secret": p.ClientSecret, "password": p.Password,
		"code": b.callback.Query().Get("code"), "state": b.callback.Query().Get("state")} {
		if secret == "" || strings.Contains(logs, secret) {
			t.Errorf("the %s (%q) is in the logs", name, secret)
		}
	}
}

// TestOIDCDisabledUser: a linked identity whose user an admin disabled is refused with 403 and
// gets no session.
func TestOIDCDisabledUser(t *testing.T) {
	s, p := startOIDC(t, "sqlite", map[string]string{"COFFER_OIDC_SIGNUP": "open"})
	if end := newBrowser(t).signIn(s, p, "/auth/oidc/login"); end.status != http.StatusOK {
		t.Fatalf("sign-up: %d %s", end.status, end.body)
	}
	var userID string
	if err := s.rawDB().QueryRow(`SELECT user_id FROM user_identities`).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	s.must(http.StatusNoContent, "POST", "/api/v1/users/"+userID+"/disable", s.owner, nil)
	before := s.count(`SELECT COUNT(*) FROM sessions`)
	b := newBrowser(t)
	requireStatus(t, b.signIn(s, p, "/auth/oidc/login"), http.StatusForbidden, "disabled")
	if r := b.me(s); r.status != http.StatusUnauthorized {
		t.Fatalf("GET /api/v1/me: %d %s", r.status, r.raw)
	}
	if n := s.count(`SELECT COUNT(*) FROM sessions`); n != before {
		t.Fatalf("%d sessions, want %d", n, before)
	}
}
