package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/tools/internal/benchdb"
	"github.com/cofferhq/coffer/tools/internal/benchhttp"
	"github.com/cofferhq/coffer/tools/internal/benchserver"
)

const (
	valueLen = 64
	project  = "web"
	readPath = "/api/v1/tenants/default/projects/" + project + "/environments/staging/secrets"
	// readPattern is every environment's read as a gin route, for the bare handler when the
	// load spreads over many environments.
	readPattern = "/api/v1/tenants/default/projects/:project/environments/:env/secrets"
	// The API's default and largest page of secrets; the read must return every value in one.
	defaultPage = 100
	maxPage     = 1000
	// envsPerProject spreads -environments over projects the way a tenant's would be, not
	// 10,000 in one project.
	envsPerProject = 100
	// seedWorkers write in parallel so 10,000 environments seed in a minute or two.
	seedWorkers = 8
)

// readQuery asks for the values, and for a page large enough to hold them all.
func readQuery(values int) string {
	if values <= defaultPage {
		return "?include=values"
	}
	return "?include=values&limit=" + strconv.Itoa(values)
}

// environment is one seeded environment; the first is always web/staging (readPath).
type environment struct{ project, slug string }

// environments names n environments: envsPerProject per project (web, web-1, …), the first
// of each the staging environment every project is created with, the rest env-01 and on.
func environments(n int) []environment {
	envs := make([]environment, n)
	for i := range envs {
		p, j := i/envsPerProject, i%envsPerProject
		e := environment{project: project, slug: "staging"}
		if p > 0 {
			e.project = fmt.Sprintf("%s-%d", project, p)
		}
		if j > 0 {
			e.slug = fmt.Sprintf("env-%02d", j)
		}
		envs[i] = e
	}
	return envs
}

func (e environment) projectPath() string { return "/api/v1/tenants/default/projects/" + e.project }

func (e environment) secretsPath() string {
	return e.projectPath() + "/environments/" + e.slug + "/secrets"
}

// buildServerBin is benchserver.Build, a variable only so the flow reads top-down in run.
var buildServerBin = benchserver.Build

// measure runs one dialect from an empty database to both measurements, and removes
// everything it created, also when interrupted. With more than one environment the server
// is restarted after seeding, and a cold pass reads each environment once before the timed
// (warm) load.
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
	// The token is chosen here so that a restart on the same database can sign in again.
	token, err := benchserver.NewToken()
	if err != nil {
		res.err = err
		return res
	}
	cfg := benchserver.Config{
		Bin:      bin,
		DataDir:  dataDir,
		DBURL:    dbURL,
		LogLevel: o.logLevel,
		Env: []string{
			"COFFER_DB_MAX_CONNS=" + strconv.Itoa(o.maxConns(dialect)),
			"COFFER_MASTER_KEY=" + base64.StdEncoding.EncodeToString(kek[:]),
			"COFFER_PPROF=" + strconv.FormatBool(o.serverProfile != ""),
		},
		Token: token,
	}
	fmt.Fprintf(stderr, "loadbench: %s: starting the server\n", dialect)
	srv, err := benchserver.Start(ctx, cfg, stderr)
	if err != nil {
		res.err = err
		return res
	}
	// A closure over srv, which the restart replaces.
	defer func() {
		if err := srv.Stop(); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("server shutdown: %w", err))
		}
	}()
	res.startup = srv.Startup

	envs := environments(o.environments)
	seedStart := time.Now()
	wants, err := seed(ctx, srv.BaseURL, srv.Header, envs, o.values, func(done int) {
		fmt.Fprintf(stderr, "loadbench: %s: seeded %d/%d environments of %d secrets (%s)\n",
			dialect, done, len(envs), o.values, time.Since(seedStart).Round(100*time.Millisecond))
	})
	if err != nil {
		res.err = fmt.Errorf("seed: %w", err)
		return res
	}
	res.seeding = time.Since(seedStart)
	query := readQuery(o.values)
	body, contentType, err := capture(ctx, srv.BaseURL+envs[0].secretsPath()+query, srv.Header, wants[0])
	if err != nil {
		res.err = fmt.Errorf("first read: %w", err)
		return res
	}
	if last := len(envs) - 1; last > 0 {
		if _, _, err := capture(ctx, srv.BaseURL+envs[last].secretsPath()+query, srv.Header, wants[last]); err != nil {
			res.err = fmt.Errorf("read of the last environment: %w", err)
			return res
		}
	}
	res.body = len(body)
	auth := srv.Header.Get("Authorization")

	// One environment is read at readPath; many are read in turn, which the generators
	// take from files written once here.
	url := srv.BaseURL + readPath + query
	var rr *roundRobin
	if len(envs) > 1 {
		paths := make([]string, len(envs))
		for i, e := range envs {
			paths[i] = e.secretsPath() + query
		}
		if rr, err = writeRoundRobin(dataDir, paths, auth); err != nil {
			res.err = err
			return res
		}
		// Seeding filled the server's caches; a restart empties them (data keys, listings,
		// scopes) and the cold pass is the first read of each environment.
		fmt.Fprintf(stderr, "loadbench: %s: restarting the server for the cold pass\n", dialect)
		if err := srv.Stop(); err != nil {
			res.err = fmt.Errorf("server shutdown before the cold pass: %w", err)
			return res
		}
		if srv, err = benchserver.Start(ctx, cfg, stderr); err != nil {
			res.err = fmt.Errorf("restart: %w", err)
			return res
		}
		res.restartup = srv.Startup
		fmt.Fprintf(stderr, "loadbench: %s: cold pass over %d environments\n", dialect, len(envs))
		if res.cold, err = sweep(ctx, srv.BaseURL, paths, srv.Header, o.connections); err != nil {
			res.err = fmt.Errorf("cold pass: %w", err)
			return res
		}
		url = srv.BaseURL
	}

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
	res.coffer, err = drive(ctx, o, self, url, auth, rr, stderr)
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
	if res.serverP99, err = serverP99(ctx, srv.MetricsURL); err != nil {
		fmt.Fprintf(stderr, "loadbench: %s: server-side p99: %v\n", dialect, err)
	}
	if o.serverProfile != "" {
		file := o.serverProfile + "-" + dialect + ".heap.pprof"
		if err := saveProfile(ctx, strings.TrimSuffix(srv.MetricsURL, "/metrics")+"/debug/pprof/heap", file); err != nil {
			fmt.Fprintf(stderr, "loadbench: %s: server heap profile: %v\n", dialect, err)
		}
	}
	// The bare handler gets the whole machine, as Coffer did.
	if err := srv.Stop(); err != nil {
		res.err = fmt.Errorf("server shutdown: %w", err)
		return res
	}

	// Over many environments the bare handler answers every one of them with the first's
	// body: it is the cost of HTTP and routing alone.
	route := readPath
	if rr != nil {
		route = readPattern
	}
	bare, err := startBare(ctx, self, dataDir, body, contentType, route, stderr)
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
	// The same requests, header included, so both targets parse the same bytes.
	bareURL := bare.baseURL + readPath + query
	if rr != nil {
		bareURL = bare.baseURL
	}
	res.bare, err = drive(ctx, o, self, bareURL, auth, rr, stderr)
	if err != nil {
		res.err = fmt.Errorf("bare-gin: %w", err)
		return res
	}
	if res.bareRSS, err = benchserver.RSS(bare.cmd.Process.Pid); err != nil {
		fmt.Fprintf(stderr, "loadbench: %s: bare RSS: %v\n", dialect, err)
	}
	return res
}

// sweep is the cold pass: every path read once at conns concurrency by this process's own
// client (a wrk run cannot stop after exactly one read of each), timed as a whole.
func sweep(ctx context.Context, baseURL string, paths []string, header http.Header, conns int) (loadResult, error) {
	r, err := loadgen.Sweep(ctx, loadgen.Options{URL: baseURL, Paths: paths, Header: header, Connections: conns})
	if err != nil {
		return loadResult{}, err
	}
	return loadResult{Requests: r.Requests + r.Errors, Errors: r.Errors, RPS: r.RPS, P50: r.P50, P90: r.P90, P99: r.P99}, nil
}

type entry struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// seed creates the environments' projects and environments and writes values secrets into
// each, seedWorkers requests at a time, returning each environment's name → value. progress
// is called now and then with the number of environments done.
func seed(ctx context.Context, baseURL string, header http.Header, envs []environment, values int, progress func(done int)) ([]map[string]string, error) {
	var projects []string
	for _, e := range envs {
		if len(projects) == 0 || projects[len(projects)-1] != e.project {
			projects = append(projects, e.project)
		}
	}
	err := forEach(ctx, len(projects), seedWorkers, func(ctx context.Context, i int) error {
		if err := benchhttp.Call(ctx, http.MethodPost, baseURL+"/api/v1/tenants/default/projects", header,
			map[string]string{"slug": projects[i], "name": projects[i]}, http.StatusCreated); err != nil {
			return fmt.Errorf("create project %s: %w", projects[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	wants := make([]map[string]string, len(envs))
	var done atomic.Int64
	step := max(1, int64(len(envs))/10)
	err = forEach(ctx, len(envs), seedWorkers, func(ctx context.Context, i int) error {
		e := envs[i]
		if e.slug != "staging" { // made with the project
			if err := benchhttp.Call(ctx, http.MethodPost, baseURL+e.projectPath()+"/environments", header,
				map[string]string{"slug": e.slug, "name": e.slug}, http.StatusCreated); err != nil {
				return fmt.Errorf("create environment %s/%s: %w", e.project, e.slug, err)
			}
		}
		want, entries, err := newSecrets(values)
		if err != nil {
			return err
		}
		for chunk := range slices.Chunk(entries, secrets.MaxBatch) {
			if err := benchhttp.Call(ctx, http.MethodPatch, baseURL+e.secretsPath(), header,
				map[string]any{"secrets": chunk}, http.StatusOK); err != nil {
				return fmt.Errorf("write secrets of %s/%s: %w", e.project, e.slug, err)
			}
		}
		wants[i] = want
		if d := done.Add(1); d%step == 0 || d == int64(len(envs)) {
			progress(int(d))
		}
		return nil
	})
	return wants, err
}

// newSecrets makes n secrets of 64 characters of URL-safe base64, as API keys and passwords
// tend to be.
func newSecrets(n int) (map[string]string, []entry, error) {
	want := make(map[string]string, n)
	entries := make([]entry, n)
	for i := range entries {
		var b [48]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, err
		}
		v := base64.RawURLEncoding.EncodeToString(b[:])[:valueLen]
		entries[i] = entry{Name: fmt.Sprintf("SECRET_%03d", i), Value: v}
		want[entries[i].Name] = v
	}
	return want, entries, nil
}

// forEach calls fn for 0 to n-1 on up to workers goroutines, and stops handing out work at
// the first error, which it returns.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// capture performs the read at url once and checks that it returns every value written, so
// the load measures the real thing and the bare handler serves the same bytes.
func capture(ctx context.Context, url string, header http.Header, want map[string]string) (body []byte, contentType string, err error) {
	resp, body, err := benchhttp.Do(ctx, 30*time.Second, http.MethodGet, url, header, nil)
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

// profileServer saves the server's CPU profile over the next d (COFFER_PPROF on its metrics
// listener) to file.
func profileServer(ctx context.Context, base string, d time.Duration, file string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	return fetchProfile(ctx, d+30*time.Second, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), file)
}

// serverP99 reads the server's request-duration histogram of the secrets route (every read
// of the run: warm-up, cold pass and measurement) and returns the upper bound of the bucket
// holding its 99th percentile.
func serverP99(ctx context.Context, metricsURL string) (time.Duration, error) {
	resp, body, err := benchhttp.Do(ctx, 10*time.Second, http.MethodGet, metricsURL, nil, nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, benchhttp.Snippet(body))
	}
	return histogramP99(string(body), "coffer_http_request_duration_seconds_bucket", `/secrets"`)
}

// histogramP99 finds, in Prometheus text, the cumulative buckets of the histogram named
// metric whose labels contain match, and returns the upper bound of the first bucket that
// holds 99% of the observations.
func histogramP99(text, metric, match string) (time.Duration, error) {
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, match) {
			continue
		}
		_, rest, ok := strings.Cut(line, `le="`)
		le, rest, ok2 := strings.Cut(rest, `"`)
		fields := strings.Fields(rest)
		if !ok || !ok2 || len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		buckets = append(buckets, bucket{bound, n})
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return 0, fmt.Errorf("no observations of %s{…%s…}", metric, match)
	}
	total := buckets[len(buckets)-1].count
	for _, b := range buckets {
		if b.count >= 0.99*total {
			if math.IsInf(b.le, 1) {
				return 0, errors.New("the 99th percentile is beyond the largest bucket")
			}
			return time.Duration(b.le * float64(time.Second)), nil
		}
	}
	return 0, errors.New("unreachable: the last bucket holds every observation")
}

// saveProfile saves the profile at url (a heap profile: live objects at the last GC).
func saveProfile(ctx context.Context, url, file string) error {
	return fetchProfile(ctx, 30*time.Second, url, file)
}

func fetchProfile(ctx context.Context, timeout time.Duration, url, file string) error {
	resp, body, err := benchhttp.Do(ctx, timeout, http.MethodGet, url, nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, benchhttp.Snippet(body))
	}
	return os.WriteFile(file, body, 0o644)
}
