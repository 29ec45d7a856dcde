package app_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
)

// postFormNoFollow posts a dashboard form as a browser would, with the session's CSRF token
// and the same origin, and answers the response itself rather than where it redirects.
func postFormNoFollow(t *testing.T, s *server, path, cookie string, form url.Values) *http.Response {
	t.Helper()
	form.Set("csrf_token", auth.CSRFToken(cookie))
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.base)
	req.AddCookie(&http.Cookie{Name: "coffer_session", Value: cookie})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestDashboardSettingsIdPForm: an owner sets, replaces and removes the tenant's own provider
// through the settings page, which the API then reports; the client secret is stored but never
// rendered, not even next to a refused form; a bad issuer is refused on the page (422) with
// nothing stored; forged posts and every role but owner are refused. Put does not reach the
// issuer, so no provider needs to run.
func TestDashboardSettingsIdPForm(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		const (
			issuer   = "https://idp.example.com/tenant"
			clientID = "coffer-client-61"
			secret   = "client-secret-canary-61"
			page     = "/t/default/settings"
			setPath  = page + "/idp"
			delPath  = page + "/idp/delete"
		)
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		var pages []string // every page rendered, checked for the secret at the end
		see := func(r response, want int, what string) string {
			t.Helper()
			html := htmlOf(t, r, want, what)
			endsWell(t, html, what)
			pages = append(pages, html)
			return html
		}
		stored := func() int { t.Helper(); return s.count(`SELECT COUNT(*) FROM tenant_idps`) }

		html := see(s.browse("GET", page, cookie, "", "", "", false), http.StatusOK, "settings page")
		if !strings.Contains(html, `<form method="post" action="/t/default/settings/idp" id="idp-form">`) ||
			!strings.Contains(html, `name="client_secret" type="password" autocomplete="off" required`) || strings.Contains(html, `id="idp-remove"`) {
			t.Fatalf("settings page without a provider: %.4000s", mainOf(html))
		}

		good := url.Values{"issuer": {issuer}, "client_id": {clientID}, "client_secret": {secret}}
		// Forged: no CSRF token.
		if r := s.browse("POST", setPath, cookie, s.base, "", good.Encode(), true); r.status != http.StatusForbidden {
			t.Fatalf("set without a CSRF token: %d", r.status)
		}
		// Refused next to the form, with the API's status, the fields kept but the secret not.
		for _, bad := range []url.Values{
			{"issuer": {"ftp://idp.example.com"}, "client_id": {clientID}, "client_secret": {secret}},
			{"issuer": {"http://idp.example.com:1/x?y"}, "client_id": {clientID}, "client_secret": {secret}},
			{"issuer": {issuer}, "client_id": {clientID}}, // no secret the first time
		} {
			html = see(s.browse("POST", setPath, cookie, s.base, csrf, bad.Encode(), true), http.StatusUnprocessableEntity, "bad form "+bad.Get("issuer"))
			if !strings.Contains(html, `<p class="error" id="idp-error" role="alert">`) || !strings.Contains(html, `value="`+clientID+`"`) {
				t.Fatalf("bad form %v: %.4000s", bad, mainOf(html))
			}
		}
		if n := stored(); n != 0 {
			t.Fatalf("refused forms stored %d providers", n)
		}
		s.must(http.StatusNotFound, "GET", idpPath, s.owner, nil)

		// Admins, members and viewers are refused, as on the API.
		s.withProject()
		for _, role := range []string{"admin", "member", "viewer"} {
			email := role + "@example.com"
			u := s.newUser(email)
			tenantRole := role
			if role == "viewer" {
				tenantRole = "member"
			}
			s.join(s.owner, "default", u, email, tenantRole)
			if role == "viewer" {
				s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": email, "role": "viewer"})
			}
			uc := s.signIn(u)
			if r := s.browse("POST", setPath, uc, s.base, auth.CSRFToken(uc), good.Encode(), true); r.status != http.StatusForbidden || strings.Contains(string(r.raw), secret) {
				t.Fatalf("%s's set: %d", role, r.status)
			}
			if r := s.browse("POST", delPath, uc, s.base, auth.CSRFToken(uc), "", true); r.status != http.StatusForbidden {
				t.Fatalf("%s's remove: %d", role, r.status)
			}
		}
		if n := stored(); n != 0 {
			t.Fatalf("refused roles stored %d providers", n)
		}

		// Set through the form: 303 back to the page, which shows it; the API agrees.
		if res := postFormNoFollow(t, s, setPath, cookie, good); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != page+"?idp_saved=1" {
			t.Fatalf("set: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		got := s.must(http.StatusOK, "GET", idpPath, s.owner, nil)
		if got.body["issuer"] != issuer || got.body["client_id"] != clientID || got.body["required"] != false {
			t.Fatalf("the provider after the form: %s", got.raw)
		}
		id, _ := got.body["id"].(string)
		var sealed []byte
		if err := s.rawDB().QueryRow(s.q(`SELECT client_secret FROM tenant_idps WHERE id = ?`), id).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if len(sealed) == 0 || bytes.Contains(sealed, []byte(secret)) {
			t.Fatal("the client secret set through the form is not stored sealed")
		}
		html = see(s.browse("GET", page+"?idp_saved=1", cookie, "", "", "", false), http.StatusOK, "after setting")
		if !strings.Contains(html, "Saved the identity provider.") || !strings.Contains(html, "<dt>Issuer</dt><dd><code>"+issuer+"</code></dd>") ||
			!strings.Contains(html, `<dd id="idp-secret-state">Set (never shown)</dd>`) || !strings.Contains(html, `value="`+issuer+`"`) ||
			strings.Contains(html, `autocomplete="off" required`) || !strings.Contains(html, `id="idp-remove"`) {
			t.Fatalf("after setting: %.4000s", mainOf(html))
		}

		// Replaced without a secret: the stored one stays; a bad replacement changes nothing.
		replace := url.Values{"issuer": {issuer}, "client_id": {"coffer-client-62"}}
		see(s.browse("POST", setPath, cookie, s.base, csrf, replace.Encode(), true), http.StatusOK, "replace")
		bad := url.Values{"issuer": {"ftp://idp.example.com"}, "client_id": {"coffer-client-63"}, "client_secret": {secret + "-new"}}
		html = see(s.browse("POST", setPath, cookie, s.base, csrf, bad.Encode(), true), http.StatusUnprocessableEntity, "bad replacement")
		if !strings.Contains(html, `id="idp-error"`) || strings.Contains(html, secret+"-new") {
			t.Fatalf("bad replacement: %.4000s", mainOf(html))
		}
		got = s.must(http.StatusOK, "GET", idpPath, s.owner, nil)
		var after []byte
		if err := s.rawDB().QueryRow(s.q(`SELECT client_secret FROM tenant_idps WHERE id = ?`), id).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if got.body["id"] != id || got.body["client_id"] != "coffer-client-62" || !bytes.Equal(after, sealed) {
			t.Fatalf("after replacing without a secret (secret kept: %v): %s", bytes.Equal(after, sealed), got.raw)
		}
		if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action = 'tenant.idp.set'`); n != 2 {
			t.Fatalf("%d tenant.idp.set audit entries, want 2", n)
		}

		// Removed through the page.
		if r := s.browse("POST", delPath, cookie, s.base, "", "", true); r.status != http.StatusForbidden {
			t.Fatalf("remove without a CSRF token: %d", r.status)
		}
		if n := stored(); n != 1 {
			t.Fatalf("a forged remove left %d providers", n)
		}
		html = see(s.browse("POST", delPath, cookie, s.base, csrf, "", true), http.StatusOK, "remove")
		if !strings.Contains(html, "Removed the identity provider.") || !strings.Contains(html, `<p class="empty" id="idp">`) {
			t.Fatalf("after removing: %.4000s", mainOf(html))
		}
		s.must(http.StatusNotFound, "GET", idpPath, s.owner, nil)
		see(s.browse("POST", delPath, cookie, s.base, csrf, "", true), http.StatusNotFound, "remove again")

		// Required through the form: the API reports it, and this session (not started through
		// the provider) loses the tenant's pages, as the page warns; tokens keep working.
		req := url.Values{"issuer": {issuer}, "client_id": {clientID}, "client_secret": {secret}, "required": {"on"}}
		if r := s.browse("POST", setPath, cookie, s.base, csrf, req.Encode(), true); r.status != http.StatusForbidden || strings.Contains(string(r.raw), secret) {
			t.Fatalf("after requiring: %d, want the tenant refused to this session", r.status)
		}
		if got := s.must(http.StatusOK, "GET", idpPath, s.owner, nil); got.body["required"] != true {
			t.Fatalf("the provider after requiring: %s", got.raw)
		}

		for i, html := range pages {
			if strings.Contains(html, secret) {
				t.Fatalf("page %d shows the client secret: %.4000s", i, mainOf(html))
			}
		}
	})
}
