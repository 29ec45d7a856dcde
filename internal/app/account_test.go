package app_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
)

// TestAccountPage drives the account page as a browser: a visitor is sent to sign in; a
// signed-in user sees their sessions and tokens, creates a token (shown once) and revokes it,
// and every form needs the session's CSRF token.
func TestAccountPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		noRedirect := *s.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		get := func(path, cookie string) (*http.Response, string) {
			t.Helper()
			req, _ := http.NewRequest("GET", s.base+path, nil)
			if cookie != "" {
				req.AddCookie(&http.Cookie{Name: "coffer_session", Value: cookie})
			}
			res, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			return res, string(b)
		}

		res, _ := get("/account", "")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?return_to=%2Faccount" {
			t.Fatalf("visitor on /account: %d Location %q", res.StatusCode, res.Header.Get("Location"))
		}

		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		res, body := get("/account", cookie)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, `name="csrf_token" value="`+csrf+`"`) ||
			!strings.Contains(body, "this browser") || !strings.Contains(body, "bootstrap") {
			t.Fatalf("account page: %d\n%s", res.StatusCode, body)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("account page Cache-Control %q", cc)
		}

		// Creating a token needs the CSRF token; with it, the token is shown once.
		if r := s.browse("POST", "/account/tokens", cookie, s.base, "", "name=laptop&expires_in_days=30", true); r.status != http.StatusForbidden {
			t.Fatalf("create a token without the CSRF token: %d", r.status)
		}
		r := s.browse("POST", "/account/tokens", cookie, s.base, csrf, "name=laptop&expires_in_days=30", true)
		i := strings.Index(string(r.raw), "cfr_pat_")
		if r.status != http.StatusCreated || i < 0 {
			t.Fatalf("create a token from the page: %d\n%s", r.status, r.raw)
		}
		secret := string(r.raw[i : i+len("cfr_pat_")+43])
		me := s.must(http.StatusOK, "GET", "/api/v1/me", secret, nil)
		if r := s.browse("POST", "/account/tokens", cookie, s.base, csrf, "name=&expires_in_days=30", true); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("a token without a name: %d", r.status)
		}
		// Revoking it from the page works from the next request.
		r = s.browse("POST", "/account/tokens/"+url.PathEscape(str(me.body["token_id"]))+"/revoke", cookie, s.base, csrf, "", true)
		if r.status != http.StatusOK && r.status != http.StatusSeeOther {
			t.Fatalf("revoke from the page: %d %s", r.status, r.raw)
		}
		if r := s.call("GET", "/api/v1/me", secret, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("a token revoked from the page: %d", r.status)
		}
		// A POST without a session is refused, not redirected.
		if r := s.browse("POST", "/account/tokens", "", s.base, "", "name=x", true); r.status != http.StatusUnauthorized {
			t.Fatalf("a POST without a session: %d", r.status)
		}
	})
}

// TestInvitationAcceptedInTheBrowser: the invitation link, opened while signed in as the
// invited address, accepts with one button (and the CSRF token).
func TestInvitationAcceptedInTheBrowser(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		kim := s.newUser("kim@example.com")
		code := s.invite(s.owner, "default", "kim@example.com", "member")
		cookie := s.signIn(kim)
		page := s.browse("GET", "/invitations/accept?code="+code, cookie, "", "", "", false)
		if page.status != http.StatusOK || !strings.Contains(string(page.raw), "kim@example.com") ||
			!strings.Contains(string(page.raw), auth.CSRFToken(cookie)) {
			t.Fatalf("invitation page signed in: %d\n%s", page.status, page.raw)
		}
		if r := s.browse("POST", "/invitations/accept", cookie, s.base, "", "code="+code, true); r.status != http.StatusForbidden {
			t.Fatalf("accept without the CSRF token: %d", r.status)
		}
		r := s.browse("POST", "/invitations/accept", cookie, s.base, auth.CSRFToken(cookie), "code="+code, true)
		if r.status != http.StatusOK || !strings.Contains(string(r.raw), "You are now a member") {
			t.Fatalf("accept in the browser: %d\n%s", r.status, r.raw)
		}
		s.must(http.StatusOK, "GET", "/api/v1/tenants/default", kim, nil)
		// Used once.
		if r := s.browse("POST", "/invitations/accept", cookie, s.base, auth.CSRFToken(cookie), "code="+code, true); r.status != http.StatusNotFound {
			t.Fatalf("accept a used invitation: %d", r.status)
		}
		// Signed out, the page offers to sign in and come back.
		out := s.browse("GET", "/invitations/accept?code="+code, "", "", "", "", false)
		if !strings.Contains(string(out.raw), "/login?return_to=%2Finvitations%2Faccept%3Fcode%3D"+code) {
			t.Fatalf("invitation page signed out:\n%s", out.raw)
		}
	})
}
