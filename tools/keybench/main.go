// Command keybench is `make bench-keys`. It measures the two numbers the keys issue asks for,
// with the key-encryption key in AWS KMS (the project's KMS test server, reached over HTTP, so
// a data-key cache miss costs a real round trip):
//
//  1. reads/s of GET …/environments/development/secrets?include=values (100 secrets) with the
//     data-key cache warm and with it disabled, on SQLite and on Postgres, and how many KMS
//     Decrypt calls each run made;
//  2. how many versions/s a reseal (POST …/keys/rotate) re-encrypts on Postgres while reads of
//     the same environment continue, and whether any of those reads failed.
//
// The server under test runs in this process; every load is driven by the project's load
// generator in a separate process (this binary re-executed with -client), so that client and
// server never share a Go runtime and both sides of every ratio are measured the same way.
// The client reports its loadgen.Result as JSON on stdout; its token travels in the
// environment, not on the command line.
//
// The reseal's 100,000 versions are seeded mostly directly on Postgres (see seeddirect.go):
// through the API they take minutes, far longer than the reseal. Before each reseal the tables
// are vacuumed and analysed, so each starts from the state autovacuum would leave.
// -cpuprofile profiles this process (the server) during the reseal with reads; Postgres's own
// time is not in it, which is why the summary shows the server's CPU time beside the wall time.
//
// It exits non-zero only when something prevents measuring; a missed target is reported, not
// failed, so the numbers always come out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/app"
)

const (
	sqlite   = "sqlite"
	postgres = "postgres"
)

// The reseal target from the issue, for this 2-core machine.
const targetResealRate = 20000

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == clientFlag {
		os.Exit(clientMain(args[1:]))
	}
	app.TuneRuntime() // the server under test runs in this process: tune it as cmd/server does
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keybench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	postgresURL string
	dialects    []string // for the read measurement
	logLevel    string
	kmsLatency  time.Duration

	resealDialects    []string // "" disables the reseal measurement
	resealSecrets     int
	resealVersions    int
	resealBatches     []int
	resealConnections int
	resealBaseline    bool
	seed              string // "direct" or "api"
	cpuProfile        string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("keybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each read load")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	fs.IntVar(&o.connections, "connections", 64, "concurrent client connections for the read loads")
	fs.StringVar(&o.postgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"Postgres server on which temporary databases are created and dropped")
	dialects := fs.String("dialects", "sqlite,postgres", "comma-separated dialects for the cache on/off reads (empty: none)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "server log level")
	fs.DurationVar(&o.kmsLatency, "kms-latency", 0, "delay the KMS test server adds to every call (real KMS takes milliseconds; 0: a loopback round trip only)")
	resealDialects := fs.String("reseal-dialects", "postgres", "comma-separated dialects for the reseal (empty: none)")
	fs.IntVar(&o.resealSecrets, "reseal-secrets", 1000, "secrets in the resealed environment (at most 1000: one bulk write per version)")
	fs.IntVar(&o.resealVersions, "reseal-versions", 100, "versions of each secret in the resealed environment")
	batches := fs.String("reseal-batches", "1000", "comma-separated COFFER_KEY_JOB_BATCH values; one reseal of the whole environment each")
	fs.IntVar(&o.resealConnections, "reseal-connections", 8, "client connections reading the environment during the reseal")
	fs.StringVar(&o.seed, "seed", "direct", "how to write the versions to reseal on Postgres: direct (the first and last version through the API, "+
		"the others sealed by the server's keyring and copied in) or api (every version through bulk PATCH; minutes for 100,000)")
	fs.BoolVar(&o.resealBaseline, "reseal-baseline", false, "also reseal once with no reads, before the measured reseals")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the server process during each reseal to this file (suffixed -<batch>)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case o.duration <= 0:
		return o, errors.New("-duration must be positive")
	case o.warmup < 0 || o.kmsLatency < 0:
		return o, errors.New("-warmup and -kms-latency must not be negative")
	case o.connections < 1 || o.resealConnections < 1:
		return o, errors.New("-connections and -reseal-connections must be at least 1")
	case o.resealSecrets < 1 || o.resealSecrets > 1000:
		return o, errors.New("-reseal-secrets must be from 1 to 1000")
	case o.resealVersions < 1:
		return o, errors.New("-reseal-versions must be at least 1")
	case o.seed != "direct" && o.seed != "api":
		return o, errors.New("-seed must be direct or api")
	}
	var err error
	if o.dialects, err = parseDialects("-dialects", *dialects); err != nil {
		return o, err
	}
	if o.resealDialects, err = parseDialects("-reseal-dialects", *resealDialects); err != nil {
		return o, err
	}
	for b := range strings.SplitSeq(*batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 1 || n > 10000 {
			return o, fmt.Errorf("-reseal-batches: %q is not a batch size from 1 to 10000", b)
		}
		o.resealBatches = append(o.resealBatches, n)
	}
	return o, nil
}

func parseDialects(name, list string) ([]string, error) {
	var out []string
	for d := range strings.SplitSeq(list, ",") {
		d = strings.TrimSpace(d)
		switch d {
		case "":
		case sqlite, postgres:
			out = append(out, d)
		default:
			return nil, fmt.Errorf("%s: unknown dialect %q (want sqlite or postgres)", name, d)
		}
	}
	return out, nil
}

// maxConns is the server's database pool, as in loadbench: SQLite allows one writer at a
// time, so a large pool only adds lock contention; Postgres gets one connection per client.
func maxConns(dialect string, clients int) int {
	if dialect == postgres {
		return max(clients, 16)
	}
	return 8
}

// run measures everything asked for and prints the summary to stdout; progress and server
// logs go to stderr. A part that cannot be measured is reported and the others still run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	kms, err := startKMS()
	if err != nil {
		return err
	}
	defer kms.stop()
	kms.SetLatency(o.kmsLatency)

	var (
		reads   []readResult
		reseals []resealResult
		errs    []error
	)
	for _, d := range o.dialects {
		if ctx.Err() != nil {
			break
		}
		r := measureReads(ctx, o, kms, d, stderr)
		reads = append(reads, r)
		if r.err != nil {
			errs = append(errs, fmt.Errorf("reads on %s: %w", d, r.err))
		}
	}
	for _, d := range o.resealDialects {
		if ctx.Err() != nil {
			break
		}
		rs, err := measureReseal(ctx, o, kms, d, stderr)
		reseals = append(reseals, rs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("reseal on %s: %w", d, err))
		}
	}
	if len(o.dialects) > 0 {
		printReads(stdout, o, reads)
	}
	if len(o.resealDialects) > 0 {
		printReseals(stdout, o, reseals)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ms prints a duration in milliseconds, so every column shares one unit.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
