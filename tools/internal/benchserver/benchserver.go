// Package benchserver builds ./cmd/server and runs it as a child process for the benchmark
// tools, so the server under test never shares a Go runtime with the program measuring it.
package benchserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/tools/internal/benchhttp"
)

// Build compiles the server into dir. The import path (not ./cmd/server) builds the same
// package from wherever in the module this runs.
func Build(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	bin := filepath.Join(dir, "coffer-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/cofferhq/coffer/cmd/server")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/server: %w", err)
	}
	return bin, nil
}

// Config says how to run one server.
type Config struct {
	Bin      string
	DataDir  string
	DBURL    string // empty: SQLite in DataDir
	LogLevel string
	// Env adds KEY=value settings (e.g. COFFER_DB_MAX_CONNS) to the few this package sets.
	Env []string
	// Token is the bootstrap owner's personal access token; empty: a new one. A restart on
	// the same database must pass the first start's token, since the server only bootstraps
	// an instance that has no owner yet.
	Token string
}

// Server is a Coffer child process owned by the caller: Stop ends it and waits for it.
type Server struct {
	BaseURL    string
	WSURL      string
	MetricsURL string
	Header     http.Header // the bootstrap owner's bearer token
	// Startup is the time from starting the process to the first 200 from /readyz.
	Startup time.Duration

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited closes
}

// Start runs cfg.Bin on cfg.DataDir (and database URL on Postgres), fresh or left by an
// earlier Start with the same Config, and waits until /readyz answers 200.
func Start(ctx context.Context, cfg Config, stderr io.Writer) (*Server, error) {
	token := cfg.Token
	if token == "" {
		var err error
		if token, err = NewToken(); err != nil {
			return nil, err
		}
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Bin)
	// Nothing else from this process's environment reaches the server under test: a stray
	// COFFER_DATABASE_URL must not point the benchmark at a real database. The token is in
	// the environment, not on the command line where other users could read it.
	cmd.Env = append([]string{
		"COFFER_LISTEN=" + addr,
		"COFFER_DATA_DIR=" + cfg.DataDir,
		"COFFER_BOOTSTRAP_TOKEN=" + token,
		"COFFER_LOG_LEVEL=" + cfg.LogLevel,
		"COFFER_METRICS_LISTEN=" + metricsAddr,
	}, cfg.Env...)
	if cfg.DBURL != "" {
		cmd.Env = append(cmd.Env, "COFFER_DATABASE_URL="+cfg.DBURL)
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Bin, err)
	}
	s := &Server{
		BaseURL:    "http://" + addr,
		WSURL:      "ws://" + addr + "/api/v1/events",
		MetricsURL: "http://" + metricsAddr + "/metrics",
		Header:     http.Header{"Authorization": {"Bearer " + token}},
		exited:     make(chan struct{}),
		cmd:        cmd,
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.awaitReady(ctx, time.Minute); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	s.Startup = time.Since(started)
	return s, nil
}

// PID is the child's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited is closed once the child has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// awaitReady polls /readyz until it answers 200, the child exits or timeout passes. The
// short interval keeps the start-up time measured to within about 10 ms.
func (s *Server) awaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, _, err := benchhttp.Do(ctx, 2*time.Second, http.MethodGet, s.BaseURL+"/readyz", nil, nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server was not ready within %s (last: %v)", timeout, err)
		}
	}
}

// Stop sends SIGTERM, waits for a graceful exit and kills the child if it takes too long.
func (s *Server) Stop() error {
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

// Metric reads one unlabelled sample from the server's /metrics; ok is false when the
// scrape failed or the metric is absent.
func (s *Server) Metric(ctx context.Context, name string) (v float64, ok bool) {
	resp, body, err := benchhttp.Do(ctx, 5*time.Second, http.MethodGet, s.MetricsURL, nil, nil)
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

// FreeAddr finds a free loopback port by listening on :0 and closing. Another program could
// take it before the server binds; the server then fails to start and says so.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// NewToken makes a bootstrap personal access token: cfr_pat_ and 43 URL-safe characters.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "cfr_pat_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// RSS is the resident set size of process pid (VmRSS in /proc/<pid>/status), in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS line in /proc status")
}
