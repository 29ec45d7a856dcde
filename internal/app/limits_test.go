package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDocumentedBodyLimits: the bulk route takes the 16 MiB it documents (the global 1 MiB
// reader used to shadow it), and every other route stops at 1 MiB.
func TestDocumentedBodyLimits(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		value := strings.Repeat("v", 40<<10)
		changes := make([]map[string]string, 100) // about 4 MiB of JSON
		for i := range changes {
			changes[i] = map[string]string{"name": fmt.Sprintf("BIG_%03d", i), "value": value}
		}
		r := s.call("PATCH", envPath+"development/secrets", s.owner, map[string]any{"secrets": changes})
		if r.status != http.StatusOK || len(r.items()) != 100 {
			t.Fatalf("a 4 MiB bulk write: %d %.300s", r.status, r.raw)
		}
		// Past 16 MiB the bulk route refuses, and writes nothing.
		huge := `{"secrets":[{"name":"HUGE","value":"` + strings.Repeat("x", 17<<20) + `"}]}`
		if r := s.call("PATCH", envPath+"development/secrets", s.owner, huge); r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("a 17 MiB bulk write: %d %.300s", r.status, r.raw)
		}
		// Any other route stops at 1 MiB.
		body := `{"value":"` + strings.Repeat("x", 1<<20) + `"}`
		if r := s.call("PUT", envPath+"development/secrets/ONE", s.owner, body); r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("a 1 MiB single write: %d %.300s", r.status, r.raw)
		}
		if r := s.call("GET", envPath+"development/secrets/HUGE", s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("a refused bulk write left HUGE behind: %d", r.status)
		}
	})
}

// TestEnvironmentPagesAreFull: environments hidden from the caller are skipped before a page
// is cut, so every page but the last is full and nothing visible is lost.
func TestEnvironmentPagesAreFull(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const envs = "/api/v1/tenants/default/projects/web/environments"
		for _, slug := range []string{"a1", "a2", "a3", "a4"} {
			s.must(http.StatusCreated, "POST", envs, s.owner, map[string]any{"slug": slug, "name": slug})
		}
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		// Hidden: a1, a2 and development; visible: a3, a4, production, staging.
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{
			"email": "dev@example.com", "role": "developer",
			"environments": map[string]string{"a1": "none", "a2": "none", "development": "none"}})
		var seen []string
		cursor := ""
		for page := 0; page < 10; page++ {
			r := s.must(http.StatusOK, "GET", envs+"?limit=2"+cursor, dev, nil)
			for _, it := range r.items() {
				seen = append(seen, str(it["slug"]))
			}
			next := str(r.body["next_cursor"])
			if next == "" {
				break
			}
			if len(r.items()) != 2 {
				t.Fatalf("page %d has %d environments and a next page: %s", page, len(r.items()), r.raw)
			}
			cursor = "&cursor=" + next
		}
		if got := strings.Join(seen, ","); got != "a3,a4,production,staging" {
			t.Fatalf("environments listed: %s, want a3,a4,production,staging", got)
		}
	})
}

// TestProtectedEnvironmentsNeedTenantAdmins: a project admin may protect an environment and
// rename a protected one, but only tenant owners and admins unprotect or delete it; both are
// audited with the number of secrets it held.
func TestProtectedEnvironmentsNeedTenantAdmins(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const envs = "/api/v1/tenants/default/projects/web/environments/"
		s.must(http.StatusCreated, "PUT", envPath+"production/secrets/A", s.owner, map[string]string{"value": "1"})
		s.must(http.StatusCreated, "PUT", envPath+"production/secrets/B", s.owner, map[string]string{"value": "2"})
		lead := s.newUser("lead@example.com")
		s.join(s.owner, "default", lead, "lead@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner,
			map[string]any{"email": "lead@example.com", "role": "admin"})

		for _, c := range []struct{ method, path string }{{"PATCH", envs + "production"}, {"DELETE", envs + "production"}} {
			var body any
			if c.method == "PATCH" {
				body = map[string]any{"protected": false}
			}
			if r := s.call(c.method, c.path, lead, body); r.status != http.StatusForbidden {
				t.Fatalf("a project admin: %s %s = %d %s", c.method, c.path, r.status, r.raw)
			}
		}
		if r := s.must(http.StatusOK, "GET", envs+"production", s.owner, nil); r.body["protected"] != true {
			t.Fatalf("production after refused changes: %s", r.raw)
		}
		s.must(http.StatusOK, "PATCH", envs+"production", lead, map[string]any{"name": "Prod"})
		s.must(http.StatusOK, "PATCH", envs+"staging", lead, map[string]any{"protected": true})

		// A tenant owner unprotects; the entry counts the secrets that lost their protection.
		s.must(http.StatusOK, "PATCH", envs+"production", s.owner, map[string]any{"protected": false})
		var meta string
		if err := s.rawDB().QueryRow(s.q(`SELECT metadata FROM audit_entries WHERE action = 'environment.update' ORDER BY id DESC LIMIT 1`)).Scan(&meta); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(meta, `"secrets":2`) {
			t.Fatalf("audit metadata of the unprotection: %s", meta)
		}
		// Staging is protected now: the project admin cannot delete it either.
		if r := s.call("DELETE", envs+"staging", lead, nil); r.status != http.StatusForbidden {
			t.Fatalf("a project admin deleting protected staging: %d", r.status)
		}
		s.must(http.StatusNoContent, "DELETE", envs+"staging", s.owner, nil)
	})
}

// TestTenantDeleteAndProjectCreateTakeTurns: a project created while its tenant is deleted
// either exists afterwards (the delete was refused) or was never acknowledged (404): a 201
// followed by the project cascading away with its tenant would lose acknowledged data.
func TestTenantDeleteAndProjectCreateTakeTurns(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		rounds := 100
		if s.dialect == "sqlite" {
			rounds = 20 // one writer at a time: the race cannot happen, but the answers must agree
		}
		created, deleted := 0, 0
		for i := range rounds {
			slug := fmt.Sprintf("race-%d", i)
			s.must(http.StatusCreated, "POST", "/api/v1/tenants", s.owner, map[string]string{"slug": slug, "name": slug})
			var create, del response
			done := make(chan struct{})
			go func() {
				defer close(done)
				del = s.call("DELETE", "/api/v1/tenants/"+slug, s.owner, nil)
			}()
			create = s.call("POST", "/api/v1/tenants/"+slug+"/projects", s.owner, map[string]string{"slug": "p", "name": "P"})
			<-done
			switch {
			case create.status == http.StatusCreated && del.status == http.StatusConflict:
				created++
				s.must(http.StatusOK, "GET", "/api/v1/tenants/"+slug+"/projects/p", s.owner, nil)
			case create.status == http.StatusNotFound && del.status == http.StatusNoContent:
				deleted++
			default:
				t.Fatalf("round %d: create %d %s, delete %d %s", i, create.status, create.raw, del.status, del.raw)
			}
		}
		t.Logf("%d rounds: project first %d times, delete first %d times", rounds, created, deleted)
	})
}
