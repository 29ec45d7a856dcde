// Command eventbench is `make bench-events`: for each database dialect it starts Coffer in its
// own process (built from ./cmd/server), opens 1,000 WebSocket subscribers to one environment's
// events, writes secrets to that environment one at a time at a fixed pace, and reports how
// long each event took from commit to each subscriber, at p50, p90, p99 and max. The target
// from the issue is p99 ≤ 100 ms on this machine, measured from the event's occurred_at.
//
// The server runs in a child process so that the subscribers and the writer (this process)
// do not share its Go runtime, which would flatter the numbers; they still share the
// machine's cores with it and with Postgres.
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
	"strings"
	"syscall"
	"time"
)

const (
	sqlite   = "sqlite"
	postgres = "postgres"
)

// The target from the issue, checked on the occurred_at measure.
const targetP99 = 100 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventbench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	subscribers     int
	dialConcurrency int
	writes          int
	interval        time.Duration
	drain           time.Duration
	postgresURL     string
	dialects        []string
	logLevel        string
	serverBin       string // a prebuilt server; empty: build ./cmd/server
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("eventbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.subscribers, "subscribers", 1000, "concurrent WebSocket subscribers")
	fs.IntVar(&o.dialConcurrency, "dial-concurrency", 50, "subscribers connecting at a time while they are opened")
	fs.IntVar(&o.writes, "writes", 200, "secrets written, one at a time, each a new name")
	fs.DurationVar(&o.interval, "interval", 20*time.Millisecond, "time from the start of one write to the start of the next")
	rate := fs.Float64("rate", 0, "writes per second (overrides -interval when set)")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long after the last write to wait for deliveries still missing "+
		"(set it above the hub's 30 s poll to let a lost announcement still arrive)")
	fs.StringVar(&o.postgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"Postgres server on which a temporary database is created and dropped")
	dialects := fs.String("dialects", "sqlite,postgres", "comma-separated dialects to measure")
	fs.StringVar(&o.logLevel, "log-level", "warn", "server log level")
	fs.StringVar(&o.serverBin, "server", "", "a prebuilt coffer server binary (default: build ./cmd/server into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case o.subscribers < 1:
		return o, errors.New("-subscribers must be at least 1")
	case o.dialConcurrency < 1:
		return o, errors.New("-dial-concurrency must be at least 1")
	case o.writes < 1 || o.writes > 99999:
		return o, errors.New("-writes must be from 1 to 99999")
	case *rate < 0:
		return o, errors.New("-rate must not be negative")
	case o.interval < 0:
		return o, errors.New("-interval must not be negative")
	case o.drain <= 0:
		return o, errors.New("-drain must be positive")
	}
	if *rate > 0 {
		o.interval = time.Duration(float64(time.Second) / *rate)
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

// run measures every dialect and prints the table and verdicts to stdout; progress and the
// server's logs go to stderr. A dialect that cannot be measured is reported and the others
// still run; Postgres being unreachable is a skip, not a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	nofile, err := raiseOpenFiles()
	if err != nil {
		return err
	}
	if need := uint64(o.subscribers) + 64; nofile < need {
		fmt.Fprintf(stderr, "eventbench: warning: open-file limit %d is below the %d sockets this run needs\n", nofile, need)
	}

	tmp, err := os.MkdirTemp("", "coffer-eventbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := o.serverBin
	if bin == "" {
		fmt.Fprintln(stderr, "eventbench: building ./cmd/server")
		if bin, err = buildServer(ctx, tmp, stderr); err != nil {
			return err
		}
	}

	var results []result
	var errs []error
	for _, d := range o.dialects {
		if ctx.Err() != nil {
			break
		}
		r := measure(ctx, o, bin, d, stderr)
		results = append(results, r)
		if r.err != nil && !r.skipped {
			errs = append(errs, fmt.Errorf("%s: %w", d, r.err))
		}
	}
	printTable(stdout, o, nofile, results)
	return errors.Join(errs...)
}

// raiseOpenFiles lifts the soft open-file limit to the hard one (every subscriber is a
// socket here and one more in the server, which inherits the limit) and returns it.
func raiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise the open-file limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}
