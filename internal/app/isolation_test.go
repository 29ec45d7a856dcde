package app_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
)

// isoTables are the tables whose contents every denied or invalid request must leave alone.
// api_tokens is included without last_used_at, which any authenticated request may touch.
var isoTables = []string{
	"tenants", "tenant_members", "users", "api_tokens", "projects", "project_members",
	"environments", "environment_access", "data_keys", "secrets", "secret_versions", "audit_entries",
	"invitations", "tenant_idps", "user_identities", "audit_checkpoints", "audit_tree_hashes", "audit_signing_keys",
}

// isoSnapshot reads every row of isoTables, as sorted strings per table.
func isoSnapshot(t *testing.T, db *sql.DB) map[string][]string {
	t.Helper()
	return snapshotTables(t, db, isoTables)
}

// snapshotTables reads every row of the tables, as sorted strings per table; api_tokens'
// last_used_at is left out (every authenticated request moves it), and so are audit entries
// of refused attempts (outcome denied), which a refusal writes by design: what the tests
// compare is that a refusal changes nothing else.
func snapshotTables(t *testing.T, db *sql.DB, tables []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, table := range tables {
		query := "SELECT * FROM " + table
		if table == "audit_entries" {
			query += " WHERE outcome <> 'denied'"
		}
		rows, err := db.Query(query)
		if err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("snapshot %s: %v", table, err)
			}
			var b strings.Builder
			for i, c := range cols {
				if table == "api_tokens" && c == "last_used_at" {
					continue
				}
				v := vals[i]
				if bs, ok := v.([]byte); ok {
					v = fmt.Sprintf("%x", bs)
				}
				fmt.Fprintf(&b, "%s=%v|", c, v)
			}
			lines = append(lines, b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		rows.Close()
		sort.Strings(lines)
		out[table] = lines
	}
	return out
}

// isoSameSnapshot fails the test when anything in the database differs between two snapshots.
func isoSameSnapshot(t *testing.T, what string, before, after map[string][]string) {
	t.Helper()
	sameTables(t, what, isoTables, before, after)
}

// sameTables fails the test when any of the tables differs between two snapshots.
func sameTables(t *testing.T, what string, tables []string, before, after map[string][]string) {
	t.Helper()
	for _, table := range tables {
		b, a := before[table], after[table]
		if strings.Join(b, "\n") == strings.Join(a, "\n") {
			continue
		}
		t.Errorf("%s changed table %s: %d rows before, %d after", what, table, len(b), len(a))
		seen := map[string]bool{}
		for _, l := range b {
			seen[l] = true
		}
		for _, l := range a {
			if !seen[l] {
				t.Errorf("  new or changed row in %s: %s", table, l)
			}
		}
	}
}

// isoDo sends a request with exactly the given headers and raw body.
func isoDo(s *server, method, path string, header map[string]string, body []byte) response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return s.send(req)
}

// isoCheckError checks status, code and the exact error shape: one top-level key "error"
// holding exactly the strings code, message and request_id, the last equal to X-Request-ID.
// It reports with Errorf and returns whether everything held.
func isoCheckError(t *testing.T, what string, r response, status int, code string) bool {
	t.Helper()
	ok := true
	if r.status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, status, r.raw)
		ok = false
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json: %s", what, ct, r.raw)
		return false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.raw, &top); err != nil || len(top) != 1 || top["error"] == nil {
		t.Errorf("%s: body is not exactly {\"error\":{...}}: %s", what, r.raw)
		return false
	}
	var e map[string]any
	if err := json.Unmarshal(top["error"], &e); err != nil || len(e) != 3 {
		t.Errorf("%s: error is not an object of exactly code, message, request_id: %s", what, r.raw)
		return false
	}
	for _, k := range []string{"code", "message", "request_id"} {
		if v, isStr := e[k].(string); !isStr || v == "" {
			t.Errorf("%s: error.%s is not a non-empty string: %s", what, k, r.raw)
			ok = false
		}
	}
	if e["code"] != code {
		t.Errorf("%s: code %v, want %s: %s", what, e["code"], code, r.raw)
		ok = false
	}
	if hdr := r.header.Get("X-Request-ID"); hdr == "" || e["request_id"] != hdr {
		t.Errorf("%s: request_id %v differs from X-Request-ID %q", what, e["request_id"], hdr)
		ok = false
	}
	return ok
}

// isoRoute is one documented operation under /api/v1/tenants/{tenant}.
type isoRoute struct {
	method, path string // path with {params}
}

var isoOpMethods = map[string]string{
	"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "patch": "PATCH",
	"head": "HEAD", "options": "OPTIONS", "trace": "TRACE",
}

// isoTenantRoutes lists every documented operation under /api/v1/tenants/{tenant}, taken from
// the OpenAPI document that another test keeps equal to the route table. Deletes come last,
// deepest first, so that a broken check shows on the narrowest route first.
func isoTenantRoutes(t *testing.T) []isoRoute {
	t.Helper()
	raw, err := os.ReadFile("../httpapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	const prefix = "/api/v1/tenants/{tenant}"
	var routes []isoRoute
	for p, item := range doc.Paths {
		if p != prefix && !strings.HasPrefix(p, prefix+"/") {
			continue
		}
		for k := range item {
			if m, ok := isoOpMethods[k]; ok {
				routes = append(routes, isoRoute{m, p})
			}
		}
	}
	if len(routes) < 20 {
		t.Fatalf("only %d tenant routes in openapi.json; is the document complete?", len(routes))
	}
	sort.Slice(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if (a.method == "DELETE") != (b.method == "DELETE") {
			return b.method == "DELETE"
		}
		if a.method == "DELETE" && len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		if a.path != b.path {
			return a.path < b.path
		}
		return a.method < b.method
	})
	return routes
}

// isoTarget names the objects of the tenant under attack and the attacker.
type isoTarget struct {
	tenant, project, env, secret, userID string
	job                                  string // a key job of the tenant
	invitation                           string // a pending invitation of the tenant
	attackerEmail                        string
}

func (x isoTarget) fill(t *testing.T, path, tenantSlug string) string {
	t.Helper()
	out := strings.NewReplacer("{tenant}", tenantSlug, "{project}", x.project, "{env}", x.env,
		"{name}", x.secret, "{user}", x.userID, "{id}", x.job, "{invitation}", x.invitation).Replace(path)
	if strings.ContainsAny(out, "{}") {
		t.Fatalf("route %s has a parameter this test does not know; teach it", path)
	}
	return out
}

// body is a plausible, valid request body for an operation, as a member would send it.
func (x isoTarget) body(r isoRoute) any {
	rel := strings.TrimPrefix(r.path, "/api/v1/tenants/{tenant}")
	switch r.method + " " + rel {
	case "PATCH ":
		return map[string]any{"name": "Hijacked"}
	case "POST /invitations":
		return map[string]any{"email": x.attackerEmail, "role": "owner"}
	case "POST /projects":
		return map[string]any{"slug": "hijack", "name": "Hijack"}
	case "PATCH /projects/{project}":
		return map[string]any{"name": "Hijacked"}
	case "POST /projects/{project}/members":
		return map[string]any{"email": x.attackerEmail, "role": "admin", "environments": map[string]string{"production": "write"}}
	case "POST /projects/{project}/environments":
		return map[string]any{"slug": "hijack", "name": "Hijack", "protected": false}
	case "PATCH /projects/{project}/environments/{env}":
		return map[string]any{"name": "Hijacked", "protected": true}
	case "PATCH /projects/{project}/environments/{env}/secrets":
		return map[string]any{"secrets": []map[string]any{{"name": x.secret, "value": "hijacked"}, {"name": "PLANTED", "value": "hijacked"}}}
	case "PUT /projects/{project}/environments/{env}/secrets/{name}":
		return map[string]any{"value": "hijacked", "note": "hijacked"}
	case "POST /projects/{project}/environments/{env}/secrets/{name}/rollback":
		return map[string]any{"version": 1}
	case "PUT /keys/kek":
		return map[string]any{"key_id": "arn:aws:kms:us-east-1:111122223333:key/0b6c7d1e-2f3a-4b5c-9d8e-7f6a5b4c3d2e"}
	case "POST /keys/rotate":
		return map[string]any{"project": x.project, "environment": x.env}
	case "PUT /idp":
		return map[string]any{"issuer": "https://idp.example.com", "client_id": "hijack", "client_secret": "hijack", "required": true}
	}
	switch r.method {
	case "POST", "PUT", "PATCH":
		return map[string]any{}
	}
	return nil
}

// isoAttack sends every tenant route, and a few query variants, against x.tenant with token,
// which belongs to a user who is not a member of it. Every one must be 404 not_found exactly
// like the same request against a tenant that does not exist, and no answer may hold any of
// the secret strings.
func isoAttack(t *testing.T, s *server, token string, x isoTarget, secretStrings ...string) {
	t.Helper()
	routes := isoTenantRoutes(t)
	type req struct {
		route isoRoute
		query string
	}
	var reqs []req
	for _, r := range routes {
		reqs = append(reqs, req{r, ""})
		if r.method == "GET" && strings.HasSuffix(r.path, "/secrets") {
			reqs = append(reqs, req{r, "?include=values"}, req{r, "?include=deleted"})
		}
		if r.method == "GET" && strings.HasSuffix(r.path, "/secrets/{name}") {
			reqs = append(reqs, req{r, "?version=1"})
		}
	}
	for _, rq := range reqs {
		path := x.fill(t, rq.route.path, x.tenant) + rq.query
		what := rq.route.method + " " + path + " as a non-member"
		r := s.call(rq.route.method, path, token, x.body(rq.route))
		isoCheckError(t, what, r, http.StatusNotFound, "not_found")
		for _, secret := range secretStrings {
			if bytes.Contains(r.raw, []byte(secret)) {
				t.Errorf("%s: the answer holds %q: %s", what, secret, r.raw)
			}
		}
		// Not a member and not there must be indistinguishable.
		ghost := s.call(rq.route.method, x.fill(t, rq.route.path, "no-such-tenant")+rq.query, token, x.body(rq.route))
		if ghost.status != r.status || ghost.errCode() != r.errCode() || isoMessage(ghost) != isoMessage(r) {
			t.Errorf("%s: answer %d %s differs from a missing tenant's %d %s: the tenant's existence leaks", what, r.status, r.raw, ghost.status, ghost.raw)
		}
	}
}

func isoMessage(r response) string {
	e, _ := r.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// isoGetAll reads the given paths and returns their raw answers, failing unless each is 200.
func isoGetAll(s *server, token string, paths []string) map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, p := range paths {
		out[p] = string(s.must(http.StatusOK, "GET", p, token, nil).raw)
	}
	return out
}

func isoUserID(s *server, token string) (id, email string) {
	s.t.Helper()
	me := s.must(http.StatusOK, "GET", "/api/v1/me", token, nil)
	u, _ := me.body["user"].(map[string]any)
	id, _ = u["id"].(string)
	email, _ = u["email"].(string)
	if id == "" || email == "" {
		s.t.Fatalf("/api/v1/me has no user id or e-mail: %s", me.raw)
	}
	return id, email
}

func isoTenantSlugs(s *server, token string) []string {
	s.t.Helper()
	var slugs []string
	for _, it := range s.must(http.StatusOK, "GET", "/api/v1/tenants", token, nil).items() {
		slug, _ := it["slug"].(string)
		slugs = append(slugs, slug)
	}
	return slugs
}

func TestTenantIsolationEveryRoute(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()
		ownerID, ownerEmail := isoUserID(s, s.owner)

		// Tenant "default": the owner's, with a project and a secret of its own.
		s.withProject()
		const defaultValue = "default-tenant-value-6b1d0f"
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/DEFAULT_KEY", s.owner, map[string]string{"value": defaultValue})

		// Tenant "other": a second user's, with a project, a secret and a second member.
		bob := s.newUser("bob@other.example")
		bobID, bobEmail := isoUserID(s, bob)
		carol := s.newUser("carol@other.example")
		carolID, _ := isoUserID(s, carol)
		s.must(http.StatusCreated, "POST", "/api/v1/tenants", bob, map[string]string{"slug": "other", "name": "Other Tenant"})
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/other/projects", bob, map[string]string{"slug": "app", "name": "App"})
		s.join(bob, "other", carol, "carol@other.example", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/other/projects/app/members", bob, map[string]any{"email": "carol@other.example", "role": "developer"})
		const otherPath = "/api/v1/tenants/other/projects/app/environments/"
		const otherValue = "tenant-b-value-c0ffee-4a7e"
		s.must(http.StatusCreated, "PUT", otherPath+"development/secrets/DB_PASSWORD", bob, map[string]string{"value": otherValue, "note": "tenant b"})
		if got := s.must(http.StatusOK, "GET", otherPath+"development/secrets/DB_PASSWORD", carol, nil); got.body["value"] != otherValue {
			t.Fatalf("carol cannot read tenant b's secret: %s", got.raw)
		}

		otherReads := []string{
			"/api/v1/tenants/other",
			"/api/v1/tenants/other/members",
			"/api/v1/tenants/other/projects",
			"/api/v1/tenants/other/projects/app",
			"/api/v1/tenants/other/projects/app/members",
			"/api/v1/tenants/other/projects/app/environments",
			otherPath + "development",
			otherPath + "staging",
			otherPath + "production",
			otherPath + "development/secrets?include=deleted",
			otherPath + "development/secrets/DB_PASSWORD",
			otherPath + "development/secrets/DB_PASSWORD/versions",
		}
		defaultReads := []string{
			"/api/v1/tenants/default",
			"/api/v1/tenants/default/members",
			"/api/v1/tenants/default/projects",
			"/api/v1/tenants/default/projects/web",
			"/api/v1/tenants/default/projects/web/environments",
			envPath + "development",
			envPath + "development/secrets?include=deleted",
			envPath + "development/secrets/DEFAULT_KEY",
			envPath + "development/secrets/DEFAULT_KEY/versions",
		}
		// A finished key job in each tenant, so the job route has a real target.
		otherJob := s.rotateAndWait(bob, "other", "app", "development")
		defaultJob := s.rotateAndWait(s.owner, "default", "web", "development")
		// (GET …/keys is not compared: its age_seconds moves with the clock.)
		otherReads = append(otherReads, "/api/v1/tenants/other/keys/jobs/"+otherJob)
		defaultReads = append(defaultReads, "/api/v1/tenants/default/keys/jobs/"+defaultJob)
		// A pending invitation in each tenant, so the revoke route has a real target.
		otherInv, _ := s.must(http.StatusCreated, "POST", "/api/v1/tenants/other/invitations", bob, map[string]string{"email": "dave@other.example", "role": "admin"}).body["id"].(string)
		defaultInv, _ := s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/invitations", s.owner, map[string]string{"email": "erin@default.example", "role": "member"}).body["id"].(string)
		otherReads = append(otherReads, "/api/v1/tenants/other/invitations")
		defaultReads = append(defaultReads, "/api/v1/tenants/default/invitations")
		// An identity provider in each tenant, so its routes have a real target.
		s.must(http.StatusCreated, "PUT", "/api/v1/tenants/other/idp", bob, map[string]any{"issuer": "https://idp.other.example", "client_id": "other", "client_secret": "other-client-secret"})
		s.must(http.StatusCreated, "PUT", "/api/v1/tenants/default/idp", s.owner, map[string]any{"issuer": "https://idp.default.example", "client_id": "default", "client_secret": "default-client-secret"})
		otherReads = append(otherReads, "/api/v1/tenants/other/idp")
		defaultReads = append(defaultReads, "/api/v1/tenants/default/idp")
		otherBefore := isoGetAll(s, bob, otherReads)
		defaultBefore := isoGetAll(s, s.owner, defaultReads)

		// The owner of "default", an instance admin, is a stranger to "other".
		before := isoSnapshot(t, db)
		isoAttack(t, s, s.owner, isoTarget{tenant: "other", project: "app", env: "development", secret: "DB_PASSWORD", userID: bobID, job: otherJob, invitation: otherInv, attackerEmail: ownerEmail},
			otherValue, "Other Tenant", bobEmail)
		isoSameSnapshot(t, "requests from a non-member of tenant other", before, isoSnapshot(t, db))

		// And bob is a stranger to "default".
		before = isoSnapshot(t, db)
		isoAttack(t, s, bob, isoTarget{tenant: "default", project: "web", env: "development", secret: "DEFAULT_KEY", userID: ownerID, job: defaultJob, invitation: defaultInv, attackerEmail: bobEmail},
			defaultValue, ownerEmail)
		isoSameSnapshot(t, "requests from a non-member of tenant default", before, isoSnapshot(t, db))

		// Nothing changed, as tenant b's own users see it.
		otherAfter := isoGetAll(s, bob, otherReads)
		for _, p := range otherReads {
			if otherBefore[p] != otherAfter[p] {
				t.Errorf("GET %s changed:\nbefore %s\nafter  %s", p, otherBefore[p], otherAfter[p])
			}
		}
		defaultAfter := isoGetAll(s, s.owner, defaultReads)
		for _, p := range defaultReads {
			if defaultBefore[p] != defaultAfter[p] {
				t.Errorf("GET %s changed:\nbefore %s\nafter  %s", p, defaultBefore[p], defaultAfter[p])
			}
		}
		sec := s.must(http.StatusOK, "GET", otherPath+"development/secrets/DB_PASSWORD", bob, nil)
		if sec.body["value"] != otherValue || sec.body["version"] != float64(1) {
			t.Errorf("tenant b's secret after the attack = %s, want version 1 with its value", sec.raw)
		}
		if vs := s.must(http.StatusOK, "GET", otherPath+"development/secrets/DB_PASSWORD/versions", bob, nil).items(); len(vs) != 1 {
			t.Errorf("tenant b's secret has %d versions, want 1", len(vs))
		}
		if names := s.must(http.StatusOK, "GET", otherPath+"development/secrets?include=deleted", bob, nil).items(); len(names) != 1 {
			t.Errorf("tenant b's development environment has %d secrets, want 1", len(names))
		}
		if p := s.must(http.StatusOK, "GET", "/api/v1/tenants/other/projects/app", bob, nil); p.body["name"] != "App" {
			t.Errorf("tenant b's project = %s", p.raw)
		}
		if ps := s.must(http.StatusOK, "GET", "/api/v1/tenants/other/projects", bob, nil).items(); len(ps) != 1 || ps[0]["slug"] != "app" {
			t.Errorf("tenant b's projects = %v", ps)
		}
		members := map[string]string{}
		for _, m := range s.must(http.StatusOK, "GET", "/api/v1/tenants/other/members", bob, nil).items() {
			id, _ := m["user_id"].(string)
			role, _ := m["role"].(string)
			members[id] = role
		}
		if len(members) != 2 || members[bobID] != "owner" || members[carolID] != "member" {
			t.Errorf("tenant b's members = %v, want bob as owner and carol as member", members)
		}
		if ten := s.must(http.StatusOK, "GET", "/api/v1/tenants/other", bob, nil); ten.body["name"] != "Other Tenant" || ten.body["role"] != "owner" {
			t.Errorf("tenant b = %s", ten.raw)
		}
		envs := s.must(http.StatusOK, "GET", "/api/v1/tenants/other/projects/app/environments", bob, nil).items()
		if len(envs) != 3 {
			t.Errorf("tenant b's project has %d environments, want 3", len(envs))
		}
		for _, e := range envs {
			if e["name"] == "Hijacked" || e["slug"] == "hijack" || (e["slug"] == "production") != (e["protected"] == true) {
				t.Errorf("tenant b's environment changed: %v", e)
			}
		}

		// Listings show each user only their own tenants.
		for _, slug := range isoTenantSlugs(s, s.owner) {
			if slug == "other" {
				t.Error("GET /api/v1/tenants lists tenant other to the owner of default")
			}
		}
		if slugs := isoTenantSlugs(s, bob); len(slugs) != 1 || slugs[0] != "other" {
			t.Errorf("bob's tenants = %v, want [other]", slugs)
		}
		if slugs := isoTenantSlugs(s, carol); len(slugs) != 1 || slugs[0] != "other" {
			t.Errorf("carol's tenants = %v, want [other]", slugs)
		}
	})
}

// isoJoin makes a user a member of tenant default and, with a project role, of project web.
func isoJoin(s *server, email, projectRole string, envs map[string]string) string {
	s.t.Helper()
	tok := s.newUser(email)
	s.join(s.owner, "default", tok, email, "member")
	if projectRole != "" {
		isoSetProjectRole(s, s.owner, email, projectRole, envs)
	}
	return tok
}

func isoSetProjectRole(s *server, token, email, role string, envs map[string]string) {
	s.t.Helper()
	body := map[string]any{"email": email, "role": role}
	if envs != nil {
		body["environments"] = envs
	}
	s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", token, body)
}

func TestViewerNeverReceivesValues(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		db := s.rawDB()
		viewer := isoJoin(s, "viewer@example.com", "viewer", nil)

		envs := []string{"development", "staging", "production"}
		var values []string
		for _, env := range envs {
			for v := 1; v <= 2; v++ {
				value := fmt.Sprintf("viewer-canary-%s-v%d-91e2", env, v)
				values = append(values, value)
				s.must(map[int]int{1: http.StatusCreated, 2: http.StatusOK}[v], "PUT", envPath+env+"/secrets/SHOWN", s.owner, map[string]string{"value": value, "note": "note " + env})
			}
			s.must(http.StatusCreated, "PUT", envPath+env+"/secrets/GONE", s.owner, map[string]string{"value": "viewer-canary-gone-" + env})
			values = append(values, "viewer-canary-gone-"+env)
			s.must(http.StatusNoContent, "DELETE", envPath+env+"/secrets/GONE", s.owner, nil)
		}

		noValue := func(what string, r response) {
			t.Helper()
			for _, v := range values {
				if bytes.Contains(r.raw, []byte(v)) {
					t.Errorf("%s: the viewer received a value: %s", what, r.raw)
				}
			}
			if bytes.Contains(r.raw, []byte("viewer-canary")) {
				t.Errorf("%s: the viewer received part of a value: %s", what, r.raw)
			}
		}
		before := isoSnapshot(t, db)
		for _, env := range envs {
			p := envPath + env + "/secrets"
			e := s.must(http.StatusOK, "GET", envPath+env, viewer, nil)
			if e.body["access"] != "metadata" {
				t.Errorf("%s: viewer's access = %v, want metadata", env, e.body["access"])
			}

			for _, q := range []string{"", "?include=deleted"} {
				r := s.must(http.StatusOK, "GET", p+q, viewer, nil)
				noValue("GET "+p+q, r)
				want := map[string]int{"": 1, "?include=deleted": 2}[q]
				if len(r.items()) != want {
					t.Errorf("GET %s%s as viewer: %d items, want %d: %s", p, q, len(r.items()), want, r.raw)
				}
				for _, it := range r.items() {
					if _, has := it["value"]; has {
						t.Errorf("GET %s%s as viewer: an item has a value key: %v", p, q, it)
					}
				}
			}
			vs := s.must(http.StatusOK, "GET", p+"/SHOWN/versions", viewer, nil)
			noValue("versions", vs)
			if items := vs.items(); len(items) != 2 {
				t.Errorf("%s versions as viewer: %s", env, vs.raw)
			} else {
				for _, it := range items {
					for k := range it {
						if k != "version" && k != "note" && k != "created_by" && k != "created_at" && k != "destroyed" {
							t.Errorf("%s versions as viewer: unexpected key %q in %v", env, k, it)
						}
					}
				}
			}

			denied := []struct {
				method, path string
				body         any
			}{
				{"GET", p + "?include=values", nil},
				{"GET", p + "/SHOWN", nil},
				{"GET", p + "/SHOWN?version=1", nil},
				{"GET", p + "/SHOWN?version=2", nil},
				{"GET", p + "/GONE?version=1", nil},
				{"POST", p + "/SHOWN/rollback", map[string]int{"version": 1}},
				{"PUT", p + "/SHOWN", map[string]string{"value": "viewer-wrote-this"}},
				{"PUT", p + "/NEW_ONE", map[string]string{"value": "viewer-wrote-this"}},
				{"PATCH", p, map[string]any{"secrets": []map[string]any{{"name": "SHOWN", "value": "viewer-wrote-this"}}}},
				{"PATCH", p, map[string]any{"secrets": []map[string]any{{"name": "SHOWN", "delete": true}}}},
				{"DELETE", p + "/SHOWN", nil},
				{"POST", p + "/GONE/restore", nil},
			}
			for _, d := range denied {
				what := d.method + " " + d.path + " as viewer"
				r := s.call(d.method, d.path, viewer, d.body)
				isoCheckError(t, what, r, http.StatusForbidden, "forbidden")
				noValue(what, r)
			}
		}
		isoSameSnapshot(t, "the viewer's requests", before, isoSnapshot(t, db))

		// The owner still sees everything as written.
		for _, env := range envs {
			r := s.must(http.StatusOK, "GET", envPath+env+"/secrets/SHOWN", s.owner, nil)
			if r.body["version"] != float64(2) || r.body["value"] != fmt.Sprintf("viewer-canary-%s-v2-91e2", env) {
				t.Errorf("%s SHOWN after the viewer = %s", env, r.raw)
			}
			s.must(http.StatusNotFound, "GET", envPath+env+"/secrets/GONE", s.owner, nil)
		}
	})
}

func TestDeveloperCannotWriteProtected(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		db := s.rawDB()
		const devEmail = "dev@example.com"
		dev := isoJoin(s, devEmail, "developer", nil)
		prod := envPath + "production/secrets/"

		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/DEV_ONE", dev, map[string]string{"value": "d1"})
		s.must(http.StatusOK, "PUT", envPath+"development/secrets/DEV_ONE", dev, map[string]string{"value": "d2"})
		s.must(http.StatusCreated, "PUT", prod+"PROD_KEY", s.owner, map[string]string{"value": "prod-v1"})
		s.must(http.StatusOK, "PUT", prod+"PROD_KEY", s.owner, map[string]string{"value": "prod-v2"})
		s.must(http.StatusCreated, "PUT", prod+"PROD_GONE", s.owner, map[string]string{"value": "gone"})
		s.must(http.StatusNoContent, "DELETE", prod+"PROD_GONE", s.owner, nil)

		if r := s.must(http.StatusOK, "GET", prod+"PROD_KEY", dev, nil); r.body["value"] != "prod-v2" {
			t.Errorf("developer reads production = %s", r.raw)
		}
		if r := s.must(http.StatusOK, "GET", prod+"PROD_KEY?version=1", dev, nil); r.body["value"] != "prod-v1" {
			t.Errorf("developer reads production version 1 = %s", r.raw)
		}
		if items := s.must(http.StatusOK, "GET", envPath+"production/secrets?include=values", dev, nil).items(); len(items) != 1 || items[0]["value"] != "prod-v2" {
			t.Errorf("developer lists production values = %v", items)
		}
		if e := s.must(http.StatusOK, "GET", envPath+"production", dev, nil); e.body["access"] != "read" || e.body["protected"] != true {
			t.Errorf("developer's view of production = %s", e.raw)
		}

		writes := []struct {
			method, path string
			body         any
		}{
			{"PUT", prod + "PROD_KEY", map[string]string{"value": "dev-wrote"}},
			{"PUT", prod + "NEW_KEY", map[string]string{"value": "dev-wrote"}},
			{"PATCH", envPath + "production/secrets", map[string]any{"secrets": []map[string]any{{"name": "PROD_KEY", "value": "dev-wrote"}}}},
			{"PATCH", envPath + "production/secrets", map[string]any{"secrets": []map[string]any{{"name": "PROD_KEY", "delete": true}}}},
			{"DELETE", prod + "PROD_KEY", nil},
			{"POST", prod + "PROD_KEY/rollback", map[string]int{"version": 1}},
			{"POST", prod + "PROD_GONE/restore", nil},
			// Nor may the developer lift the protection or grant themselves more.
			{"PATCH", envPath + "production", map[string]any{"protected": false}},
			{"POST", "/api/v1/tenants/default/projects/web/members", map[string]any{"email": devEmail, "role": "developer", "environments": map[string]string{"production": "write"}}},
			{"POST", "/api/v1/tenants/default/projects/web/members", map[string]any{"email": devEmail, "role": "admin"}},
		}
		before := isoSnapshot(t, db)
		for _, w := range writes {
			isoCheckError(t, w.method+" "+w.path+" as developer", s.call(w.method, w.path, dev, w.body), http.StatusForbidden, "forbidden")
		}
		isoSameSnapshot(t, "the developer's writes to production", before, isoSnapshot(t, db))
		if r := s.must(http.StatusOK, "GET", prod+"PROD_KEY", s.owner, nil); r.body["value"] != "prod-v2" || r.body["version"] != float64(2) {
			t.Errorf("PROD_KEY after the developer = %s", r.raw)
		}
		s.must(http.StatusNotFound, "GET", prod+"PROD_GONE", s.owner, nil)
		s.must(http.StatusNotFound, "GET", prod+"NEW_KEY", s.owner, nil)

		// An override to write lets the developer change production.
		isoSetProjectRole(s, s.owner, devEmail, "developer", map[string]string{"production": "write"})
		if e := s.must(http.StatusOK, "GET", envPath+"production", dev, nil); e.body["access"] != "write" {
			t.Errorf("developer's access to production with a write override = %s", e.raw)
		}
		if r := s.must(http.StatusOK, "PUT", prod+"PROD_KEY", dev, map[string]string{"value": "prod-v3"}); r.body["version"] != float64(3) {
			t.Errorf("developer's write with override = %s", r.raw)
		}
		s.must(http.StatusOK, "POST", prod+"PROD_GONE/restore", dev, nil)

		// An override to none hides staging altogether; overrides are replaced, not merged.
		s.must(http.StatusCreated, "PUT", envPath+"staging/secrets/STG_KEY", s.owner, map[string]string{"value": "stg"})
		isoSetProjectRole(s, s.owner, devEmail, "developer", map[string]string{"staging": "none"})
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", envPath + "staging", nil},
			{"GET", envPath + "staging/secrets", nil},
			{"GET", envPath + "staging/secrets/STG_KEY", nil},
			{"GET", envPath + "staging/secrets/STG_KEY/versions", nil},
			{"PUT", envPath + "staging/secrets/STG_KEY", map[string]string{"value": "dev-wrote"}},
			{"DELETE", envPath + "staging/secrets/STG_KEY", nil},
		} {
			isoCheckError(t, r.method+" "+r.path+" with staging none", s.call(r.method, r.path, dev, r.body), http.StatusNotFound, "not_found")
		}
		seen := map[string]string{}
		for _, e := range s.must(http.StatusOK, "GET", "/api/v1/tenants/default/projects/web/environments", dev, nil).items() {
			slug, _ := e["slug"].(string)
			access, _ := e["access"].(string)
			seen[slug] = access
		}
		if _, ok := seen["staging"]; ok || seen["development"] != "write" || seen["production"] != "read" || len(seen) != 2 {
			t.Errorf("developer's environments with staging none = %v, want development:write production:read", seen)
		}
		isoCheckError(t, "PUT production after the overrides were replaced", s.call("PUT", prod+"PROD_KEY", dev, map[string]string{"value": "x"}), http.StatusForbidden, "forbidden")

		// A tenant member outside the project does not see it.
		stranger := isoJoin(s, "stranger@example.com", "", nil)
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/api/v1/tenants/default/projects/web", nil},
			{"GET", "/api/v1/tenants/default/projects/web/environments", nil},
			{"GET", "/api/v1/tenants/default/projects/web/members", nil},
			{"GET", envPath + "development", nil},
			{"GET", envPath + "development/secrets", nil},
			{"GET", envPath + "development/secrets/DEV_ONE", nil},
			{"PUT", envPath + "development/secrets/DEV_ONE", map[string]string{"value": "stranger"}},
		} {
			isoCheckError(t, r.method+" "+r.path+" as a tenant member outside the project", s.call(r.method, r.path, stranger, r.body), http.StatusNotFound, "not_found")
		}
		for _, p := range s.must(http.StatusOK, "GET", "/api/v1/tenants/default/projects", stranger, nil).items() {
			t.Errorf("a tenant member outside every project lists project %v", p["slug"])
		}

		// A project admin protects staging; the developer may then only read it.
		isoSetProjectRole(s, s.owner, devEmail, "developer", nil)
		admin := isoJoin(s, "padmin@example.com", "admin", nil)
		s.must(http.StatusOK, "PUT", envPath+"staging/secrets/STG_KEY", dev, map[string]string{"value": "stg-dev"})
		if r := s.must(http.StatusOK, "PATCH", envPath+"staging", admin, map[string]any{"protected": true}); r.body["protected"] != true {
			t.Errorf("protect staging = %s", r.raw)
		}
		before = isoSnapshot(t, db)
		isoCheckError(t, "PUT staging after protection", s.call("PUT", envPath+"staging/secrets/STG_KEY", dev, map[string]string{"value": "x"}), http.StatusForbidden, "forbidden")
		isoCheckError(t, "DELETE staging after protection", s.call("DELETE", envPath+"staging/secrets/STG_KEY", dev, nil), http.StatusForbidden, "forbidden")
		isoSameSnapshot(t, "the developer's writes to protected staging", before, isoSnapshot(t, db))
		if r := s.must(http.StatusOK, "GET", envPath+"staging/secrets/STG_KEY", dev, nil); r.body["value"] != "stg-dev" || r.body["version"] != float64(2) {
			t.Errorf("STG_KEY = %s", r.raw)
		}
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/STILL_OK", dev, map[string]string{"value": "fine"})
	})
}

func TestTokenRevocationAndAuthFailures(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()
		user := s.newUser("user@example.com")

		created := s.must(http.StatusCreated, "POST", "/api/v1/tokens", user, map[string]any{"name": "ci", "expires_in_days": 30})
		id, _ := created.body["id"].(string)
		secret, _ := created.body["token"].(string)
		prefix, _ := created.body["prefix"].(string)
		if id == "" || !strings.HasPrefix(secret, "cfr_pat_") || prefix == "" || !strings.HasPrefix(secret, prefix) || len(prefix) >= len(secret)/2 {
			t.Fatalf("created token = %s", created.raw)
		}
		if me := s.must(http.StatusOK, "GET", "/api/v1/me", secret, nil); me.body["token_id"] != id {
			t.Errorf("/me with the new token = %s", me.raw)
		}

		// The secret is shown once: listings carry the prefix only.
		list := s.must(http.StatusOK, "GET", "/api/v1/tokens", user, nil)
		if bytes.Contains(list.raw, []byte(secret)) || bytes.Contains(list.raw, []byte(user)) || bytes.Contains(list.raw, []byte(secret[len(prefix):])) {
			t.Errorf("the token list holds a token: %s", list.raw)
		}
		found := false
		for _, it := range list.items() {
			if _, has := it["token"]; has {
				t.Errorf("a listed token has a token field: %v", it)
			}
			if it["id"] == id {
				found = true
				if it["prefix"] != prefix {
					t.Errorf("listed prefix %v, want %s", it["prefix"], prefix)
				}
			}
		}
		if !found || len(list.items()) != 2 {
			t.Errorf("the token list = %s, want the first token and ci", list.raw)
		}

		// Another user cannot revoke it.
		other := s.newUser("other@example.com")
		isoCheckError(t, "revoke another user's token", s.call("DELETE", "/api/v1/tokens/"+id, other, nil), http.StatusNotFound, "not_found")
		s.must(http.StatusOK, "GET", "/api/v1/me", secret, nil)

		// Revoked means refused on the very next request.
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+id, user, nil)
		r := s.call("GET", "/api/v1/me", secret, nil)
		isoCheckError(t, "the revoked token", r, http.StatusUnauthorized, "unauthorized")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 for a revoked token without WWW-Authenticate")
		}
		isoCheckError(t, "the revoked token on a tenant route", s.call("GET", "/api/v1/tenants", secret, nil), http.StatusUnauthorized, "unauthorized")
		isoCheckError(t, "revoking twice", s.call("DELETE", "/api/v1/tokens/"+id, user, nil), http.StatusNotFound, "not_found")
		s.must(http.StatusOK, "GET", "/api/v1/me", user, nil)

		unknown := newToken(t)
		headers := []struct {
			name   string
			header map[string]string
		}{
			{"no Authorization", nil},
			{"empty Authorization", map[string]string{"Authorization": ""}},
			{"Bearer alone", map[string]string{"Authorization": "Bearer"}},
			{"Bearer and a space", map[string]string{"Authorization": "Bearer "}},
			{"malformed token", map[string]string{"Authorization": "Bearer not-a-token"}},
			{"token without scheme", map[string]string{"Authorization": unknown}},
			{"Basic", map[string]string{"Authorization": "Basic dXNlckBleGFtcGxlLmNvbTpwYXNzd29yZA=="}},
			{"Basic with a real token", map[string]string{"Authorization": "Basic " + user}},
			{"Token scheme", map[string]string{"Authorization": "Token " + user}},
			{"well-formed unknown token", map[string]string{"Authorization": "Bearer " + unknown}},
			{"real token with a trailing character", map[string]string{"Authorization": "Bearer " + user + "x"}},
		}
		before := isoSnapshot(t, db)
		for _, h := range headers {
			for _, path := range []string{"/api/v1/me", "/api/v1/tenants/default", "/api/v1/tokens"} {
				r := isoDo(s, "GET", path, h.header, nil)
				isoCheckError(t, h.name+" on "+path, r, http.StatusUnauthorized, "unauthorized")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s on %s: WWW-Authenticate = %q", h.name, path, r.header.Get("WWW-Authenticate"))
				}
			}
		}
		hdr := map[string]string{"Authorization": "Bearer " + unknown, "Content-Type": "application/json"}
		isoCheckError(t, "create a user with an unknown token", isoDo(s, "POST", "/api/v1/users", hdr, []byte(`{"email":"x@example.com","name":"x"}`)), http.StatusUnauthorized, "unauthorized")

		// Only instance admins create users.
		isoCheckError(t, "a non-admin creates a user", s.call("POST", "/api/v1/users", user, map[string]string{"email": "eve@example.com", "name": "Eve"}), http.StatusForbidden, "forbidden")
		isoSameSnapshot(t, "unauthenticated and forbidden requests", before, isoSnapshot(t, db))
	})
}
