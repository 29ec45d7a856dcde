package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/loadgen"
	"github.com/cofferhq/coffer/tools/internal/benchdb"
	"github.com/cofferhq/coffer/tools/internal/benchhttp"
)

const (
	secretCount = 100
	readPath    = "/api/v1/tenants/default/projects/bench/environments/production/secrets"
	readQuery   = "?include=values"
)

// measure runs one dialect from an empty database to both measurements, and removes
// everything it created, also when interrupted.
func measure(ctx context.Context, o options, dialect string, stderr io.Writer) (res result) {
	res.dialect = dialect
	dataDir, err := os.MkdirTemp("", "coffer-loadbench-")
	if err != nil {
		res.err = err
		return res
	}
	defer os.RemoveAll(dataDir)

	dbURL := ""
	if dialect == postgres {
		db, err := benchdb.Create(ctx, o.postgresURL, "coffer_bench_")
		if err != nil {
			res.err = err
			return res
		}
		// Deferred before the server starts, so it runs after the server has stopped and
		// closed its pool; FORCE covers any connection left behind.
		defer func() {
			if err := db.Drop(); err != nil {
				res.err = errors.Join(res.err, err)
			}
		}()
		dbURL = db.URL
	}

	srv, err := startCoffer(ctx, o, dialect, dataDir, dbURL, stderr)
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := srv.stop(); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("server shutdown: %w", err))
		}
	}()

	header := http.Header{"Authorization": {"Bearer " + srv.token}}
	want, err := seed(ctx, srv.baseURL, header)
	if err != nil {
		res.err = fmt.Errorf("seed: %w", err)
		return res
	}
	body, contentType, err := capture(ctx, srv.baseURL, header, want)
	if err != nil {
		res.err = fmt.Errorf("first read: %w", err)
		return res
	}
	res.body = len(body)

	fmt.Fprintf(stderr, "loadbench: %s: coffer-read for %s (+%s warm-up)\n", dialect, o.duration, o.warmup)
	res.coffer, err = load(ctx, o, srv.baseURL, header)
	if err != nil {
		res.err = fmt.Errorf("coffer-read: %w", err)
		return res
	}

	bare, err := startBare(body, contentType)
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := bare.stop(); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("bare gin shutdown: %w", err))
		}
	}()
	fmt.Fprintf(stderr, "loadbench: %s: bare-gin for %s (+%s warm-up)\n", dialect, o.duration, o.warmup)
	// The same request, header included, so both targets parse the same bytes.
	res.bare, err = load(ctx, o, bare.baseURL, header)
	if err != nil {
		res.err = fmt.Errorf("bare-gin: %w", err)
	}
	return res
}

func load(ctx context.Context, o options, baseURL string, header http.Header) (loadgen.Result, error) {
	return loadgen.Run(ctx, loadgen.Options{
		URL:         baseURL + readPath + readQuery,
		Header:      header,
		Connections: o.connections,
		Duration:    o.duration,
		Warmup:      o.warmup,
	})
}

// server is a running HTTP server owned by this program: stop ends it and waits for it.
type server struct {
	baseURL string
	token   string
	stop    func() error
}

// startCoffer builds the whole program the way cmd/server does, through ParseConfig, so the
// server under load has production defaults apart from what is set here.
func startCoffer(ctx context.Context, o options, dialect, dataDir, dbURL string, stderr io.Writer) (*server, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	// A throwaway key given the way production gives one, so no key file is generated (and
	// warned about) in a directory that is deleted afterwards.
	var kek [32]byte
	if _, err := rand.Read(kek[:]); err != nil {
		return nil, err
	}
	masterKey := base64.StdEncoding.EncodeToString(kek[:])
	args := []string{
		"-listen", "127.0.0.1:0",
		"-data-dir", dataDir,
		"-database-url", dbURL,
		"-db-max-conns", strconv.Itoa(o.maxConns(dialect)),
		"-log-level", o.logLevel,
		"-log-format", "text",
		// Only printed links use it, and a bootstrap token means none is printed.
		"-base-url", "http://127.0.0.1",
		"-bootstrap-email", "bench@example.com",
	}
	// Nothing from this process's environment leaks into the server under test: a stray
	// COFFER_DATABASE_URL must not point the benchmark at a real database.
	getenv := func(k string) string {
		switch k {
		case "COFFER_BOOTSTRAP_TOKEN":
			return token
		case "COFFER_MASTER_KEY":
			return masterKey
		}
		return ""
	}
	cfg, err := app.ParseConfig(args, getenv, stderr)
	if err != nil {
		return nil, fmt.Errorf("server config: %w", err)
	}
	log := app.NewLogger(cfg, stderr).With("dialect", dialect)
	a, err := app.New(ctx, cfg, log, stderr, app.Options{})
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Serve(serveCtx) }()
	return &server{
		baseURL: "http://" + a.Addr(),
		token:   token,
		stop: func() error {
			cancel()
			return <-done
		},
	}, nil
}

// startBare serves body from memory on the read's path with nothing in front: gin's router
// and the net/http server, which is the floor any gin handler pays.
func startBare(body []byte, contentType string) (*server, error) {
	r := gin.New()
	r.GET(readPath, func(c *gin.Context) { c.Data(http.StatusOK, contentType, body) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bare gin: %w", err)
	}
	hs := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	return &server{
		baseURL: "http://" + ln.Addr().String(),
		stop: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := hs.Shutdown(ctx)
			if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			return err
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

// seed creates the project and writes the secrets in one request, returning name → value.
func seed(ctx context.Context, baseURL string, header http.Header) (map[string]string, error) {
	if err := call(ctx, http.MethodPost, baseURL+"/api/v1/tenants/default/projects", header,
		map[string]string{"slug": "bench", "name": "Bench"}, http.StatusCreated); err != nil {
		return nil, fmt.Errorf("create project: %w", err)
	}
	type entry struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	want := make(map[string]string, secretCount)
	entries := make([]entry, secretCount)
	for i := range entries {
		// Realistic values: 40 to 64 characters of URL-safe base64, as API keys and
		// passwords tend to be.
		var b [48]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		v := base64.RawURLEncoding.EncodeToString(b[:])[:40+mrand.IntN(25)]
		entries[i] = entry{Name: fmt.Sprintf("SECRET_%03d", i), Value: v}
		want[entries[i].Name] = v
	}
	if err := call(ctx, http.MethodPatch, baseURL+readPath, header,
		map[string]any{"secrets": entries}, http.StatusOK); err != nil {
		return nil, fmt.Errorf("write secrets: %w", err)
	}
	return want, nil
}

// capture performs the read once and checks that it returns every value written, so the
// load measures the real thing and the bare handler serves the same bytes.
func capture(ctx context.Context, baseURL string, header http.Header, want map[string]string) (body []byte, contentType string, err error) {
	resp, body, err := benchhttp.Do(ctx, 30*time.Second, http.MethodGet, baseURL+readPath+readQuery, header, nil)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("status %d: %s", resp.StatusCode, benchhttp.Snippet(body))
	}
	var page struct {
		Items []struct {
			Name  string  `json:"name"`
			Value *string `json:"value"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, "", fmt.Errorf("decode response: %w", err)
	}
	if len(page.Items) != len(want) || page.NextCursor != "" {
		return nil, "", fmt.Errorf("got %d secrets (next cursor %q), want all %d in one page", len(page.Items), page.NextCursor, len(want))
	}
	for _, it := range page.Items {
		if it.Value == nil || *it.Value != want[it.Name] {
			return nil, "", fmt.Errorf("secret %s: value missing or not the one written", it.Name)
		}
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// call sends in as JSON and requires status wantStatus.
func call(ctx context.Context, method, url string, header http.Header, in any, wantStatus int) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, body, err := benchhttp.Do(ctx, 30*time.Second, method, url, header, b)
	if err != nil {
		return err
	}
	if resp.StatusCode != wantStatus {
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, wantStatus, benchhttp.Snippet(body))
	}
	return nil
}
