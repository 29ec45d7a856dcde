package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/tools/internal/benchhttp"
	"github.com/cofferhq/coffer/tools/internal/benchserver"
)

// buildServer compiles ./cmd/server into dir.
var buildServer = benchserver.Build

// server is a Coffer child process owned by this program (tools/internal/benchserver), with
// the calls this benchmark makes to it.
type server struct {
	*benchserver.Server
}

// startServer runs bin with a fresh data directory (and database URL on Postgres) and waits
// until /readyz answers 200.
func startServer(ctx context.Context, o options, bin, dataDir, dbURL string, stderr io.Writer) (*server, error) {
	s, err := benchserver.Start(ctx, benchserver.Config{Bin: bin, DataDir: dataDir, DBURL: dbURL, LogLevel: o.logLevel}, stderr)
	if err != nil {
		return nil, err
	}
	return &server{s}, nil
}

// stop ends the child and waits for it.
func (s *server) stop() error { return s.Stop() }

// call sends in as JSON, requires one of wantStatus and returns the answer's body.
func (s *server) call(ctx context.Context, method, path string, in any, wantStatus ...int) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	resp, got, err := benchhttp.Do(ctx, 30*time.Second, method, s.BaseURL+path, s.Header, body)
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

// metric reads one unlabelled sample from the server's /metrics.
func (s *server) metric(ctx context.Context, name string) (float64, bool) { return s.Metric(ctx, name) }
