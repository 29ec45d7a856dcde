package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// resealResult is one reseal of the whole seeded environment.
type resealResult struct {
	dialect   string
	batch     int
	withReads bool
	versions  int64         // versions the job re-encrypted
	elapsed   time.Duration // the job's created_at to finished_at
	cpu       time.Duration // CPU time of this process (the server) while the job ran
	reads     loadgen.Result
	err       error
}

func (r resealResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.versions) / r.elapsed.Seconds()
}

// keyJob is the API's view of a key job.
type keyJob struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Done       int64      `json:"done"`
	Total      int64      `json:"total"`
	Error      string     `json:"error"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// measureReseal seeds one environment with -reseal-secrets × -reseal-versions versions, then
// reseals it once per batch size (restarting the server with that COFFER_KEY_JOB_BATCH) while
// a client process reads the environment. Each reseal gives the environment a new data key
// and re-encrypts every version again, so every run does the same work.
func measureReseal(ctx context.Context, o options, kms *kmsServer, dialect string, stderr io.Writer) (out []resealResult, err error) {
	db, err := newDatabase(ctx, o, dialect)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, db.drop()) }()

	// values[v][i] is the value of secret i at version v+1, to check the reseal changed none.
	var values [][]string
	for i, batch := range o.resealBatches {
		rs, err := func() (rs []resealResult, err error) {
			srv, err := startCoffer(ctx, o, db, kms, serverConfig{keyJobBatch: batch, dbMaxConns: maxConns(dialect, o.resealConnections)}, stderr)
			if err != nil {
				return nil, err
			}
			defer func() {
				if serr := srv.stop(); serr != nil {
					err = errors.Join(err, fmt.Errorf("server shutdown: %w", serr))
				}
			}()
			if values == nil {
				if values, err = seedVersions(ctx, o, srv, db, stderr); err != nil {
					return nil, fmt.Errorf("seed: %w", err)
				}
			}
			if i == 0 && o.resealBaseline {
				r := reseal(ctx, o, srv, db, batch, false, "", stderr)
				rs = append(rs, r)
				if r.err != nil {
					return rs, r.err
				}
			}
			profile := ""
			if o.cpuProfile != "" {
				profile = o.cpuProfile
				if len(o.resealBatches) > 1 {
					profile += "-" + strconv.Itoa(batch)
				}
			}
			r := reseal(ctx, o, srv, db, batch, true, profile, stderr)
			rs = append(rs, r)
			if r.err != nil {
				return rs, r.err
			}
			return rs, checkValues(ctx, srv, values)
		}()
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// seedVersions writes every version: one bulk write of all secrets per version through the
// API, or on Postgres with -seed=direct the first and last that way and the others directly
// (see seedDirect).
func seedVersions(ctx context.Context, o options, srv *server, db *database, stderr io.Writer) ([][]string, error) {
	total := o.resealSecrets * o.resealVersions
	direct := o.seed == "direct" && db.dialect == postgres
	how := "all through the API"
	if direct {
		how = "the first and last through the API, the others directly"
	}
	fmt.Fprintf(stderr, "keybench: %s: seeding %d secrets × %d versions = %d versions, %s\n", db.dialect, o.resealSecrets, o.resealVersions, total, how)
	if err := createProject(ctx, srv); err != nil {
		return nil, err
	}
	start := time.Now()
	values := make([][]string, o.resealVersions)
	for v := range values {
		vals, err := newValues(o.resealSecrets)
		if err != nil {
			return nil, err
		}
		values[v] = vals
	}
	write := func(v int) error {
		if err := writeVersion(ctx, srv, values[v]); err != nil {
			return fmt.Errorf("version %d: %w", v+1, err)
		}
		return nil
	}
	if err := write(0); err != nil {
		return nil, err
	}
	last := len(values) - 1
	if direct {
		if err := seedDirect(ctx, srv, db.url, values); err != nil {
			return nil, fmt.Errorf("versions 2 to %d: %w", last, err)
		}
	} else {
		for v := 1; v < last; v++ {
			if err := write(v); err != nil {
				return nil, err
			}
		}
	}
	if last > 0 {
		if err := write(last); err != nil {
			return nil, err
		}
	}
	d := time.Since(start)
	fmt.Fprintf(stderr, "keybench: %s: seeded %d versions in %s\n", db.dialect, total, d.Round(time.Millisecond))
	return values, nil
}

// reseal starts a reseal of the environment and waits for it to finish, with a client
// process reading the environment throughout when withReads is set.
func reseal(ctx context.Context, o options, srv *server, db *database, batch int, withReads bool, profile string, stderr io.Writer) (r resealResult) {
	r = resealResult{dialect: db.dialect, batch: batch, withReads: withReads}
	if db.dialect == postgres {
		if err := vacuumAnalyze(ctx, db.url); err != nil {
			r.err = fmt.Errorf("vacuum: %w", err)
			return r
		}
	}
	what := "no reads"
	if withReads {
		what = fmt.Sprintf("reads on %d connections", o.resealConnections)
	}
	fmt.Fprintf(stderr, "keybench: %s: reseal with batch %d, %s\n", db.dialect, batch, what)
	var f *os.File
	if profile != "" {
		var err error
		if f, err = os.Create(profile); err != nil {
			r.err = err
			return r
		}
		defer f.Close()
	}
	var c *clientProc
	if withReads {
		var err error
		c, err = startClient(ctx, srv, load{path: secretsPath + valuesQuery, connections: o.resealConnections, warmup: o.warmup}, stderr)
		if err != nil {
			r.err = err
			return r
		}
		// The reads' measured window opens as the reseal starts.
		sleepUntil(ctx, c.started.Add(o.warmup))
	}
	var job keyJob
	err := func() error {
		if f != nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		cpu0 := processCPU()
		var err error
		job, err = runJob(ctx, srv)
		r.cpu = processCPU() - cpu0
		return err
	}()
	if c != nil {
		reads, cerr := c.finish()
		r.reads = reads
		err = errors.Join(err, cerr)
	}
	if err != nil {
		r.err = err
		return r
	}
	r.versions = job.Done
	r.elapsed = job.FinishedAt.Sub(job.CreatedAt)
	if want := int64(o.resealSecrets * o.resealVersions); job.Done != want || job.Total != want {
		r.err = fmt.Errorf("the job re-encrypted %d of %d versions, want %d", job.Done, job.Total, want)
	}
	return r
}

// runJob starts the reseal and polls the job until it ends.
func runJob(ctx context.Context, srv *server) (keyJob, error) {
	var job keyJob
	if err := srv.call(ctx, http.MethodPost, "/api/v1/tenants/default/keys/rotate",
		map[string]string{"project": "web", "environment": "development"}, http.StatusAccepted, &job); err != nil {
		return job, err
	}
	for job.State == "running" {
		sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
		if err := ctx.Err(); err != nil {
			return job, err
		}
		if err := srv.call(ctx, http.MethodGet, "/api/v1/tenants/default/keys/jobs/"+job.ID, nil, http.StatusOK, &job); err != nil {
			return job, err
		}
	}
	if job.State != "done" || job.FinishedAt == nil {
		return job, fmt.Errorf("the reseal job ended %s: %s", job.State, job.Error)
	}
	return job, nil
}

// checkValues requires every secret's latest value, and the first, last and a middle version
// of a few secrets, to be what was written: a reseal must change no value.
func checkValues(ctx context.Context, srv *server, values [][]string) error {
	if err := checkLatest(ctx, srv, values[len(values)-1]); err != nil {
		return fmt.Errorf("after the reseal: %w", err)
	}
	secrets := len(values[0])
	for _, s := range []int{0, secrets / 2, secrets - 1} {
		for _, v := range []int{1, (len(values) + 1) / 2, len(values)} {
			if err := checkVersion(ctx, srv, s, v, values[v-1][s]); err != nil {
				return fmt.Errorf("after the reseal: %w", err)
			}
		}
	}
	return nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
