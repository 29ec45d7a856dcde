// Command clibench measures `coffer run -- true` against an environment of 100 secrets on
// loopback: the server built from ./cmd/server runs in its own process, and each sample is
// the wall time of the coffer binary run as a process, from start to exit, as a user sees it
// (issue 18: the median of 20 runs at most 100 ms). It runs on SQLite and, with -postgres-url
// reachable, on Postgres.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/tools/internal/benchdb"
	"github.com/cofferhq/coffer/tools/internal/benchhttp"
	"github.com/cofferhq/coffer/tools/internal/benchserver"
)

type options struct {
	runs, warmup, values int
	postgresURL          string
	target               time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 20, "timed runs of `coffer run -- true` per database")
	flag.IntVar(&o.warmup, "warmup", 3, "untimed runs first")
	flag.IntVar(&o.values, "values", 100, "secrets in the environment")
	flag.StringVar(&o.postgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "Postgres server to create a temporary database on (empty: SQLite only)")
	flag.DurationVar(&o.target, "target", 100*time.Millisecond, "the median to stay under")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "clibench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "coffer-clibench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	server, err := benchserver.Build(ctx, dir, stderr)
	if err != nil {
		return err
	}
	cli := filepath.Join(dir, "coffer")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "github.com/cofferhq/coffer/cmd/coffer").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/coffer: %v\n%s", err, out)
	}
	dialects := []string{"sqlite"}
	if o.postgresURL != "" {
		dialects = append(dialects, "postgres")
	}
	fmt.Fprintf(stdout, "coffer run -- true, %d secrets, loopback, %d runs after %d warm-up (wall time of the process)\n", o.values, o.runs, o.warmup)
	fmt.Fprintf(stdout, "%-9s %8s %8s %8s %8s  %s\n", "database", "median", "p90", "min", "max", "target")
	failed := false
	for _, d := range dialects {
		samples, err := measure(ctx, o, d, server, cli, filepath.Join(dir, d), stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		slices.Sort(samples)
		med := samples[len(samples)/2]
		if len(samples)%2 == 0 {
			med = (samples[len(samples)/2-1] + samples[len(samples)/2]) / 2
		}
		verdict := "met"
		if med > o.target {
			verdict, failed = "MISSED", true
		}
		fmt.Fprintf(stdout, "%-9s %8s %8s %8s %8s  median <= %s: %s\n", d, ms(med), ms(samples[len(samples)*9/10]), ms(samples[0]), ms(samples[len(samples)-1]), o.target, verdict)
	}
	if failed {
		return errors.New("a median is above the target")
	}
	return nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

// measure starts a server on the dialect, seeds one environment and times the runs.
func measure(ctx context.Context, o options, dialect, serverBin, cli, dataDir string, stderr io.Writer) ([]time.Duration, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	dbURL := ""
	if dialect == "postgres" {
		db, err := benchdb.Create(ctx, o.postgresURL, "coffer_clibench_")
		if err != nil {
			return nil, err
		}
		defer db.Drop()
		dbURL = db.URL
	}
	var kek [32]byte
	if _, err := rand.Read(kek[:]); err != nil {
		return nil, err
	}
	srv, err := benchserver.Start(ctx, benchserver.Config{Bin: serverBin, DataDir: dataDir, DBURL: dbURL, LogLevel: "warn",
		Env: []string{"COFFER_MASTER_KEY=" + base64.StdEncoding.EncodeToString(kek[:])}}, stderr)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if err := benchhttp.Call(ctx, http.MethodPost, srv.BaseURL+"/api/v1/tenants/default/projects", srv.Header, map[string]string{"slug": "bench", "name": "Bench"}, http.StatusCreated); err != nil {
		return nil, fmt.Errorf("create project: %w", err)
	}
	secrets := make([]map[string]string, o.values)
	for i := range secrets {
		secrets[i] = map[string]string{"name": fmt.Sprintf("BENCH_SECRET_%03d", i), "value": strings.Repeat("v", 40) + strconv.Itoa(i)}
	}
	if err := benchhttp.Call(ctx, http.MethodPatch, srv.BaseURL+"/api/v1/tenants/default/projects/bench/environments/development/secrets", srv.Header,
		map[string]any{"secrets": secrets}, http.StatusOK); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir, "COFFER_SERVER=" + srv.BaseURL,
		"COFFER_TOKEN=" + strings.TrimPrefix(srv.Header.Get("Authorization"), "Bearer ")}
	var samples []time.Duration
	for i := range o.warmup + o.runs {
		cmd := exec.CommandContext(ctx, cli, "run", "--project", "bench", "--env", "development", "--", "true")
		cmd.Env, cmd.Dir = env, dataDir
		var errb strings.Builder
		cmd.Stderr = &errb
		t0 := time.Now()
		err := cmd.Run()
		took := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("coffer run: %v: %s", err, errb.String())
		}
		if i >= o.warmup {
			samples = append(samples, took)
		}
	}
	// The child saw every secret: checked once, outside the timed runs.
	check := exec.CommandContext(ctx, cli, "run", "--project", "bench", "--env", "development", "--no-inherit", "--", "/usr/bin/env")
	check.Env, check.Dir = env, dataDir
	out, err := check.Output()
	if err != nil {
		return nil, fmt.Errorf("coffer run env: %w", err)
	}
	if n := strings.Count(string(out), "BENCH_SECRET_"); n != o.values {
		return nil, fmt.Errorf("the child saw %d secrets, want %d", n, o.values)
	}
	return samples, nil
}
