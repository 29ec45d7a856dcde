package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/tools/internal/benchhttp"
)

// buildServer compiles the server into dir. The import path (not ./cmd/server) builds the
// same package from wherever in the module this runs.
func buildServer(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	bin := filepath.Join(dir, "coffer-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/cofferhq/coffer/cmd/server")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/server: %w", err)
	}
	return bin, nil
}

// server is a Coffer child process owned by this program: stop ends it and waits for it.
type server struct {
	baseURL    string
	wsURL      string
	metricsURL string
	header     http.Header // the bootstrap owner's bearer token
	exited     chan struct{}
	cmd        *exec.Cmd
	waitErr    error // set before exited closes
}

// startServer runs bin with a fresh data directory (and database URL on Postgres) and waits
// until /readyz answers 200.
func startServer(ctx context.Context, o options, bin, dataDir, dbURL string, stderr io.Writer) (*server, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	// Nothing else from this process's environment reaches the server under test: a stray
	// COFFER_DATABASE_URL must not point the benchmark at a real database. The token is in
	// the environment, not on the command line where other users could read it.
	cmd.Env = []string{
		"COFFER_LISTEN=" + addr,
		"COFFER_DATA_DIR=" + dataDir,
		"COFFER_BOOTSTRAP_TOKEN=" + token,
		"COFFER_LOG_LEVEL=" + o.logLevel,
		"COFFER_METRICS_LISTEN=" + metricsAddr,
	}
	if dbURL != "" {
		cmd.Env = append(cmd.Env, "COFFER_DATABASE_URL="+dbURL)
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{
		baseURL:    "http://" + addr,
		wsURL:      "ws://" + addr + "/api/v1/events",
		metricsURL: "http://" + metricsAddr + "/metrics",
		header:     http.Header{"Authorization": {"Bearer " + token}},
		exited:     make(chan struct{}),
		cmd:        cmd,
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.awaitReady(ctx, time.Minute); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	return s, nil
}

// awaitReady polls /readyz until it answers 200, the child exits or timeout passes.
func (s *server) awaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, _, err := benchhttp.Do(ctx, 2*time.Second, http.MethodGet, s.baseURL+"/readyz", nil, nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server was not ready within %s (last: %v)", timeout, err)
		}
	}
}

// stop sends SIGTERM, waits for a graceful exit and kills the child if it takes too long.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return nil // it had already gone; awaitReady reported why
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal the server: %w", err)
	}
	select {
	case <-s.exited:
		return nil // a nonzero exit after SIGTERM is not this benchmark's concern
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("the server did not stop within 30s of SIGTERM; killed it")
	}
}

// freeAddr finds a free loopback port by listening on :0 and closing. Another program could
// take it before the server binds; the server then fails to start and says so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// newToken makes a bootstrap personal access token: cfr_pat_ and 43 URL-safe characters.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "cfr_pat_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// call sends in as JSON, requires one of wantStatus and returns the answer's body.
func (s *server) call(ctx context.Context, method, path string, in any, wantStatus ...int) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	resp, got, err := benchhttp.Do(ctx, 30*time.Second, method, s.baseURL+path, s.header, body)
	if err != nil {
		return nil, err
	}
	for _, w := range wantStatus {
		if resp.StatusCode == w {
			return got, nil
		}
	}
	return nil, fmt.Errorf("%s %s: status %d, want %v: %s", method, path, resp.StatusCode, wantStatus, benchhttp.Snippet(got))
}

// metric reads one unlabelled sample from the server's /metrics; ok is false when the
// scrape failed or the metric is absent.
func (s *server) metric(ctx context.Context, name string) (v float64, ok bool) {
	resp, body, err := benchhttp.Do(ctx, 5*time.Second, http.MethodGet, s.metricsURL, nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}
