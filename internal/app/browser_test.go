package app_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cofferhq/coffer/internal/browsertest"
)

// TestBrowserSignIn signs in with a local account in a real browser, with and without
// JavaScript: the sign-in page leads to the account page, which names the user, and neither
// page breaks its Content-Security-Policy or logs an error. Screenshots of both pages at
// both widths in both colour schemes go to .screenshots/.
func TestBrowserSignIn(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		const email = "grace@example.com"
		id, _ := s.localUser(email)
		s.setLocalPassword(id, localPassword)
		b := browsertest.Start(t)

		t.Run("js", func(t *testing.T) {
			tab := b.Tab(t)
			browserSignIn(t, s, tab, email, true)
			noProblems(t, tab)
		})
		t.Run("nojs", func(t *testing.T) {
			tab := b.TabNoJS(t)
			browserSignIn(t, s, tab, email, false)
			noProblems(t, tab)
		})
	})
}

// browserSignIn opens /account, is sent to the sign-in form, signs in as email and checks
// that it is back on /account, signed in as email; with screenshots, it takes them of both
// pages.
func browserSignIn(t *testing.T, s *server, tab *browsertest.Tab, email string, screenshots bool) {
	t.Helper()
	tab.Run(t, chromedp.Navigate(s.base+"/account"))
	if u := tab.Location(t); !strings.HasPrefix(u, s.base+"/login") {
		t.Fatalf("/account without a session shows %s, want the sign-in page", u)
	}
	if screenshots {
		shots(t, tab, "login")
	}
	const form = `form[action="/login"]`
	tab.Run(t,
		chromedp.SendKeys(chromedp.CSS(form+` input[name="email"]`), email),
		chromedp.SendKeys(chromedp.CSS(form+` input[name="password"]`), localPassword),
	)
	tab.ClickAndWait(t, form+` button[type="submit"]`)
	if u := tab.Location(t); u != s.base+"/account" {
		t.Fatalf("signed in, the browser shows %s, want %s/account; the page says: %s", u, s.base, tab.Text(t, "body"))
	}
	if text := tab.Text(t, "body"); !strings.Contains(text, email) {
		t.Errorf("the account page does not show %s: %s", email, text)
	}
	if screenshots {
		shots(t, tab, "account")
	}
}

// shots screenshots the page the tab shows at both widths in both schemes, and leaves the
// tab at the desktop width in the light scheme.
func shots(t *testing.T, tab *browsertest.Tab, name string) {
	t.Helper()
	for _, w := range []int{browsertest.Desktop, browsertest.Phone} {
		tab.SetWidth(t, w)
		for _, sc := range []browsertest.Scheme{browsertest.Light, browsertest.Dark} {
			tab.SetScheme(t, sc)
			tab.Screenshot(t, name)
		}
	}
	tab.SetWidth(t, browsertest.Desktop)
	tab.SetScheme(t, browsertest.Light)
}

func noProblems(t *testing.T, tab *browsertest.Tab) {
	t.Helper()
	if p := tab.Problems(); len(p) > 0 {
		t.Errorf("the pages reported %d problems:\n%s", len(p), strings.Join(p, "\n"))
	}
}
