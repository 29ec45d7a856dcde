// Package storetest gives tests a fresh database of each dialect: a SQLite file in a temporary
// directory, and a newly created Postgres database dropped when the test ends. Postgres comes
// from COFFER_TEST_POSTGRES_URL (default: the local server with trust auth); when it is not
// reachable the Postgres variant skips, except under CI=true, where it fails.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating test databases
)

// Dialects lists the databases every storage test runs against.
var Dialects = []string{"sqlite", "postgres"}

// DefaultPostgresURL is the local test server.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the URL of the Postgres server tests create databases on.
func AdminURL() string {
	if u := os.Getenv("COFFER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Skip skips (or under CI=true fails) a test that needs a part that is absent.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true requires every part: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Database returns the settings for a fresh database of dialect: the Postgres URL (empty for
// SQLite) and a data directory. The database is removed when the test ends.
func Database(t testing.TB, dialect string) (dbURL, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	if dialect == "sqlite" {
		return "", dataDir
	}
	admin := AdminURL()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		Skip(t, "postgres at %s is not reachable (%v); start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", redact(admin), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "coffer_test_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", redact(admin), err)
	}
	u.Path = "/" + name
	return u.String(), dataDir
}

// SQLitePath is where the store keeps the SQLite database inside dataDir.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "coffer.db") }

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// AllowConnections opens or closes a test database to new connections. Closing also ends
// the connections it has, as an outage would.
func AllowConnections(dbURL string, allow bool) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, "coffer_test_") {
		return fmt.Errorf("refusing to change %q: not a test database", name)
	}
	db, err := sql.Open("pgx", AdminURL())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS " + strconv.FormatBool(allow)); err != nil {
		return err
	}
	if !allow {
		_, err = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	}
	return err
}
