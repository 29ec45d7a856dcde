package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/internal/browsertest"
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
		s.join(s.owner, "default", tok, email, "admin")
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

			for _, p := range []string{"/t/default", "/t/default/p/web", dashEnv + "/bulk", "/t/default/p/web/compare?from=staging&to=production",
				dashEnv + "/history/API_KEY", dashEnv + "/at"} {
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
			noProblems(t, tab)
		})
	})
}
