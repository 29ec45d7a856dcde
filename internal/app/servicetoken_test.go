package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/auth"
)

const svcPath = "/api/v1/tenants/default/projects/web/service-tokens"

// serviceToken creates a service token in project web and returns the answer.
func (s *server) serviceToken(by, name, access string, envs ...string) response {
	s.t.Helper()
	return s.call("POST", svcPath, by, map[string]any{"name": name, "environments": envs, "access": access, "expires_in_days": 30})
}

func TestServiceTokenScope(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/API_KEY", s.owner, map[string]string{"value": "staging-value"})
		s.must(http.StatusCreated, "PUT", envPath+"production/secrets/API_KEY", s.owner, map[string]string{"value": "production-value"})

		created := s.serviceToken(s.owner, "ci", "read", "staging")
		if created.status != http.StatusCreated {
			t.Fatalf("create service token: %d %s", created.status, created.raw)
		}
		tok, _ := created.body["token"].(string)
		if !strings.HasPrefix(tok, "cfr_svc_") || created.body["access"] != "read" || created.body["expires_at"] == nil {
			t.Fatalf("created service token: %s", created.raw)
		}
		var hashes int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM service_tokens WHERE token_hash = ?`), auth.HashToken(tok)).Scan(&hashes); err != nil || hashes != 1 {
			t.Fatalf("the stored hash of the token: %d rows, %v", hashes, err)
		}

		// It reads staging, as a list with values and one by one.
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets/API_KEY", tok, nil); r.body["value"] != "staging-value" {
			t.Fatalf("read staging: %s", r.raw)
		}
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets?include=values", tok, nil); len(r.items()) != 1 {
			t.Fatalf("list staging: %s", r.raw)
		}
		// The project's environment list shows only staging.
		if r := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/projects/web/environments", tok, nil); len(r.items()) != 1 || r.items()[0]["slug"] != "staging" {
			t.Fatalf("environments seen by the token: %s", r.raw)
		}

		refused := []struct {
			method, path string
			body         any
			status       int
		}{
			// Production is not its environment: invisible, like a missing one.
			{"GET", envPath + "production/secrets/API_KEY", nil, http.StatusNotFound},
			{"GET", envPath + "production/secrets", nil, http.StatusNotFound},
			// Read-only: every write is forbidden.
			{"PUT", envPath + "staging/secrets/API_KEY", map[string]string{"value": "x"}, http.StatusForbidden},
			{"PATCH", envPath + "staging/secrets", map[string]any{"secrets": []map[string]string{{"name": "A", "value": "b"}}}, http.StatusForbidden},
			{"DELETE", envPath + "staging/secrets/API_KEY", nil, http.StatusForbidden},
			// Members, roles, keys, tokens and settings: never.
			{"GET", "/api/v1/tenants/default/members", nil, http.StatusForbidden},
			{"GET", "/api/v1/tenants/default/invitations", nil, http.StatusForbidden},
			{"POST", "/api/v1/tenants/default/invitations", map[string]string{"email": "x@example.com", "role": "admin"}, http.StatusForbidden},
			{"GET", "/api/v1/tenants/default/projects/web/members", nil, http.StatusForbidden},
			{"POST", "/api/v1/tenants/default/projects/web/members", map[string]string{"email": "x@example.com", "role": "admin"}, http.StatusForbidden},
			{"GET", "/api/v1/tenants/default/keys", nil, http.StatusForbidden},
			{"POST", "/api/v1/tenants/default/keys/rotate", map[string]string{}, http.StatusForbidden},
			{"GET", svcPath, nil, http.StatusForbidden},
			{"POST", svcPath, map[string]any{"name": "more", "environments": []string{"staging"}, "access": "read-write", "expires_in_days": 1}, http.StatusForbidden},
			{"PATCH", "/api/v1/tenants/default/projects/web/environments/staging", map[string]any{"protected": true}, http.StatusForbidden},
			{"GET", "/api/v1/tenants/default/projects", nil, http.StatusForbidden},
			{"POST", "/api/v1/tokens", map[string]any{"name": "pat"}, http.StatusForbidden},
			{"GET", "/api/v1/me", nil, http.StatusForbidden},
			// Another project or tenant does not exist for it.
			{"GET", "/api/v1/tenants/default/projects/other/environments/staging/secrets", nil, http.StatusNotFound},
			{"GET", "/api/v1/tenants/elsewhere/projects/web/environments/staging/secrets", nil, http.StatusNotFound},
		}
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": "other", "name": "Other"})
		for _, c := range refused {
			r := s.call(c.method, c.path, tok, c.body)
			if r.status != c.status {
				t.Errorf("%s %s with a read-only staging token: %d, want %d: %s", c.method, c.path, r.status, c.status, r.raw)
			}
		}
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets/API_KEY", s.owner, nil); r.body["value"] != "staging-value" {
			t.Fatalf("a refused write changed the secret: %s", r.raw)
		}

		// A read-write token writes, and the audit log names the token, not a user.
		rw := s.serviceToken(s.owner, "deploy", "read-write", "staging", "development")
		rwTok, _ := rw.body["token"].(string)
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/API_KEY", rwTok, map[string]string{"value": "rotated"})
		var actorType, actorID string
		if err := s.rawDB().QueryRow(s.q(`SELECT actor_type, actor_id FROM audit_entries WHERE action = 'secret.write' ORDER BY id DESC LIMIT 1`)).Scan(&actorType, &actorID); err != nil {
			t.Fatal(err)
		}
		if actorType != "service_token" || actorID != rw.body["id"] {
			t.Fatalf("audit actor of a service token's write: %s %s", actorType, actorID)
		}

		// Listing shows both, without secrets; revoking works from the next request.
		list := s.must(http.StatusOK, "GET", svcPath, s.owner, nil)
		if len(list.items()) != 2 || strings.Contains(string(list.raw), "cfr_svc_") && strings.Contains(string(list.raw), tok) {
			t.Fatalf("list service tokens: %s", list.raw)
		}
		s.must(http.StatusNoContent, "DELETE", svcPath+"/"+str(created.body["id"]), s.owner, nil)
		if r := s.call("GET", envPath+"staging/secrets/API_KEY", tok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("a revoked service token: %d %s", r.status, r.raw)
		}
		// An expired one fails too.
		if _, err := s.rawDB().Exec(s.q(`UPDATE service_tokens SET expires_at = ? WHERE id = ?`), time.Now().Add(-time.Minute).UTC(), rw.body["id"]); err != nil {
			t.Fatal(err)
		}
		if r := s.call("GET", envPath+"staging/secrets/API_KEY", rwTok, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("an expired service token: %d %s", r.status, r.raw)
		}
	})
}

func TestServiceTokenCreationRules(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		// A developer is no project admin: they cannot manage the project's tokens.
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner,
			map[string]any{"email": "dev@example.com", "role": "developer"})
		if r := s.serviceToken(dev, "ci", "read", "staging"); r.status != http.StatusForbidden {
			t.Fatalf("a developer creating a service token: %d %s", r.status, r.raw)
		}
		// A project admin shut out of production by an override cannot hand out production.
		lead := s.newUser("lead@example.com")
		s.join(s.owner, "default", lead, "lead@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner,
			map[string]any{"email": "lead@example.com", "role": "admin", "environments": map[string]string{"production": "read"}})
		if r := s.serviceToken(lead, "ci", "read-write", "production"); r.status != http.StatusForbidden {
			t.Fatalf("more access than the creator holds: %d %s", r.status, r.raw)
		}
		if r := s.serviceToken(lead, "ci", "read", "production"); r.status != http.StatusCreated {
			t.Fatalf("read access the creator holds: %d %s", r.status, r.raw)
		}
		bad := []map[string]any{
			{"name": "x", "environments": []string{"staging"}, "access": "admin", "expires_in_days": 30},
			{"name": "x", "environments": []string{"staging"}, "access": "read", "expires_in_days": 0},
			{"name": "x", "environments": []string{"staging"}, "access": "read", "expires_in_days": 400},
			{"name": "x", "environments": []string{}, "access": "read", "expires_in_days": 30},
			{"name": "x", "environments": []string{"nowhere"}, "access": "read", "expires_in_days": 30},
			{"name": "", "environments": []string{"staging"}, "access": "read", "expires_in_days": 30},
		}
		for _, b := range bad {
			if r := s.call("POST", svcPath, s.owner, b); r.status != http.StatusUnprocessableEntity {
				t.Errorf("create with %v: %d, want 422: %s", b, r.status, r.raw)
			}
		}
		var n int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM service_tokens`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("service tokens stored: %d (%v), want the one valid", n, err)
		}
	})
}

func TestTenantAdminsSeeAndRevokeTokensReachingTheirTenant(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const tokens = "/api/v1/tenants/default/tokens"
		admin := s.newUser("admin@example.com")
		s.join(s.owner, "default", admin, "admin@example.com", "admin")
		member := s.newUser("member@example.com")
		s.join(s.owner, "default", member, "member@example.com", "member")
		outsider := s.newUser("outsider@example.com")
		svc := s.serviceToken(s.owner, "ci", "read", "staging")
		svcTok := str(svc.body["token"])
		// The member mints a child token; revoking the parent must take it too.
		child := s.must(http.StatusCreated, "POST", "/api/v1/tokens", member, map[string]any{"name": "child", "expires_in_days": 0})
		memberTokenID := str(s.must(http.StatusOK, "GET", "/api/v1/me", member, nil).body["token_id"])
		ownerTokenID := str(s.must(http.StatusOK, "GET", "/api/v1/me", s.owner, nil).body["token_id"])

		// Members and outsiders may not look; outsiders do not even see the tenant.
		if r := s.call("GET", tokens, member, nil); r.status != http.StatusForbidden {
			t.Fatalf("a member listing the tenant's tokens: %d %s", r.status, r.raw)
		}
		if r := s.call("GET", tokens, outsider, nil); r.status != http.StatusNotFound {
			t.Fatalf("an outsider listing the tenant's tokens: %d %s", r.status, r.raw)
		}
		list := s.must(http.StatusOK, "GET", tokens, admin, nil)
		kinds := map[string]string{}
		for _, it := range list.items() {
			kinds[str(it["id"])] = str(it["kind"])
		}
		for id, kind := range map[string]string{str(svc.body["id"]): "service_token", memberTokenID: "personal_token",
			str(child.body["id"]): "personal_token", ownerTokenID: "personal_token"} {
			if kinds[id] != kind {
				t.Errorf("token %s listed as %q, want %q: %s", id, kinds[id], kind, list.raw)
			}
		}
		if strings.Contains(string(list.raw), svcTok) || strings.Contains(string(list.raw), member) {
			t.Fatal("the listing holds a token's secret")
		}

		// An admin cannot revoke an owner's token; an owner's or admin's revocation of others
		// works at once, with the tokens it minted.
		if r := s.call("DELETE", tokens+"/"+ownerTokenID, admin, nil); r.status != http.StatusForbidden {
			t.Fatalf("an admin revoking the owner's token: %d %s", r.status, r.raw)
		}
		s.must(http.StatusNoContent, "DELETE", tokens+"/"+memberTokenID, admin, nil)
		s.must(http.StatusNoContent, "DELETE", tokens+"/"+str(svc.body["id"]), admin, nil)
		for name, tok := range map[string]string{"member": member, "member's child": str(child.body["token"])} {
			if r := s.call("GET", "/api/v1/me", tok, nil); r.status != http.StatusUnauthorized {
				t.Errorf("the %s token after revocation: %d", name, r.status)
			}
		}
		if r := s.call("GET", envPath+"staging/secrets", svcTok, nil); r.status != http.StatusUnauthorized {
			t.Errorf("the service token after revocation: %d", r.status)
		}
		// A token of someone outside the tenant is not the tenant's to revoke: not found.
		outsiderTokenID := str(s.must(http.StatusOK, "GET", "/api/v1/me", outsider, nil).body["token_id"])
		if r := s.call("DELETE", tokens+"/"+outsiderTokenID, s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("revoking an outsider's token: %d %s", r.status, r.raw)
		}
		s.must(http.StatusOK, "GET", "/api/v1/me", outsider, nil)
	})
}
