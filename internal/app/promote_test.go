package app_test

import (
	"net/http"
	"strings"
	"testing"
)

const projectPath = "/api/v1/tenants/default/projects/web"

func TestDiffAndPromote(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		put := func(env, name, value string) {
			s.t.Helper()
			r := s.call("PUT", envPath+env+"/secrets/"+name, s.owner, map[string]string{"value": value})
			if r.status != http.StatusOK && r.status != http.StatusCreated {
				t.Fatalf("put %s/%s: %d %s", env, name, r.status, r.raw)
			}
		}
		put("staging", "SAME", "s")
		put("production", "SAME", "s")
		put("staging", "CHANGED", "new")
		put("production", "CHANGED", "old")
		put("staging", "NEW_ONE", "fresh")
		put("production", "PROD_ONLY", "p")

		d := s.must(http.StatusOK, "GET", projectPath+"/diff?from=staging&to=production", s.owner, nil)
		names := func(key string) string {
			var out []string
			for _, it := range d.body[key].([]any) {
				out = append(out, str(it.(map[string]any)["name"]))
			}
			return strings.Join(out, ",")
		}
		if names("only_in_from") != "NEW_ONE" || names("only_in_to") != "PROD_ONLY" || names("different") != "CHANGED" || d.body["same"] != float64(1) {
			t.Fatalf("diff: %s", d.raw)
		}
		if strings.Contains(string(d.raw), "fresh") || strings.Contains(string(d.raw), `"old"`) {
			t.Fatalf("a diff without include=values shows values: %s", d.raw)
		}
		withValues := s.must(http.StatusOK, "GET", projectPath+"/diff?from=staging&to=production&include=values", s.owner, nil)
		if !strings.Contains(string(withValues.raw), `"from_value":"new"`) || !strings.Contains(string(withValues.raw), `"to_value":"old"`) {
			t.Fatalf("diff with values: %s", withValues.raw)
		}
		var reveals int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE action = 'secret.reveal'`).Scan(&reveals); err != nil || reveals != 2 {
			t.Fatalf("a diff with values made %d reveal entries (%v), want one per environment", reveals, err)
		}

		changed := d.body["different"].([]any)[0].(map[string]any)
		promote := map[string]any{"from": "staging", "to": "production", "names": []map[string]any{
			{"name": "CHANGED", "from_version": changed["from_version"], "to_version": changed["to_version"]},
			{"name": "NEW_ONE", "from_version": 1, "to_version": 0},
		}}
		// Someone writes production after the diff: the promotion fails whole, nothing copied.
		put("production", "CHANGED", "hotfix")
		r := s.call("POST", projectPath+"/promote", s.owner, promote)
		if r.status != http.StatusPreconditionFailed {
			t.Fatalf("promote after a concurrent write: %d %s", r.status, r.raw)
		}
		if r := s.call("GET", envPath+"production/secrets/NEW_ONE", s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("a failed promotion copied NEW_ONE: %d", r.status)
		}
		// A source that moved on since the diff fails too.
		put("staging", "NEW_ONE", "fresher")
		promote["names"] = []map[string]any{{"name": "NEW_ONE", "from_version": 1, "to_version": 0}}
		if r := s.call("POST", projectPath+"/promote", s.owner, promote); r.status != http.StatusPreconditionFailed {
			t.Fatalf("promote from a moved source: %d %s", r.status, r.raw)
		}
		// With the versions of a fresh diff it goes through, as one write.
		promote["names"] = []map[string]any{{"name": "CHANGED", "from_version": 1, "to_version": 2}, {"name": "NEW_ONE", "from_version": 2, "to_version": 0}}
		r = s.must(http.StatusOK, "POST", projectPath+"/promote", s.owner, promote)
		if len(r.items()) != 2 {
			t.Fatalf("promote: %s", r.raw)
		}
		for name, want := range map[string]string{"CHANGED": "new", "NEW_ONE": "fresher"} {
			if g := s.must(http.StatusOK, "GET", envPath+"production/secrets/"+name, s.owner, nil); g.body["value"] != want {
				t.Fatalf("production %s after promotion: %s", name, g.raw)
			}
		}
		var promotions int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE action = 'secret.promote'`).Scan(&promotions); err != nil || promotions != 2 {
			t.Fatalf("promotion entries: %d (%v)", promotions, err)
		}

		// A developer reads protected production but cannot write it; a viewer cannot diff.
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		s.must(http.StatusOK, "POST", projectPath+"/members", s.owner, map[string]any{"email": "dev@example.com", "role": "developer"})
		s.must(http.StatusOK, "GET", projectPath+"/diff?from=staging&to=production", dev, nil)
		if r := s.call("POST", projectPath+"/promote", dev, promote); r.status != http.StatusForbidden {
			t.Fatalf("a developer promoting into protected production: %d %s", r.status, r.raw)
		}
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", projectPath+"/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		if r := s.call("GET", projectPath+"/diff?from=staging&to=production", viewer, nil); r.status != http.StatusForbidden {
			t.Fatalf("a viewer diffing: %d %s", r.status, r.raw)
		}
		for _, q := range []string{"?from=staging", "?from=staging&to=nowhere", "?from=Bad!&to=production"} {
			if r := s.call("GET", projectPath+"/diff"+q, s.owner, nil); r.status != http.StatusUnprocessableEntity && r.status != http.StatusNotFound {
				t.Errorf("diff %s: %d %s", q, r.status, r.raw)
			}
		}
	})
}
