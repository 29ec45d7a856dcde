package app_test

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestShredDeletedKeys: deleting an environment deletes its data keys at the same moment as
// the environment row, deleting the project and then the tenant leaves no data key of the
// tenant, and afterwards neither a dump of every table nor (SQLite) the bytes of the database
// files hold a wrapped key of the tenant or a deleted ciphertext. The audit log keeps the
// deletions.
func TestShredDeletedKeys(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		db := s.rawDB()

		// Tenant "default" keeps a project and a secret, so the scan runs on a live database
		// rather than an emptied one.
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/KEEP", s.owner, map[string]string{"value": "kept-value"})

		// Tenant "gone": a second user's, with a project, its three environments and secrets.
		bob := s.newUser("bob@gone.example")
		s.must(http.StatusCreated, "POST", "/api/v1/tenants", bob, map[string]string{"slug": "gone", "name": "Gone"})
		s.must(http.StatusCreated, "POST", "/api/v1/tenants/gone/projects", bob, map[string]string{"slug": "app", "name": "App"})
		const gonePath = "/api/v1/tenants/gone/projects/app/environments/"
		envs := []string{"development", "staging", "production"}
		for _, env := range envs {
			for v, status := range []int{http.StatusCreated, http.StatusOK} {
				s.must(status, "PUT", gonePath+env+"/secrets/DB_PASSWORD", bob,
					map[string]string{"value": "shred-me-" + env + "-" + itoa(v)})
			}
		}

		var tenantID, projectID, stagingID string
		if err := db.QueryRow(`SELECT id FROM tenants WHERE slug = 'gone'`).Scan(&tenantID); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(s.q(`SELECT id FROM projects WHERE tenant_id = ?`), tenantID).Scan(&projectID); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(s.q(`SELECT id FROM environments WHERE tenant_id = ? AND slug = 'staging'`), tenantID).Scan(&stagingID); err != nil {
			t.Fatal(err)
		}
		wrapped := shredColumn(t, db, s.q(`SELECT wrapped_key FROM data_keys WHERE tenant_id = ?`), tenantID)
		if len(wrapped) != len(envs) {
			t.Fatalf("tenant gone has %d data keys, want one per environment (%d)", len(wrapped), len(envs))
		}
		ciphertext := shredColumn(t, db, s.q(`SELECT ciphertext FROM secrets WHERE environment_id = ?`), stagingID)
		if len(ciphertext) != 1 {
			t.Fatalf("staging has %d secrets, want 1", len(ciphertext))
		}
		// Shown to be findable before the deletions, so that finding nothing afterwards means
		// something.
		if hits := shredFind(shredDump(t, s, db), wrapped); len(hits) == 0 {
			t.Fatal("the table dump does not show the wrapped keys even before the deletions")
		}

		// Delete staging while another connection watches its environment row and its data
		// keys in one statement (one snapshot): it may only ever see both or neither.
		type state struct{ envs, keys int }
		watch := s.q(`SELECT (SELECT COUNT(*) FROM environments WHERE id = ?), (SELECT COUNT(*) FROM data_keys WHERE environment_id = ?)`)
		seen := map[state]int{}
		first, stop, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			for n := 0; ; n++ {
				var st state
				if err := db.QueryRow(watch, stagingID, stagingID).Scan(&st.envs, &st.keys); err != nil {
					done <- err
					return
				}
				seen[st]++
				if n == 0 {
					close(first)
				}
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
			}
		}()
		<-first
		s.must(http.StatusNoContent, "DELETE", gonePath+"staging", bob, nil)
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("watching staging: %v", err)
		}
		for st, n := range seen {
			if st != (state{1, 1}) && st != (state{0, 0}) {
				t.Errorf("a reader saw staging with %d environment row(s) and %d data key(s) (%d times); want both or neither", st.envs, st.keys, n)
			}
		}
		var after state
		if err := db.QueryRow(watch, stagingID, stagingID).Scan(&after.envs, &after.keys); err != nil {
			t.Fatal(err)
		}
		if after != (state{0, 0}) {
			t.Fatalf("after DELETE staging: %d environment row(s), %d data key(s); want none", after.envs, after.keys)
		}
		if n := shredCount(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE tenant_id = ?`), tenantID); n != len(envs)-1 {
			t.Fatalf("deleting staging left %d data keys in the tenant, want the other environments' %d", n, len(envs)-1)
		}

		s.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/gone/projects/app", bob, nil)
		if n := shredCount(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE tenant_id = ?`), tenantID); n != 0 {
			t.Fatalf("deleting the project left %d data keys in the tenant", n)
		}
		s.must(http.StatusNoContent, "DELETE", "/api/v1/tenants/gone", bob, nil)

		// The audit log keeps the deletions; the dump below shows it holds no key bytes.
		var actions []string
		rows, err := db.Query(s.q(`SELECT action, target_id FROM audit_entries WHERE tenant_id = ? ORDER BY id`), tenantID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var action, target string
			if err := rows.Scan(&action, &target); err != nil {
				t.Fatal(err)
			}
			actions = append(actions, action+" "+target)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		for _, want := range []string{"environment.delete " + stagingID, "project.delete " + projectID, "tenant.delete " + tenantID} {
			if !strings.Contains(strings.Join(actions, "\n"), want) {
				t.Errorf("audit log of the tenant lacks %q; it has:\n%s", want, strings.Join(actions, "\n"))
			}
		}

		if s.dialect == "postgres" {
			// DELETE leaves dead row versions in data_keys' pages until VACUUM removes them.
			// Even then Postgres does not zero the space: the bytes can stay in the data file
			// until the page is reused, and WAL, base backups and replicas keep them for as
			// long as those are kept. A dump through SQL, which is all this scan sees, never
			// shows dead rows. That is why a tenant's own KMS key is the real shredding answer
			// for backups: disabling it makes every copy of the wrapped keys useless.
			if _, err := db.Exec(`VACUUM data_keys`); err != nil {
				t.Fatalf("VACUUM data_keys: %v", err)
			}
		} else {
			// Move every page out of the write-ahead log into coffer.db and empty the log, so
			// the file scan below sees what a copy of the data directory would hold.
			shredCheckpoint(t, db)
		}

		secretBytes := append(append([][]byte{}, wrapped...), ciphertext...)
		for table, hits := range shredFindByTable(shredDump(t, s, db), secretBytes) {
			t.Errorf("table %s still holds deleted key material or ciphertext: %s", table, strings.Join(hits, ", "))
		}
		// The database files themselves (SQLite), and anything else the server keeps in its
		// data directory: deleted rows must be overwritten, not just unlinked from the b-tree.
		files := shredFiles(t, s.dataDir)
		if s.dialect == "sqlite" && files[filepath.Base(storetest.SQLitePath(s.dataDir))] == nil {
			t.Fatalf("no coffer.db in the data directory; files: %v", files)
		}
		for name, hits := range shredFindByTable(files, secretBytes) {
			t.Errorf("file %s in the data directory still holds deleted key material or ciphertext: %s", name, strings.Join(hits, ", "))
		}
	})
}

// shredColumn reads one []byte column.
func shredColumn(t *testing.T, db *sql.DB, query string, args ...any) [][]byte {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func shredCount(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// shredCheckpoint copies the SQLite write-ahead log into the database file and truncates it,
// retrying while the server's connections keep it busy.
func shredCheckpoint(t *testing.T, db *sql.DB) {
	t.Helper()
	for try := 0; ; try++ {
		var busy, logFrames, checkpointed int
		if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		if busy == 0 {
			return
		}
		if try == 50 {
			t.Fatalf("checkpoint stayed busy (%d of %d frames copied)", checkpointed, logFrames)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shredDump reads every column of every row of every table, per table: byte columns as they
// are, everything else as text.
func shredDump(t *testing.T, s *server, db *sql.DB) map[string][]byte {
	t.Helper()
	list := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if s.dialect == "postgres" {
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`
	}
	var tables []string
	rows, err := db.Query(list)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables found: %v", len(tables), tables)
	}
	out := map[string][]byte{}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					buf.Write(b)
				} else {
					fmt.Fprint(&buf, v)
				}
				buf.WriteByte('|')
			}
			buf.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		rows.Close()
		out[table] = buf.Bytes()
	}
	return out
}

// shredFiles reads every regular file under dir, by path relative to dir.
func shredFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// shredForms are the ways a byte string may have been written down: as it is, in hex (how
// Postgres prints bytea) and in each base64 alphabet (how JSON carries bytes).
func shredForms(b []byte) map[string][]byte {
	return map[string][]byte{
		"raw":          b,
		"hex":          []byte(hex.EncodeToString(b)),
		"HEX":          []byte(strings.ToUpper(hex.EncodeToString(b))),
		"base64":       []byte(base64.StdEncoding.EncodeToString(b)),
		"base64 (raw)": []byte(base64.RawStdEncoding.EncodeToString(b)),
		"base64url":    []byte(base64.RawURLEncoding.EncodeToString(b)),
	}
}

// shredFind lists which of needles, in any of their forms, occur in any of the haystacks.
func shredFind(haystacks map[string][]byte, needles [][]byte) []string {
	var hits []string
	for _, h := range shredFindByTable(haystacks, needles) {
		hits = append(hits, h...)
	}
	return hits
}

// shredFindByTable is shredFind per haystack name.
func shredFindByTable(haystacks map[string][]byte, needles [][]byte) map[string][]string {
	out := map[string][]string{}
	for name, h := range haystacks {
		for i, n := range needles {
			for form, f := range shredForms(n) {
				if bytes.Contains(h, f) {
					out[name] = append(out[name], fmt.Sprintf("value %d (%s)", i, form))
				}
			}
		}
	}
	return out
}
