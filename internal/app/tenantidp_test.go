package app_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/oidctest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

const (
	idpPath  = "/api/v1/tenants/default/idp"
	idpEmail = "grace@tenant.example"
)

// startTenantIdP runs a Coffer without an instance provider and a Dex that will be the
// default tenant's provider, with Coffer's callback as its redirect URI. COFFER_DEV lets
// Coffer reach Dex on loopback.
func startTenantIdP(t *testing.T, dialect string) (*server, *oidctest.Provider) {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	p := oidctest.Start(t, oidctest.Options{RedirectURI: base + "/auth/oidc/callback", Email: idpEmail, Username: "Grace"})
	return start(t, dialect, map[string]string{"COFFER_LISTEN": addr, "COFFER_BASE_URL": base, "COFFER_DEV": "true"}), p
}

// browserAs is a browser holding a session of the user token belongs to (method "test").
func browserAs(t *testing.T, s *server, token string) (*browser, string) {
	t.Helper()
	cookie := s.signIn(token)
	b := newBrowser(t)
	u, _ := url.Parse(s.base)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "coffer_session", Value: cookie, Path: "/"}})
	return b, cookie
}

func (b *browser) apiGet(s *server, path string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(res.Body); err != nil {
		b.t.Fatal(err)
	}
	return response{status: res.StatusCode, raw: buf.Bytes()}
}

// TestTenantIdP walks a tenant's own provider end to end on each database: an owner configures
// it (the secret never answered, stored sealed), others may not; an identity nobody linked is
// refused; a member links it while signed in and then signs in through it; nobody else can
// link it again; required confines the tenant to such sessions while tokens keep working;
// deleting it makes its sign-in URL unknown.
func TestTenantIdP(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			s, p := startTenantIdP(t, d)
			const memberEmail, otherEmail = "member@example.com", "other@example.com"
			member := s.newUser(memberEmail)
			s.join(s.owner, "default", member, memberEmail, "member")
			other := s.newUser(otherEmail)
			s.join(s.owner, "default", other, otherEmail, "admin")
			memberID, _ := isoUserID(s, member)

			// Only owners configure it; service tokens are refused like other management.
			body := map[string]any{"issuer": p.Issuer, "client_id": p.ClientID, "client_secret": p.ClientSecret}
			if r := s.call("PUT", idpPath, other, body); r.status != http.StatusForbidden {
				t.Fatalf("admin PUT: %d %s", r.status, r.raw)
			}
			if r := s.call("GET", idpPath, member, nil); r.status != http.StatusForbidden {
				t.Fatalf("member GET: %d %s", r.status, r.raw)
			}
			s.withProject()
			svc, _ := s.serviceToken(s.owner, "ci", "read-write", "development").body["token"].(string)
			if r := s.call("PUT", idpPath, svc, body); r.status != http.StatusForbidden {
				t.Fatalf("service token PUT: %d %s", r.status, r.raw)
			}
			s.must(http.StatusNotFound, "GET", idpPath, s.owner, nil)
			if r := s.call("PUT", idpPath, s.owner, map[string]any{"issuer": p.Issuer, "client_id": p.ClientID}); r.status != http.StatusUnprocessableEntity {
				t.Fatalf("create without a secret: %d %s", r.status, r.raw)
			}
			if r := s.call("PUT", idpPath, s.owner, map[string]any{"issuer": "http://idp.example.com:1/x?y", "client_id": "c", "client_secret": "s"}); r.status != http.StatusUnprocessableEntity {
				t.Fatalf("issuer with a query: %d %s", r.status, r.raw)
			}

			for _, bad := range []struct {
				body   map[string]any
				status int
			}{
				{map[string]any{"issuer": p.Issuer, "client_id": "a\x00b", "client_secret": "s"}, http.StatusUnprocessableEntity},
				{map[string]any{"issuer": "ftp://idp.example.com", "client_id": "c", "client_secret": "s"}, http.StatusUnprocessableEntity},
				{map[string]any{"issuer": p.Issuer, "client_id": "", "client_secret": "s"}, http.StatusUnprocessableEntity},
				{map[string]any{"issuer": p.Issuer, "client_id": "c", "client_secret": "s", "extra": 1}, http.StatusBadRequest},
			} {
				if r := s.call("PUT", idpPath, s.owner, bad.body); r.status != bad.status {
					t.Fatalf("PUT %v: %d, want %d: %s", bad.body, r.status, bad.status, r.raw)
				}
			}
			if n := s.count(`SELECT COUNT(*) FROM tenant_idps`); n != 0 {
				t.Fatalf("refused PUTs stored %d providers", n)
			}

			created := s.must(http.StatusCreated, "PUT", idpPath, s.owner, body)
			id, _ := created.body["id"].(string)
			got := s.must(http.StatusOK, "GET", idpPath, s.owner, nil)
			// Replacing without a secret keeps it (the sign-ins below use it).
			replaced := s.must(http.StatusOK, "PUT", idpPath, s.owner, map[string]any{"issuer": p.Issuer, "client_id": p.ClientID})
			for _, r := range []response{created, got, replaced} {
				if strings.Contains(string(r.raw), p.ClientSecret) || strings.Contains(string(r.raw), "client_secret") || r.body["id"] != id {
					t.Fatalf("answer %s: want the provider with id %q and no secret", r.raw, id)
				}
			}
			var sealed []byte
			if err := s.rawDB().QueryRow(s.q(`SELECT client_secret FROM tenant_idps WHERE id = ?`), id).Scan(&sealed); err != nil {
				t.Fatal(err)
			}
			if len(sealed) == 0 || bytes.Contains(sealed, []byte(p.ClientSecret)) {
				t.Fatalf("the stored client secret is not sealed")
			}
			if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action = 'tenant.idp.set'`); n != 2 {
				t.Fatalf("%d tenant.idp.set audit entries, want 2", n)
			}
			signIn := "/auth/oidc/login?idp=" + url.QueryEscape(id)

			// An identity nobody linked is refused, and nothing is written.
			sessions := s.count(`SELECT COUNT(*) FROM sessions`)
			stranger := newBrowser(t)
			requireStatus(t, stranger.signIn(s, p, signIn), http.StatusForbidden, `href="`+signIn+`"`)
			requireStatus(t, newBrowser(t).signIn(s, p, signIn), http.StatusForbidden, "link this account first")
			if r := stranger.me(s); r.status != http.StatusUnauthorized {
				t.Fatalf("refused sign-in has a session: %d %s", r.status, r.raw)
			}
			if n := s.count(`SELECT COUNT(*) FROM sessions`); n != sessions {
				t.Fatalf("%d sessions, want %d", n, sessions)
			}
			if n := s.count(`SELECT COUNT(*) FROM user_identities`); n != 0 {
				t.Fatalf("%d identities after a refused sign-in", n)
			}
			if n := s.count(`SELECT COUNT(*) FROM users WHERE email = ?`, idpEmail); n != 0 {
				t.Fatal("a refused sign-in created a user")
			}
			if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action IN ('user.identity.link', 'auth.login')`); n != 0 {
				t.Fatalf("a refused sign-in wrote %d sign-in audit entries", n)
			}

			// Linking needs a session, and is not started from another site.
			noSession := newBrowser(t)
			noSession.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			if pg := noSession.get(s.base + signIn + "&link=1"); pg.status != http.StatusSeeOther {
				t.Fatalf("link without a session: %d, want 303 to sign in", pg.status)
			}
			cross, _ := browserAs(t, s, member)
			req, _ := http.NewRequest(http.MethodGet, s.base+signIn+"&link=1", nil)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			requireStatus(t, cross.do(req), http.StatusForbidden, "account page")
			// A signed-in user who is not a member of the tenant links nothing.
			outsider := s.newUser("outsider@example.com")
			ob0, _ := browserAs(t, s, outsider)
			requireStatus(t, ob0.signIn(s, p, signIn+"&link=1"), http.StatusForbidden, "member of its tenant")
			if n := s.count(`SELECT COUNT(*) FROM user_identities`); n != 0 {
				t.Fatalf("%d identities after a refused link", n)
			}

			// The member links it while signed in; the account page says so.
			mb, _ := browserAs(t, s, member)
			end := mb.signIn(s, p, signIn+"&link=1")
			if end.status != http.StatusOK || end.url.Path != "/account" || !strings.Contains(end.body, "<td>linked</td>") {
				t.Fatalf("link ended at %s (%d):\n%s", end.url, end.status, end.body)
			}
			if n := s.count(`SELECT COUNT(*) FROM user_identities WHERE issuer = ? AND user_id = ?`, p.Issuer, memberID); n != 1 {
				t.Fatalf("%d identities linked to the member, want 1", n)
			}
			if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action = 'user.identity.link' AND actor_id = ?`, memberID); n != 1 {
				t.Fatalf("%d link audit entries, want 1", n)
			}

			// Another member cannot link the same identity to themselves.
			ob, _ := browserAs(t, s, other)
			requireStatus(t, ob.signIn(s, p, signIn+"&link=1"), http.StatusForbidden, "already linked to another")
			if n := s.count(`SELECT COUNT(*) FROM user_identities WHERE user_id = ?`, memberID); n != 1 {
				t.Fatalf("the identity moved: %d left with the member", n)
			}

			// A fresh browser signs in through the provider as the member.
			fresh := newBrowser(t)
			if end := fresh.signIn(s, p, signIn); end.status != http.StatusOK || end.url.Path != "/" {
				t.Fatalf("sign-in ended at %s (%d): %s", end.url, end.status, end.body)
			}
			if r := fresh.apiGet(s, "/api/v1/tenants/default"); r.status != http.StatusOK {
				t.Fatalf("GET the tenant with the provider's session: %d %s", r.status, r.raw)
			}
			if n := s.count(`SELECT COUNT(*) FROM sessions WHERE user_id = ? AND method = ?`, memberID, "oidc:"+id); n != 1 {
				t.Fatalf("%d sessions of the member through the provider, want 1", n)
			}
			// That session reaches only this tenant.
			s.must(http.StatusCreated, "POST", "/api/v1/tenants", member, map[string]string{"slug": "side", "name": "Side"})
			if r := fresh.apiGet(s, "/api/v1/tenants/side"); r.status != http.StatusForbidden {
				t.Fatalf("the provider's session reached another tenant: %d %s", r.status, r.raw)
			}
			// ...and mints no personal token, which would reach every tenant.
			var freshCookie string
			base, _ := url.Parse(s.base)
			for _, ck := range fresh.c.Jar.Cookies(base) {
				if ck.Name == "coffer_session" {
					freshCookie = ck.Value
				}
			}
			if r := s.browse("POST", "/api/v1/tokens", freshCookie, s.base, auth.CSRFToken(freshCookie), `{"name":"escape"}`, false); r.status != http.StatusForbidden {
				t.Fatalf("personal token from the provider's session: %d %s", r.status, r.raw)
			}
			// Outside the tenant it sees only who it is and its sessions.
			for path, want := range map[string]int{"/api/v1/me": http.StatusOK, "/api/v1/sessions": http.StatusOK,
				"/account": http.StatusOK, "/api/v1/tenants": http.StatusForbidden, "/api/v1/tokens": http.StatusForbidden} {
				if r := fresh.apiGet(s, path); r.status != want {
					t.Fatalf("GET %s with the provider's session: %d, want %d: %s", path, r.status, want, r.raw)
				}
			}
			if r := fresh.apiGet(s, "/account"); strings.Contains(string(r.raw), "Personal access tokens") || !strings.Contains(string(r.raw), "reaches only that tenant") {
				t.Fatalf("the account page of the provider's session shows the whole account:\n%s", r.raw)
			}

			// Required: sessions started otherwise are refused on the tenant's routes.
			s.must(http.StatusOK, "PUT", idpPath, s.owner, map[string]any{"issuer": p.Issuer, "client_id": p.ClientID, "required": true})
			cookie := s.signIn(member)
			r := s.browse("GET", "/api/v1/tenants/default", cookie, "", "", "", false)
			if r.status != http.StatusForbidden || !strings.Contains(string(r.raw), signIn) {
				t.Fatalf("a test session on a tenant requiring its provider: %d %s", r.status, r.raw)
			}
			if r := s.browse("GET", "/api/v1/tenants/default/projects", s.signIn(s.owner), "", "", "", false); r.status != http.StatusForbidden {
				t.Fatalf("the owner's test session: %d %s", r.status, r.raw)
			}
			if r := fresh.apiGet(s, "/api/v1/tenants/default/projects"); r.status != http.StatusOK {
				t.Fatalf("the provider's session with required: %d %s", r.status, r.raw)
			}
			// Tokens are not concerned.
			s.must(http.StatusOK, "GET", "/api/v1/tenants/default", member, nil)
			s.must(http.StatusOK, "GET", envPath+"development/secrets", svc, nil)
			// Another tenant of the user is not concerned either.
			if r := s.browse("GET", "/api/v1/tenants/side", cookie, "", "", "", false); r.status != http.StatusOK {
				t.Fatalf("a test session on a tenant without a provider: %d %s", r.status, r.raw)
			}

			// Deleting the provider makes its sign-in URL unknown, like a malformed one.
			s.must(http.StatusNoContent, "DELETE", idpPath, s.owner, nil)
			s.must(http.StatusNotFound, "GET", idpPath, s.owner, nil)
			gone := newBrowser(t).get(s.base + signIn)
			junk := newBrowser(t).get(s.base + "/auth/oidc/login?idp=%00junk")
			requireStatus(t, gone, http.StatusNotFound, "unknown")
			requireStatus(t, junk, http.StatusNotFound, "unknown")
			if r := fresh.apiGet(s, "/api/v1/tenants/default"); r.status != http.StatusForbidden {
				t.Fatalf("a session of a deleted provider: %d %s", r.status, r.raw)
			}
			if n := s.count(`SELECT COUNT(*) FROM audit_entries WHERE action = 'tenant.idp.delete'`); n != 1 {
				t.Fatalf("%d tenant.idp.delete audit entries, want 1", n)
			}
			if logs := s.logs.String(); strings.Contains(logs, p.ClientSecret) || strings.Contains(logs, p.Password) {
				t.Fatal("the client secret or the password is in the logs")
			}
		})
	}
}

// TestTenantIdPPrivateAddressRefused: outside development mode a tenant's provider is not
// reached on a private address, however its issuer is written: the sign-in fails without a
// connection and stores nothing; a loopback issuer is refused when configured.
func TestTenantIdPPrivateAddressRefused(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			s := start(t, d, nil)
			if r := s.call("PUT", idpPath, s.owner, map[string]any{"issuer": "http://127.0.0.1:5556/dex", "client_id": "c", "client_secret": "s"}); r.status != http.StatusUnprocessableEntity {
				t.Fatalf("loopback issuer outside development mode: %d %s", r.status, r.raw)
			}
			created := s.must(http.StatusCreated, "PUT", idpPath, s.owner, map[string]any{"issuer": "https://169.254.169.254/latest", "client_id": "c", "client_secret": "s"})
			id, _ := created.body["id"].(string)
			requireStatus(t, newBrowser(t).get(s.base+"/auth/oidc/login?idp="+url.QueryEscape(id)), http.StatusServiceUnavailable, "identity provider")
			if n := s.count(`SELECT COUNT(*) FROM oidc_login_states`); n != 0 {
				t.Fatalf("%d login states stored", n)
			}
			if !strings.Contains(s.logs.String(), "not public") {
				t.Fatal("the refusal's cause is not logged for the operator")
			}
		})
	}
}
