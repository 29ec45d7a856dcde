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
	"strings"
	"time"

	"github.com/cofferhq/coffer/tools/internal/benchdb"
	"github.com/cofferhq/coffer/tools/internal/benchhttp"
	"github.com/cofferhq/coffer/tools/internal/benchserver"
)

const (
	secretCount = 100
	valueLen    = 64
	project     = "web"
	readPath    = "/api/v1/tenants/default/projects/" + project + "/environments/staging/secrets"
	readQuery   = "?include=values"
)

// buildServerBin is benchserver.Build, a variable only so the flow reads top-down in run.
var buildServerBin = benchserver.Build

// measure runs one dialect from an empty database to both measurements, and removes
// everything it created, also when interrupted.
func measure(ctx context.Context, o options, dialect, bin, self string, stderr io.Writer) (res result) {
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
		// Another program holding connections (a second benchmark, a test run) makes the
		// server fail reads with "too many clients"; say so, since the errors column alone
		// would blame Coffer.
		if free, err := db.FreeConnections(ctx); err == nil && free < o.maxConns(dialect)+1 {
			res.note = fmt.Sprintf("only %d free Postgres connections for a pool of %d: other clients are connected", free, o.maxConns(dialect))
			fmt.Fprintf(stderr, "loadbench: %s: warning: %s\n", dialect, res.note)
		}
	}

	// A throwaway key given the way production gives one, so no key file is generated (and
	// warned about) in a directory that is deleted afterwards.
	var kek [32]byte
	if _, err := rand.Read(kek[:]); err != nil {
		res.err = err
		return res
	}
	fmt.Fprintf(stderr, "loadbench: %s: starting the server\n", dialect)
	srv, err := benchserver.Start(ctx, benchserver.Config{
		Bin:      bin,
		DataDir:  dataDir,
		DBURL:    dbURL,
		LogLevel: o.logLevel,
		Env: []string{
			"COFFER_DB_MAX_CONNS=" + strconv.Itoa(o.maxConns(dialect)),
			"COFFER_MASTER_KEY=" + base64.StdEncoding.EncodeToString(kek[:]),
			"COFFER_PPROF=" + strconv.FormatBool(o.serverProfile != ""),
		},
	}, stderr)
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("server shutdown: %w", err))
		}
	}()
	res.startup = srv.Startup

	want, err := seed(ctx, srv.BaseURL, srv.Header)
	if err != nil {
		res.err = fmt.Errorf("seed: %w", err)
		return res
	}
	body, contentType, err := capture(ctx, srv.BaseURL, srv.Header, want)
	if err != nil {
		res.err = fmt.Errorf("first read: %w", err)
		return res
	}
	res.body = len(body)
	auth := srv.Header.Get("Authorization")

	fmt.Fprintf(stderr, "loadbench: %s: coffer-read for %s (+%s warm-up)\n", dialect, o.duration, o.warmup)
	profiled := make(chan error, 1)
	if o.serverProfile != "" {
		// The profile starts with the load (its warm-up included: a few seconds of the same work).
		go func() {
			profiled <- profileServer(ctx, strings.TrimSuffix(srv.MetricsURL, "/metrics"), o.warmup+o.duration, o.serverProfile+"-"+dialect+".pprof")
		}()
	} else {
		profiled <- nil
	}
	res.coffer, err = drive(ctx, o, self, srv.BaseURL+readPath+readQuery, auth, stderr)
	if perr := <-profiled; perr != nil {
		fmt.Fprintf(stderr, "loadbench: %s: server profile: %v\n", dialect, perr)
	}
	if err != nil {
		res.err = fmt.Errorf("coffer-read: %w", err)
		return res
	}
	// Read right after the load, before the server is stopped: the heap it grew to serve
	// 64 connections is what RSS under load means.
	if res.cofferRSS, err = benchserver.RSS(srv.PID()); err != nil {
		fmt.Fprintf(stderr, "loadbench: %s: coffer RSS: %v\n", dialect, err)
	}
	// The bare handler gets the whole machine, as Coffer did.
	if err := srv.Stop(); err != nil {
		res.err = fmt.Errorf("server shutdown: %w", err)
		return res
	}

	bare, err := startBare(ctx, self, dataDir, body, contentType, stderr)
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
	res.bare, err = drive(ctx, o, self, bare.baseURL+readPath+readQuery, auth, stderr)
	if err != nil {
		res.err = fmt.Errorf("bare-gin: %w", err)
		return res
	}
	if res.bareRSS, err = benchserver.RSS(bare.cmd.Process.Pid); err != nil {
		fmt.Fprintf(stderr, "loadbench: %s: bare RSS: %v\n", dialect, err)
	}
	return res
}

// seed creates the project and writes the secrets in one request, returning name → value.
func seed(ctx context.Context, baseURL string, header http.Header) (map[string]string, error) {
	if err := call(ctx, http.MethodPost, baseURL+"/api/v1/tenants/default/projects", header,
		map[string]string{"slug": project, "name": "Web"}, http.StatusCreated); err != nil {
		return nil, fmt.Errorf("create project: %w", err)
	}
	type entry struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	want := make(map[string]string, secretCount)
	entries := make([]entry, secretCount)
	for i := range entries {
		// 64 characters of URL-safe base64, as API keys and passwords tend to be.
		var b [48]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		v := base64.RawURLEncoding.EncodeToString(b[:])[:valueLen]
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

// profileServer saves the server's CPU profile over the next d (COFFER_PPROF on its metrics
// listener) to file.
func profileServer(ctx context.Context, base string, d time.Duration, file string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	resp, body, err := benchhttp.Do(ctx, d+30*time.Second, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, benchhttp.Snippet(body))
	}
	return os.WriteFile(file, body, 0o644)
}
