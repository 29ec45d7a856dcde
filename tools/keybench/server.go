package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/tools/internal/benchdb"
	"github.com/cofferhq/coffer/tools/internal/benchhttp"
)

// database is where one measurement keeps its data: a data directory (SQLite's file lives
// there) and, on Postgres, a temporary database. Servers are started on it and stopped again,
// so one seeded environment serves several server configurations.
type database struct {
	dialect string
	dataDir string
	url     string // Postgres only
	token   string // the bootstrap owner's API token, valid across restarts
	drop    func() error
}

func newDatabase(ctx context.Context, o options, dialect string) (*database, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "coffer-keybench-")
	if err != nil {
		return nil, err
	}
	db := &database{dialect: dialect, dataDir: dataDir, token: token, drop: func() error { return os.RemoveAll(dataDir) }}
	if dialect == postgres {
		pg, err := benchdb.Create(ctx, o.postgresURL, "coffer_keybench_")
		if err != nil {
			_ = os.RemoveAll(dataDir)
			return nil, err
		}
		db.url = pg.URL
		db.drop = func() error { return errors.Join(pg.Drop(), os.RemoveAll(dataDir)) }
	}
	return db, nil
}

// serverConfig is what differs between the servers a measurement starts.
type serverConfig struct {
	disableKeyCache bool
	keyJobBatch     int // 0: the server's default
	dbMaxConns      int
}

// server is a running Coffer owned by this program: stop ends it and waits for it.
type server struct {
	app     *app.App // for seeding directly with the server's own keyring
	baseURL string
	header  http.Header // the owner's bearer token
	stop    func() error
}

// startCoffer builds the whole program the way cmd/server does, through ParseConfig, with the
// key-encryption key in the KMS test server.
func startCoffer(ctx context.Context, o options, db *database, kms *kmsServer, sc serverConfig, stderr io.Writer) (*server, error) {
	args := []string{
		"-listen", "127.0.0.1:0",
		"-data-dir", db.dataDir,
		"-database-url", db.url,
		"-db-max-conns", strconv.Itoa(sc.dbMaxConns),
		"-log-level", o.logLevel,
		"-log-format", "text",
		"-base-url", "http://127.0.0.1",
		"-bootstrap-email", "bench@example.com",
	}
	env := kms.env()
	env["COFFER_BOOTSTRAP_TOKEN"] = db.token
	if sc.keyJobBatch > 0 {
		env["COFFER_KEY_JOB_BATCH"] = strconv.Itoa(sc.keyJobBatch)
	}
	// Nothing else from this process's environment reaches the server under test: a stray
	// COFFER_DATABASE_URL must not point the benchmark at a real database.
	getenv := func(k string) string { return env[k] }
	cfg, err := app.ParseConfig(args, getenv, stderr)
	if err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	log := app.NewLogger(cfg, stderr).With("dialect", db.dialect)
	a, err := app.New(ctx, cfg, log, stderr, app.Options{DisableKeyCache: sc.disableKeyCache})
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Serve(serveCtx) }()
	return &server{
		app:     a,
		baseURL: "http://" + a.Addr(),
		header:  http.Header{"Authorization": {"Bearer " + db.token}},
		stop: func() error {
			cancel()
			return <-done
		},
	}, nil
}

// newToken makes a bootstrap personal access token: cfr_pat_ and 43 URL-safe characters.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "cfr_pat_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// call sends in as JSON (nil: no body), requires status wantStatus and decodes the answer
// into out unless out is nil.
func (s *server) call(ctx context.Context, method, path string, in any, wantStatus int, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	resp, got, err := s.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if resp.StatusCode != wantStatus {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, benchhttp.Snippet(got))
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

func (s *server) do(ctx context.Context, method, path string, in []byte) (*http.Response, []byte, error) {
	return benchhttp.Do(ctx, 2*time.Minute, method, s.baseURL+path, s.header, in)
}
