package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// readSecrets is how many secrets the read returns, as in loadbench.
const readSecrets = 100

// readRun is one fixed-time read load.
type readRun struct {
	res loadgen.Result
	// decrypts counts KMS Decrypt calls within the measured window (by this process's clock,
	// which the client's start report aligns to within a millisecond); total counts them
	// over the whole client run, warm-up included.
	decrypts, total int64
}

func (r readRun) decryptsPerRead() float64 {
	if r.res.Requests == 0 {
		return 0
	}
	return float64(r.decrypts) / float64(r.res.Requests)
}

// readResult is one dialect's pair of read loads.
type readResult struct {
	dialect    string
	warm, cold readRun // data-key cache warm; disabled
	err        error
}

func (r readResult) ratio() float64 {
	if r.cold.res.RPS == 0 {
		return 0
	}
	return r.warm.res.RPS / r.cold.res.RPS
}

// measureReads seeds one environment and loads it twice, from two servers on the same
// database: one with the data-key cache, one without.
func measureReads(ctx context.Context, o options, kms *kmsServer, dialect string, stderr io.Writer) (res readResult) {
	res.dialect = dialect
	db, err := newDatabase(ctx, o, dialect)
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if err := db.drop(); err != nil {
			res.err = errors.Join(res.err, err)
		}
	}()

	var want []string
	for _, disable := range []bool{false, true} {
		run, err := func() (run readRun, err error) {
			srv, err := startCoffer(ctx, o, db, kms, serverConfig{disableKeyCache: disable, dbMaxConns: maxConns(dialect, o.connections)}, stderr)
			if err != nil {
				return run, err
			}
			defer func() {
				if serr := srv.stop(); serr != nil {
					err = errors.Join(err, fmt.Errorf("server shutdown: %w", serr))
				}
			}()
			if want == nil {
				if want, err = newValues(readSecrets); err != nil {
					return run, err
				}
				if err := createProject(ctx, srv); err != nil {
					return run, fmt.Errorf("seed: %w", err)
				}
				if err := writeVersion(ctx, srv, want); err != nil {
					return run, fmt.Errorf("seed: %w", err)
				}
			}
			// Checked once per server; with the cache on this also warms it.
			if err := checkLatest(ctx, srv, want); err != nil {
				return run, fmt.Errorf("first read: %w", err)
			}
			mode := "warm"
			if disable {
				mode = "disabled"
			}
			fmt.Fprintf(stderr, "keybench: %s: reads with the data-key cache %s for %s (+%s warm-up)\n", dialect, mode, o.duration, o.warmup)
			return readLoad(ctx, o, kms, srv, stderr)
		}()
		if disable {
			res.cold = run
		} else {
			res.warm = run
		}
		if err != nil {
			res.err = err
			return res
		}
	}
	return res
}

// readLoad drives the fixed-time read from a client process and counts KMS Decrypt calls.
func readLoad(ctx context.Context, o options, kms *kmsServer, srv *server, stderr io.Writer) (readRun, error) {
	kms.Reset()
	c, err := startClient(ctx, srv, load{path: secretsPath + valuesQuery, connections: o.connections, duration: o.duration, warmup: o.warmup}, stderr)
	if err != nil {
		return readRun{}, err
	}
	sleepUntil(ctx, c.started.Add(o.warmup))
	d0 := kms.Count("Decrypt")
	sleepUntil(ctx, c.started.Add(o.warmup+o.duration))
	d1 := kms.Count("Decrypt")
	res, err := c.finish()
	return readRun{res: res, decrypts: d1 - d0, total: kms.Count("Decrypt")}, err
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}
