package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestReferences(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": "shared", "name": "Shared"})
		put := func(path, value string) {
			t.Helper()
			r := s.call("PUT", path, s.owner, map[string]string{"value": value})
			if r.status != http.StatusOK && r.status != http.StatusCreated {
				t.Fatalf("put %s: %d %s", path, r.status, r.raw)
			}
		}
		staging := envPath + "staging/secrets/"
		put(staging+"DB_HOST", "db.staging")
		put(envPath+"production/secrets/DB_PASSWORD", "prod-pw")
		put("/api/v1/tenants/default/projects/shared/environments/production/secrets/REGION", "eu-west-1")
		put(staging+"DATABASE_URL", "postgres://app:${production.DB_PASSWORD}@${DB_HOST}/app?region=${shared.production.REGION}&lit=$${KEEP}")

		// As stored unless asked.
		if r := s.must(http.StatusOK, "GET", staging+"DATABASE_URL", s.owner, nil); !strings.Contains(str(r.body["value"]), "${DB_HOST}") {
			t.Fatalf("stored value: %s", r.raw)
		}
		want := "postgres://app:prod-pw@db.staging/app?region=eu-west-1&lit=${KEEP}"
		var before int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE action = 'secret.reveal'`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if r := s.must(http.StatusOK, "GET", staging+"DATABASE_URL?resolve=true", s.owner, nil); r.body["value"] != want {
			t.Fatalf("resolved: %s", r.raw)
		}
		// The read and every referenced secret are in the audit log.
		rows, err := s.rawDB().Query(s.q(`SELECT metadata FROM audit_entries WHERE action = 'secret.reveal' ORDER BY id`))
		if err != nil {
			t.Fatal(err)
		}
		var metas []string
		for rows.Next() {
			var m string
			if err := rows.Scan(&m); err != nil {
				t.Fatal(err)
			}
			metas = append(metas, m)
		}
		rows.Close()
		all := strings.Join(metas[before:], "\n")
		for _, name := range []string{"DATABASE_URL", "DB_HOST", "DB_PASSWORD", "REGION"} {
			if !strings.Contains(all, `"`+name+`"`) {
				t.Errorf("%s is not in the reveal entries of the resolved read:\n%s", name, all)
			}
		}
		// Lists and exports resolve too.
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets?include=values&resolve=true", s.owner, nil); !strings.Contains(string(r.raw), "prod-pw@db.staging") {
			t.Fatalf("resolved list: %s", r.raw)
		}
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets?include=values&format=dotenv&resolve=true", s.owner, nil); !strings.Contains(string(r.raw), "prod-pw@db.staging") {
			t.Fatalf("resolved export: %s", r.raw)
		}

		// A member of web who is only a viewer of shared cannot resolve into shared, though
		// they may read DATABASE_URL itself.
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "dev@example.com", "role": "admin"})
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/shared/members", s.owner, map[string]any{"email": "dev@example.com", "role": "viewer"})
		s.must(http.StatusOK, "GET", staging+"DATABASE_URL", dev, nil)
		if r := s.call("GET", staging+"DATABASE_URL?resolve=true", dev, nil); r.status != http.StatusForbidden || strings.Contains(string(r.raw), "eu-west-1") {
			t.Fatalf("a viewer of the target resolving: %d %s", r.status, r.raw)
		}
		// Nor can someone who is not in the target project at all: it does not exist for them.
		other := s.newUser("other@example.com")
		s.join(s.owner, "default", other, "other@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "other@example.com", "role": "admin"})
		if r := s.call("GET", staging+"DATABASE_URL?resolve=true", other, nil); r.status != http.StatusNotFound {
			t.Fatalf("resolving into an invisible project: %d %s", r.status, r.raw)
		}

		// A 3-cycle is 422 naming it; a missing reference, a malformed one and one nested too
		// deep are 422 as well.
		put(staging+"CYCLE_A", "${CYCLE_B}")
		put(staging+"CYCLE_B", "x${production.CYCLE_C}")
		put(envPath+"production/secrets/CYCLE_C", "${staging.CYCLE_A}")
		r := s.call("GET", staging+"CYCLE_A?resolve=true", s.owner, nil)
		msg := str(r.body["error"].(map[string]any)["message"])
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(msg, "web.staging.CYCLE_A -> web.staging.CYCLE_B -> web.production.CYCLE_C -> web.staging.CYCLE_A") {
			t.Fatalf("a 3-cycle: %d %s", r.status, r.raw)
		}
		put(staging+"MISSING", "${NOPE}")
		put(staging+"BROKEN", "${not a ref}")
		for i := 0; i <= 9; i++ {
			put(staging+fmt.Sprintf("DEEP_%d", i), fmt.Sprintf("${DEEP_%d}", i+1))
		}
		put(staging+"DEEP_10", "bottom")
		for _, name := range []string{"MISSING", "BROKEN", "DEEP_0"} {
			if r := s.call("GET", staging+name+"?resolve=true", s.owner, nil); r.status != http.StatusUnprocessableEntity {
				t.Errorf("%s: %d %s", name, r.status, r.raw)
			}
		}
		if r := s.must(http.StatusOK, "GET", staging+"DEEP_3?resolve=true", s.owner, nil); r.body["value"] != "bottom" {
			t.Fatalf("seven levels deep: %s", r.raw)
		}
	})
}
