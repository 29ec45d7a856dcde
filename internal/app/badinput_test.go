package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// badJSON encodes v, failing the test if it cannot.
func badJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadInputs(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		db := s.rawDB()
		const existing = "existing-value-5d2a"
		sec := envPath + "development/secrets/"
		s.must(http.StatusCreated, "PUT", sec+"EXISTING", s.owner, map[string]string{"value": existing})
		s.must(http.StatusOK, "PUT", sec+"EXISTING", s.owner, map[string]string{"value": existing})
		s.must(http.StatusNoContent, "DELETE", sec+"EXISTING", s.owner, nil)
		s.must(http.StatusOK, "POST", sec+"EXISTING/restore", s.owner, nil)

		big := strings.Repeat("x", 65537)
		overMiB := strings.Repeat("n", 1<<20+1024)
		j := func(v any) []byte { return badJSON(t, v) }
		const (
			tenants     = "/api/v1/tenants"
			projects    = "/api/v1/tenants/default/projects"
			envs        = "/api/v1/tenants/default/projects/web/environments"
			list        = envPath + "development/secrets"
			invitations = "/api/v1/tenants/default/invitations"
			accept      = "/api/v1/invitations/accept"
		)
		cases := []struct {
			name         string
			method, path string
			contentType  string // default application/json when there is a body
			body         []byte
			status       int
			code         string
		}{
			// NUL and control characters in free text: Postgres refuses NUL, so it must be a 422
			// on both databases, never a 500.
			{"note with NUL", "PUT", sec + "NUL_NOTE", "", []byte(`{"value":"x","note":"a\u0000b"}`), 422, "validation_failed"},
			{"bulk note with NUL", "PATCH", list, "", []byte(`{"secrets":[{"name":"NUL_BULK","value":"x","note":"\u0000"}]}`), 422, "validation_failed"},
			{"project name with NUL", "POST", projects, "", []byte(`{"slug":"nul","name":"a\u0000b"}`), 422, "validation_failed"},
			{"environment name with NUL", "POST", envs, "", []byte(`{"slug":"nul","name":"\u0000"}`), 422, "validation_failed"},
			{"tenant name with a newline", "POST", tenants, "", []byte(`{"slug":"nul","name":"a\nb"}`), 422, "validation_failed"},
			{"token name with NUL", "POST", "/api/v1/tokens", "", []byte(`{"name":"a\u0000"}`), 422, "validation_failed"},
			// Secret names.
			{"name starting with a digit", "PUT", sec + "1ABC", "", j(map[string]string{"value": "x"}), 422, "validation_failed"},
			{"name with a hyphen", "PUT", sec + "A-B", "", j(map[string]string{"value": "x"}), 422, "validation_failed"},
			{"name with a dot", "PUT", sec + "A.B", "", j(map[string]string{"value": "x"}), 422, "validation_failed"},
			{"name of 257 characters", "PUT", sec + strings.Repeat("A", 257), "", j(map[string]string{"value": "x"}), 422, "validation_failed"},
			{"bulk name with a hyphen", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "GOOD_ONE", "value": "x"}, {"name": "A-B", "value": "y"}}}), 422, "validation_failed"},

			// Sizes.
			{"value of 65537 bytes", "PUT", sec + "BIG", "", j(map[string]string{"value": big}), 413, "payload_too_large"},
			{"value of 65537 bytes over an existing secret", "PUT", sec + "EXISTING", "", j(map[string]string{"value": big}), 413, "payload_too_large"},
			{"body over 1 MiB", "PUT", sec + "HUGE", "", j(map[string]string{"value": "x", "note": overMiB}), 413, "payload_too_large"},
			{"body over 1 MiB of whitespace", "PUT", sec + "HUGE", "", []byte(strings.Repeat(" ", 1<<20+1024) + `{"value":"x"}`), 413, "payload_too_large"},
			{"tenant body over 1 MiB", "POST", tenants, "", j(map[string]string{"slug": "huge", "name": overMiB}), 413, "payload_too_large"},
			{"note of 1025 characters", "PUT", sec + "NOTED", "", j(map[string]string{"value": "x", "note": strings.Repeat("n", 1025)}), 422, "validation_failed"},
			{"note too long on an existing secret", "PUT", sec + "EXISTING", "", j(map[string]string{"value": "x", "note": strings.Repeat("n", 1025)}), 422, "validation_failed"},

			// Bodies that are not one well-typed JSON object.
			{"malformed JSON", "PUT", sec + "NEW_ONE", "", []byte(`{"value":`), 400, "bad_request"},
			{"unquoted key", "PUT", sec + "NEW_ONE", "", []byte(`{value:"x"}`), 400, "bad_request"},
			{"unknown field", "PUT", sec + "NEW_ONE", "", []byte(`{"value":"x","colour":"red"}`), 400, "bad_request"},
			{"unknown field on tenant create", "POST", tenants, "", []byte(`{"slug":"t2","name":"T2","owner":"me"}`), 400, "bad_request"},
			{"wrong type for value", "PUT", sec + "NEW_ONE", "", []byte(`{"value":1}`), 400, "bad_request"},
			{"wrong type for note", "PUT", sec + "NEW_ONE", "", []byte(`{"value":"x","note":5}`), 400, "bad_request"},
			{"array body", "PUT", sec + "NEW_ONE", "", []byte(`[{"value":"x"}]`), 400, "bad_request"},
			{"string body", "PUT", sec + "NEW_ONE", "", []byte(`"x"`), 400, "bad_request"},
			{"wrong type for rollback version", "POST", sec + "EXISTING/rollback", "", []byte(`{"version":"1"}`), 400, "bad_request"},
			{"missing value", "PUT", sec + "NEW_ONE", "", []byte(`{"note":"x"}`), 422, "validation_failed"},
			{"empty object", "PUT", sec + "NEW_ONE", "", []byte(`{}`), 422, "validation_failed"},
			{"null value", "PUT", sec + "NEW_ONE", "", []byte(`{"value":null}`), 422, "validation_failed"},
			{"text/plain", "PUT", sec + "NEW_ONE", "text/plain", []byte(`{"value":"x"}`), 415, "unsupported_media"},
			{"form body", "PUT", sec + "NEW_ONE", "application/x-www-form-urlencoded", []byte(`value=x`), 415, "unsupported_media"},
			{"no content type", "PUT", sec + "NEW_ONE", "-", []byte(`{"value":"x"}`), 415, "unsupported_media"},
			{"text/plain on tenant create", "POST", tenants, "text/plain", []byte(`{"slug":"t2","name":"T2"}`), 415, "unsupported_media"},
			{"empty body", "PUT", sec + "NEW_ONE", "", []byte{}, 400, "bad_request"},
			{"empty body on rollback", "POST", sec + "EXISTING/rollback", "", []byte{}, 400, "bad_request"},
			{"two JSON objects", "PUT", sec + "NEW_ONE", "", []byte(`{"value":"a"}{"value":"b"}`), 400, "bad_request"},
			{"trailing garbage", "PUT", sec + "NEW_ONE", "", []byte(`{"value":"a"} x`), 400, "bad_request"},
			{"two bulk bodies", "PATCH", list, "", []byte(`{"secrets":[{"name":"A1","value":"1"}]}{"secrets":[]}`), 400, "bad_request"},

			// Slugs and duplicates.
			{"duplicate project slug", "POST", projects, "", j(map[string]string{"slug": "web", "name": "Web again"}), 409, "conflict"},
			{"duplicate tenant slug", "POST", tenants, "", j(map[string]string{"slug": "default", "name": "Default again"}), 409, "conflict"},
			{"duplicate environment slug", "POST", envs, "", j(map[string]any{"slug": "staging", "name": "Staging again"}), 409, "conflict"},
			{"tenant slug Bad_Slug", "POST", tenants, "", j(map[string]string{"slug": "Bad_Slug", "name": "Bad"}), 422, "validation_failed"},
			{"tenant slug -x", "POST", tenants, "", j(map[string]string{"slug": "-x", "name": "Bad"}), 422, "validation_failed"},
			{"tenant slug x-", "POST", tenants, "", j(map[string]string{"slug": "x-", "name": "Bad"}), 422, "validation_failed"},
			{"empty tenant slug", "POST", tenants, "", j(map[string]string{"slug": "", "name": "Bad"}), 422, "validation_failed"},
			{"tenant slug of 64 characters", "POST", tenants, "", j(map[string]string{"slug": strings.Repeat("a", 64), "name": "Bad"}), 422, "validation_failed"},
			{"tenant without a name", "POST", tenants, "", j(map[string]string{"slug": "noname", "name": " "}), 422, "validation_failed"},
			{"project slug Bad_Slug", "POST", projects, "", j(map[string]string{"slug": "Bad_Slug", "name": "Bad"}), 422, "validation_failed"},
			{"project slug -x", "POST", projects, "", j(map[string]string{"slug": "-x", "name": "Bad"}), 422, "validation_failed"},
			{"environment slug Bad_Slug", "POST", envs, "", j(map[string]string{"slug": "Bad_Slug", "name": "Bad"}), 422, "validation_failed"},

			// Invitations.
			{"invitation to a display-name address", "POST", invitations, "", j(map[string]string{"email": "Bob <bob@example.com>", "role": "member"}), 422, "validation_failed"},
			{"invitation to an empty address", "POST", invitations, "", j(map[string]string{"email": "", "role": "member"}), 422, "validation_failed"},
			{"invitation to an address with a NUL", "POST", invitations, "", j(map[string]string{"email": "bob\x00@example.com", "role": "member"}), 422, "validation_failed"},
			{"invitation with an unknown role", "POST", invitations, "", j(map[string]string{"email": "bob@example.com", "role": "viewer"}), 422, "validation_failed"},
			{"invitation without a role", "POST", invitations, "", j(map[string]string{"email": "bob@example.com"}), 422, "validation_failed"},
			{"invitation with an unknown field", "POST", invitations, "", []byte(`{"email":"bob@example.com","role":"member","code":"x"}`), 400, "bad_request"},
			{"accept without a code", "POST", accept, "", j(map[string]string{}), 404, "not_found"},
			{"accept with a made-up code", "POST", accept, "", j(map[string]string{"code": strings.Repeat("A", 43)}), 404, "not_found"},
			{"accept with an unknown field", "POST", accept, "", []byte(`{"code":"x","tenant":"default"}`), 400, "bad_request"},
			{"revoke an unknown invitation", "DELETE", invitations + "/no-such-invitation", "", nil, 404, "not_found"},
			{"POST on the members list", "POST", "/api/v1/tenants/default/members", "", j(map[string]string{"email": "bob@example.com", "role": "member"}), 405, "method_not_allowed"},

			// Bulk writes are all or nothing.
			{"bulk with a duplicate name", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "BULK_A", "value": "1"}, {"name": "BULK_B", "value": "2"}, {"name": "BULK_A", "value": "3"}}}), 422, "validation_failed"},
			{"bulk with a duplicate existing name", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "EXISTING", "value": "1"}, {"name": "EXISTING", "delete": true}}}), 422, "validation_failed"},
			{"bulk with one oversized value", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "BULK_A", "value": "1"}, {"name": "EXISTING", "value": "2"}, {"name": "BULK_C", "value": big}}}), 413, "payload_too_large"},
			{"bulk with one note too long", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "BULK_A", "value": "1"}, {"name": "BULK_C", "value": "x", "note": strings.Repeat("n", 1025)}}}), 422, "validation_failed"},
			{"bulk with value and delete", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "BULK_A", "value": "1"}, {"name": "EXISTING", "value": "2", "delete": true}}}), 422, "validation_failed"},
			{"bulk entry without value", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{{"name": "BULK_A", "value": "1"}, {"name": "BULK_B"}}}), 422, "validation_failed"},
			{"bulk with no changes", "PATCH", list, "", j(map[string]any{"secrets": []map[string]any{}}), 422, "validation_failed"},
			{"rollback to version 0", "POST", sec + "EXISTING/rollback", "", j(map[string]int{"version": 0}), 422, "validation_failed"},

			// Query parameters.
			{"limit=0", "GET", list + "?limit=0", "", nil, 422, "validation_failed"},
			{"limit=1001", "GET", list + "?limit=1001", "", nil, 422, "validation_failed"},
			{"limit=abc", "GET", list + "?limit=abc", "", nil, 422, "validation_failed"},
			{"limit=-1", "GET", list + "?limit=-1", "", nil, 422, "validation_failed"},
			{"limit=0 on tenants", "GET", tenants + "?limit=0", "", nil, 422, "validation_failed"},
			{"limit=1001 on projects", "GET", projects + "?limit=1001", "", nil, 422, "validation_failed"},
			{"limit=abc on versions", "GET", sec + "EXISTING/versions?limit=abc", "", nil, 422, "validation_failed"},
			{"limit=abc on tokens", "GET", "/api/v1/tokens?limit=abc", "", nil, 422, "validation_failed"},
			{"cursor that is not base64url", "GET", list + "?cursor=%21%21%21", "", nil, 422, "validation_failed"},
			{"cursor that is not base64url on projects", "GET", projects + "?cursor=***", "", nil, 422, "validation_failed"},
			{"versions cursor that is not a version", "GET", sec + "EXISTING/versions?cursor=YWJj", "", nil, 422, "validation_failed"},
			{"include=bogus", "GET", list + "?include=bogus", "", nil, 422, "validation_failed"},
			{"version=0", "GET", sec + "EXISTING?version=0", "", nil, 422, "validation_failed"},
			{"version=-1", "GET", sec + "EXISTING?version=-1", "", nil, 422, "validation_failed"},
			{"version=abc", "GET", sec + "EXISTING?version=abc", "", nil, 422, "validation_failed"},

			// Routes and methods.
			{"unknown route", "GET", "/api/v1/nope", "", nil, 404, "route_not_found"},
			{"unknown route under a project", "GET", "/api/v1/tenants/default/projects/web/nope", "", nil, 404, "route_not_found"},
			{"unknown route outside the API", "GET", "/nope", "", nil, 404, "route_not_found"},
			{"PUT on /api/v1/tenants", "PUT", tenants, "", j(map[string]string{"slug": "t3", "name": "T3"}), 405, "method_not_allowed"},
			{"DELETE on /api/v1/tenants", "DELETE", tenants, "", nil, 405, "method_not_allowed"},
			{"POST on a secret", "POST", sec + "EXISTING", "", j(map[string]string{"value": "x"}), 405, "method_not_allowed"},
			{"POST on the secret list", "POST", list, "", j(map[string]string{"value": "x"}), 405, "method_not_allowed"},
			{"JSON to the dotenv import", "PUT", list, "", j(map[string]string{"value": "x"}), 415, "unsupported_media"},
			{"DELETE on /api/v1/users", "DELETE", "/api/v1/users", "", nil, 405, "method_not_allowed"},
		}

		for _, c := range cases {
			header := map[string]string{"Authorization": "Bearer " + s.owner}
			switch {
			case c.contentType == "-":
			case c.contentType != "":
				header["Content-Type"] = c.contentType
			case c.body != nil:
				header["Content-Type"] = "application/json"
			}
			before := isoSnapshot(t, db)
			r := isoDo(s, c.method, c.path, header, c.body)
			isoCheckError(t, c.name+" ("+c.method+" "+c.path[:min(len(c.path), 120)]+")", r, c.status, c.code)
			if strings.Contains(string(r.raw), big[:1024]) || strings.Contains(string(r.raw), overMiB[:1024]) {
				t.Errorf("%s: the error echoes the body", c.name)
			}
			isoSameSnapshot(t, c.name, before, isoSnapshot(t, db))
		}

		// Nothing was written, as the API tells it too.
		got := s.must(http.StatusOK, "GET", sec+"EXISTING", s.owner, nil)
		if got.body["value"] != existing || got.body["version"] != float64(2) || got.body["note"] != "" {
			t.Errorf("EXISTING after bad inputs = %s", got.raw)
		}
		if vs := s.must(http.StatusOK, "GET", sec+"EXISTING/versions", s.owner, nil).items(); len(vs) != 2 {
			t.Errorf("EXISTING has %d versions, want 2", len(vs))
		}
		if items := s.must(http.StatusOK, "GET", list+"?include=deleted", s.owner, nil).items(); len(items) != 1 || items[0]["name"] != "EXISTING" {
			t.Errorf("development secrets after bad inputs = %v", items)
		}
		if ps := s.must(http.StatusOK, "GET", projects, s.owner, nil).items(); len(ps) != 1 || ps[0]["slug"] != "web" || ps[0]["name"] != "Web" {
			t.Errorf("projects after bad inputs = %v", ps)
		}
		if ts := s.must(http.StatusOK, "GET", tenants, s.owner, nil).items(); len(ts) != 1 || ts[0]["slug"] != "default" || ts[0]["name"] != "Default" {
			t.Errorf("tenants after bad inputs = %v", ts)
		}
		if es := s.must(http.StatusOK, "GET", envs, s.owner, nil).items(); len(es) != 3 {
			t.Errorf("environments after bad inputs = %v", es)
		}

		// The limits are exactly where they are documented.
		s.must(http.StatusCreated, "PUT", sec+"MAX_VALUE", s.owner, map[string]string{"value": big[:65536], "note": strings.Repeat("n", 1024)})
		s.must(http.StatusCreated, "PUT", sec+"_"+strings.Repeat("A", 255), s.owner, map[string]string{"value": "x"})
		ok := isoDo(s, "PUT", sec+"CHARSET", map[string]string{"Authorization": "Bearer " + s.owner, "Content-Type": "application/json; charset=utf-8"}, []byte(`{"value":"x"}`))
		if ok.status != http.StatusCreated {
			t.Errorf("application/json with a charset: %d %s", ok.status, ok.raw)
		}
		s.must(http.StatusCreated, "POST", tenants, s.owner, map[string]string{"slug": strings.Repeat("a", 63), "name": "Long slug"})
		s.must(http.StatusOK, "GET", list+"?limit=1000", s.owner, nil)
		first := s.must(http.StatusOK, "GET", list+"?limit=1", s.owner, nil)
		cursor, _ := first.body["next_cursor"].(string)
		if len(first.items()) != 1 || cursor == "" {
			t.Fatalf("first page = %s", first.raw)
		}
		if next := s.must(http.StatusOK, "GET", list+"?limit=1&cursor="+cursor, s.owner, nil).items(); len(next) != 1 || next[0]["name"] == first.items()[0]["name"] {
			t.Errorf("second page = %v", next)
		}
	})
}
