package app_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestSecretRoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		envs := s.must(200, "GET", "/api/v1/tenants/default/projects/web/environments", s.owner, nil).items()
		var slugs []string
		for _, e := range envs {
			slugs = append(slugs, e["slug"].(string))
		}
		if strings.Join(slugs, ",") != "development,production,staging" {
			t.Fatalf("default environments = %v", slugs)
		}
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects/web/environments", s.owner, map[string]any{"slug": "qa", "name": "QA"})
		qa := s.must(200, "GET", envPath+"qa", s.owner, nil)
		if qa.body["protected"] != false {
			t.Fatalf("qa = %s", qa.raw)
		}

		p := envPath + "qa/secrets/"
		r := s.must(http.StatusCreated, "PUT", p+"DB_URL", s.owner, map[string]string{"value": "postgres://one", "note": "first"})
		if r.body["version"] != float64(1) {
			t.Fatalf("first put = %s", r.raw)
		}
		s.must(200, "PUT", p+"DB_URL", s.owner, map[string]string{"value": "postgres://two"})
		s.must(http.StatusCreated, "PUT", p+"API_KEY", s.owner, map[string]string{"value": ""})

		got := s.must(200, "GET", p+"DB_URL", s.owner, nil)
		if got.body["value"] != "postgres://two" || got.body["version"] != float64(2) {
			t.Fatalf("get = %s", got.raw)
		}
		old := s.must(200, "GET", p+"DB_URL?version=1", s.owner, nil)
		if old.body["value"] != "postgres://one" || old.body["note"] != "first" {
			t.Fatalf("get version 1 = %s", old.raw)
		}

		list := s.must(200, "GET", envPath+"qa/secrets", s.owner, nil)
		if len(list.items()) != 2 || bytes.Contains(list.raw, []byte("postgres://")) {
			t.Fatalf("list without values = %s", list.raw)
		}
		withValues := s.must(200, "GET", envPath+"qa/secrets?include=values", s.owner, nil).items()
		if len(withValues) != 2 || withValues[0]["name"] != "API_KEY" || withValues[0]["value"] != "" || withValues[1]["value"] != "postgres://two" {
			t.Fatalf("list with values = %v", withValues)
		}

		vs := s.must(200, "GET", p+"DB_URL/versions", s.owner, nil).items()
		if len(vs) != 2 || vs[0]["version"] != float64(2) || vs[1]["version"] != float64(1) {
			t.Fatalf("versions = %v", vs)
		}
		rb := s.must(http.StatusCreated, "POST", p+"DB_URL/rollback", s.owner, map[string]int{"version": 1})
		if rb.body["version"] != float64(3) {
			t.Fatalf("rollback = %s", rb.raw)
		}
		if v := s.must(200, "GET", p+"DB_URL", s.owner, nil).body["value"]; v != "postgres://one" {
			t.Fatalf("after rollback value = %v", v)
		}
		s.must(404, "POST", p+"DB_URL/rollback", s.owner, map[string]int{"version": 9})

		s.must(http.StatusNoContent, "DELETE", p+"DB_URL", s.owner, nil)
		if r := s.must(404, "GET", p+"DB_URL", s.owner, nil); r.errCode() != "not_found" {
			t.Fatalf("get deleted = %s", r.raw)
		}
		if n := len(s.must(200, "GET", envPath+"qa/secrets", s.owner, nil).items()); n != 1 {
			t.Fatalf("list after delete has %d items, want 1", n)
		}
		if n := len(s.must(200, "GET", envPath+"qa/secrets?include=deleted", s.owner, nil).items()); n != 2 {
			t.Fatalf("list including deleted has %d items, want 2", n)
		}
		s.must(404, "DELETE", p+"DB_URL", s.owner, nil)
		s.must(200, "POST", p+"DB_URL/restore", s.owner, nil)
		s.must(409, "POST", p+"DB_URL/restore", s.owner, nil)
		if v := s.must(200, "GET", p+"DB_URL", s.owner, nil).body["value"]; v != "postgres://one" {
			t.Fatalf("after restore value = %v", v)
		}

		// Bulk: all or nothing.
		bad := map[string]any{"secrets": []map[string]any{{"name": "GOOD", "value": "x"}, {"name": "1BAD", "value": "y"}}}
		s.must(422, "PATCH", envPath+"qa/secrets", s.owner, bad)
		s.must(404, "GET", p+"GOOD", s.owner, nil)
		bulk := map[string]any{"secrets": []map[string]any{{"name": "GOOD", "value": "x"}, {"name": "API_KEY", "delete": true}}}
		if items := s.must(200, "PATCH", envPath+"qa/secrets", s.owner, bulk).items(); len(items) != 2 || items[1]["deleted"] != true {
			t.Fatalf("bulk = %v", items)
		}
		missing := map[string]any{"secrets": []map[string]any{{"name": "OTHER", "value": "x"}, {"name": "NOPE", "delete": true}}}
		s.must(404, "PATCH", envPath+"qa/secrets", s.owner, missing)
		s.must(404, "GET", p+"OTHER", s.owner, nil)

		// Every change above is in the audit log, reveals included, and no value is.
		db := s.rawDB()
		var n int
		if err := db.QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ?`), "secret.reveal").Scan(&n); err != nil {
			t.Fatal(err)
		}
		// Five reads returned values: two single gets, one listing, and one get each after
		// rollback and restore.
		if n != 5 {
			t.Fatalf("%d reveal entries, want 5 (one per read that returned values)", n)
		}
		rows, err := db.Query(`SELECT metadata FROM audit_entries`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var meta string
			if err := rows.Scan(&meta); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(meta, "postgres://") {
				t.Fatalf("audit metadata holds a value: %s", meta)
			}
		}
	})
}

// canary is a value that must never be found outside an authorised response.
const canary = "CANARY-7f3c9e2a-never-at-rest"

func TestNoPlaintextAtRestOrInLogs(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/CANARY", s.owner, map[string]string{"value": canary, "note": "planted"})
		s.must(200, "PUT", envPath+"development/secrets/CANARY", s.owner, map[string]string{"value": canary + "-2"})
		bulk := map[string]any{"secrets": []map[string]any{{"name": "CANARY_BULK", "value": canary}}}
		s.must(200, "PATCH", envPath+"development/secrets", s.owner, bulk)
		if r := s.must(200, "GET", envPath+"development/secrets/CANARY?version=1", s.owner, nil); r.body["value"] != canary {
			t.Fatalf("canary did not round-trip: %s", r.raw)
		}
		s.must(200, "GET", envPath+"development/secrets?include=values", s.owner, nil)
		s.must(http.StatusCreated, "POST", envPath+"development/secrets/CANARY/rollback", s.owner, map[string]int{"version": 1})
		// A failing request carrying the canary must not echo or log it either.
		if r := s.call("PUT", envPath+"development/secrets/1-"+"BAD", s.owner, map[string]string{"value": canary}); r.status != 422 || bytes.Contains(r.raw, []byte(canary)) {
			t.Fatalf("bad put: %d %s", r.status, r.raw)
		}

		needles := [][]byte{[]byte(canary), []byte(hex.EncodeToString([]byte(canary)))}
		var haystacks map[string][]byte
		if s.dialect == "sqlite" {
			haystacks = sqliteFiles(t, s.dataDir)
		} else {
			haystacks = map[string][]byte{"pg dump": postgresDump(t, s.dbURL, "secrets", "secret_versions", "audit_entries", "data_keys")}
		}
		for name, data := range haystacks {
			for _, n := range needles {
				if bytes.Contains(data, n) {
					t.Errorf("%s contains the canary in clear (%q)", name, n[:12])
				}
			}
		}
		if len(haystacks) == 0 {
			t.Fatal("nothing was inspected")
		}
		if strings.Contains(s.logs.String(), canary) {
			t.Error("the server log contains the canary")
		}
		if !strings.Contains(s.logs.String(), "/secrets/:name") {
			t.Error("the log shows no secret request at all; is logging captured?")
		}
	})
}

func sqliteFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	matches, err := filepath.Glob(filepath.Join(dir, "coffer.db*"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no database files in %s: %v", dir, err)
	}
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(m)] = b
	}
	return out
}

// postgresDump is a raw dump of tables as COPY writes it, the form a backup would hold.
func postgresDump(t *testing.T, dbURL string, tables ...string) []byte {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var buf bytes.Buffer
	for _, table := range tables {
		if _, err := conn.PgConn().CopyTo(ctx, &buf, "COPY "+table+" TO STDOUT"); err != nil {
			t.Fatalf("copy %s: %v", table, err)
		}
	}
	if buf.Len() == 0 {
		t.Fatal("empty dump")
	}
	return buf.Bytes()
}

func TestMovedCiphertextFailsToDecrypt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		for _, w := range []struct{ env, name, value string }{
			{"development", "A", "value-a-1"}, {"development", "A", "value-a-2"},
			{"development", "B", "value-b"}, {"staging", "C", "value-c"},
		} {
			s.call("PUT", envPath+w.env+"/secrets/"+w.name, s.owner, map[string]string{"value": w.value})
		}
		db := s.rawDB()
		ct := func(env, name string, version int) []byte {
			var b []byte
			err := db.QueryRow(s.q(`SELECT v.ciphertext FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
				JOIN environments e ON e.id = s.environment_id WHERE e.slug = ? AND s.name = ? AND v.version = ?`), env, name, version).Scan(&b)
			if err != nil {
				t.Fatalf("read ciphertext %s/%s v%d: %v", env, name, version, err)
			}
			return b
		}
		put := func(env, name string, version int, b []byte) {
			_, err := db.Exec(s.q(`UPDATE secret_versions SET ciphertext = ? WHERE version = ? AND secret_id =
				(SELECT s.id FROM secrets s JOIN environments e ON e.id = s.environment_id WHERE e.slug = ? AND s.name = ?)`), b, version, env, name)
			if err != nil {
				t.Fatal(err)
			}
		}
		a1, a2, b1, c1 := ct("development", "A", 1), ct("development", "A", 2), ct("development", "B", 1), ct("staging", "C", 1)

		cases := []struct {
			name        string
			env, secret string
			version     int
			from        []byte
			restore     []byte
		}{
			{"another row", "development", "B", 1, a1, b1},
			{"another version", "development", "A", 2, a1, a2},
			{"another environment", "staging", "C", 1, b1, c1},
		}
		for _, c := range cases {
			put(c.env, c.secret, c.version, c.from)
			r := s.call("GET", envPath+c.env+"/secrets/"+c.secret+"?version="+itoa(c.version), s.owner, nil)
			if r.status != 500 || r.errCode() != "internal" || !strings.Contains(string(r.raw), "integrity") {
				t.Errorf("%s: status %d %s, want 500 integrity failure", c.name, r.status, r.raw)
			}
			if bytes.Contains(r.raw, []byte("value-")) {
				t.Errorf("%s: response leaks a value: %s", c.name, r.raw)
			}
			put(c.env, c.secret, c.version, c.restore)
			if r := s.call("GET", envPath+c.env+"/secrets/"+c.secret+"?version="+itoa(c.version), s.owner, nil); r.status != 200 {
				t.Errorf("%s: restored ciphertext does not open: %s", c.name, r.raw)
			}
		}
		// The secret rows carry their latest ciphertext for listing: moving one there fails
		// the listing as a whole rather than skip the value silently.
		if _, err := db.Exec(s.q(`UPDATE secrets SET ciphertext = ? WHERE name = ?`), a2, "B"); err != nil {
			t.Fatal(err)
		}
		if r := s.call("GET", envPath+"development/secrets?include=values", s.owner, nil); r.status != 500 {
			t.Errorf("list with a moved value: %d %s", r.status, r.raw)
		}
	})
}

// TestRevealPagesAuditExactlyWhatWasSent: a page of values records the secrets it returned,
// not the one read ahead to learn that another page follows, as the environment's revision,
// the page and a digest; the audit API lists the names and versions from the history, also
// after later changes, and notices a history that no longer gives them.
func TestRevealPagesAuditExactlyWhatWasSent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		list := []map[string]any{{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}}
		s.must(200, "PATCH", envPath+"development/secrets", s.owner, map[string]any{"secrets": list})
		first := s.must(200, "GET", envPath+"development/secrets?include=values&limit=2", s.owner, nil)
		cursor, _ := first.body["next_cursor"].(string)
		if items := first.items(); len(items) != 2 || items[1]["value"] != "2" || cursor == "" {
			t.Fatalf("first page = %s", first.raw)
		}
		second := s.must(200, "GET", envPath+"development/secrets?include=values&limit=2&cursor="+cursor, s.owner, nil)
		if items := second.items(); len(items) != 1 || items[0]["name"] != "C" || second.body["next_cursor"] != nil {
			t.Fatalf("second page = %s", second.raw)
		}
		// Later changes: a new version, a deletion, a new secret, a deletion undone.
		s.must(200, "PUT", envPath+"development/secrets/B", s.owner, map[string]string{"value": "2b"})
		s.must(http.StatusNoContent, "DELETE", envPath+"development/secrets/A", s.owner, nil)
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/D", s.owner, map[string]string{"value": "4"})
		s.must(http.StatusNoContent, "DELETE", envPath+"development/secrets/C", s.owner, nil)
		s.must(200, "POST", envPath+"development/secrets/C/restore", s.owner, nil)
		s.must(200, "GET", envPath+"development/secrets?include=values", s.owner, nil)

		reveals := s.must(200, "GET", auditPath+"?action=secret.reveal&limit=10", s.owner, nil).items()
		if len(reveals) != 3 {
			t.Fatalf("%d reveal entries, want 3", len(reveals))
		}
		want := []struct {
			after, secrets string
			count          float64
		}{{"", `{"A":1,"B":1}`, 2}, {"B", `{"C":1}`, 1}, {"", `{"B":2,"C":1,"D":1}`, 3}}
		seqs := make([]string, len(reveals))
		for i, e := range reveals {
			md, _ := e["metadata"].(map[string]any)
			if md["secrets"] != nil || md["after"] != want[i].after || md["count"] != want[i].count || len(str(md["digest"])) != 64 || md["revision"] == nil {
				t.Fatalf("reveal entry %d metadata = %v", i, md)
			}
			seqs[i] = strconv.Itoa(int(e["sequence"].(float64)))
			r := s.must(200, "GET", auditPath+"/revealed?sequence="+seqs[i], s.owner, nil)
			if got, _ := json.Marshal(r.body["secrets"]); string(got) != want[i].secrets || r.body["verified"] != true || r.body["digest"] != md["digest"] {
				t.Fatalf("reveal entry %d lists %s, verified %v (%s), want %s", i, got, r.body["verified"], r.raw, want[i].secrets)
			}
		}

		// A history rewritten under the entry: B's first version moved past the read.
		if _, err := s.rawDB().Exec(`UPDATE secret_versions SET revision = revision + 100 WHERE version = 1 AND secret_id =
			(SELECT id FROM secrets WHERE name = 'B')`); err != nil {
			t.Fatal(err)
		}
		r := s.must(200, "GET", auditPath+"/revealed?sequence="+seqs[0], s.owner, nil)
		if r.body["verified"] != false || str(r.body["reason"]) == "" {
			t.Fatalf("after the history was rewritten: %s", r.raw)
		}
		writes := s.must(200, "GET", auditPath+"?action=secret.write&limit=1", s.owner, nil).items()
		seq := strconv.Itoa(int(writes[0]["sequence"].(float64)))
		if r := s.call("GET", auditPath+"/revealed?sequence="+seq, s.owner, nil); r.status != 422 {
			t.Fatalf("a write entry: %d %s", r.status, r.raw)
		}
	})
}
