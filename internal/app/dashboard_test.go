package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
)

const dashEnv = "/t/default/p/web/e/staging"

// htmlOf asserts a dashboard response's status and returns its HTML.
func htmlOf(t *testing.T, r response, want int, what string) string {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: %d, want %d: %.300s", what, r.status, want, r.raw)
	}
	return string(r.raw)
}

var nonceRE = regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)' 'strict-dynamic'`)

// TestDashboardPages drives the dashboard's forms as a browser without JavaScript would:
// sign-in session, create a project, add, reveal (audited), edit with compare-and-set, delete,
// and what a viewer may not do. The browser tests (browser_test.go) cover scripts and looks.
func TestDashboardPages(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		get := func(path string) response { return s.browse("GET", path, cookie, "", "", "", false) }
		post := func(path string, form url.Values) response {
			return s.browse("POST", path, cookie, s.base, csrf, form.Encode(), true)
		}

		// One tenant: straight to its projects. Every page has a fresh nonce on its scripts
		// and no value of a secret is ever cached.
		r := get("/t")
		html := htmlOf(t, r, http.StatusOK, "GET /t")
		m := nonceRE.FindStringSubmatch(r.header.Get("Content-Security-Policy"))
		if m == nil || !strings.Contains(html, `<script nonce="`+m[1]+`"`) || !strings.Contains(html, "Projects") {
			t.Fatalf("projects page: CSP %q, nonce on its scripts: %v", r.header.Get("Content-Security-Policy"), m != nil && strings.Contains(html, m[1]))
		}
		if again := get("/t/default"); again.header.Get("Content-Security-Policy") == r.header.Get("Content-Security-Policy") {
			t.Fatal("two pages got the same nonce")
		}
		css := regexp.MustCompile(`href="(/static/coffer\.[0-9a-f]{12}\.css)"`).FindStringSubmatch(html)
		if css == nil {
			t.Fatalf("no content-hashed stylesheet in %.500s", html)
		}
		if st := get(css[1]); st.status != http.StatusOK || !strings.Contains(st.header.Get("Cache-Control"), "immutable") {
			t.Fatalf("hashed stylesheet: %d %q", st.status, st.header.Get("Cache-Control"))
		}

		// Create a project; its grid shows its environments and no variable yet.
		html = htmlOf(t, post("/t/default/projects", url.Values{"slug": {"web"}, "name": {"Web"}}), http.StatusOK, "create project")
		if !strings.Contains(html, "No variables in any environment yet") || !strings.Contains(html, "/t/default/p/web/e/staging") {
			t.Fatalf("new project's page: %.600s", html)
		}
		if r := post("/t/default/projects", url.Values{"slug": {"Bad Slug"}, "name": {"x"}}); r.status != http.StatusUnprocessableEntity ||
			!strings.Contains(string(r.raw), `class="error"`) {
			t.Fatalf("a bad slug: %d, error next to the form: %v", r.status, strings.Contains(string(r.raw), `class="error"`))
		}

		// Add a secret: the page says so and does not show the value.
		r = post(dashEnv+"/secrets", url.Values{"name": {"API_KEY"}, "value": {"s3cret-value"}, "note": {"first"}, "expect": {"0"}})
		html = htmlOf(t, r, http.StatusOK, "add a secret")
		if !strings.Contains(html, "Saved API_KEY (version 1)") || strings.Contains(html, "s3cret-value") || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("after adding: value shown %v, cache %q: %.400s", strings.Contains(html, "s3cret-value"), r.header.Get("Cache-Control"), html)
		}

		// Reveal it: in this response only, and audited.
		html = htmlOf(t, post(dashEnv+"/reveal", url.Values{"name": {"API_KEY"}}), http.StatusOK, "reveal")
		if !strings.Contains(html, `data-secret>s3cret-value<`) {
			t.Fatalf("revealed page: %.800s", html)
		}
		reveals := s.must(http.StatusOK, "GET", auditPath+"?action=secret.reveal", s.owner, nil).items()
		if len(reveals) != 1 || reveals[0]["target"] != "default/web/staging/API_KEY" || reveals[0]["actor"].(map[string]any)["kind"] != "session" {
			t.Fatalf("reveal entries: %v", reveals)
		}
		// htmx asks for the row alone.
		hx, _ := http.NewRequest("POST", s.base+dashEnv+"/reveal", strings.NewReader(url.Values{"name": {"API_KEY"}, "csrf_token": {csrf}}.Encode()))
		hx.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hx.Header.Set("HX-Request", "true")
		hx.Header.Set("Origin", s.base)
		hx.AddCookie(&http.Cookie{Name: "coffer_session", Value: cookie})
		if row := htmlOf(t, s.send(hx), http.StatusOK, "htmx reveal"); !strings.HasPrefix(row, `<tr id="row-API_KEY"`) || !strings.Contains(row, "s3cret-value") {
			t.Fatalf("htmx reveal: %.300s", row)
		}
		// A row fetched for a live update has no value.
		if row := htmlOf(t, get(dashEnv+"/rows/API_KEY"), http.StatusOK, "row"); strings.Contains(row, "s3cret-value") || !strings.Contains(row, "v1") {
			t.Fatalf("live row: %.300s", row)
		}

		// Edit with compare-and-set: from version 1, then again from the stale version 1.
		htmlOf(t, post(dashEnv+"/secrets", url.Values{"name": {"API_KEY"}, "value": {"second"}, "expect": {"1"}}), http.StatusOK, "edit")
		r = post(dashEnv+"/secrets", url.Values{"name": {"API_KEY"}, "value": {"lost"}, "expect": {"1"}})
		html = htmlOf(t, r, http.StatusPreconditionFailed, "stale edit")
		if !strings.Contains(html, "is at version 2 now") || !strings.Contains(html, "reload") {
			t.Fatalf("stale edit page: %.800s", html)
		}
		// The grid: version 2 in staging, missing in production.
		html = htmlOf(t, get("/t/default/p/web"), http.StatusOK, "grid")
		if !strings.Contains(html, "<code>API_KEY</code>") || !strings.Contains(html, "v2") || !strings.Contains(html, "missing") {
			t.Fatalf("grid: %.1500s", html[strings.Index(html, "<main>"):])
		}

		// Forged: no CSRF token, or another origin.
		if r := s.browse("POST", dashEnv+"/reveal", cookie, s.base, "", "name=API_KEY", true); r.status != http.StatusForbidden {
			t.Fatalf("reveal without a CSRF token: %d", r.status)
		}
		if r := s.browse("POST", dashEnv+"/reveal", cookie, "https://evil.example", csrf, "name=API_KEY", true); r.status != http.StatusForbidden {
			t.Fatalf("reveal from another origin: %d", r.status)
		}

		// A viewer sees names and versions, no reveal or edit control, and is refused both.
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		vc := s.signIn(viewer)
		vcsrf := auth.CSRFToken(vc)
		html = htmlOf(t, s.browse("GET", dashEnv, vc, "", "", "", false), http.StatusOK, "viewer's page")
		if !strings.Contains(html, "API_KEY") || strings.Contains(html, "/reveal") || strings.Contains(html, "Edit") || strings.Contains(html, "Add a secret") {
			t.Fatalf("viewer's page shows controls: %.1200s", html)
		}
		for _, forged := range []struct{ path, body string }{
			{dashEnv + "/reveal", "name=API_KEY"},
			{dashEnv + "/secrets", "name=API_KEY&value=x&expect=2"},
			{dashEnv + "/secrets/API_KEY/delete", ""},
		} {
			if r := s.browse("POST", forged.path, vc, s.base, vcsrf, forged.body, true); r.status != http.StatusForbidden || strings.Contains(string(r.raw), "s3cret") {
				t.Fatalf("viewer's forged POST %s: %d", forged.path, r.status)
			}
		}
		// Another tenant's page, or a project the viewer is not in: not found.
		if r := s.browse("GET", "/t/nope/p/web", vc, "", "", "", false); r.status != http.StatusNotFound {
			t.Fatalf("unknown tenant: %d", r.status)
		}

		// Delete.
		html = htmlOf(t, post(dashEnv+"/secrets/API_KEY/delete", nil), http.StatusOK, "delete")
		if !strings.Contains(html, "Deleted API_KEY") || !strings.Contains(html, "No secrets yet") {
			t.Fatalf("after delete: %.600s", html)
		}
		// Signed out: pages send to sign-in.
		noRedirect := *s.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noRedirect.Get(s.base + dashEnv)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?return_to=") {
			t.Fatalf("signed out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// TestDashboardWorkflow: bulk edit from pasted .env text (preview, apply, a conflict), compare
// and promote, a secret's history and rollback, and the environment at a point in time.
func TestDashboardWorkflow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		get := func(path string) response { return s.browse("GET", path, cookie, "", "", "", false) }
		post := func(path string, form url.Values) response {
			return s.browse("POST", path, cookie, s.base, csrf, form.Encode(), true)
		}
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEEP", s.owner, map[string]string{"value": "same"})
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/OLD", s.owner, map[string]string{"value": "gone soon"})

		// A 50-line .env: KEEP unchanged, 49 new; OLD missing and deleted on request.
		var text strings.Builder
		text.WriteString("KEEP=same\n")
		for i := 1; i < 50; i++ {
			text.WriteString("VAR_" + itoa(i) + "=value-" + itoa(i) + "\n")
		}
		form := url.Values{"text": {text.String()}, "remove_missing": {"on"}, "action": {"preview"}}
		html := htmlOf(t, post(dashEnv+"/bulk", form), http.StatusOK, "preview")
		if !strings.Contains(html, "<strong>49</strong> added, <strong>0</strong> changed, <strong>1</strong> removed, 1 unchanged") ||
			strings.Contains(html, "value-1") && !strings.Contains(html, "VAR_1=value-1") {
			t.Fatalf("preview: %.2000s", html[strings.Index(html, "<main>"):])
		}
		// The preview's hidden fields go back with the apply, as a browser would send them.
		hidden := regexp.MustCompile(`<input type="hidden" name="((?:v|same)_[A-Z_0-9]+|remove)" value="([^"]*)">`).FindAllStringSubmatch(html, -1)
		apply := url.Values{"text": {text.String()}, "remove_missing": {"on"}, "action": {"apply"}}
		for _, h := range hidden {
			apply.Add(h[1], h[2])
		}
		// Someone writes OLD meanwhile: the apply changes nothing and says why.
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/OLD", s.owner, map[string]string{"value": "changed"})
		if html := htmlOf(t, post(dashEnv+"/bulk", apply), http.StatusPreconditionFailed, "stale apply"); !strings.Contains(html, "Preview again") {
			t.Fatalf("stale apply: %.800s", html[strings.Index(html, "<main>"):])
		}
		if n := len(s.must(http.StatusOK, "GET", envPath+"staging/secrets", s.owner, nil).items()); n != 2 {
			t.Fatalf("after a refused apply the environment has %d secrets, want 2", n)
		}
		apply.Set("v_OLD", "2")
		html = htmlOf(t, post(dashEnv+"/bulk", apply), http.StatusOK, "apply")
		if !strings.Contains(html, "Saved 50 changes in one write") {
			t.Fatalf("apply: %.800s", html[strings.Index(html, "<main>"):])
		}
		items := s.must(http.StatusOK, "GET", envPath+"staging/secrets?limit=1000", s.owner, nil).items()
		if len(items) != 50 {
			t.Fatalf("after the apply: %d secrets, want 50", len(items))
		}

		// Compare staging with production and promote one variable.
		html = htmlOf(t, get("/t/default/p/web/compare?from=staging&to=production"), http.StatusOK, "compare")
		if !strings.Contains(html, `value="VAR_7"`) || strings.Contains(html, "value-7") {
			t.Fatalf("compare: %.1200s", html[strings.Index(html, "<main>"):])
		}
		promote := url.Values{"from": {"staging"}, "to": {"production"}, "name": {"VAR_7"}, "fv_VAR_7": {"1"}, "tv_VAR_7": {"0"}}
		if html := htmlOf(t, post("/t/default/p/web/promote", promote), http.StatusOK, "promote"); !strings.Contains(html, "Promoted VAR_7.") {
			t.Fatalf("promote: %.800s", html[strings.Index(html, "<main>"):])
		}
		got := s.must(http.StatusOK, "GET", envPath+"production/secrets/VAR_7", s.owner, nil)
		if got.body["value"] != "value-7" {
			t.Fatalf("promoted value: %s", got.raw)
		}

		// History and rollback: KEEP to v2, then back to v1's value as v3.
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/KEEP", s.owner, map[string]string{"value": "newer"})
		html = htmlOf(t, get(dashEnv+"/history/KEEP"), http.StatusOK, "history")
		if !strings.Contains(html, "Roll back to v1") || strings.Contains(html, "Roll back to v2") {
			t.Fatalf("history: %.1200s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, post(dashEnv+"/history/KEEP/rollback", url.Values{"version": {"1"}}), http.StatusOK, "rollback")
		if !strings.Contains(html, "version 1 is the current value again") {
			t.Fatalf("rollback: %.800s", html[strings.Index(html, "<main>"):])
		}
		if got := s.must(http.StatusOK, "GET", envPath+"staging/secrets/KEEP", s.owner, nil); got.body["value"] != "same" || got.body["version"] != float64(3) {
			t.Fatalf("after rollback: %s", got.raw)
		}

		// Point in time: before the bulk write, staging held KEEP and OLD; restore it.
		var before string
		for _, e := range s.must(http.StatusOK, "GET", auditPath+"?action=secret.write&limit=100", s.owner, nil).items() {
			if e["target"] == "default/web/staging/OLD" {
				before = e["time"].(string) // the newest write to OLD, before the bulk apply
				break
			}
		}
		html = htmlOf(t, get(dashEnv+"/at?at="+url.QueryEscape(before)), http.StatusOK, "point in time")
		if !strings.Contains(html, "<code>OLD</code>") || strings.Contains(html, "<code>VAR_1</code>") {
			t.Fatalf("point in time %s: %.1200s", before, html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, post(dashEnv+"/at", url.Values{"at": {before}}), http.StatusOK, "restore")
		if !strings.Contains(html, "Restored:") {
			t.Fatalf("restore: %.800s", html[strings.Index(html, "<main>"):])
		}
		names := map[string]bool{}
		for _, it := range s.must(http.StatusOK, "GET", envPath+"staging/secrets?limit=1000", s.owner, nil).items() {
			names[it["name"].(string)] = true
		}
		if len(names) != 2 || !names["KEEP"] || !names["OLD"] {
			t.Fatalf("after restoring to %s: %v", before, names)
		}
	})
}

// TestDashboardDestroyAndRestore: a project admin destroys old versions from the history page
// (never the current one) and restores a deleted secret from the environment page.
func TestDashboardDestroyAndRestore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		post := func(path string, form url.Values) response {
			return s.browse("POST", path, cookie, s.base, csrf, form.Encode(), true)
		}
		for _, v := range []string{"one", "two", "three"} {
			s.must(http.StatusOK, "PATCH", envPath+"staging/secrets", s.owner, map[string]any{"secrets": []map[string]any{{"name": "TOKEN", "value": v}}})
		}
		html := htmlOf(t, s.browse("GET", dashEnv+"/history/TOKEN", cookie, "", "", "", false), http.StatusOK, "history")
		if !strings.Contains(html, `name="version" value="1"`) || strings.Contains(html, `name="version" value="3"`) {
			t.Fatalf("destroy choices: %.1500s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, post(dashEnv+"/history/TOKEN/destroy", url.Values{"version": {"1", "2"}}), http.StatusOK, "destroy")
		if !strings.Contains(html, "Destroyed for good: versions 1, 2.") || !strings.Contains(html, "</main></body></html>") {
			t.Fatalf("after destroy: %.1500s", html[strings.Index(html, "<main>"):])
		}
		if r := s.call("GET", envPath+"staging/secrets/TOKEN?version=1", s.owner, nil); r.status != http.StatusGone {
			t.Fatalf("a destroyed version: %d", r.status)
		}
		if r := post(dashEnv+"/history/TOKEN/destroy", url.Values{"version": {"3"}}); r.status != http.StatusConflict {
			t.Fatalf("destroying the current version: %d", r.status)
		}

		s.must(http.StatusNoContent, "DELETE", envPath+"staging/secrets/TOKEN", s.owner, nil)
		html = htmlOf(t, s.browse("GET", dashEnv, cookie, "", "", "", false), http.StatusOK, "environment")
		if !strings.Contains(html, `id="deleted"`) || !strings.Contains(html, "/secrets/TOKEN/restore") {
			t.Fatalf("deleted section: %.1500s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, post(dashEnv+"/secrets/TOKEN/restore", nil), http.StatusOK, "restore")
		if !strings.Contains(html, "Saved TOKEN (restored at version 3)") || strings.Contains(html, `id="deleted"`) {
			t.Fatalf("after restore: %.1500s", html[strings.Index(html, "<main>"):])
		}
	})
}

// TestDashboardGridDifferences: on request, the project grid marks the values that differ
// from the first environment, comparing them in the server and sending none; only for
// environments whose values the user may read.
func TestDashboardGridDifferences(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		for env, vals := range map[string][]string{"development": {"same", "dev-b"}, "staging": {"same", "staging-b"}} {
			s.must(http.StatusOK, "PATCH", envPath+env+"/secrets", s.owner, map[string]any{"secrets": []map[string]any{
				{"name": "A", "value": vals[0]}, {"name": "B", "value": vals[1]}}})
		}
		cookie := s.signIn(s.owner)
		html := htmlOf(t, s.browse("GET", "/t/default/p/web", cookie, "", "", "", false), http.StatusOK, "grid")
		if strings.Contains(html, "differs</span>") || !strings.Contains(html, "?differences=1") {
			t.Fatalf("grid before asking: %.1500s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, s.browse("GET", "/t/default/p/web?differences=1", cookie, "", "", "", false), http.StatusOK, "grid with differences")
		rowA := html[strings.Index(html, "<code>A</code>"):strings.Index(html, "<code>B</code>")]
		rowB := html[strings.Index(html, "<code>B</code>"):]
		rowB = rowB[:strings.Index(rowB, "</tr>")]
		if strings.Contains(rowA, "differs") || strings.Count(rowB, "differs") != 2 || strings.Contains(html, "staging-b") ||
			!strings.Contains(html, "</main></body></html>") {
			t.Fatalf("differences: A %q, B %q", rowA, rowB)
		}
		// A viewer (no read access) is refused the comparison.
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		vhtml := htmlOf(t, s.browse("GET", "/t/default/p/web?differences=1", s.signIn(viewer), "", "", "", false), http.StatusOK, "viewer's grid")
		if strings.Contains(vhtml, "differs</span>") || strings.Contains(vhtml, "were compared") {
			t.Fatalf("a viewer's grid compared values: %.1200s", vhtml[strings.Index(vhtml, "<main>"):])
		}
	})
}

// TestDashboardSecurityHeaders: every dashboard page carries the security headers.
func TestDashboardSecurityHeaders(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/KEY", s.owner, map[string]string{"value": "v"})
		cookie := s.signIn(s.owner)
		for _, p := range []string{"/t/default", "/t/default/p/web", dashEnv, dashEnv + "/bulk", dashEnv + "/history/KEY", dashEnv + "/at",
			"/t/default/p/web/compare", "/t/default/audit", "/t/default/tokens", "/t/default/members", "/t/default/keys", "/t/default/settings",
			"/t/default/p/web/members", "/t/default/p/web/webhooks", "/t/default/p/web/service-tokens", "/t/nope"} {
			r := s.browse("GET", p, cookie, "", "", "", false)
			h := r.header
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" ||
				h.Get("Cache-Control") != "no-store" || h.Get("Cross-Origin-Opener-Policy") != "same-origin" || nonceRE.FindString(h.Get("Content-Security-Policy")) == "" ||
				!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("%s (%d): headers %v", p, r.status, h)
			}
		}
	})
}
