package main

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

// tempDB is a database created for one run on the server at -postgres-url.
type tempDB struct {
	admin *sql.DB
	name  string
	url   string
}

// createDatabase creates an empty, randomly named database; drop removes it.
func createDatabase(ctx context.Context, adminURL string) (*tempDB, error) {
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
	// (CREATE DATABASE takes no parameters).
	name := "coffer_bench_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(pingCtx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return &tempDB{admin: admin, name: name, url: u.String()}, nil
}

// drop removes the database even while the run is being interrupted, which is why it takes
// no context from the caller; FORCE ends any session still connected to it.
func (d *tempDB) drop() error {
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
