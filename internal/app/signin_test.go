package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestSessionCookieAttributes signs in over the password form and checks the Set-Cookie line
// exactly: behind HTTPS the cookie is __Host- prefixed and Secure; over plain HTTP on loopback
// (development) it has neither, since browsers would drop it.
func TestSessionCookieAttributes(t *testing.T) {
	for _, c := range []struct {
		name, baseURL string
		want          *regexp.Regexp
	}{
		{"https", "https://coffer.example",
			regexp.MustCompile(`^__Host-coffer_session=[A-Za-z0-9_-]{43}; Path=/; Max-Age=43200; HttpOnly; Secure; SameSite=Lax$`)},
		{"loopback http", "",
			regexp.MustCompile(`^coffer_session=[A-Za-z0-9_-]{43}; Path=/; Max-Age=43200; HttpOnly; SameSite=Lax$`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			if c.baseURL != "" {
				env["COFFER_BASE_URL"] = c.baseURL
			}
			s := start(t, "sqlite", env)
			origin := c.baseURL
			if origin == "" {
				origin = s.base
			}
			id, _ := s.localUser("ada@example.com")
			link := str(s.must(http.StatusCreated, "POST", "/api/v1/users/"+id+"/password-reset", s.owner, nil).body["reset_url"])
			u, err := url.Parse(link)
			if err != nil {
				t.Fatal(err)
			}
			code := u.Query().Get("code")
			post := func(path string, form url.Values) *http.Response {
				t.Helper()
				req, _ := http.NewRequest("POST", s.base+path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", origin)
				res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res
			}
			if res := post("/password/reset", url.Values{"code": {code}, "password": {localPassword}, "password_confirm": {localPassword}}); res.StatusCode != http.StatusOK {
				t.Fatalf("set the password: %d", res.StatusCode)
			}
			res := post("/login", url.Values{"email": {"ada@example.com"}, "password": {localPassword}})
			lines := res.Header.Values("Set-Cookie")
			if res.StatusCode != http.StatusSeeOther || len(lines) != 1 || !c.want.MatchString(lines[0]) {
				t.Fatalf("login: %d, Set-Cookie %q, want one line matching %s", res.StatusCode, lines, c.want)
			}
			name, value, _ := strings.Cut(strings.SplitN(lines[0], ";", 2)[0], "=")
			req, _ := http.NewRequest("GET", s.base+"/api/v1/me", nil)
			req.AddCookie(&http.Cookie{Name: name, Value: value})
			if r := s.send(req); r.status != http.StatusOK || r.body["kind"] != "session" {
				t.Fatalf("the session cookie %s: %d %s", name, r.status, r.raw)
			}
			// The unprefixed name is not the session cookie behind HTTPS: a cookie another
			// subdomain or path could set is never read as a session.
			if c.baseURL != "" {
				req, _ := http.NewRequest("GET", s.base+"/api/v1/me", nil)
				req.AddCookie(&http.Cookie{Name: "coffer_session", Value: value})
				if r := s.send(req); r.status != http.StatusUnauthorized {
					t.Fatalf("the bare cookie name behind HTTPS: %d", r.status)
				}
			}
		})
	}
}

// TestSignInChoice: the sign-in page offers what the instance has, the password form and the
// OpenID provider, and nothing else.
func TestSignInChoice(t *testing.T) {
	oidc := map[string]string{"COFFER_OIDC_ISSUER": "http://127.0.0.1:9/dex", "COFFER_OIDC_CLIENT_ID": "coffer",
		"COFFER_OIDC_CLIENT_SECRET": "client-secret"}
	for _, c := range []struct {
		name       string
		local      string
		form, sso  bool
		withIssuer bool
	}{
		{"password and provider", "true", true, true, true},
		{"provider only", "false", false, true, true},
		{"password only", "true", true, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"COFFER_LOCAL_LOGIN": c.local}
			if c.withIssuer {
				for k, v := range oidc {
					env[k] = v
				}
			}
			s := start(t, "sqlite", env)
			r := s.browse("GET", "/login?return_to=%2Faccount", "", "", "", "", false)
			body := string(r.raw)
			hasForm := strings.Contains(body, `<form method="post" action="/login">`)
			hasSSO := strings.Contains(body, `href="/auth/oidc/login?return_to=%2Faccount"`)
			if r.status != http.StatusOK || hasForm != c.form || hasSSO != c.sso {
				t.Fatalf("GET /login: %d, form %v (want %v), provider link %v (want %v):\n%s", r.status, hasForm, c.form, hasSSO, c.sso, body)
			}
		})
	}
}
