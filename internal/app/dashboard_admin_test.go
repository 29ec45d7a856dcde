package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// mainOf is the page's main element, for failure messages.
func mainOf(html string) string {
	if i := strings.Index(html, "<main>"); i >= 0 {
		return html[i:]
	}
	return html
}

// TestDashboardKeysPage: the keys page shows each environment's data key with its seal
// count, rotating through its form starts a job the page then lists, and it is for owners
// only; a forged rotate is refused.
func TestDashboardKeysPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "canary-value-71"})
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)

		html := htmlOf(t, s.browse("GET", "/t/default/keys", cookie, "", "", "", false), http.StatusOK, "keys page")
		endsWell(t, html, "keys page")
		if !strings.Contains(html, `<p id="kek">The platform's key`) || !strings.Contains(html, `href="/t/default/keys">Keys</a>`) ||
			!strings.Contains(html, `<option value="web/staging">web/staging</option>`) || strings.Contains(html, "canary-value-71") {
			t.Fatalf("keys page: %.3000s", mainOf(html))
		}
		keys := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys", s.owner, nil)
		envs, _ := keys.body["environments"].([]any)
		if len(envs) == 0 {
			t.Fatalf("no environment in the key status: %s", keys.raw)
		}
		seals := regexp.MustCompile(`<tr id="env-web-staging">[^<]*<th scope="row">.*?</th>\s*<td[^>]*>[^<]*</td>\s*<td class="seals">(\d+)</td>`)
		for _, e := range envs {
			m, _ := e.(map[string]any)
			env, _ := m["environment"].(string)
			if !strings.Contains(html, `<tr id="env-`+m["project"].(string)+`-`+env+`">`) {
				t.Fatalf("the keys page lacks environment %s: %.3000s", env, mainOf(html))
			}
		}
		got := seals.FindStringSubmatch(html)
		if got == nil {
			t.Fatalf("no seal count for staging: %.3000s", mainOf(html))
		}
		if n, _ := strconv.Atoi(got[1]); n < 1 {
			t.Fatalf("staging's seal count is %d after a write", n)
		}

		// Forged: no CSRF token.
		if r := s.browse("POST", "/t/default/keys/rotate", cookie, s.base, "", "target=web%2Fstaging", true); r.status != http.StatusForbidden {
			t.Fatalf("rotate without a CSRF token: %d", r.status)
		}
		// Rotated through the form: back to the page, which names and lists the job.
		html = htmlOf(t, s.browse("POST", "/t/default/keys/rotate", cookie, s.base, csrf, "target=web%2Fstaging", true), http.StatusOK, "rotate")
		endsWell(t, html, "after rotating")
		m := regexp.MustCompile(`Started job ([^ .<]+)\.`).FindStringSubmatch(html)
		if m == nil || !strings.Contains(html, `<tr id="job-`+m[1]+`">`) || !regexp.MustCompile(`\d+/\d+</td>`).MatchString(html) {
			t.Fatalf("after rotating: %.3000s", mainOf(html))
		}
		s.waitJob(s.owner, "default", m[1])
		// An unknown target is refused next to the form, with the API's status.
		html = htmlOf(t, s.browse("POST", "/t/default/keys/rotate", cookie, s.base, csrf, "target=nope", true), http.StatusNotFound, "unknown target")
		endsWell(t, html, "unknown target")

		// A plain member may not see the page.
		member := s.newUser("member@example.com")
		s.join(s.owner, "default", member, "member@example.com", "member")
		mc := s.signIn(member)
		if r := s.browse("GET", "/t/default/keys", mc, "", "", "", false); r.status != http.StatusForbidden || strings.Contains(string(r.raw), "web/staging") {
			t.Fatalf("a member's keys page: %d", r.status)
		}
		if r := s.browse("POST", "/t/default/keys/rotate", mc, s.base, auth.CSRFToken(mc), "", true); r.status != http.StatusForbidden {
			t.Fatalf("a member's rotate: %d", r.status)
		}
	})
}

// TestDashboardServiceTokensPage: a service token created through the page is shown once,
// works on the API for its environment only, and is revoked through the page.
func TestDashboardServiceTokensPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "canary-value-72"})
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		page := "/t/default/p/web/service-tokens"

		html := htmlOf(t, s.browse("GET", "/t/default/p/web", cookie, "", "", "", false), http.StatusOK, "project page")
		if !strings.Contains(html, `href="/t/default/p/web/service-tokens"`) || !strings.Contains(html, `href="/t/default/p/web/webhooks"`) {
			t.Fatalf("the project page does not link its admin pages: %.2000s", mainOf(html))
		}
		html = htmlOf(t, s.browse("GET", page, cookie, "", "", "", false), http.StatusOK, "service tokens page")
		endsWell(t, html, "service tokens page")
		if !strings.Contains(html, `value="staging"`) || !strings.Contains(html, "No live service token for this project.") {
			t.Fatalf("service tokens page: %.3000s", mainOf(html))
		}

		form := url.Values{"name": {"ci-page"}, "environments": {"staging"}, "access": {"read"}, "expires_in_days": {"7"}}.Encode()
		if r := s.browse("POST", page, cookie, s.base, "", form, true); r.status != http.StatusForbidden {
			t.Fatalf("create without a CSRF token: %d", r.status)
		}
		r := s.browse("POST", page, cookie, s.base, csrf, form, true)
		html = htmlOf(t, r, http.StatusCreated, "create")
		endsWell(t, html, "after creating")
		m := regexp.MustCompile(`<code id="new-token" class="value">(cfr_svc_[^<]+)</code> <button type="button" class="quiet" data-copy-text`).FindStringSubmatch(html)
		if m == nil || !strings.Contains(html, "ci-page") || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("after creating (Cache-Control %q): %.3000s", r.header.Get("Cache-Control"), mainOf(html))
		}
		tok := m[1]
		s.must(http.StatusOK, "GET", envPath+"staging/secrets", tok, nil)
		if r := s.call("GET", envPath+"production/secrets", tok, nil); r.status == http.StatusOK {
			t.Fatalf("the token reads another environment: %d", r.status)
		}

		// Shown once: a later GET lists the token without it.
		html = htmlOf(t, s.browse("GET", page, cookie, "", "", "", false), http.StatusOK, "later")
		endsWell(t, html, "later")
		if strings.Contains(html, tok) || strings.Contains(html, `id="new-token"`) || !strings.Contains(html, "<th scope=\"row\">ci-page</th>") {
			t.Fatalf("later: %.3000s", mainOf(html))
		}
		// A bad form is refused next to the form, with the API's status.
		bad := url.Values{"name": {"no-envs"}, "access": {"read"}, "expires_in_days": {"7"}}.Encode()
		html = htmlOf(t, s.browse("POST", page, cookie, s.base, csrf, bad, true), http.StatusUnprocessableEntity, "no environments")
		endsWell(t, html, "no environments")
		if !strings.Contains(html, `id="token-error"`) || !strings.Contains(html, `value="no-envs"`) {
			t.Fatalf("no environments: %.3000s", mainOf(html))
		}

		// Revoked through the page: the token is refused.
		id := regexp.MustCompile(`<tr id="service-token-([^"]+)">`).FindStringSubmatch(html)
		if id == nil {
			t.Fatalf("no token row: %.3000s", mainOf(html))
		}
		html = htmlOf(t, s.browse("POST", page+"/"+id[1]+"/revoke", cookie, s.base, csrf, "", true), http.StatusOK, "revoke")
		endsWell(t, html, "after revoking")
		if !strings.Contains(html, "Revoked ci-page") || strings.Contains(html, `<tr id="service-token-`) {
			t.Fatalf("after revoking: %.3000s", mainOf(html))
		}
		if r := s.call("GET", envPath+"staging/secrets", tok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("a revoked token: %d", r.status)
		}
	})
}

// TestDashboardWebhooksPage: a webhook created through the page shows its signing secret
// once, is listed, and is deleted through the page; forged posts are refused.
func TestDashboardWebhooksPage(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			s := startWith(t, d, dbURL, dir, map[string]string{"COFFER_WEBHOOK_ALLOW_PRIVATE": "true"}, hookOptions(t, nil))
			s.withProject()
			rcv := newReceiver(t, "")
			cookie := s.signIn(s.owner)
			csrf := auth.CSRFToken(cookie)
			page := "/t/default/p/web/webhooks"

			html := htmlOf(t, s.browse("GET", page, cookie, "", "", "", false), http.StatusOK, "webhooks page")
			endsWell(t, html, "webhooks page")
			if !strings.Contains(html, "No webhooks yet.") || !strings.Contains(html, `value="secret.write"`) {
				t.Fatalf("webhooks page: %.3000s", mainOf(html))
			}
			hook := rcv.srv.URL + "/hook"
			form := url.Values{"url": {hook}, "events": {"secret.write"}}.Encode()
			if r := s.browse("POST", page, cookie, s.base, "", form, true); r.status != http.StatusForbidden {
				t.Fatalf("create without a CSRF token: %d", r.status)
			}
			r := s.browse("POST", page, cookie, s.base, csrf, form, true)
			html = htmlOf(t, r, http.StatusCreated, "create")
			endsWell(t, html, "after creating")
			m := regexp.MustCompile(`<code id="signing-secret" class="value">([^<]+)</code>`).FindStringSubmatch(html)
			if m == nil || !strings.Contains(html, "<code class=\"value\">"+hook+"</code>") || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("after creating: %.3000s", mainOf(html))
			}
			secret := m[1]
			items := s.must(http.StatusOK, "GET", hooksPath, s.owner, nil).items()
			if len(items) != 1 || items[0]["url"] != hook {
				t.Fatalf("webhooks after the form: %v", items)
			}
			id, _ := items[0]["id"].(string)

			// A delivery shows up on the page; the secret does not, any more.
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "v"})
			s.deliveries(id, func(ds []map[string]any) bool { return len(ds) == 1 && ds[0]["status"] == "delivered" })
			html = htmlOf(t, s.browse("GET", page, cookie, "", "", "", false), http.StatusOK, "later")
			endsWell(t, html, "later")
			if strings.Contains(html, secret) || !strings.Contains(html, `<span class="badge">delivered</span> <code>secret.write</code>, 1 attempt, HTTP 200`) {
				t.Fatalf("later: %.3000s", mainOf(html))
			}
			// A bad URL is refused next to the field.
			bad := url.Values{"url": {"http://example.com/x"}, "events": {"secret.write"}}.Encode()
			html = htmlOf(t, s.browse("POST", page, cookie, s.base, csrf, bad, true), http.StatusUnprocessableEntity, "bad url")
			endsWell(t, html, "bad url")
			if !strings.Contains(html, `id="hook-error"`) {
				t.Fatalf("bad url: %.3000s", mainOf(html))
			}

			del := page + "/" + id + "/delete"
			if r := s.browse("POST", del, cookie, s.base, "", "", true); r.status != http.StatusForbidden {
				t.Fatalf("delete without a CSRF token: %d", r.status)
			}
			html = htmlOf(t, s.browse("POST", del, cookie, s.base, csrf, "", true), http.StatusOK, "delete")
			endsWell(t, html, "after deleting")
			if !strings.Contains(html, "Deleted the webhook to "+hook) || !strings.Contains(html, "No webhooks yet.") {
				t.Fatalf("after deleting: %.3000s", mainOf(html))
			}
			if items := s.must(http.StatusOK, "GET", hooksPath, s.owner, nil).items(); len(items) != 0 {
				t.Fatalf("webhooks after deleting: %v", items)
			}
		})
	}
}

// TestDashboardSettingsPage: the settings page renders for the owner, renames the tenant,
// and is refused to a plain member.
func TestDashboardSettingsPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		html := htmlOf(t, s.browse("GET", "/t/default/settings", cookie, "", "", "", false), http.StatusOK, "settings page")
		endsWell(t, html, "settings page")
		if !strings.Contains(html, `href="/t/default/settings">Settings</a>`) || !strings.Contains(html, `<p class="empty" id="idp">`) ||
			!strings.Contains(html, "/api/v1/tenants/default/idp") {
			t.Fatalf("settings page: %.3000s", mainOf(html))
		}
		form := url.Values{"name": {"Renamed Co"}}.Encode()
		if r := s.browse("POST", "/t/default/settings/name", cookie, s.base, "", form, true); r.status != http.StatusForbidden {
			t.Fatalf("rename without a CSRF token: %d", r.status)
		}
		html = htmlOf(t, s.browse("POST", "/t/default/settings/name", cookie, s.base, csrf, form, true), http.StatusOK, "rename")
		endsWell(t, html, "after renaming")
		if !strings.Contains(html, "Renamed the tenant.") || !strings.Contains(html, `value="Renamed Co"`) {
			t.Fatalf("after renaming: %.3000s", mainOf(html))
		}
		if got := s.must(http.StatusOK, "GET", "/api/v1/tenants/default", s.owner, nil); got.body["name"] != "Renamed Co" {
			t.Fatalf("the tenant after renaming: %s", got.raw)
		}

		member := s.newUser("member@example.com")
		s.join(s.owner, "default", member, "member@example.com", "member")
		mc := s.signIn(member)
		if r := s.browse("GET", "/t/default/settings", mc, "", "", "", false); r.status != http.StatusForbidden {
			t.Fatalf("a member's settings page: %d", r.status)
		}
		if r := s.browse("POST", "/t/default/settings/name", mc, s.base, auth.CSRFToken(mc), url.Values{"name": {"Hijacked"}}.Encode(), true); r.status != http.StatusForbidden {
			t.Fatalf("a member's rename: %d", r.status)
		}
	})
}

// TestDashboardSettingsIdP: the settings page shows the tenant's own provider, never its
// client secret. Put does not reach the issuer, so no provider needs to run. (Not required:
// a required provider refuses this test session on the tenant.)
func TestDashboardSettingsIdP(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		const issuer, clientID, clientSecret = "https://idp.example.com/tenant", "coffer-client-88", "client-secret-canary-88"
		s.must(http.StatusCreated, "PUT", idpPath, s.owner, map[string]any{"issuer": issuer, "client_id": clientID, "client_secret": clientSecret, "required": false})
		html := htmlOf(t, s.browse("GET", "/t/default/settings", s.signIn(s.owner), "", "", "", false), http.StatusOK, "settings page")
		endsWell(t, html, "settings page")
		if !strings.Contains(html, "<dt>Issuer</dt><dd><code>"+issuer+"</code></dd>") || !strings.Contains(html, "<code>"+clientID+"</code>") ||
			!strings.Contains(html, "Optional: members may also sign in") || strings.Contains(html, clientSecret) {
			t.Fatalf("settings page with a provider: %.3000s", mainOf(html))
		}
	})
}
