package app_test

import (
	"database/sql"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestReadIsOneQueryAndOneUnwrap counts the statements an audited read of a whole environment
// runs on a replica whose caches are cold: one query for the latest versions and one data key
// load, the same whether the environment holds ten secrets or a hundred; and on a warm replica
// only the token-and-scope query and the audit append, until any replica changes a secret.
func TestReadIsOneQueryAndOneUnwrap(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		write := func(env string, n int) {
			var list []map[string]any
			for i := range n {
				list = append(list, map[string]any{"name": "S_" + itoa(i), "value": "value-" + itoa(i)})
			}
			s.must(200, "PATCH", envPath+env+"/secrets", s.owner, map[string]any{"secrets": list})
		}
		write("development", 10)
		write("staging", 100)

		// A second replica on the same database: nothing cached yet.
		r := startOn(t, s.dialect, s.dbURL, s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
		r.owner = s.owner
		// The first use of a token on a replica records last-used; do it outside the counts.
		r.must(200, "GET", "/api/v1/me", r.owner, nil)
		// On Postgres the scope cache serves once the replica's listener has proven it hears
		// the others; wait for that, so that the counts below do not depend on when it did.
		for deadline := time.Now().Add(10 * time.Second); r.app.Scopes.Fresh != nil && !r.app.Scopes.Fresh(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the replica's listener was not up 10 s after start")
			}
		}
		read := func(env string, want int) ([]string, []map[string]any) {
			t.Helper()
			r.queries.record()
			items := r.must(200, "GET", envPath+env+"/secrets?include=values&limit=1000", r.owner, nil).items()
			q := r.queries.stop()
			if len(items) != want || items[want-1]["value"] == nil {
				t.Fatalf("%s: %d items, want %d with values", env, len(items), want)
			}
			return q, items
		}
		count := func(qs []string, substr string) int {
			n := 0
			for _, q := range qs {
				if strings.Contains(q, substr) {
					n++
				}
			}
			return n
		}
		// The audit chain: on SQLite every append reads and moves the head (two statements, in
		// process). On Postgres a replica appends in one statement after the head it last saw;
		// the first append, or one after another replica wrote, takes the head's lock (one
		// statement more), then reads the head to remember it (one more), after the single
		// statement found the head moved (one more, which names audit_entries too).
		type chainCost struct{ extra, appends int }
		cost := map[string]map[string]chainCost{
			"sqlite":   {"first": {2, 1}, "next": {2, 1}, "moved": {2, 1}},
			"postgres": {"first": {2, 1}, "next": {0, 1}, "moved": {3, 2}},
		}[s.dialect]
		expect := func(name, chain string, qs []string, total, scopes, lists, keys int) {
			t.Helper()
			c := cost[chain]
			total += c.extra
			if len(qs) != total || count(qs, "token_hash") != scopes || count(qs, "FROM secrets s") != lists || count(qs, "FROM data_keys") != keys || count(qs, "audit_entries") != c.appends {
				t.Errorf("%s: %d statements (%d scopes, %d listings, %d key loads, %d audit), want %d (%d, %d, %d, %d):\n%s",
					name, len(qs), count(qs, "token_hash"), count(qs, "FROM secrets s"), count(qs, "FROM data_keys"), count(qs, "audit_entries"),
					total, scopes, lists, keys, c.appends, strings.Join(qs, "\n"))
			}
		}
		// Cold: token and scope, the latest versions, the data key, the audit entry.
		q, _ := read("staging", 100)
		expect("cold read of 100", "first", q, 4, 1, 1, 1)
		q, _ = read("development", 10)
		expect("cold read of 10", "next", q, 4, 1, 1, 1)
		// Warm: the scope comes from the replica's scope cache, and shows the environment
		// unchanged, so neither the listing nor the key is read again; the reveal is still
		// audited.
		q, _ = read("staging", 100)
		expect("warm read of 100", "next", q, 1, 0, 0, 0)

		// Another replica changes a secret: a read here sees it within a second (Postgres
		// tells this replica at once; on SQLite a scope is kept a second at most). The read
		// that first sees it looked the scope and the listing up again.
		s.must(200, "PUT", envPath+"staging/secrets/S_99", s.owner, map[string]string{"value": "changed elsewhere"})
		for i, deadline := 0, time.Now().Add(2*time.Second); ; i++ {
			q, items := read("staging", 100)
			if items[99]["value"] == "changed elsewhere" && items[99]["version"] == float64(2) {
				chain := "next"
				if i == 0 {
					chain = "moved" // the first append here since the other replica's
				}
				expect("read after a change", chain, q, 3, 1, 1, 0)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a replica still serves a stale listing 2 s after a change: %v", items[99])
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.must(http.StatusNoContent, "DELETE", envPath+"staging/secrets/S_0", s.owner, nil)
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			n := len(r.must(200, "GET", envPath+"staging/secrets?include=values&limit=1000", r.owner, nil).items())
			if n == 99 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("2 s after a delete elsewhere the listing has %d items, want 99", n)
			}
		}
	})
}

// blockAudit makes every audit insert fail, as a full disk or a broken table would.
func blockAudit(t *testing.T, s *server, db *sql.DB) (unblock func()) {
	t.Helper()
	stmts := []string{`CREATE TRIGGER audit_block BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'audit blocked by test'); END`}
	undo := []string{`DROP TRIGGER audit_block`}
	if s.dialect == "postgres" {
		stmts = []string{
			`CREATE FUNCTION audit_block() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit blocked by test'; END; $$`,
			`CREATE TRIGGER audit_block BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_block()`,
		}
		undo = []string{`DROP TRIGGER audit_block ON audit_entries`, `DROP FUNCTION audit_block()`}
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("block audit: %v", err)
		}
	}
	return func() {
		for _, q := range undo {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("unblock audit: %v", err)
			}
		}
	}
}

func TestAuditFailureFailsClosed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		p := envPath + "development/secrets/"
		s.must(http.StatusCreated, "PUT", p+"TOKEN", s.owner, map[string]string{"value": "v1-value"})
		unblock := blockAudit(t, s, s.rawDB())

		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"PUT", p + "TOKEN", map[string]string{"value": "v2-value"}},
			{"PUT", p + "NEW", map[string]string{"value": "new-value"}},
			{"DELETE", p + "TOKEN", nil},
			{"GET", p + "TOKEN", nil},
			{"GET", envPath + "development/secrets?include=values", nil},
			{"POST", "/api/v1/tenants/default/projects", map[string]string{"slug": "other", "name": "Other"}},
		} {
			r := s.call(c.method, c.path, s.owner, c.body)
			if r.status != http.StatusServiceUnavailable || r.errCode() != "unavailable" || !strings.Contains(r.body["error"].(map[string]any)["message"].(string), "audit") {
				t.Errorf("%s %s with audit down: %d %s, want 503 naming the audit log", c.method, c.path, r.status, r.raw)
			}
			if strings.Contains(string(r.raw), "-value") {
				t.Errorf("%s %s with audit down leaked a value: %s", c.method, c.path, r.raw)
			}
		}
		unblock()
		got := s.must(200, "GET", p+"TOKEN", s.owner, nil)
		if got.body["value"] != "v1-value" || got.body["version"] != float64(1) {
			t.Fatalf("a refused change took effect: %s", got.raw)
		}
		s.must(404, "GET", p+"NEW", s.owner, nil)
		s.must(404, "GET", "/api/v1/tenants/default/projects/other", s.owner, nil)
	})
}

func TestDatabaseDownAnswers503AndRecovers(t *testing.T) {
	s := start(t, "postgres", nil)
	s.withProject()
	s.must(http.StatusCreated, "PUT", envPath+"development/secrets/K", s.owner, map[string]string{"value": "v"})

	setConnections := func(allow bool) {
		t.Helper()
		if err := storetest.AllowConnections(s.dbURL, allow); err != nil {
			t.Fatal(err)
		}
	}
	setConnections(false)
	t.Cleanup(func() { _ = storetest.AllowConnections(s.dbURL, true) })

	// The pool may hold a connection that only now learns it was terminated; every answer
	// must still be a clean 503, never a hang or a 500.
	for i := range 3 {
		r := s.call("GET", envPath+"development/secrets/K", s.owner, nil)
		if r.status != http.StatusServiceUnavailable || r.errCode() != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("request %d with the database down: %d %s\nlog:\n%s", i, r.status, r.raw, s.logs.String())
		}
	}
	if r := s.call("GET", "/readyz", "", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the database down: %d %s", r.status, r.raw)
	}
	s.must(200, "GET", "/healthz", "", nil)

	setConnections(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.call("GET", envPath+"development/secrets/K", s.owner, nil)
		if r.status == 200 && r.body["value"] == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.must(200, "GET", "/readyz", "", nil)
}

// TestStartWaitsForTheDatabase: a replica that starts while Postgres refuses connections
// waits, then migrates and serves once the database is back, instead of exiting.
func TestStartWaitsForTheDatabase(t *testing.T) {
	dbURL, dir := storetest.Database(t, "postgres")
	if err := storetest.AllowConnections(dbURL, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = storetest.AllowConnections(dbURL, true) })
	time.AfterFunc(1500*time.Millisecond, func() { _ = storetest.AllowConnections(dbURL, true) })
	start := time.Now()
	s := startOn(t, "postgres", dbURL, dir, nil)
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("started after %v, before the database accepted connections", waited)
	}
	if !strings.Contains(s.logs.String(), "database unavailable; waiting for it") {
		t.Fatalf("no wait was logged:\n%s", s.logs.String())
	}
	s.must(200, "GET", "/readyz", "", nil)
	s.must(200, "GET", "/api/v1/me", s.owner, nil)
}

func TestSetupLinkCreatesOwnerOnce(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			s := start(t, d, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
			out := s.stdout.String()
			i := strings.Index(out, "/setup?code=")
			if i < 0 {
				t.Fatalf("no setup link printed: %q", out)
			}
			code := strings.Fields(out[i+len("/setup?code="):])[0]
			if strings.Contains(s.logs.String(), code) {
				t.Error("the setup code is in the structured log")
			}
			s.must(404, "GET", "/setup?code=wrong", "", nil)
			form := s.must(200, "GET", "/setup?code="+code, "", nil)
			if !strings.Contains(string(form.raw), "<form") || form.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("setup form: %s", form.raw)
			}
			req := map[string]string{"code": code, "email": "Owner@Example.com", "name": "Owner", "tenant_slug": "acme", "tenant_name": "Acme"}
			bad := map[string]string{"code": code, "email": "not-an-email", "name": "Owner", "tenant_slug": "acme", "tenant_name": "Acme"}
			s.must(422, "POST", "/setup", "", bad)
			r := s.must(http.StatusCreated, "POST", "/setup", "", req)
			tok, _ := r.body["token"].(string)
			me := s.must(200, "GET", "/api/v1/me", tok, nil)
			if u := me.body["user"].(map[string]any); u["email"] != "owner@example.com" || u["instance_admin"] != true {
				t.Fatalf("me = %s", me.raw)
			}
			if ts := s.must(200, "GET", "/api/v1/tenants", tok, nil).items(); len(ts) != 1 || ts[0]["slug"] != "acme" || ts[0]["role"] != "owner" {
				t.Fatalf("tenants = %v", ts)
			}
			// Spent: the same code no longer works, and a restart prints no new link.
			s.must(404, "POST", "/setup", "", req)
			again := startOn(t, d, s.dbURL, s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
			if strings.Contains(again.stdout.String(), "/setup?code=") {
				t.Fatal("a set-up instance printed a setup link")
			}
			if strings.Contains(s.logs.String(), tok) {
				t.Error("the owner's token is in the log")
			}
		})
	}
}

func TestBootstrapTokenShape(t *testing.T) {
	for _, tok := range []string{"cfr_pat_short", "cfr_svc_" + strings.Repeat("a", 40), "cfr_pat_" + strings.Repeat("a", 129), "cfr_pat_" + strings.Repeat("a", 31) + "!", "x"} {
		_, dir := storetest.Database(t, "sqlite")
		cfg := map[string]string{"COFFER_LISTEN": "127.0.0.1:0", "COFFER_DATA_DIR": dir, "COFFER_BOOTSTRAP_TOKEN": tok}
		if err := tryStart(cfg); err == nil || strings.Contains(err.Error(), tok) {
			t.Errorf("bootstrap token %q: err = %v, want a refusal that does not echo the token", tok, err)
		}
	}
	ok := "cfr_pat_" + strings.Repeat("A1_-", 8)
	_, dir := storetest.Database(t, "sqlite")
	if err := tryStart(map[string]string{"COFFER_LISTEN": "127.0.0.1:0", "COFFER_DATA_DIR": dir, "COFFER_BOOTSTRAP_TOKEN": ok}); err != nil {
		t.Fatalf("a 32-character token was refused: %v", err)
	}
}

// TestSetupFormInBrowser posts the setup page's HTML form as a browser would: a bad field
// re-renders the form with the message, a good one shows the token page once.
func TestSetupFormInBrowser(t *testing.T) {
	s := start(t, "sqlite", map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
	out := s.stdout.String()
	i := strings.Index(out, "/setup?code=")
	if i < 0 {
		t.Fatalf("no setup link printed: %q", out)
	}
	code := strings.Fields(out[i+len("/setup?code="):])[0]
	post := func(form url.Values) (int, string) {
		t.Helper()
		res, err := s.client.PostForm(s.base+"/setup", form)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("setup answered %s, want a page", ct)
		}
		if res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("setup page headers: %v", res.Header)
		}
		return res.StatusCode, string(b)
	}
	form := url.Values{"code": {code}, "email": {"x"}, "name": {"Owner"}, "tenant_slug": {"acme"}, "tenant_name": {"Acme"},
		"password": {"owner password 1"}}
	if st, page := post(form); st != http.StatusUnprocessableEntity || !strings.Contains(page, "e-mail") || !strings.Contains(page, "<form") {
		t.Fatalf("bad e-mail: %d %s", st, page)
	}
	form.Set("email", "owner@example.com")
	st, page := post(form)
	tok := regexp.MustCompile(`cfr_pat_[A-Za-z0-9_-]{43}`).FindString(page)
	if st != http.StatusCreated || tok == "" {
		t.Fatalf("good form: %d %s", st, page)
	}
	s.must(200, "GET", "/api/v1/me", tok, nil)
	if st, page := post(form); st != http.StatusNotFound || strings.Contains(page, "cfr_pat_") {
		t.Fatalf("second post: %d %s", st, page)
	}
}
