package app_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

// signIn starts a browser session for the user a token belongs to, through the same service
// the sign-in pages call, and returns the cookie value. The sign-in flows themselves (OIDC,
// password) have their own tests; these tests are about what a session may do.
func (s *server) signIn(token string) string {
	s.t.Helper()
	id, email := isoUserID(s, token)
	_, secret, err := s.app.Auth.StartSession(context.Background(), audit.System, auth.User{ID: id, Email: email}, "test", "test browser", "")
	if err != nil {
		s.t.Fatalf("start session: %v", err)
	}
	return secret
}

// browse sends a request as a browser holding a session cookie: origin is its Origin header
// ("" for none), csrf its X-CSRF-Token (or, for a form body, the csrf_token field).
func (s *server) browse(method, path, cookie, origin, csrf string, body string, form bool) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" || form {
		if form && csrf != "" {
			if body != "" {
				body += "&"
			}
			body += "csrf_token=" + url.QueryEscape(csrf)
		}
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	switch {
	case form:
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "coffer_session", Value: cookie})
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if csrf != "" && !form {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return s.send(req)
}

func TestSessionsAuthenticateAndNeedCSRF(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		const projects = "/api/v1/tenants/default/projects"

		me := s.browse("GET", "/api/v1/me", cookie, "", "", "", false)
		if me.status != http.StatusOK || me.body["kind"] != auth.KindSession {
			t.Fatalf("GET /me with a session: %d %s", me.status, me.raw)
		}
		// Reads through the one-query scope path work with a cookie too.
		if r := s.browse("GET", projects, cookie, "", "", "", false); r.status != http.StatusOK {
			t.Fatalf("GET projects with a session: %d %s", r.status, r.raw)
		}

		body := `{"slug":"web","name":"Web"}`
		refused := []struct {
			name          string
			origin, token string
			form          bool
		}{
			{"no CSRF token", s.base, "", false},
			{"CSRF token of another session", s.base, auth.CSRFToken(s.signIn(s.owner)), false},
			{"cross-origin with the right token", "https://evil.example", csrf, false},
			{"cross-origin form without a token", "https://evil.example", "", true},
		}
		for _, c := range refused {
			b := body
			if c.form {
				b = "slug=web&name=Web"
			}
			r := s.browse("POST", projects, cookie, c.origin, c.token, b, c.form)
			if r.status != http.StatusForbidden || r.errCode() != "forbidden" {
				t.Fatalf("%s: status %d, want 403 forbidden: %s", c.name, r.status, r.raw)
			}
		}
		if r := s.must(http.StatusOK, "GET", projects, s.owner, nil); len(r.items()) != 0 {
			t.Fatalf("a refused request created a project: %s", r.raw)
		}

		// A bearer token needs neither, even with a hostile Origin: browsers never attach one.
		req, _ := http.NewRequest("POST", s.base+projects, strings.NewReader(`{"slug":"api","name":"API"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+s.owner)
		req.Header.Set("Origin", "https://evil.example")
		if r := s.send(req); r.status != http.StatusCreated {
			t.Fatalf("bearer POST with a foreign Origin: %d %s", r.status, r.raw)
		}
		// The session with its token from the same origin is served.
		if r := s.browse("POST", projects, cookie, s.base, csrf, body, false); r.status != http.StatusCreated {
			t.Fatalf("same-origin POST with the CSRF token: %d %s", r.status, r.raw)
		}
		// A malformed cookie is simply unauthenticated. (Forms carry the token as csrf_token:
		// see logout in the next test.)
		if r := s.browse("GET", "/api/v1/me", "not-a-session", "", "", "", false); r.status != http.StatusUnauthorized {
			t.Fatalf("junk cookie: %d %s", r.status, r.raw)
		}
	})
}

func TestSessionsEndOnLogoutRevokeTimeoutAndDisable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()
		alive := func(cookie string) bool {
			t.Helper()
			r := s.browse("GET", "/api/v1/me", cookie, "", "", "", false)
			if r.status != http.StatusOK && r.status != http.StatusUnauthorized {
				t.Fatalf("GET /me: %d %s", r.status, r.raw)
			}
			return r.status == http.StatusOK
		}

		// Logout deletes the session row and clears the cookie; it needs the CSRF token.
		a := s.signIn(s.owner)
		if r := s.browse("POST", "/auth/logout", a, s.base, "", "", true); r.status != http.StatusForbidden || !alive(a) {
			t.Fatalf("logout without the CSRF token: %d, session alive %v", r.status, alive(a))
		}
		noRedirect := *s.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest("POST", s.base+"/auth/logout", strings.NewReader("csrf_token="+url.QueryEscape(auth.CSRFToken(a))))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", s.base)
		req.AddCookie(&http.Cookie{Name: "coffer_session", Value: a})
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge != -1 {
			t.Fatalf("logout: %d, cookies %v", res.StatusCode, res.Header.Values("Set-Cookie"))
		}
		if alive(a) {
			t.Fatal("the session still works after logout")
		}

		// A user lists their sessions and revokes another one; the current one is marked.
		b, c := s.signIn(s.owner), s.signIn(s.owner)
		list := s.browse("GET", "/api/v1/sessions", b, "", "", "", false)
		var otherID string
		current := 0
		for _, it := range list.items() {
			if it["current"] == true {
				current++
			} else {
				otherID, _ = it["id"].(string)
			}
		}
		if list.status != http.StatusOK || len(list.items()) != 2 || current != 1 || otherID == "" {
			t.Fatalf("list sessions: %d %s", list.status, list.raw)
		}
		s.must(http.StatusNoContent, "DELETE", "/api/v1/sessions/"+otherID, s.owner, nil)
		if alive(c) || !alive(b) {
			t.Fatalf("after revoking the other session: c alive %v, b alive %v", alive(c), alive(b))
		}
		// Another user cannot revoke it: not found, like a missing one.
		kim := s.newUser("kim@example.com")
		bID := ""
		for _, it := range s.browse("GET", "/api/v1/sessions", b, "", "", "", false).items() {
			bID, _ = it["id"].(string)
		}
		if r := s.call("DELETE", "/api/v1/sessions/"+bID, kim, nil); r.status != http.StatusNotFound {
			t.Fatalf("revoking another user's session: %d %s", r.status, r.raw)
		}

		// Idle and absolute timeouts are enforced by the server, whatever the cookie says.
		if _, err := db.Exec(s.q(`UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?`), time.Now().Add(-2*time.Hour).UTC(), auth.HashToken(b)); err != nil {
			t.Fatal(err)
		}
		if alive(b) {
			t.Fatal("a session idle for two hours still works")
		}
		d := s.signIn(s.owner)
		if _, err := db.Exec(s.q(`UPDATE sessions SET expires_at = ? WHERE token_hash = ?`), time.Now().Add(-time.Minute).UTC(), auth.HashToken(d)); err != nil {
			t.Fatal(err)
		}
		if alive(d) {
			t.Fatal("a session past its absolute timeout still works")
		}

		// A disabled user's sessions fail on the next request, through the scope path too.
		kimSession := s.signIn(kim)
		kimID, _ := isoUserID(s, kim)
		s.must(http.StatusNoContent, "POST", "/api/v1/users/"+kimID+"/disable", s.owner, nil)
		if alive(kimSession) {
			t.Fatal("a disabled user's session still works")
		}
		if r := s.browse("GET", "/api/v1/tenants/default", kimSession, "", "", "", false); r.status != http.StatusUnauthorized {
			t.Fatalf("a disabled user's session on a tenant route: %d %s", r.status, r.raw)
		}

		// Starting a session in place of the one the browser held ends the old one.
		e := s.signIn(s.owner)
		id, email := isoUserID(s, s.owner)
		_, f, err := s.app.Auth.StartSession(context.Background(), audit.System, auth.User{ID: id, Email: email}, "test", "", e)
		if err != nil {
			t.Fatal(err)
		}
		if alive(e) || !alive(f) {
			t.Fatalf("signing in again: old session alive %v, new alive %v", alive(e), alive(f))
		}
	})
}
