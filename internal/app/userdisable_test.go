package app_test

import (
	"net/http"
	"testing"
)

// TestDisabledUserIsShutOutAtOnce: an instance admin disables a user and every token of
// theirs fails on the very next request, on tenant routes too; enabling them restores the
// same tokens. Only instance admins may do it, and not to themselves; both steps are audited.
func TestDisabledUserIsShutOutAtOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		bob := s.newUser("bob@example.com")
		bobID, _ := isoUserID(s, bob)
		ownerID, _ := isoUserID(s, s.owner)
		s.join(s.owner, "default", bob, "bob@example.com", "member")
		s.must(http.StatusOK, "GET", "/api/v1/tenants/default", bob, nil)

		if r := s.call("POST", "/api/v1/users/"+ownerID+"/disable", bob, nil); r.status != http.StatusForbidden {
			t.Fatalf("a non-admin disabled a user: %d %s", r.status, r.raw)
		}
		if r := s.call("POST", "/api/v1/users/"+ownerID+"/disable", s.owner, nil); r.status != http.StatusConflict {
			t.Fatalf("an admin disabled themselves: %d %s", r.status, r.raw)
		}
		if r := s.call("POST", "/api/v1/users/no-such-user/disable", s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("disabling an unknown user: %d %s", r.status, r.raw)
		}

		s.must(http.StatusNoContent, "POST", "/api/v1/users/"+bobID+"/disable", s.owner, nil)
		for _, path := range []string{"/api/v1/me", "/api/v1/tenants/default", envPath + "development/secrets"} {
			if r := s.call("GET", path, bob, nil); r.status != http.StatusUnauthorized {
				t.Errorf("GET %s with a disabled user's token: %d %s", path, r.status, r.raw)
			}
		}
		s.must(http.StatusNoContent, "POST", "/api/v1/users/"+bobID+"/enable", s.owner, nil)
		s.must(http.StatusOK, "GET", "/api/v1/tenants/default", bob, nil)

		var n int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE target_id = ? AND action IN ('user.disable', 'user.enable')`), bobID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("%d disable/enable audit entries, want 2", n)
		}
	})
}
