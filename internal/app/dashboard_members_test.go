package app_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
)

// acceptCodeRE finds an invitation's one-time code in a page.
var acceptCodeRE = regexp.MustCompile(`/invitations/accept\?code=([A-Za-z0-9_-]{43})`)

// memberEmails lists the e-mails and roles of a members list the API answers.
func memberEmails(t *testing.T, r response) map[string]string {
	t.Helper()
	items, _ := r.body["items"].([]any)
	out := map[string]string{}
	for _, it := range items {
		m, _ := it.(map[string]any)
		email, _ := m["email"].(string)
		role, _ := m["role"].(string)
		out[email] = role
	}
	return out
}

// membersMain is a page's main element, for failure messages.
func membersMain(html string) string {
	if i := strings.Index(html, "<main>"); i >= 0 {
		return html[i:]
	}
	return html
}

// TestDashboardMembersPage: the owner invites through the page, which shows the accept link
// once; the accepted invitation makes a member listed on the page; the owner revokes an
// invitation and removes a member through the forms; a plain member sees no form and a forged
// POST is refused.
func TestDashboardMembersPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		_, ownerEmail := isoUserID(s, s.owner)
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		get := func(path string) response { return s.browse("GET", path, cookie, "", "", "", false) }
		post := func(path string, form url.Values) response {
			return s.browse("POST", path, cookie, s.base, csrf, form.Encode(), true)
		}
		const members = "/api/v1/tenants/default/members"

		html := htmlOf(t, get("/t/default/members"), http.StatusOK, "members page")
		endsWell(t, html, "members page")
		for _, want := range []string{ownerEmail, `href="/t/default/members">Members</a>`, "No pending invitation.",
			`<form method="post" action="/t/default/invitations">`, `<label for="invite-email">`, `<option value="owner">`,
			"The link is shown once, on the next page."} {
			if !strings.Contains(html, want) {
				t.Fatalf("members page lacks %q: %.3000s", want, membersMain(html))
			}
		}

		// Invite: the answer shows the accept link, and it is the only page that does.
		newcomer := s.newUser("newcomer@example.com")
		r := post("/t/default/invitations", url.Values{"email": {"Newcomer@Example.com"}, "role": {"member"}})
		html = htmlOf(t, r, http.StatusOK, "invite")
		endsWell(t, html, "after inviting")
		m := acceptCodeRE.FindStringSubmatch(html)
		if m == nil || !strings.Contains(html, `id="invite-link"`) || !strings.Contains(html, "Invitation for newcomer@example.com (member)") {
			t.Fatalf("the invite's answer has no accept link: %.3000s", membersMain(html))
		}
		code := m[1]
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Fatalf("the page with the accept link is cacheable: %q", cc)
		}
		invitations := html[strings.Index(html, `<table id="invitations">`):]
		if !strings.Contains(invitations, "<th scope=\"row\">newcomer@example.com</th>") || !strings.Contains(invitations, "Invite someone") {
			t.Fatalf("the pending invitation is not listed: %.2000s", invitations)
		}
		html = htmlOf(t, get("/t/default/members"), http.StatusOK, "members page again")
		endsWell(t, html, "members page again")
		if strings.Contains(html, code) || strings.Contains(html, "invite-link") || !strings.Contains(html, "newcomer@example.com") {
			t.Fatalf("a second GET shows the accept link, or lost the invitation: %.3000s", membersMain(html))
		}

		// A bad address is answered next to the field, with the API's status.
		html = htmlOf(t, post("/t/default/invitations", url.Values{"email": {"not an address"}, "role": {"admin"}}), http.StatusUnprocessableEntity, "bad address")
		endsWell(t, html, "bad address")
		form := html[strings.Index(html, `<form method="post" action="/t/default/invitations">`):]
		if !strings.Contains(form, `<p class="error" role="alert">`) || !strings.Contains(form, `value="not an address"`) ||
			!strings.Contains(form, `<option value="admin" selected>`) || acceptCodeRE.MatchString(html) {
			t.Fatalf("bad address: %.2000s", form)
		}

		// Accepted through the API: a member, listed on the page, with no pending invitation.
		s.accept(newcomer, code)
		html = htmlOf(t, get("/t/default/members"), http.StatusOK, "after accepting")
		endsWell(t, html, "after accepting")
		newcomerID, _ := isoUserID(s, newcomer)
		row := html[strings.Index(html, `<tr id="member-`+newcomerID+`">`):]
		row = row[:strings.Index(row, "</tr>")]
		if !strings.Contains(row, "newcomer@example.com") || !strings.Contains(row, `<span class="badge">member</span>`) ||
			!strings.Contains(row, `action="/t/default/members/`+newcomerID+`/remove"`) || !strings.Contains(html, "No pending invitation.") {
			t.Fatalf("the new member's row: %s", row)
		}

		// Revoke an invitation through its form.
		s.invite(s.owner, "default", "later@example.com", "admin")
		invs := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/invitations", s.owner, nil)
		items, _ := invs.body["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("invitations: %s", invs.raw)
		}
		invID, _ := items[0].(map[string]any)["id"].(string)
		html = htmlOf(t, post("/t/default/invitations/"+invID+"/revoke", url.Values{}), http.StatusOK, "revoke")
		endsWell(t, html, "after revoking")
		if !strings.Contains(html, "Revoked the invitation for later@example.com.") || !strings.Contains(html, "No pending invitation.") {
			t.Fatalf("after revoking: %.2000s", membersMain(html))
		}
		if invs := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/invitations", s.owner, nil); strings.Contains(string(invs.raw), "later@example.com") {
			t.Fatalf("a revoked invitation is still pending: %s", invs.raw)
		}

		// A plain member sees who is there, and no form; forged POSTs are refused.
		nc := s.signIn(newcomer)
		html = htmlOf(t, s.browse("GET", "/t/default/members", nc, "", "", "", false), http.StatusOK, "a member's page")
		endsWell(t, html, "a member's page")
		if !strings.Contains(html, ownerEmail) || strings.Contains(html, "/remove") || strings.Contains(html, `action="/t/default/invitations`) ||
			strings.Contains(html, "Pending invitations") {
			t.Fatalf("a plain member's page: %.3000s", membersMain(html))
		}
		ownerID, _ := isoUserID(s, s.owner)
		ncsrf := auth.CSRFToken(nc)
		for path, form := range map[string]url.Values{
			"/t/default/invitations":                    {"email": {"friend@example.com"}, "role": {"member"}},
			"/t/default/members/" + ownerID + "/remove": {},
		} {
			if r := s.browse("POST", path, nc, s.base, ncsrf, form.Encode(), true); r.status != http.StatusForbidden || acceptCodeRE.Match(r.raw) {
				t.Fatalf("a plain member's POST %s: %d", path, r.status)
			}
		}
		// Without the CSRF token, not even the owner.
		if r := s.browse("POST", "/t/default/members/"+newcomerID+"/remove", cookie, s.base, "", "", true); r.status != http.StatusForbidden {
			t.Fatalf("remove without a CSRF token: %d", r.status)
		}
		got := memberEmails(t, s.must(http.StatusOK, "GET", members, s.owner, nil))
		if got[ownerEmail] != "owner" || got["newcomer@example.com"] != "member" {
			t.Fatalf("members after the refused POSTs: %v", got)
		}

		// Removed through the form.
		html = htmlOf(t, post("/t/default/members/"+newcomerID+"/remove", url.Values{}), http.StatusOK, "remove")
		endsWell(t, html, "after removing")
		if !strings.Contains(html, "Removed newcomer@example.com from the tenant.") || strings.Contains(html, `<tr id="member-`+newcomerID+`">`) {
			t.Fatalf("after removing: %.2000s", membersMain(html))
		}
		if got := memberEmails(t, s.must(http.StatusOK, "GET", members, s.owner, nil)); len(got) != 1 || got[ownerEmail] != "owner" {
			t.Fatalf("members after removing: %v", got)
		}
	})
}

// TestDashboardProjectMembersPage: a tenant member is added to a project as viewer through
// the page, given another role and an override through their row's form, then removed; a
// developer sees no form and cannot forge one.
func TestDashboardProjectMembersPage(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		devID, _ := isoUserID(s, dev)
		cookie := s.signIn(s.owner)
		csrf := auth.CSRFToken(cookie)
		get := func(path string) response { return s.browse("GET", path, cookie, "", "", "", false) }
		post := func(path string, form url.Values) response {
			return s.browse("POST", path, cookie, s.base, csrf, form.Encode(), true)
		}
		const page = "/t/default/p/web/members"
		api := projectPath + "/members"
		apiMember := func() map[string]any {
			t.Helper()
			items, _ := s.must(http.StatusOK, "GET", api, s.owner, nil).body["items"].([]any)
			for _, it := range items {
				if m, _ := it.(map[string]any); m["email"] == "dev@example.com" {
					return m
				}
			}
			return nil
		}

		html := htmlOf(t, get("/t/default/p/web"), http.StatusOK, "project page")
		if !strings.Contains(html, `href="/t/default/p/web/members">Members</a>`) {
			t.Fatalf("the project page has no members link: %.2000s", membersMain(html))
		}
		html = htmlOf(t, get(page), http.StatusOK, "project members page")
		endsWell(t, html, "project members page")
		if !strings.Contains(html, "Nobody is a member of this project yet") || !strings.Contains(html, `<form method="post" action="`+page+`">`) {
			t.Fatalf("empty project members page: %.2000s", membersMain(html))
		}

		// Someone who is not in the tenant: refused next to the add form.
		html = htmlOf(t, post(page, url.Values{"email": {"stranger@example.com"}, "role": {"viewer"}}), http.StatusUnprocessableEntity, "a stranger")
		endsWell(t, html, "a stranger")
		add := html[strings.Index(html, "<h2>Add a member</h2>"):]
		if !strings.Contains(add, "invite them to the tenant first") || !strings.Contains(add, `value="stranger@example.com"`) {
			t.Fatalf("adding a stranger: %.2000s", add)
		}

		// Added as viewer.
		html = htmlOf(t, post(page, url.Values{"email": {"dev@example.com"}, "role": {"viewer"}}), http.StatusOK, "add")
		endsWell(t, html, "after adding")
		if !strings.Contains(html, "Saved dev@example.com (viewer).") || !strings.Contains(html, `<tr id="member-`+devID+`">`) ||
			!strings.Contains(html, `name="env[production]"`) {
			t.Fatalf("after adding: %.3000s", membersMain(html))
		}
		if m := apiMember(); m == nil || m["role"] != "viewer" {
			t.Fatalf("the API's member after adding: %v", m)
		}

		// The row's form: developer, with production closed to them.
		html = htmlOf(t, post(page, url.Values{"email": {"dev@example.com"}, "row": {"1"}, "role": {"developer"},
			"env[production]": {"none"}, "env[staging]": {""}}), http.StatusOK, "change")
		endsWell(t, html, "after changing")
		row := html[strings.Index(html, `<tr id="member-`+devID+`">`):]
		row = row[:strings.Index(row, "</tr>")]
		if !strings.Contains(html, "Saved dev@example.com (developer).") || !strings.Contains(row, `<span class="badge">Production: none</span>`) ||
			!strings.Contains(row, `<option value="developer" selected>`) || !strings.Contains(row, `<option value="none" selected>none</option>`) {
			t.Fatalf("after changing: %s", row)
		}
		m := apiMember()
		envs, _ := m["environments"].(map[string]any)
		if m["role"] != "developer" || len(envs) != 1 || envs["production"] != "none" {
			t.Fatalf("the API's member after changing: %v", m)
		}
		// A bad override is answered in the member's row.
		html = htmlOf(t, post(page, url.Values{"email": {"dev@example.com"}, "row": {"1"}, "role": {"developer"}, "env[staging]": {"admin"}}),
			http.StatusUnprocessableEntity, "a bad override")
		endsWell(t, html, "a bad override")
		row = html[strings.Index(html, `<tr id="member-`+devID+`">`):]
		if !strings.Contains(row[:strings.Index(row, "</tr>")], "environment access must be none, read or write") {
			t.Fatalf("a bad override: %s", row)
		}

		// The developer sees the page without forms and cannot forge one.
		dc := s.signIn(dev)
		html = htmlOf(t, s.browse("GET", page, dc, "", "", "", false), http.StatusOK, "a developer's page")
		endsWell(t, html, "a developer's page")
		if !strings.Contains(html, "dev@example.com") || strings.Contains(html, "Add a member") || strings.Contains(html, "/remove") {
			t.Fatalf("a developer's page: %.2000s", membersMain(html))
		}
		if r := s.browse("POST", page, dc, s.base, auth.CSRFToken(dc), url.Values{"email": {"dev@example.com"}, "role": {"admin"}}.Encode(), true); r.status != http.StatusForbidden {
			t.Fatalf("a developer's forged POST: %d", r.status)
		}
		if r := s.browse("POST", page+"/"+devID+"/remove", cookie, s.base, "", "", true); r.status != http.StatusForbidden {
			t.Fatalf("remove without a CSRF token: %d", r.status)
		}
		if m := apiMember(); m == nil || m["role"] != "developer" {
			t.Fatalf("the API's member after the refused POSTs: %v", m)
		}

		// Removed from the project; still in the tenant.
		html = htmlOf(t, post(page+"/"+devID+"/remove", url.Values{}), http.StatusOK, "remove")
		endsWell(t, html, "after removing")
		if !strings.Contains(html, "Removed dev@example.com from the project.") || strings.Contains(html, `<tr id="member-`+devID+`">`) {
			t.Fatalf("after removing: %.2000s", membersMain(html))
		}
		if m := apiMember(); m != nil {
			t.Fatalf("still a project member: %v", m)
		}
		if got := memberEmails(t, s.must(http.StatusOK, "GET", "/api/v1/tenants/default/members", s.owner, nil)); got["dev@example.com"] != "member" {
			t.Fatalf("removed from the tenant too: %v", got)
		}
	})
}
