package app_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

// endsWell fails unless a page rendered to its end: a template error is only logged and
// leaves a truncated page.
func endsWell(t *testing.T, html, what string) {
	t.Helper()
	if !strings.HasSuffix(strings.TrimSpace(html), "</main></body></html>") {
		t.Fatalf("%s: the page is cut short: …%s", what, html[max(0, len(html)-400):])
	}
}

// TestDashboardAuditPage: the audit page lists a reveal made through the API, filters, says
// the chain verifies, looks a read receipt up, and is for tenant owners and admins only.
func TestDashboardAuditPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/DB_URL", s.owner, map[string]string{"value": "canary-value-93"})
		got := s.must(http.StatusOK, "GET", envPath+"staging/secrets/DB_URL", s.owner, nil)
		rc, err := audit.ParseReceipt(got.header.Get("Coffer-Audit-Receipt"))
		if err != nil {
			t.Fatalf("receipt %q: %v", got.header.Get("Coffer-Audit-Receipt"), err)
		}
		s.must(http.StatusCreated, "POST", auditPath+"/checkpoints", s.owner, nil)
		cookie := s.signIn(s.owner)
		get := func(path string) response { return s.browse("GET", path, cookie, "", "", "", false) }

		html := htmlOf(t, get("/t/default/audit"), http.StatusOK, "audit page")
		endsWell(t, html, "audit page")
		for _, want := range []string{"default/web/staging/DB_URL", "<code>secret.reveal</code>", "<code>project.create</code>",
			`id="verification">Verified`, `id="latest-note">`, `href="/api/v1/tenants/default/audit/export"`,
			`href="/t/default/audit">Audit</a>`, `href="/t/default/tokens">Tokens</a>`, "The start of the log."} {
			if !strings.Contains(html, want) {
				t.Fatalf("audit page lacks %q: %.3000s", want, html[strings.Index(html, "<main>"):])
			}
		}
		if strings.Contains(html, "canary-value-93") {
			t.Fatal("the audit page shows a secret's value")
		}

		// Filtered by action: the reveal, and nothing else.
		html = htmlOf(t, get("/t/default/audit?action=secret.reveal"), http.StatusOK, "filtered")
		endsWell(t, html, "filtered")
		entries := html[strings.Index(html, `<table id="entries">`):]
		if !strings.Contains(entries, "default/web/staging/DB_URL") || strings.Contains(entries, "project.create") ||
			strings.Count(entries, `<tr id="entry-`) != 1 {
			t.Fatalf("filtered by action: %.2000s", entries)
		}
		html = htmlOf(t, get("/t/default/audit?action=no.such.action"), http.StatusOK, "no match")
		if !strings.Contains(html, "No entry matches these filters") {
			t.Fatalf("no match: %.2000s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, get("/t/default/audit?action=secret.reveal&from=2999-01-01T00:00"), http.StatusOK, "from the future")
		if !strings.Contains(html, "No entry matches these filters") || !strings.Contains(html, `value="2999-01-01T00:00:00"`) {
			t.Fatalf("from the future: %.2000s", html[strings.Index(html, "<main>"):])
		}
		html = htmlOf(t, get("/t/default/audit?outcome=maybe"), http.StatusBadRequest, "bad outcome")
		endsWell(t, html, "bad outcome")
		if !strings.Contains(html, "outcome must be success or denied") {
			t.Fatalf("bad outcome: %.2000s", html[strings.Index(html, "<main>"):])
		}

		// The read receipt of the reveal: its entry, the secret it returned, and its proof.
		seq := strconv.FormatInt(rc.Seq, 10)
		html = htmlOf(t, get("/t/default/audit?receipt="+seq), http.StatusOK, "receipt lookup")
		endsWell(t, html, "receipt lookup")
		revealed := html[strings.Index(html, `<table id="receipt-entry">`):strings.Index(html, "<h2>Entries</h2>")]
		if !strings.Contains(revealed, `<td>`+seq+`</td>`) || !strings.Contains(revealed, `<td><code>DB_URL</code></td><td>v1</td>`) ||
			!strings.Contains(revealed, "A checkpoint covers this entry") || strings.Contains(revealed, "canary-value-93") {
			t.Fatalf("receipt lookup of %s: %s", seq, revealed)
		}
		if r := get("/t/default/audit?receipt=99999"); r.status != http.StatusNotFound || !strings.Contains(string(r.raw), "no audit entry 99999") {
			t.Fatalf("an unknown sequence: %d", r.status)
		}

		// Paging backwards: a page of one more entry than fits links to the older ones.
		s.grow("P", 60)
		html = htmlOf(t, get("/t/default/audit"), http.StatusOK, "first page")
		if strings.Count(html, `<tr id="entry-`) != 50 || !strings.Contains(html, `rel="next"`) {
			t.Fatalf("first page: %d entries, older link %v", strings.Count(html, `<tr id="entry-`), strings.Contains(html, `rel="next"`))
		}
		older := html[strings.Index(html, `<a href="/t/default/audit?before=`)+len(`<a href="`):]
		older = strings.ReplaceAll(older[:strings.Index(older, `"`)], "&amp;", "&")
		html = htmlOf(t, get(older), http.StatusOK, "older page")
		endsWell(t, html, "older page")
		if !strings.Contains(html, `<tr id="entry-1">`) || !strings.Contains(html, "The start of the log.") {
			t.Fatalf("older page (%s): %.2000s", older, html[strings.Index(html, "<main>"):])
		}

		// The export link works with the session cookie.
		if r := get("/api/v1/tenants/default/audit/export"); r.status != http.StatusOK || !strings.Contains(string(r.raw), `"default/web/staging/DB_URL"`) {
			t.Fatalf("export with a session: %d %.300s", r.status, r.raw)
		}

		// A member who is not an owner or admin may see neither page.
		member := s.newUser("member@example.com")
		s.join(s.owner, "default", member, "member@example.com", "member")
		mc := s.signIn(member)
		for _, path := range []string{"/t/default/audit", "/t/default/audit?receipt=" + seq, "/t/default/tokens"} {
			r := s.browse("GET", path, mc, "", "", "", false)
			if r.status != http.StatusForbidden || strings.Contains(string(r.raw), "DB_URL") {
				t.Fatalf("a member's GET %s: %d", path, r.status)
			}
		}
	})
}

// TestDashboardTokensPage: the tokens page lists a service token, revokes it through its
// form, and refuses a forged revoke.
func TestDashboardTokensPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		created := s.serviceToken(s.owner, "ci-deploy", "read", "staging")
		if created.status != http.StatusCreated {
			t.Fatalf("create service token: %d %s", created.status, created.raw)
		}
		tok, _ := created.body["token"].(string)
		id, _ := created.body["id"].(string)
		prefix, _ := created.body["prefix"].(string)
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)

		html := htmlOf(t, s.browse("GET", "/t/default/tokens", cookie, "", "", "", false), http.StatusOK, "tokens page")
		endsWell(t, html, "tokens page")
		row := html[strings.Index(html, `<tr id="token-`+id+`">`):]
		row = row[:strings.Index(row, "</tr>")]
		if !strings.Contains(row, "ci-deploy") || !strings.Contains(row, "<code>"+prefix+"</code>") || !strings.Contains(row, "staging") ||
			!strings.Contains(row, `action="/t/default/tokens/`+id+`/revoke"`) || strings.Contains(html, tok) {
			t.Fatalf("the service token's row: %s", row)
		}
		if !strings.Contains(html, "<td>personal</td>") {
			t.Fatalf("the owner's personal token is not listed: %.2000s", html[strings.Index(html, "<main>"):])
		}

		// Forged: no CSRF token. The token still works.
		revoke := "/t/default/tokens/" + id + "/revoke"
		if r := s.browse("POST", revoke, cookie, s.base, "", "", true); r.status != http.StatusForbidden {
			t.Fatalf("revoke without a CSRF token: %d", r.status)
		}
		s.must(http.StatusOK, "GET", envPath+"staging/secrets", tok, nil)

		// Revoked through the form: back to the page, which says so; the token is refused.
		html = htmlOf(t, s.browse("POST", revoke, cookie, s.base, csrf, url.Values{}.Encode(), true), http.StatusOK, "revoke")
		endsWell(t, html, "after revoking")
		if !strings.Contains(html, "Revoked ci-deploy") || strings.Contains(html, `<tr id="token-`+id+`">`) {
			t.Fatalf("after revoking: %.2000s", html[strings.Index(html, "<main>"):])
		}
		if r := s.call("GET", envPath+"staging/secrets", tok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("a revoked token: %d %s", r.status, r.raw)
		}
	})
}
