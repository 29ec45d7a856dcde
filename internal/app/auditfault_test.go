package app_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestAuditUnwritableFailsClosed: when the audit table refuses inserts (INSERT revoked from the
// server's role on Postgres, a refusing trigger on SQLite), reads with values and writes both
// fail with a clear 503, no value is sent and nothing is changed.
func TestAuditUnwritableFailsClosed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		const canary = "canary-value-7f3a"
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/CANARY", s.owner, map[string]string{"value": canary})
		srv := s
		if s.dialect == "postgres" {
			srv = s.asLimitedRole()
			s.exec(`REVOKE INSERT ON audit_entries FROM ` + srv.role)
		} else {
			s.exec(`CREATE TRIGGER audit_entries_refuse BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'audit disk full'); END`)
		}
		for _, c := range []struct{ method, path string }{
			{"GET", envPath + "development/secrets/CANARY"},
			{"GET", envPath + "development/secrets?include=values"},
			{"PUT", envPath + "development/secrets/CANARY"},
		} {
			var body any
			if c.method == "PUT" {
				body = map[string]string{"value": "changed"}
			}
			r := srv.call(c.method, c.path, srv.owner, body)
			if r.status != http.StatusServiceUnavailable || r.errCode() != "unavailable" || !strings.Contains(string(r.raw), "audit log") || strings.Contains(string(r.raw), canary) {
				t.Fatalf("%s %s with the audit table unwritable: %d %s", c.method, c.path, r.status, r.raw)
			}
		}
		if s.dialect == "postgres" {
			s.exec(`GRANT INSERT ON audit_entries TO ` + srv.role)
		} else {
			s.exec(`DROP TRIGGER audit_entries_refuse`)
		}
		if r := srv.must(http.StatusOK, "GET", envPath+"development/secrets/CANARY", srv.owner, nil); r.body["value"] != canary {
			t.Fatalf("a refused write changed the value: %s", r.raw)
		}
	})
}

// TestHungAuditDatabaseFailsReveals: while the chain's head is locked by someone else (a hung
// transaction), a read with values fails with 503 within the flush deadline instead of waiting.
func TestHungAuditDatabaseFailsReveals(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/HELD", s.owner, map[string]string{"value": "x"})
		// A second replica whose group commits have a one-second deadline.
		r := startWith(t, s.dialect, s.dbURL, s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""}, app.Options{AuditFlushDeadline: time.Second})
		r.owner = s.owner
		r.must(http.StatusOK, "GET", envPath+"development/secrets/HELD", r.owner, nil)

		db := s.rawDB()
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.dialect == "postgres" {
			_, err = tx.Exec(`SELECT seq FROM audit_heads WHERE chain = $1 FOR UPDATE`, s.tenantID())
		} else {
			_, err = tx.Exec(`UPDATE audit_heads SET seq = seq WHERE chain = ?`, s.tenantID()) // takes SQLite's write lock
		}
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got := r.call("GET", envPath+"development/secrets/HELD", r.owner, nil)
		took := time.Since(start)
		_ = tx.Rollback()
		if got.status != http.StatusServiceUnavailable || strings.Contains(string(got.raw), `"value"`) || took > 4*time.Second {
			t.Fatalf("a reveal while the audit log hangs: %d after %v: %s", got.status, took, got.raw)
		}
		// Once the hung write comes back, reads are served again.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok := r.call("GET", envPath+"development/secrets/HELD", r.owner, nil)
			if ok.status == http.StatusOK && ok.body["value"] == "x" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the hang: %d %s", ok.status, ok.raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v := s.verifyAudit(); v.body["ok"] != true {
			t.Fatalf("the chain after a failed flush: %s", v.raw)
		}
	})
}

// exec runs a statement on the test database as its administrator.
func (s *server) exec(q string) {
	s.t.Helper()
	if _, err := s.rawDB().Exec(q); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
}

// asLimitedRole starts a second replica that connects as a new role with only the table
// rights the server needs, so that a test can revoke one of them (the administrator's own
// rights cannot be revoked).
func (s *server) asLimitedRole() *server {
	s.t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "coffer_app_" + hex.EncodeToString(b[:])
	s.exec(`CREATE ROLE ` + role + ` LOGIN`)
	s.exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + role)
	s.exec(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ` + role)
	// Runs after the replica below has stopped (cleanups run last first): the role's grants
	// go, then the role, which is the cluster's and would outlive the test database.
	s.t.Cleanup(func() {
		for _, c := range []struct{ url, q string }{{s.dbURL, `DROP OWNED BY ` + role}, {storetest.AdminURL(), `DROP ROLE ` + role}} {
			db, err := sql.Open("pgx", c.url)
			if err != nil {
				s.t.Errorf("%s: %v", c.q, err)
				continue
			}
			if _, err := db.Exec(c.q); err != nil {
				s.t.Errorf("%s: %v", c.q, err)
			}
			_ = db.Close()
		}
	})
	u, err := url.Parse(s.dbURL)
	if err != nil {
		s.t.Fatal(err)
	}
	u.User = url.User(role)
	r := startOn(s.t, s.dialect, u.String(), s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
	r.owner, r.role = s.owner, role
	return r
}
