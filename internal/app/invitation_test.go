package app_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// invKeys returns the sorted top-level keys of an answer: its shape, not its values.
func invKeys(r response) string {
	keys := make([]string, 0, len(r.body))
	for k := range r.body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func TestInvitations(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()
		s.withProject()
		const invs = "/api/v1/tenants/default/invitations"
		const acceptPath = "/api/v1/invitations/accept"
		_, ownerEmail := isoUserID(s, s.owner)
		kim := s.newUser("kim@example.com")
		var codes []string
		create := func(token, email, role string) response {
			t.Helper()
			r := s.call("POST", invs, token, map[string]string{"email": email, "role": role})
			if link, _ := r.body["accept_url"].(string); strings.Contains(link, "?code=") {
				_, code, _ := strings.Cut(link, "?code=")
				codes = append(codes, code)
			}
			return r
		}
		codeOf := func(r response) string {
			t.Helper()
			link, _ := r.body["accept_url"].(string)
			_, code, ok := strings.Cut(link, "/invitations/accept?code=")
			if !ok || len(code) != 43 {
				t.Fatalf("accept_url %q does not hold a 32-byte base64url code", link)
			}
			return code
		}

		// Known, unknown and already-member addresses answer alike.
		known := create(s.owner, "Kim@Example.COM", "admin")

		// The link opens a page that shows how to accept and accepts nothing.
		link, _ := known.body["accept_url"].(string)
		page, err := s.client.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(page.Body)
		page.Body.Close()
		if page.StatusCode != http.StatusOK || !strings.Contains(string(body), codeOf(known)) || !strings.Contains(string(body), acceptPath) {
			t.Fatalf("GET %s: %d %s", link, page.StatusCode, body)
		}
		if r := s.call("GET", "/invitations/accept?code=not-a-code", "", nil); r.status != http.StatusNotFound {
			t.Fatalf("a malformed invitation link: %d", r.status)
		}
		unknown := create(s.owner, "nobody@example.com", "admin")
		member := create(s.owner, ownerEmail, "admin")
		const want = "accept_url,email,expires_at,id,role"
		for name, r := range map[string]response{"known": known, "unknown": unknown, "already a member": member} {
			if r.status != http.StatusCreated || invKeys(r) != want {
				t.Errorf("invitation of a %s address: %d with keys %s, want 201 with %s: %s", name, r.status, invKeys(r), want, r.raw)
			}
		}
		if known.body["email"] != "kim@example.com" || known.body["role"] != "admin" {
			t.Errorf("invitation = %s, want the lowercased address and role admin", known.raw)
		}
		if exp, err := time.Parse(time.RFC3339, known.body["expires_at"].(string)); err != nil || time.Until(exp) < 7*24*time.Hour-time.Minute || time.Until(exp) > 7*24*time.Hour {
			t.Errorf("expires_at = %v, want 7 days from now", known.body["expires_at"])
		}

		// Only the invited address, once.
		nia := s.newUser("nia@example.com")
		kimCode := codeOf(known)
		var failures []response
		failures = append(failures, s.must(http.StatusNotFound, "POST", acceptPath, nia, map[string]string{"code": kimCode}))
		acc := s.must(http.StatusOK, "POST", acceptPath, kim, map[string]string{"code": kimCode})
		if ten, _ := acc.body["tenant"].(map[string]any); ten["slug"] != "default" || ten["role"] != "admin" || acc.body["already_member"] != false {
			t.Errorf("accept = %s, want default as admin", acc.raw)
		}
		failures = append(failures, s.must(http.StatusNotFound, "POST", acceptPath, kim, map[string]string{"code": kimCode}))
		roles := map[string]any{}
		for _, m := range s.must(http.StatusOK, "GET", "/api/v1/tenants/default/members", s.owner, nil).items() {
			roles[m["email"].(string)] = m["role"]
		}
		if roles["kim@example.com"] != "admin" || roles["nia@example.com"] != nil {
			t.Errorf("members = %v, want kim as admin and no nia", roles)
		}
		// The new admin can invite, but not an owner.
		if r := create(kim, "someone@example.com", "owner"); r.status != http.StatusForbidden {
			t.Errorf("an admin inviting an owner: %d %s, want 403", r.status, r.raw)
		}

		// Already a member: the code is used and nothing changes.
		acc = s.must(http.StatusOK, "POST", acceptPath, s.owner, map[string]string{"code": codeOf(member)})
		if ten, _ := acc.body["tenant"].(map[string]any); ten["role"] != "owner" || acc.body["already_member"] != true {
			t.Errorf("accept as a member = %s, want owner and already_member", acc.raw)
		}

		// Expired.
		lee := s.newUser("lee@example.com")
		expired := create(s.owner, "lee@example.com", "member")
		if _, err := db.Exec(s.q(`UPDATE invitations SET expires_at = ? WHERE id = ?`), time.Now().Add(-time.Minute).UTC(), expired.body["id"]); err != nil {
			t.Fatal(err)
		}
		failures = append(failures, s.must(http.StatusNotFound, "POST", acceptPath, lee, map[string]string{"code": codeOf(expired)}))

		// Revoked.
		ora := s.newUser("ora@example.com")
		revoked := create(s.owner, "ora@example.com", "member")
		s.must(http.StatusNoContent, "DELETE", invs+"/"+revoked.body["id"].(string), s.owner, nil)
		s.must(http.StatusNotFound, "DELETE", invs+"/"+revoked.body["id"].(string), s.owner, nil)
		failures = append(failures, s.must(http.StatusNotFound, "POST", acceptPath, ora, map[string]string{"code": codeOf(revoked)}))
		failures = append(failures, s.must(http.StatusNotFound, "POST", acceptPath, ora, map[string]string{"code": strings.Repeat("x", 43)}))

		// Every failure is the same answer.
		for i, f := range failures {
			if f.errCode() != failures[0].errCode() || isoMessage(f) != isoMessage(failures[0]) {
				t.Errorf("failure %d answers %s, failure 0 %s: they must not differ", i, f.raw, failures[0].raw)
			}
		}
		for _, who := range []string{lee, ora, nia} {
			if slugs := isoTenantSlugs(s, who); len(slugs) != 0 {
				t.Errorf("a refused invitee is a member of %v", slugs)
			}
		}

		// Pending: only the unknown address's, page by page.
		pending := create(s.owner, "zed@example.com", "member")
		first := s.must(http.StatusOK, "GET", invs+"?limit=1", kim, nil)
		cursor, _ := first.body["next_cursor"].(string)
		second := s.must(http.StatusOK, "GET", invs+"?limit=1&cursor="+cursor, kim, nil)
		got := map[string]bool{}
		for _, it := range append(first.items(), second.items()...) {
			got[it["id"].(string)] = true
			if _, ok := it["accept_url"]; ok {
				t.Errorf("a listed invitation shows its link: %v", it)
			}
		}
		if len(got) != 2 || !got[unknown.body["id"].(string)] || !got[pending.body["id"].(string)] || second.body["next_cursor"] != nil {
			t.Errorf("pending invitations = %s then %s, want the two unaccepted ones", first.raw, second.raw)
		}
		s.join(s.owner, "default", lee, "lee@example.com", "member")
		if r := s.call("GET", invs, lee, nil); r.status != http.StatusForbidden {
			t.Errorf("a plain member lists invitations: %d %s", r.status, r.raw)
		}

		// Audit: every step recorded, and no code nor its hash anywhere.
		var n int
		for _, action := range []string{"tenant.invitation.create", "tenant.invitation.accept", "tenant.invitation.revoke"} {
			if err := db.QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ?`), action).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("no %s audit entry", action)
			}
		}
		snap := snapshotTables(t, db, []string{"audit_entries", "invitations"})
		all := strings.Join(snap["audit_entries"], "\n") + strings.Join(snap["invitations"], "\n")
		for _, code := range codes {
			sum := sha256.Sum256([]byte(code))
			if strings.Contains(all, code) {
				t.Errorf("an invitation code is stored in clear")
			}
			if strings.Contains(strings.Join(snap["audit_entries"], "\n"), hex.EncodeToString(sum[:])) {
				t.Errorf("an invitation code's hash is in the audit log")
			}
		}
		if len(codes) < 6 {
			t.Errorf("only %d codes seen", len(codes))
		}
		if strings.Contains(s.logs.String(), kimCode) {
			t.Error("an invitation code is in the logs")
		}

		// Project members are added by the address of a tenant member only, and an address
		// nobody has answers like a user who is not a member.
		s.newUser("pat@example.com")
		const pm = "/api/v1/tenants/default/projects/web/members"
		stranger := s.call("POST", pm, s.owner, map[string]string{"email": "pat@example.com", "role": "viewer"})
		ghost := s.call("POST", pm, s.owner, map[string]string{"email": "ghost@example.com", "role": "viewer"})
		if stranger.status != http.StatusUnprocessableEntity || stranger.status != ghost.status || isoMessage(stranger) != isoMessage(ghost) {
			t.Errorf("project member for a non-member user %d %s, for no user %d %s: want the same 422", stranger.status, stranger.raw, ghost.status, ghost.raw)
		}
		s.must(http.StatusOK, "POST", pm, s.owner, map[string]string{"email": "kim@example.com", "role": "viewer"})
	})
}
