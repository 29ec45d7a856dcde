package app_test

import (
	"net/http"
	"testing"
)

// TestDeleteHidesEveryVersion: after DELETE no version of a secret is readable, by the latest
// or by number, until it is restored.
func TestDeleteHidesEveryVersion(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		p := envPath + "development/secrets/GONE"
		s.must(http.StatusCreated, "PUT", p, s.owner, map[string]string{"value": "one"})
		s.must(http.StatusOK, "PUT", p, s.owner, map[string]string{"value": "two"})
		s.must(http.StatusNoContent, "DELETE", p, s.owner, nil)
		for _, q := range []string{"", "?version=1", "?version=2"} {
			if r := s.call("GET", p+q, s.owner, nil); r.status != http.StatusNotFound {
				t.Errorf("GET %s of a deleted secret: %d %s", q, r.status, r.raw)
			}
		}
		if r := s.call("POST", p+"/rollback", s.owner, map[string]int{"version": 1}); r.status != http.StatusNotFound {
			t.Errorf("rollback of a deleted secret: %d %s", r.status, r.raw)
		}
		s.must(http.StatusOK, "POST", p+"/restore", s.owner, nil)
		if r := s.must(http.StatusOK, "GET", p+"?version=1", s.owner, nil); r.body["value"] != "one" {
			t.Fatalf("version 1 after restore: %s", r.raw)
		}
	})
}

// TestDestroyErasesVersionsForGood: destroyed versions keep their metadata, can never be read
// or rolled back to, and their ciphertexts are gone from a dump of every table (and, on SQLite,
// from the database files after a checkpoint).
func TestDestroyErasesVersionsForGood(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		db := s.rawDB()
		p := envPath + "development/secrets/LEAKED"
		for _, v := range []string{"leaked-one", "leaked-two", "safe-three"} {
			s.call("PUT", p, s.owner, map[string]string{"value": v})
		}
		old := shredColumn(t, db, s.q(`SELECT v.ciphertext FROM secret_versions v JOIN secrets x ON x.id = v.secret_id
			WHERE x.name = 'LEAKED' AND v.version IN (1, 2)`))
		if len(old) != 2 {
			t.Fatalf("found %d old ciphertexts", len(old))
		}

		// Who may: project admins who may write here; not developers, not service tokens.
		dev := s.newUser("dev@example.com")
		s.join(s.owner, "default", dev, "dev@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "dev@example.com", "role": "developer"})
		svc := str(s.serviceToken(s.owner, "ci", "read-write", "development").body["token"])
		for name, tok := range map[string]string{"developer": dev, "service token": svc} {
			if r := s.call("POST", p+"/destroy", tok, map[string]any{"versions": []int{1}}); r.status != http.StatusForbidden {
				t.Errorf("a %s destroying: %d %s", name, r.status, r.raw)
			}
		}
		// Bad requests change nothing.
		for _, c := range []struct {
			versions []int
			status   int
		}{{[]int{3}, http.StatusConflict}, {[]int{1, 3}, http.StatusConflict}, {[]int{9}, http.StatusNotFound}, {[]int{}, 422}, {[]int{0}, 422}} {
			if r := s.call("POST", p+"/destroy", s.owner, map[string]any{"versions": c.versions}); r.status != c.status {
				t.Errorf("destroy %v: %d, want %d: %s", c.versions, r.status, c.status, r.raw)
			}
		}
		if r := s.must(http.StatusOK, "GET", p+"?version=1", s.owner, nil); r.body["value"] != "leaked-one" {
			t.Fatalf("a refused destroy changed version 1: %s", r.raw)
		}

		r := s.must(http.StatusOK, "POST", p+"/destroy", s.owner, map[string]any{"versions": []int{2, 1, 2}})
		if d, _ := r.body["destroyed"].([]any); len(d) != 2 {
			t.Fatalf("destroy: %s", r.raw)
		}
		if r := s.must(http.StatusOK, "POST", p+"/destroy", s.owner, map[string]any{"versions": []int{1}}); len(r.body["destroyed"].([]any)) != 0 {
			t.Fatalf("destroying again: %s", r.raw)
		}
		for _, q := range []string{"?version=1", "?version=2"} {
			if r := s.call("GET", p+q, s.owner, nil); r.status != http.StatusGone || r.errCode() != "gone" {
				t.Errorf("GET %s after destroy: %d %s", q, r.status, r.raw)
			}
		}
		if r := s.call("POST", p+"/rollback", s.owner, map[string]int{"version": 1}); r.status != http.StatusGone {
			t.Errorf("rollback to a destroyed version: %d %s", r.status, r.raw)
		}
		if r := s.must(http.StatusOK, "GET", p, s.owner, nil); r.body["value"] != "safe-three" {
			t.Fatalf("the current version after destroy: %s", r.raw)
		}
		versions := s.must(http.StatusOK, "GET", p+"/versions", s.owner, nil).items()
		if len(versions) != 3 || versions[0]["destroyed"] != false || versions[1]["destroyed"] != true || versions[2]["destroyed"] != true {
			t.Fatalf("versions after destroy: %v", versions)
		}
		var actions int
		if err := db.QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE action = 'secret.destroy'`).Scan(&actions); err != nil || actions != 2 {
			t.Fatalf("secret.destroy entries: %d (%v)", actions, err)
		}

		// A key rotation passes over destroyed versions.
		s.rotateAndWait(s.owner, "default", "web", "development")

		// The ciphertexts are gone from every table and, on SQLite, from the files.
		if s.dialect == "postgres" {
			if _, err := db.Exec(`VACUUM secret_versions`); err != nil {
				t.Fatal(err)
			}
		} else {
			shredCheckpoint(t, db)
			if hits := shredFind(shredFiles(t, s.dataDir), old); len(hits) > 0 {
				t.Fatalf("destroyed ciphertexts still in the database files: %v", hits)
			}
		}
		if hits := shredFind(shredDump(t, s, db), old); len(hits) > 0 {
			t.Fatalf("destroyed ciphertexts still in a dump: %v", hits)
		}
	})
}
