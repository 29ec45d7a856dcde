package app_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/auth"
)

// TestTenantMemberRole: owners and admins change members' roles; only owners grant or take
// the owner role, nobody changes their own, a tenant keeps an owner; a demotion takes effect
// at once (also for a reader whose scope was cached) and is audited; the members page does it
// with a form.
func TestTenantMemberRole(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const members = "/api/v1/tenants/default/members/"
		user := s.newUser("dev@example.com")
		s.join(s.owner, "default", user, "dev@example.com", "member")
		userID, _ := isoUserID(s, user)
		ownerID, _ := isoUserID(s, s.owner)
		role := func(role string) map[string]string { return map[string]string{"role": role} }

		if r := s.call("PUT", members+ownerID, user, role("member")); r.status != http.StatusForbidden {
			t.Fatalf("a member changing a role: %d %s", r.status, r.raw)
		}
		s.must(http.StatusNoContent, "PUT", members+userID, s.owner, role("admin"))
		// As an admin they read every project; their scope is cached on this replica.
		s.untilCached(user)
		if r := s.call("PUT", members+ownerID, user, role("admin")); r.status != http.StatusForbidden {
			t.Fatalf("an admin demoting an owner: %d %s", r.status, r.raw)
		}
		if r := s.call("PUT", members+userID, user, role("owner")); r.status != http.StatusForbidden {
			t.Fatalf("an admin granting owner: %d %s", r.status, r.raw)
		}
		if r := s.call("PUT", members+ownerID, s.owner, role("member")); r.status != http.StatusConflict {
			t.Fatalf("changing one's own role: %d %s", r.status, r.raw)
		}
		if r := s.call("PUT", members+userID, s.owner, role("root")); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("an unknown role: %d %s", r.status, r.raw)
		}
		// Demoted to member (not in project web), the next read is refused at once.
		s.must(http.StatusNoContent, "PUT", members+userID, s.owner, role("member"))
		if r := s.call("GET", stagingValues, user, nil); r.status != http.StatusNotFound {
			t.Fatalf("a demoted member's read: %d %s", r.status, r.raw)
		}
		entries := s.must(http.StatusOK, "GET", auditPath+"?action=tenant.member.role", s.owner, nil).items()
		if len(entries) != 2 || entries[1]["metadata"].(map[string]any)["from"] != "admin" || entries[1]["metadata"].(map[string]any)["to"] != "member" {
			t.Fatalf("role entries: %v", entries)
		}

		// The members page: the owner makes them an admin with the row's form.
		cookie := s.signIn(s.owner)
		r := s.browse("POST", "/t/default/members/"+userID+"/role", cookie, s.base, auth.CSRFToken(cookie), url.Values{"role": {"admin"}}.Encode(), true)
		if html := htmlOf(t, r, http.StatusOK, "role form"); !strings.Contains(html, "Changed the role of dev@example.com to admin.") {
			t.Fatalf("after the role form: %.1200s", html[strings.Index(html, "<main>"):])
		}
		if r := s.browse("POST", "/t/default/members/"+userID+"/role", cookie, s.base, "", url.Values{"role": {"member"}}.Encode(), true); r.status != http.StatusForbidden {
			t.Fatalf("role form without a CSRF token: %d", r.status)
		}
	})
}
