package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/internal/browsertest"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// signInAt opens path, is sent to the sign-in form, signs in and checks it is back at path.
func signInAt(t *testing.T, s *server, tab *browsertest.Tab, path, email string) {
	t.Helper()
	tab.Run(t, chromedp.Navigate(s.base+path))
	const form = `form[action="/login"]`
	tab.Run(t,
		chromedp.SendKeys(chromedp.CSS(form+` input[name="email"]`), email),
		chromedp.SendKeys(chromedp.CSS(form+` input[name="password"]`), localPassword),
	)
	tab.ClickAndWait(t, form+` button[type="submit"]`)
	if u := tab.Location(t); u != s.base+path {
		t.Fatalf("signed in, the browser shows %s, want %s%s", u, s.base, path)
	}
}

// TestBrowserDashboard: in a real browser, an environment page reveals a value in place
// (htmx), hides it again out of the DOM, and shows a write made through the API within a
// second without reload; the same page works with JavaScript off. No page breaks its CSP.
func TestBrowserDashboard(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const email = "ada@example.com"
		id, tok := s.localUser(email)
		s.join(s.owner, "default", tok, email, "owner")
		s.setLocalPassword(id, localPassword)
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "browser-secret"})
		b := browsertest.Start(t)

		t.Run("js", func(t *testing.T) {
			tab := b.Tab(t)
			signInAt(t, s, tab, dashEnv, email)
			tab.Run(t, chromedp.WaitReady(chromedp.CSS(`body[data-live-ready="true"]`)))
			shots(t, tab, "environment")

			// Reveal in place, then hide: the value leaves the DOM.
			tab.Run(t, chromedp.Click(chromedp.CSS(`#row-API_KEY form[action$="/reveal"] button`)))
			tab.WaitText(t, "#row-API_KEY [data-secret]", "browser-secret", 5*time.Second)
			tab.Run(t, chromedp.Click(chromedp.CSS(`#row-API_KEY a[data-hide]`)))
			if html := tab.Text(t, "#secrets"); strings.Contains(html, "browser-secret") {
				t.Fatalf("the hidden value is still on the page: %s", html)
			}

			// Live: a new secret and a new version written through the API appear within 1 s.
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/FROM_API", s.owner, map[string]string{"value": "x"})
			tab.WaitText(t, "#secrets", "FROM_API", time.Second)
			s.must(http.StatusOK, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "y"})
			tab.WaitText(t, "#row-API_KEY", "v2", time.Second)
			if strings.Contains(tab.Text(t, "#secrets"), "browser-secret") {
				t.Fatal("a live update brought a value into the page")
			}

			// The reveal is on the audit page.
			tab.Run(t, chromedp.Navigate(s.base+"/t/default/audit?action=secret.reveal"))
			tab.WaitText(t, "main", "default/web/staging/API_KEY", 5*time.Second)

			for _, p := range []string{"/t/default", "/t/default/p/web", dashEnv + "/bulk", "/t/default/p/web/compare?from=staging&to=production",
				dashEnv + "/history/API_KEY", dashEnv + "/at", "/t/default/audit", "/t/default/tokens", "/t/default/members", "/t/default/keys",
				"/t/default/settings", "/t/default/p/web/members", "/t/default/p/web/webhooks", "/t/default/p/web/service-tokens"} {
				tab.Run(t, chromedp.Navigate(s.base+p))
				shots(t, tab, strings.NewReplacer("/", "_", "?", "_", "&", "_", "=", "_").Replace(strings.TrimPrefix(p, "/t/default")))
			}
			noProblems(t, tab)
		})

		t.Run("nojs", func(t *testing.T) {
			tab := b.TabNoJS(t)
			signInAt(t, s, tab, dashEnv, email)
			tab.ClickAndWait(t, `#row-API_KEY form[action$="/reveal"] button`)
			tab.WaitText(t, "#row-API_KEY [data-secret]", "y", 5*time.Second)
			// Edit: open the row's details, type, save (compare-and-set on the version shown).
			tab.Run(t, chromedp.Click(chromedp.CSS(`#row-API_KEY summary`)),
				chromedp.SendKeys(chromedp.CSS(`#row-API_KEY textarea[name="value"]`), "edited-without-js"))
			tab.ClickAndWait(t, `#row-API_KEY form[action$="/secrets"] button[type="submit"]`)
			tab.WaitText(t, "main", "Saved API_KEY (version 3)", 5*time.Second)
			// Bulk edit: paste, preview, apply.
			tab.Run(t, chromedp.Navigate(s.base+dashEnv+"/bulk"),
				chromedp.SendKeys(chromedp.CSS(`#text`), "NOJS_ONE=1\nNOJS_TWO=2\n"))
			tab.ClickAndWait(t, `button[value="preview"]`)
			tab.WaitText(t, "#preview", "NOJS_TWO", 5*time.Second)
			tab.ClickAndWait(t, `button[value="apply"]`)
			tab.WaitText(t, "main", "Saved 2 changes in one write", 5*time.Second)
			if got := s.must(http.StatusOK, "GET", envPath+"staging/secrets/NOJS_TWO", s.owner, nil); got.body["value"] != "2" {
				t.Fatalf("bulk edit without JavaScript: %s", got.raw)
			}
			noProblems(t, tab)
		})
	})
}

// TestBrowserLiveResume: when the server goes away, an open environment page says that live
// updates paused; when it is back (a restart on the same address), the page resumes from the
// last event it saw, says so, and shows what was written meanwhile and after.
func TestBrowserLiveResume(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			s := startOn(t, d, dbURL, dir, nil)
			s.withProject()
			const email = "ada@example.com"
			id, tok := s.localUser(email)
			s.join(s.owner, "default", tok, email, "admin")
			s.setLocalPassword(id, localPassword)
			b := browsertest.Start(t)
			tab := b.Tab(t)
			signInAt(t, s, tab, dashEnv, email)
			tab.Run(t, chromedp.WaitReady(chromedp.CSS(`body[data-live-ready="true"]`)))
			s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/BEFORE", s.owner, map[string]string{"value": "x"})
			tab.WaitText(t, "#secrets", "BEFORE", 5*time.Second)

			addr := strings.TrimPrefix(s.base, "http://")
			s.stop()
			tab.WaitText(t, "#live-banner", "Live updates paused", 5*time.Second)
			// Meanwhile another replica (another address) writes: the page cannot hear of it.
			w := startOn(t, d, dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
			w.owner = s.owner
			w.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DURING", w.owner, map[string]string{"value": "y"})
			w.stop()
			// Back on the same database and address, as after a deploy: the page resumes from
			// the last event it saw, so it gets DURING too.
			r := startOn(t, d, dbURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": "", "COFFER_LISTEN": addr})
			r.owner = s.owner
			tab.WaitText(t, "#live-banner", "Live updates resumed", 15*time.Second)
			tab.WaitText(t, "#secrets", "DURING", 5*time.Second)
			r.must(http.StatusCreated, "PUT", envPath+"staging/secrets/AFTER", r.owner, map[string]string{"value": "z"})
			tab.WaitText(t, "#secrets", "AFTER", 5*time.Second)
			// The page's own connection dropping is expected here; anything else is not.
			for _, p := range tab.Problems() {
				if !strings.Contains(p, "WebSocket") && !strings.Contains(p, "ERR_CONNECTION_REFUSED") {
					t.Errorf("page problem: %s", p)
				}
			}
		})
	}
}

// TestBrowserOIDCSignIn signs in once through Dex in the browser: an invited person opens the
// dashboard, signs in at the provider and lands on the tenant's projects.
func TestBrowserOIDCSignIn(t *testing.T) {
	s, p := startOIDC(t, "sqlite", nil)
	s.invite(s.owner, "default", oidcEmail, "member")
	b := browsertest.Start(t)
	tab := b.Tab(t)
	tab.Run(t, chromedp.Navigate(s.base+"/auth/oidc/login?return_to=/t"))
	if u := tab.Location(t); !strings.HasPrefix(u, p.Issuer) {
		t.Fatalf("sign-in went to %s, want Dex at %s", u, p.Issuer)
	}
	tab.Run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), p.Email),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), p.Password),
	)
	tab.ClickAndWait(t, `button[type="submit"]`)
	if u := tab.Location(t); u != s.base+"/t/default" {
		t.Fatalf("after Dex, the browser shows %s, want %s/t/default; the page says: %s", u, s.base, tab.Text(t, "body"))
	}
	tab.WaitText(t, "header", oidcEmail, 5*time.Second)
	tab.WaitText(t, "main", "Projects", 5*time.Second)
	// Dex's own pages are not ours to judge; Coffer's must be clean.
	for _, prob := range tab.Problems() {
		if !strings.Contains(prob, p.Issuer) {
			t.Errorf("page problem: %s", prob)
		}
	}
}

// TestBrowserWorkflow is issue 17's flow in the browser: create a project, add a secret,
// paste a 50-line .env and apply it, resolve a compare-and-set conflict, compare staging with
// production and promote one variable, roll a secret back, restore the environment to a
// moment, and revoke a token.
func TestBrowserWorkflow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		const email = "ada@example.com"
		id, tok := s.localUser(email)
		s.join(s.owner, "default", tok, email, "owner")
		s.setLocalPassword(id, localPassword)
		b := browsertest.Start(t)
		tab := b.Tab(t)
		signInAt(t, s, tab, "/t/default", email)

		// A project, and a secret in staging.
		tab.Run(t, chromedp.SendKeys(chromedp.CSS(`#slug`), "web"), chromedp.SendKeys(chromedp.CSS(`#name`), "Web"))
		tab.ClickAndWait(t, `form[action="/t/default/projects"] button[type="submit"]`)
		tab.Run(t, chromedp.Navigate(s.base+dashEnv))
		tab.Run(t, chromedp.SendKeys(chromedp.CSS(`#new-name`), "FIRST"), chromedp.SendKeys(chromedp.CSS(`#new-value`), "first-value"))
		tab.ClickAndWait(t, `#new-name + label + textarea + label + input + button, form:has(#new-name) button[type="submit"]`)
		tab.WaitText(t, "main", "Saved FIRST (version 1)", 5*time.Second)
		before := time.Now().UTC()
		time.Sleep(10 * time.Millisecond)

		// A 50-line .env, previewed and applied.
		var text strings.Builder
		for i := range 50 {
			text.WriteString("BULK_" + itoa(i) + "=v" + itoa(i) + "\n")
		}
		tab.Run(t, chromedp.Navigate(s.base+dashEnv+"/bulk"), chromedp.SetValue(chromedp.CSS(`#text`), text.String()))
		tab.ClickAndWait(t, `button[value="preview"]`)
		tab.WaitText(t, "main", "50 added", 5*time.Second)
		tab.ClickAndWait(t, `button[value="apply"]`)
		tab.WaitText(t, "main", "Saved 50 changes in one write", 5*time.Second)

		// A conflict: the page shows FIRST at v1, someone writes v2, the edit from v1 is
		// refused in place with the newer version named; after a reload the edit goes in.
		tab.Run(t, chromedp.Navigate(s.base+dashEnv), chromedp.WaitReady(chromedp.CSS(`body[data-live-ready="true"]`)))
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/FIRST", s.owner, map[string]string{"value": "theirs"})
		// The live update replaces the row (and the version its form expects): once it has,
		// set the form back to the version the page first showed, as a page that missed the
		// update would have it.
		tab.WaitText(t, "#row-FIRST", "v2", 5*time.Second)
		tab.Run(t, chromedp.Click(chromedp.CSS(`#row-FIRST summary`)),
			chromedp.SetAttributeValue(chromedp.CSS(`#row-FIRST input[name="expect"]`), "value", "1"),
			chromedp.SendKeys(chromedp.CSS(`#row-FIRST textarea[name="value"]`), "mine"),
			chromedp.Click(chromedp.CSS(`#row-FIRST form[action$="/secrets"] button[type="submit"]`)))
		tab.WaitText(t, "#row-FIRST", "is at version 2 now", 5*time.Second)
		tab.Run(t, chromedp.Navigate(s.base+dashEnv), chromedp.WaitReady(chromedp.CSS(`body[data-live-ready="true"]`)))
		tab.Run(t, chromedp.Click(chromedp.CSS(`#row-FIRST summary`)),
			chromedp.SendKeys(chromedp.CSS(`#row-FIRST textarea[name="value"]`), "mine"),
			chromedp.Click(chromedp.CSS(`#row-FIRST form[action$="/secrets"] button[type="submit"]`)))
		tab.WaitText(t, "#row-FIRST", "v3", 5*time.Second)

		// Compare staging with production, promote one variable.
		tab.Run(t, chromedp.Navigate(s.base+"/t/default/p/web/compare?from=staging&to=production"),
			chromedp.Click(chromedp.CSS(`#p-BULK_7`)))
		tab.ClickAndWait(t, `form[action$="/promote"] button[type="submit"]`)
		tab.WaitText(t, "main", "Promoted BULK_7.", 5*time.Second)
		if got := s.must(http.StatusOK, "GET", envPath+"production/secrets/BULK_7", s.owner, nil); got.body["value"] != "v7" {
			t.Fatalf("promoted: %s", got.raw)
		}

		// Roll FIRST back to v1.
		tab.Run(t, chromedp.Navigate(s.base+dashEnv+"/history/FIRST"))
		tab.ClickAndWait(t, `form:has(input[name="version"][value="1"]) button`)
		tab.WaitText(t, "main", "version 1 is the current value again", 5*time.Second)

		// Restore staging to the moment before the bulk write.
		at := before.Format(time.RFC3339Nano)
		tab.Run(t, chromedp.Navigate(s.base+dashEnv+"/at?at="+at))
		tab.ClickAndWait(t, `form[action$="/at"][method="post"] button`)
		tab.WaitText(t, "main", "Restored:", 5*time.Second)
		if n := len(s.must(http.StatusOK, "GET", envPath+"staging/secrets?limit=1000", s.owner, nil).items()); n != 1 {
			t.Fatalf("after restoring to %s staging has %d secrets, want 1", at, n)
		}

		// Revoke a token.
		created := s.serviceToken(s.owner, "deploy", "read", "staging")
		svc, _ := created.body["token"].(string)
		svcID, _ := created.body["id"].(string)
		tab.Run(t, chromedp.Navigate(s.base+"/t/default/tokens"))
		tab.ClickAndWait(t, `#token-`+svcID+` button`)
		tab.WaitText(t, "main", "Revoked", 5*time.Second)
		if r := s.call("GET", envPath+"staging/secrets", svc, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("the revoked token: %d", r.status)
		}
		noProblems(t, tab)
	})
}
