// Package benchdb creates and drops the temporary Postgres databases the benchmark tools run
// against, so a benchmark never touches an existing database.
package benchdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating the temporary database
)

// DB is a database created for one benchmark run on the server at -postgres-url.
type DB struct {
	admin *sql.DB
	name  string
	// URL connects to the new database.
	URL string
}

// Create makes an empty database named prefix plus random hex; Drop removes it.
func Create(ctx context.Context, adminURL, prefix string) (*DB, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		// The parse error quotes the URL, which may hold a password.
		return nil, fmt.Errorf("-postgres-url is not a valid URL")
	}
	shown := u.Redacted()
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres at %s: %w", shown, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := admin.PingContext(pingCtx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("postgres at %s is not reachable: %w", shown, err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		_ = admin.Close()
		return nil, err
	}
	// The name is made here from hex digits only, so it is safe to splice into the statement
	// (CREATE DATABASE takes no parameters); prefix is the caller's constant.
	name := prefix + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(pingCtx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &DB{admin: admin, name: name, URL: u.String()}, nil
}

// Drop removes the database even while the run is being interrupted, which is why it takes
// no context from the caller; FORCE ends any session still connected to it.
func (d *DB) Drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := d.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
	if cerr := d.admin.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// FreeConnections is how many more client connections the Postgres server would accept now
// (max_connections less superuser_reserved_connections less those open), so a benchmark can
// say when another program's connections will make the server under test fail to connect.
func (d *DB) FreeConnections(ctx context.Context) (int, error) {
	var free int
	err := d.admin.QueryRowContext(ctx, `SELECT current_setting('max_connections')::int
		- current_setting('superuser_reserved_connections')::int
		- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')`).Scan(&free)
	if err != nil {
		return 0, fmt.Errorf("count free connections: %w", err)
	}
	return free, nil
}
