// Command loadbench is `make bench-load`: for each database dialect it builds ./cmd/server and
// runs it as a child process, seeds one environment with 100 secrets of 64 characters, and
// drives a fixed-time HTTP load of the audited read GET …/secrets?include=values; then it
// drives the same load against a bare gin handler, in a child process of its own, serving
// the very same response bytes from memory. The load generator is a third process: wrk when
// it is installed, else this program's own generator (internal/loadgen) re-executed in a
// hidden mode. No two of the three share a Go runtime, so neither side is flattered.
//
// The targets (issue 16): on Postgres at least 15% of the bare handler's requests/s with
// p99 ≤ 25 ms; on SQLite at least 12% with p99 ≤ 40 ms. It also prints the server's RSS at
// the end of the load and its start-up time (process start to the first 200 from /readyz).
//
// It exits non-zero only when something prevents measuring; missing a target is reported,
// not failed, so the numbers always come out.
//
// `make bench-growth` runs it over a matrix (issue 16, item 3) to show how the cost grows:
// -values sets the secrets per environment, -connections the clients, and -environments
// spreads the read round-robin over that many environments (100 per project). With more
// than one environment the server is restarted after seeding, on the same database, so its
// caches are empty, and a cold pass reads each environment exactly once with this program's
// own client at -connections before the usual warm-up and timed (warm) load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	sqlite   = "sqlite"
	postgres = "postgres"
)

// target is the bar a dialect's audited read must clear, as a ratio to the bare handler's
// requests/s in the same run and an absolute p99.
type target struct {
	ratio float64
	p99   time.Duration
}

var targets = map[string]target{
	postgres: {0.15, 25 * time.Millisecond},
	sqlite:   {0.12, 40 * time.Millisecond},
}

// The generator choices for -generator.
const (
	genAuto    = "auto"
	genWrk     = "wrk"
	genLoadgen = "loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	// The hidden child modes come first: this binary re-executes itself as the bare server
	// and as the fallback load generator.
	switch {
	case len(os.Args) > 1 && os.Args[1] == serveBareMode:
		err = serveBare(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == generateMode:
		err = generate(ctx, os.Args[2:], os.Stdout)
	default:
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	duration     time.Duration
	warmup       time.Duration
	connections  int
	values       int // secrets per environment
	environments int // distinct environments, read round-robin
	threads      int // wrk threads
	generator    string
	postgresURL  string
	dialects     []string
	logLevel     string
	dbMaxConns   int    // 0: a per-dialect default
	serverBin    string // a prebuilt server; empty: build ./cmd/server
	// serverProfile, when set, is where the server's CPU profile over the measured Coffer
	// load is written, one file per dialect (<serverProfile>-<dialect>.pprof).
	serverProfile string
	// summary, when set, is a file to which each dialect's result is appended as one line,
	// so that several runs make one table (make bench-growth).
	summary string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per target")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.IntVar(&o.connections, "connections", 64, "concurrent client connections")
	fs.IntVar(&o.values, "values", 100, fmt.Sprintf("secrets of %d characters in each environment (at most %d: the read returns them in one page)", valueLen, maxPage))
	fs.IntVar(&o.environments, "environments", 1, "distinct environments, each with -values secrets, read round-robin; above 1 also measures a cold pass after a restart")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads (at most -connections)")
	fs.StringVar(&o.generator, "generator", genAuto, "load generator: wrk, loadgen (this program's own, in a separate process) or auto (wrk when installed)")
	fs.StringVar(&o.postgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"Postgres server on which a temporary database is created and dropped")
	dialects := fs.String("dialects", "sqlite,postgres", "comma-separated dialects to measure")
	fs.StringVar(&o.logLevel, "log-level", "warn", "server log level (request logs at info would dominate the profile)")
	fs.StringVar(&o.serverProfile, "server-profile", "", "write the server's CPU profile over the measured Coffer load to <this>-<dialect>.pprof, and its heap at the end to <this>-<dialect>.heap.pprof (go tool pprof)")
	fs.IntVar(&o.dbMaxConns, "db-max-conns", 0, "server database pool size (default 64 on Postgres, 8 on SQLite)")
	fs.StringVar(&o.summary, "summary", "", "append one line per dialect to this file (a header first when it is new), for a table over several runs")
	fs.StringVar(&o.serverBin, "server", "", "a prebuilt coffer server binary (default: build ./cmd/server into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case o.duration <= 0:
		return o, errors.New("-duration must be positive")
	case o.warmup < 0:
		return o, errors.New("-warmup must not be negative")
	case o.connections < 1:
		return o, errors.New("-connections must be at least 1")
	case o.values < 1 || o.values > maxPage:
		return o, fmt.Errorf("-values must be from 1 to %d (one page of the read)", maxPage)
	case o.environments < 1:
		return o, errors.New("-environments must be at least 1")
	case o.threads < 1:
		return o, errors.New("-threads must be at least 1")
	case o.dbMaxConns < 0:
		return o, errors.New("-db-max-conns must not be negative")
	}
	// wrk refuses more threads than connections.
	o.threads = min(o.threads, o.connections)
	switch o.generator {
	case genAuto, genWrk, genLoadgen:
	default:
		return o, fmt.Errorf("-generator: unknown generator %q (want wrk, loadgen or auto)", o.generator)
	}
	for d := range strings.SplitSeq(*dialects, ",") {
		d = strings.TrimSpace(d)
		if d != sqlite && d != postgres {
			return o, fmt.Errorf("-dialects: unknown dialect %q (want sqlite or postgres)", d)
		}
		o.dialects = append(o.dialects, d)
	}
	return o, nil
}

// maxConns is the server's database pool for dialect. SQLite allows one writer at a time, so
// a large pool only adds lock contention; Postgres gets one connection per client.
func (o options) maxConns(dialect string) int {
	switch {
	case o.dbMaxConns > 0:
		return o.dbMaxConns
	case dialect == postgres:
		return 64
	default:
		return 8
	}
}

// resolveGenerator turns auto into wrk when wrk is on PATH and into loadgen otherwise.
func resolveGenerator(choice string, lookPath func(string) (string, error)) (string, error) {
	_, err := lookPath("wrk")
	switch {
	case choice == genWrk && err != nil:
		return "", fmt.Errorf("-generator wrk: %w (apt-get install -y wrk)", err)
	case choice == genAuto && err == nil:
		return genWrk, nil
	case choice == genAuto:
		return genLoadgen, nil
	}
	return choice, nil
}

// run measures every dialect, prints the table and verdicts to stdout and sends server logs
// and progress to stderr. A dialect that cannot be measured is reported and the others still
// run; the returned error then names what failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.generator, err = resolveGenerator(o.generator, exec.LookPath); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program to re-execute it: %w", err)
	}
	bin := o.serverBin
	if bin == "" {
		tmp, err := os.MkdirTemp("", "coffer-loadbench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		fmt.Fprintln(stderr, "loadbench: building ./cmd/server")
		if bin, err = buildServerBin(ctx, tmp, stderr); err != nil {
			return err
		}
	}

	var results []result
	var errs []error
	for _, d := range o.dialects {
		r := measure(ctx, o, d, bin, self, stderr)
		results = append(results, r)
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, r.err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	printTable(stdout, o, results)
	if o.summary != "" {
		if err := appendSummary(o.summary, o, results); err != nil {
			errs = append(errs, fmt.Errorf("-summary: %w", err))
		}
	}
	return errors.Join(errs...)
}

// result is one dialect's pair of measurements.
type result struct {
	dialect   string
	body      int // bytes in the measured response
	coffer    loadResult
	bare      loadResult
	cofferRSS int64 // bytes, at the end of the measured load; 0 when unknown
	// serverP99 is the upper bound of the server's request-duration histogram bucket that
	// holds the 99th percentile of the measured reads, as the server timed them (from the
	// request read to the response written, without the time a request waits for a CPU
	// before the server reads it); 0 when unknown.
	serverP99 time.Duration
	bareRSS   int64
	startup   time.Duration // Coffer: process start to the first 200 from /readyz
	seeding   time.Duration
	// With more than one environment: the restart on the seeded database and the pass that
	// reads each environment once after it.
	restartup time.Duration
	cold      loadResult
	note      string // a condition of the run that makes its numbers suspect
	err       error
}

func (r result) ratio() float64 {
	if r.bare.RPS == 0 {
		return 0
	}
	return r.coffer.RPS / r.bare.RPS
}

// verdict says whether r meets its dialect's target, and why not when it does not. A run
// with failed reads does not pass however fast it was: errors can be cheap.
func (r result) verdict() (pass bool, why string) {
	t := targets[r.dialect]
	var misses []string
	if ratio := r.ratio(); ratio < t.ratio {
		misses = append(misses, fmt.Sprintf("req/s at %.1f%% of bare gin (< %.0f%%)", 100*ratio, 100*t.ratio))
	}
	if r.coffer.P99 > t.p99 {
		misses = append(misses, fmt.Sprintf("p99 %s (> %s)", ms(r.coffer.P99), t.p99))
	}
	if r.coffer.Errors > 0 {
		misses = append(misses, fmt.Sprintf("%d failed reads", r.coffer.Errors))
	}
	if r.cold.Errors > 0 {
		misses = append(misses, fmt.Sprintf("%d failed reads in the cold pass", r.cold.Errors))
	}
	if r.bare.Errors > 0 {
		misses = append(misses, fmt.Sprintf("%d failed bare reads (the ratio is not comparable)", r.bare.Errors))
	}
	if len(misses) > 0 {
		return false, strings.Join(misses, ", ")
	}
	return true, fmt.Sprintf("req/s at %.1f%% of bare gin (≥ %.0f%%), p99 %s (≤ %s)",
		100*r.ratio(), 100*t.ratio, ms(r.coffer.P99), t.p99)
}

func printTable(w io.Writer, o options, results []result) {
	gen := "wrk"
	if o.generator == genLoadgen {
		gen = "internal/loadgen"
	}
	if o.environments == 1 {
		fmt.Fprintf(w, "\nGET one environment of %d secrets of %d characters ?include=values; %d connections, %s measured after %s warm-up\n",
			o.values, valueLen, o.connections, o.duration, o.warmup)
	} else {
		fmt.Fprintf(w, "\nGET %d environments round-robin (%d per project), each of %d secrets of %d characters ?include=values; %d connections\n",
			o.environments, envsPerProject, o.values, valueLen, o.connections)
		fmt.Fprintf(w, "coffer-cold: after a restart, each environment read once; coffer-read: then %s measured after %s warm-up; bare gin serves one body on every path\n",
			o.duration, o.warmup)
	}
	fmt.Fprintf(w, "each target in its own process (coffer: ./cmd/server; bare gin: loadbench %s); generator: %s in a third process\n\n",
		serveBareMode, gen)
	fmt.Fprintf(w, "%-9s %-13s %9s %9s %9s %9s %8s %9s\n", "dialect", "target", "req/s", "p50", "p90", "p99", "errors", "RSS")
	line := func(dialect, name string, r loadResult, rss int64) {
		fmt.Fprintf(w, "%-9s %-13s %9.0f %9s %9s %9s %8d %9s\n", dialect, name, r.RPS, ms(r.P50), ms(r.P90), ms(r.P99), r.Errors, mib(rss))
	}
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "%-9s not measured: %v\n", r.dialect, r.err)
			continue
		}
		t := targets[r.dialect]
		if o.environments > 1 {
			line(r.dialect, "coffer-cold", r.cold, 0)
		}
		line(r.dialect, "coffer-read", r.coffer, r.cofferRSS)
		line(r.dialect, "bare-gin", r.bare, r.bareRSS)
		fmt.Fprintf(w, "%-9s %-13s %8.1f%%   (target ≥ %.0f%%, p99 ≤ %s; body %d bytes; coffer start-up %s)\n",
			"", "ratio", 100*r.ratio(), 100*t.ratio, t.p99, r.body, ms(r.startup))
		if r.serverP99 > 0 {
			fmt.Fprintf(w, "%-9s %-13s 99%% of coffer's reads took at most %s in the server (its duration histogram)\n", "", "server-side", ms(r.serverP99))
		}
		fmt.Fprintf(w, "%-9s %-13s seeded %d×%d secrets in %s", "", "set-up", o.environments, o.values, r.seeding.Round(100*time.Millisecond))
		if o.environments > 1 {
			fmt.Fprintf(w, "; start-up after it %s; cold pass: %d requests, in-process client", ms(r.restartup), r.cold.Requests)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, r := range results {
		if r.err != nil {
			continue
		}
		pass, why := r.verdict()
		word := "MISS"
		if pass {
			word = "PASS"
		}
		fmt.Fprintf(w, "%-9s %s: %s\n", r.dialect, word, why)
		if r.note != "" {
			fmt.Fprintf(w, "%-9s warning: %s\n", "", r.note)
		}
	}
}

const summaryFormat = "%-9s %6s %6s %6s %10s %9s %9s %8s %9s %9s %10s %6s %6s %9s %8s\n"

// appendSummary adds a line per measured dialect to file, and the column header first when
// the file is empty.
func appendSummary(file string, o options, results []result) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	var b strings.Builder
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		fmt.Fprintf(&b, summaryFormat, "dialect", "values", "conns", "envs", "cold req/s", "cold p50", "cold p99",
			"req/s", "p50", "p99", "bare req/s", "ratio", "errors", "RSS", "seeding")
	}
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(&b, "%-9s %6d %6d %6d not measured: %v\n", r.dialect, o.values, o.connections, o.environments, r.err)
			continue
		}
		coldRPS, coldP50, coldP99 := "-", "-", "-"
		if o.environments > 1 {
			coldRPS, coldP50, coldP99 = fmt.Sprintf("%.0f", r.cold.RPS), ms(r.cold.P50), ms(r.cold.P99)
		}
		fmt.Fprintf(&b, summaryFormat, r.dialect, strconv.Itoa(o.values), strconv.Itoa(o.connections), strconv.Itoa(o.environments),
			coldRPS, coldP50, coldP99, fmt.Sprintf("%.0f", r.coffer.RPS), ms(r.coffer.P50), ms(r.coffer.P99),
			fmt.Sprintf("%.0f", r.bare.RPS), fmt.Sprintf("%.1f%%", 100*r.ratio()), strconv.FormatInt(r.cold.Errors+r.coffer.Errors, 10), mib(r.cofferRSS), r.seeding.Round(100*time.Millisecond).String())
	}
	if _, err := f.WriteString(b.String()); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// ms prints a duration in milliseconds, so every column shares one unit.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// mib prints a byte count in MiB; zero means unknown.
func mib(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
