package app_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
	"github.com/cofferhq/coffer/internal/crypto/localkey"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// rotStart runs a server like startWith, with owner as the bootstrap owner's token (kept
// across restarts), and also returns a function that stops it cleanly: rotation tests restart
// servers on the same database, and a stopped server's job runner must not compete with the
// next one's.
func rotStart(t *testing.T, dialect, dbURL, dir, owner string, env map[string]string, opts app.Options) (*server, func()) {
	t.Helper()
	s := &server{t: t, dialect: dialect, owner: owner, logs: &lockedBuffer{}, stdout: &lockedBuffer{}, queries: &queryLog{},
		dbURL: dbURL, dataDir: dir, client: &http.Client{Timeout: 30 * time.Second}}
	vars := map[string]string{
		"COFFER_LISTEN":          "127.0.0.1:0",
		"COFFER_DATA_DIR":        dir,
		"COFFER_DATABASE_URL":    dbURL,
		"COFFER_LOG_LEVEL":       "info",
		"COFFER_BOOTSTRAP_TOKEN": owner,
	}
	maps.Copy(vars, env)
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.NewLogger(cfg, s.logs), s.stdout, opts)
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	s.base = "http://" + a.Addr()
	return s, stop
}

// rotKMSEnv starts a KMS test server and points the AWS SDK's default credential chain at
// static test credentials only (no profile, no instance metadata). It sets process
// environment variables, so its tests cannot run in parallel.
func rotKMSEnv(t *testing.T) *kmstest.Running {
	t.Helper()
	k := kmstest.Start(t)
	none := t.TempDir()
	for name, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIAKMSTEST",
		"AWS_SECRET_ACCESS_KEY":       "kmstest-secret-access-key",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "us-east-1",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             filepath.Join(none, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(none, "credentials"),
	} {
		t.Setenv(name, v)
	}
	return k
}

// rotKMSVars configures a server on the KMS test server with current as its KEK and
// previous as unwrap-only KEKs.
func rotKMSVars(k *kmstest.Running, current string, previous ...string) map[string]string {
	v := map[string]string{
		"COFFER_KMS":          "awskms",
		"COFFER_KMS_ENDPOINT": k.URL,
		"COFFER_KMS_REGION":   "us-east-1",
		"COFFER_KMS_KEY_ID":   current,
	}
	if len(previous) > 0 {
		v["COFFER_KMS_PREVIOUS_KEY_IDS"] = strings.Join(previous, ",")
	}
	return v
}

// rotValues maps an environment's API path (…/environments/<env>/) to its expected values.
type rotValues map[string]map[string]string

// rotReadAll reads every environment of want with values, page by page, and counts failed
// requests and missing or wrong values. It never stops the test, so reader goroutines use it.
func rotReadAll(client *http.Client, base, token string, want rotValues) (errs, wrong int, first string) {
	note := func(format string, args ...any) {
		if first == "" {
			first = fmt.Sprintf(format, args...)
		}
	}
	for path, values := range want {
		seen := 0
		cursor := ""
		for {
			u := base + path + "secrets?include=values&limit=1000"
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			var page struct {
				Items []struct {
					Name  string  `json:"name"`
					Value *string `json:"value"`
				} `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			status, raw, err := rotGet(client, u, token, &page)
			if err != nil || status != http.StatusOK {
				errs++
				note("GET %s: status %d, err %v: %.300s", path, status, err, raw)
				break
			}
			for _, it := range page.Items {
				seen++
				if it.Value == nil || values[it.Name] != *it.Value {
					wrong++
					note("%s%s has a wrong value", path, it.Name)
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if seen != len(values) {
			wrong += len(values) - seen
			note("%s: %d values listed, want %d", path, seen, len(values))
		}
	}
	return errs, wrong, first
}

// rotGet GETs u and decodes a 200 answer into out.
func rotGet(client *http.Client, u, token string, out any) (int, []byte, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return res.StatusCode, raw, err
	}
	return res.StatusCode, raw, json.Unmarshal(raw, out)
}

// rotReader reads every environment of want in a loop until stopped, counting passes, failed
// requests and wrong values.
type rotReader struct {
	stop                    chan struct{}
	done                    chan struct{}
	passes, begun, overlaps atomic.Int64
	errs, wrong             atomic.Int64
	mu                      sync.Mutex
	first                   string
}

// startRotReader starts a reader on s. A pass that begins while running() is true has begun
// during the job under test; one for which running() is true at its start and at its end
// overlaps it entirely.
func startRotReader(s *server, want rotValues, running func() bool, pause time.Duration) *rotReader {
	r := &rotReader{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			during := running()
			errs, wrong, first := rotReadAll(s.client, s.base, s.owner, want)
			r.passes.Add(1)
			if during {
				r.begun.Add(1)
				if running() {
					r.overlaps.Add(1)
				}
			}
			r.errs.Add(int64(errs))
			r.wrong.Add(int64(wrong))
			if first != "" {
				r.mu.Lock()
				if r.first == "" {
					r.first = first
				}
				r.mu.Unlock()
			}
			select {
			case <-r.stop:
				return
			case <-time.After(pause):
			}
		}
	}()
	return r
}

// finish stops the reader and fails the test if any read failed or returned a wrong value, or
// if no pass began during the job (whole: no pass ran entirely during it).
func (r *rotReader) finish(t *testing.T, what string, whole bool) {
	t.Helper()
	close(r.stop)
	<-r.done
	t.Logf("%s: %d read passes, %d begun during the job, %d entirely during it", what, r.passes.Load(), r.begun.Load(), r.overlaps.Load())
	if r.errs.Load() != 0 || r.wrong.Load() != 0 {
		t.Fatalf("%s: %d failed reads and %d wrong values; first: %s", what, r.errs.Load(), r.wrong.Load(), r.first)
	}
	if r.begun.Load() == 0 || (whole && r.overlaps.Load() == 0) {
		t.Fatalf("%s: the reads did not overlap the job", what)
	}
}

// rotCheckAll reads every value once from the test goroutine.
func rotCheckAll(t *testing.T, s *server, want rotValues, what string) {
	t.Helper()
	if errs, wrong, first := rotReadAll(s.client, s.base, s.owner, want); errs != 0 || wrong != 0 {
		t.Fatalf("%s: %d failed reads and %d wrong values; first: %s", what, errs, wrong, first)
	}
}

// rotBulk writes values into one environment in bulk requests of at most chunk secrets.
func rotBulk(s *server, path string, values map[string]string, names []string, chunk int) {
	s.t.Helper()
	for len(names) > 0 {
		n := min(chunk, len(names))
		batch := make([]map[string]string, n)
		for i, name := range names[:n] {
			batch[i] = map[string]string{"name": name, "value": values[name]}
		}
		s.must(http.StatusOK, "PATCH", path+"secrets", s.owner, map[string]any{"secrets": batch})
		names = names[n:]
	}
}

// rotInt reads one integer from the database.
func rotInt(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// rotJobState reads a job's state and progress from the database.
func rotJobState(t *testing.T, s *server, db *sql.DB, id string) (state string, done, total int64) {
	t.Helper()
	if err := db.QueryRow(s.q(`SELECT state, done, total FROM key_jobs WHERE id = ?`), id).Scan(&state, &done, &total); err != nil {
		t.Fatalf("key job %s: %v", id, err)
	}
	return state, done, total
}

// rotWaitPlatformRewrap waits for the platform rewrap job to target to finish while a reader
// loops over want, and returns the job id.
func rotWaitPlatformRewrap(t *testing.T, s *server, db *sql.DB, target string, want rotValues, what string) string {
	t.Helper()
	var id string
	if err := db.QueryRow(s.q(`SELECT id FROM key_jobs WHERE kind = 'rewrap' AND tenant_id IS NULL AND target_kek = ?
		ORDER BY created_at DESC LIMIT 1`), target).Scan(&id); err != nil {
		t.Fatalf("%s: no platform rewrap job to %s: %v\nlogs:\n%s", what, target, err, s.logs)
	}
	var running atomic.Bool
	state, _, _ := rotJobState(t, s, db, id)
	running.Store(state == secrets.JobRunning)
	r := startRotReader(s, want, running.Load, 0)
	deadline := time.Now().Add(60 * time.Second)
	for {
		state, done, total := rotJobState(t, s, db, id)
		if state != secrets.JobRunning {
			running.Store(false)
			r.finish(t, what, false)
			if state != secrets.JobDone {
				t.Fatalf("%s: rewrap job %s ended %s\nlogs:\n%s", what, id, state, s.logs)
			}
			t.Logf("%s: rewrap job moved %d of %d data keys", what, done, total)
			return id
		}
		if time.Now().After(deadline) {
			running.Store(false)
			r.finish(t, what, false)
			t.Fatalf("%s: rewrap job %s still running after 60s (%d/%d)\nlogs:\n%s", what, id, done, total, s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRewrapLocalToKMSAndKMSToKMS moves a populated instance from its local master key to a KMS
// key, and then to another KMS key, by restarting it with the new key configured beside the
// old one: the background rewrap moves every data key while readers see every value, the old
// key is retired, and a cold restart without the old key reads everything through KMS.
func TestRewrapLocalToKMSAndKMSToKMS(t *testing.T) {
	kms := rotKMSEnv(t)
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			// A data key seals at most 25 values, so 1,000 secrets spread over 42 data keys
			// and the rewrap takes several batches of 10.
			opts := app.Options{KeyPolicy: &secrets.KeyPolicy{MaxUses: 25, MaxAge: time.Hour}}
			// While a rewrap runs, the reading server caches no data key: every read unwraps
			// its keys under whichever KEK wraps them at that moment.
			uncached := opts
			uncached.DisableKeyCache = true
			batch := map[string]string{"COFFER_KEY_JOB_BATCH": "10"}
			s, stop := rotStart(t, d, dbURL, dir, owner, nil, opts)

			want := rotValues{}
			total := 0
			for _, p := range []string{"web", "api"} {
				s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", owner, map[string]string{"slug": p, "name": p})
				for _, e := range []string{"development", "staging", "production"} {
					path := "/api/v1/tenants/default/projects/" + p + "/environments/" + e + "/"
					n := 167
					if total+n > 1000 || (p == "api" && e == "production") {
						n = 1000 - total
					}
					values := map[string]string{}
					names := make([]string, n)
					for i := range n {
						names[i] = fmt.Sprintf("S_%04d", i)
						values[names[i]] = fmt.Sprintf("%s/%s/%d/%s", p, e, i, uuid.NewString())
					}
					rotBulk(s, path, values, names, 25)
					want[path] = values
					total += n
				}
			}
			if total != 1000 {
				t.Fatalf("wrote %d secrets, want 1000", total)
			}
			db := s.rawDB()
			dataKeys := rotInt(t, db, `SELECT COUNT(*) FROM data_keys`)
			var localKEK string
			if err := db.QueryRow(`SELECT kek_id FROM key_checks`).Scan(&localKEK); err != nil {
				t.Fatalf("the local KEK's check record: %v", err)
			}
			stop()

			// Phase A: local → KMS key A. The master key file stays in the data directory and
			// is loaded as a previous key; KMS answers slowly so the job takes a while.
			keyA := kms.CreateKey()
			kms.SetLatency(20 * time.Millisecond)
			kms.Reset()
			s, stop = rotStart(t, d, dbURL, dir, owner, rotMerge(rotKMSVars(kms, keyA), batch), uncached)
			rotWaitPlatformRewrap(t, s, db, keyA, want, "local to KMS")
			// The job itself only encrypts under A: decrypts are reads of keys it had moved.
			if kms.Count("Decrypt") == 0 {
				t.Fatalf("no read unwrapped a data key through KMS while the rewrap ran")
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE kek_id <> ?`), keyA); n != 0 {
				t.Fatalf("%d data keys not under KMS key A after the rewrap", n)
			}
			if n := rotInt(t, db, `SELECT COUNT(*) FROM data_keys`); n != dataKeys {
				t.Fatalf("%d data keys after the rewrap, had %d", n, dataKeys)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM platform_keys WHERE kek_id <> ?`), keyA); n != 0 {
				t.Fatalf("%d platform keys not under KMS key A after the rewrap", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM key_checks WHERE kek_id = ?`), localKEK); n != 0 {
				t.Fatalf("the local KEK %s was not retired: its key-check record is still there", localKEK)
			}
			stop()

			// A fresh process without the master key file: every data key must unwrap through
			// KMS, with a cold cache.
			if err := os.Remove(filepath.Join(dir, "master.key")); err != nil {
				t.Fatalf("remove master.key: %v", err)
			}
			kms.SetLatency(0)
			kms.Reset()
			s, stop = rotStart(t, d, dbURL, dir, owner, rotKMSVars(kms, keyA), opts)
			rotCheckAll(t, s, want, "cold restart on KMS key A without master.key")
			if got := kms.Count("Decrypt"); got < dataKeys {
				t.Fatalf("a cold read of %d data keys made %d KMS Decrypt calls", dataKeys, got)
			}
			stop()

			// Phase B: KMS key A → KMS key B.
			keyB := kms.CreateKey()
			kms.SetLatency(20 * time.Millisecond)
			s, stop = rotStart(t, d, dbURL, dir, owner, rotMerge(rotKMSVars(kms, keyB, keyA), batch), uncached)
			rotWaitPlatformRewrap(t, s, db, keyB, want, "KMS to KMS")
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE kek_id <> ?`), keyB); n != 0 {
				t.Fatalf("%d data keys not under KMS key B after the rewrap", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM platform_keys WHERE kek_id <> ?`), keyB); n != 0 {
				t.Fatalf("%d platform keys not under KMS key B after the rewrap", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM key_checks WHERE kek_id = ?`), keyA); n != 0 {
				t.Fatalf("KMS key A was not retired: its key-check record is still there")
			}
			stop()

			// Key A is disabled and no longer configured: everything still reads, cold.
			if err := kms.DisableKey(keyA); err != nil {
				t.Fatal(err)
			}
			kms.SetLatency(0)
			s, stop = rotStart(t, d, dbURL, dir, owner, rotKMSVars(kms, keyB), opts)
			rotCheckAll(t, s, want, "cold restart on KMS key B with key A disabled")
			stop()
		})
	}
}

// rotErrMsg is the message of an error answer, "" for any other.
func rotErrMsg(r response) string {
	e, _ := r.body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

func rotMerge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// crashChildEnv carries a crashSpec to TestResealCrashHelper in a child process.
const crashChildEnv = "COFFER_TEST_RESEAL_CRASH_CHILD"

type crashSpec struct {
	Dialect, DBURL, Dir, Owner string
	AddrFile                   string // where the child writes its base URL once it serves
}

// TestResealCrashHelper is the child process of TestResealCrashResumes: a server with a small
// batch and a short lease that serves until it is killed.
func TestResealCrashHelper(t *testing.T) {
	raw := os.Getenv(crashChildEnv)
	if raw == "" {
		t.Skip("run by TestResealCrashResumes in a child process")
	}
	var spec crashSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	s, _ := rotStart(t, spec.Dialect, spec.DBURL, spec.Dir, spec.Owner,
		map[string]string{"COFFER_KEY_JOB_BATCH": "200"}, app.Options{JobLease: 2 * time.Second})
	tmp := spec.AddrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.base), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, spec.AddrFile); err != nil {
		t.Fatal(err)
	}
	// The parent kills this process; should it die first, give up eventually.
	time.Sleep(2 * time.Minute)
	t.Fatal("not killed within 2 minutes")
}

// TestResealCrashResumes re-encrypts an environment's versions (20,000 on Postgres) in a
// separate process, kills it with SIGKILL midway, and resumes in a new server: the job ends with
// every version resealed exactly once under one new data key, the old key retired, and readers
// never failing.
//
// The parent stops its own server before the child starts, then creates the job through the
// child's API: the only job runner alive is the child's, so the job progresses from 0 in the
// child and nowhere else until the kill, whatever the machine's speed.
//
// SQLite runs a smaller environment: under -race on two cores it reseals a few hundred
// versions a second with a reader beside it, so 20,000 would take minutes.
func TestResealCrashResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("reseals 20,000 versions")
	}
	for _, c := range []struct {
		dialect         string
		names, versions int
		killAfter       int64
	}{
		{"sqlite", 500, 4, 500},
		{"postgres", 1000, 20, 5000},
	} {
		d, names, versions := c.dialect, c.names, c.versions
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			s, stop := rotStart(t, d, dbURL, dir, owner, nil, app.Options{})
			s.withProject()
			path := envPath + "development/"
			value := func(name string, v int) string { return fmt.Sprintf("value-%s-v%02d", name, v) }
			all := make([]string, names)
			for i := range names {
				all[i] = fmt.Sprintf("K_%04d", i)
			}

			// Version 1 of every secret is written through the API; versions 2..20 are
			// sealed here with the environment's data key exactly as the service seals them
			// and inserted in bulk. (Through the API, 19 more bulk writes of 1,000 cost 3
			// statements and an audit entry per value: minutes on SQLite under -race.)
			start := time.Now()
			first := make([]map[string]string, names)
			for i, name := range all {
				first[i] = map[string]string{"name": name, "value": value(name, 1)}
			}
			s.must(http.StatusOK, "PATCH", path+"secrets", owner, map[string]any{"secrets": first})
			db := s.rawDB()
			envID, oldKey := rotSeedVersions(t, s, db, dir, "web", "development", versions, value)
			t.Logf("wrote %d versions in %v", names*versions, time.Since(start).Round(time.Millisecond))
			latest := map[string]string{}
			for _, name := range all {
				latest[name] = value(name, versions)
			}
			want := rotValues{path: latest}
			rotCheckAll(t, s, want, "latest values before the reseal")
			for _, v := range []int{1, 2, versions / 2, versions} {
				if got := s.must(http.StatusOK, "GET", path+"secrets/"+all[7]+"?version="+itoa(v), owner, nil); got.body["value"] != value(all[7], v) {
					t.Fatalf("seeded %s version %d reads %s", all[7], v, got.raw)
				}
			}
			stop()

			// The child process serves with a batch of 200 and a 2s lease; the job is created
			// through its API once it listens.
			addrFile := filepath.Join(t.TempDir(), "child.addr")
			spec, _ := json.Marshal(crashSpec{Dialect: d, DBURL: dbURL, Dir: dir, Owner: owner, AddrFile: addrFile})
			cmd := exec.Command(os.Args[0], "-test.run=^TestResealCrashHelper$", "-test.count=1", "-test.timeout=3m")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+string(spec))
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			killed := false
			defer func() {
				if !killed {
					_ = cmd.Process.Kill()
					<-exited
				}
			}()
			var base string
			for deadline := time.Now().Add(60 * time.Second); base == ""; time.Sleep(10 * time.Millisecond) {
				if b, err := os.ReadFile(addrFile); err == nil {
					base = string(b)
				}
				select {
				case err := <-exited:
					killed = true
					t.Fatalf("the child exited before serving: %v\n%s", err, out)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("the child did not serve within 60s\n%s", out)
				}
			}
			child := &server{t: t, dialect: d, base: base, owner: owner, client: &http.Client{Timeout: 30 * time.Second}}
			created := child.must(http.StatusAccepted, "POST", "/api/v1/tenants/default/keys/rotate", owner,
				map[string]string{"project": "web", "environment": "development"})
			jobID, _ := created.body["id"].(string)
			childStart := time.Now()
			if created.body["total"] != float64(names*versions) {
				t.Fatalf("the reseal job counts %v versions, want %d", created.body["total"], names*versions)
			}

			// SIGKILL once the child has committed more than killAfter and fewer than all.
			var doneAtKill int64
			for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(2 * time.Millisecond) {
				state, done, total := rotJobState(t, s, db, jobID)
				if state != secrets.JobRunning || done >= total {
					t.Fatalf("the job reached %s %d/%d before the kill\n%s", state, done, total, out)
				}
				if done > c.killAfter {
					if err := cmd.Process.Kill(); err != nil {
						t.Fatal(err)
					}
					killed = true
					<-exited
					doneAtKill = done
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the child made %d/%d progress in 90s\n%s", done, total, out)
				}
			}
			state, done, total := rotJobState(t, s, db, jobID)
			t.Logf("killed the child at %d/%d after %v (committed after the kill: %d, state %s)", doneAtKill, total,
				time.Since(childStart).Round(time.Millisecond), done, state)
			if state != secrets.JobRunning || done >= total || done < doneAtKill {
				t.Fatalf("after the kill the job is %s at %d/%d", state, done, total)
			}

			// Resume in a new server once the dead child's lease lapses, with a reader.
			s, stop = rotStart(t, d, dbURL, dir, owner, map[string]string{"COFFER_KEY_JOB_BATCH": "200"},
				app.Options{JobLease: 2 * time.Second})
			var running atomic.Bool
			running.Store(true)
			r := startRotReader(s, want, running.Load, 100*time.Millisecond)
			resume := time.Now()
			s.waitJob(owner, "default", jobID)
			running.Store(false)
			r.finish(t, "reads during the resumed reseal", true)
			t.Logf("resumed and finished in %v", time.Since(resume).Round(time.Millisecond))

			job := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys/jobs/"+jobID, owner, nil)
			if job.body["state"] != "done" || job.body["done"] != float64(names*versions) || job.body["total"] != float64(names*versions) {
				t.Fatalf("the resumed job ended as %s, want done with done = total = %d", job.raw, names*versions)
			}
			var keyID string
			var uses int64
			if err := db.QueryRow(s.q(`SELECT id, uses FROM data_keys WHERE environment_id = ?`), envID).Scan(&keyID, &uses); err != nil {
				t.Fatalf("the environment's one data key: %v", err)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE environment_id = ?`), envID); n != 1 {
				t.Fatalf("the environment has %d data keys after the reseal, want 1", n)
			}
			if keyID == oldKey {
				t.Fatalf("the environment still has its old data key %s", oldKey)
			}
			// No writes happened since the roll: every seal of the new key is one version.
			if uses != int64(names*versions) {
				t.Fatalf("the new data key sealed %d values for %d versions: some were sealed twice or not at all", uses, names*versions)
			}
			kid := uuid.MustParse(keyID)
			keyBytes := "substr(v.ciphertext, 2, 16)"
			if d == "postgres" {
				keyBytes = "substring(v.ciphertext from 2 for 16)"
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
				WHERE s.environment_id = ? AND `+keyBytes+` <> ?`), envID, kid[:]); n != 0 {
				t.Fatalf("%d versions are not sealed under the new data key", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ?`), "environment.key.retire"); n < 1 {
				t.Fatalf("the old data key's retirement was not audited")
			}

			rotCheckAll(t, s, want, "latest values after the resumed reseal")
			// Every version of a sample of secrets.
			for _, i := range []int{0, 49, 50, names / 2, names - 1} {
				for v := 1; v <= versions; v++ {
					got := s.must(http.StatusOK, "GET", path+"secrets/"+all[i]+"?version="+itoa(v), owner, nil)
					if got.body["value"] != value(all[i], v) {
						t.Fatalf("%s version %d = %v after the reseal, want %s", all[i], v, got.body["value"], value(all[i], v))
					}
				}
			}
		})
	}
}

// rotSeedVersions adds versions 2..upTo to every secret of one environment of the default
// tenant (version 1 written through the API): each value is sealed with the environment's
// current data key and AAD, as the service would seal it, unwrapped with the local master
// key in dir; the secrets' latest copies and the key's seal count are updated to match. It
// returns the environment's id and data key id.
func rotSeedVersions(t *testing.T, s *server, db *sql.DB, dir, project, env string, upTo int, value func(name string, v int) string) (envID, keyID string) {
	t.Helper()
	var tenantID, projectID, kekID string
	var wrapped []byte
	if err := db.QueryRow(s.q(`SELECT e.id, e.tenant_id, e.project_id, e.current_key_id, k.kek_id, k.wrapped_key
		FROM environments e JOIN projects p ON p.id = e.project_id JOIN tenants t ON t.id = e.tenant_id
		JOIN data_keys k ON k.id = e.current_key_id
		WHERE t.slug = 'default' AND p.slug = ? AND e.slug = ?`), project, env).
		Scan(&envID, &tenantID, &projectID, &keyID, &kekID, &wrapped); err != nil {
		t.Fatalf("the environment's data key: %v", err)
	}
	kek, err := localkey.Load(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	material, err := kek.UnwrapKey(context.Background(), kekID, wrapped, secrets.EncryptionContext(tenantID, projectID, envID))
	if err != nil {
		t.Fatalf("unwrap the environment's data key: %v", err)
	}
	dk, err := crypto.DataKeyFrom(uuid.MustParse(keyID), material)
	clear(material)
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Wipe()

	rows, err := db.Query(s.q(`SELECT id, name FROM secrets WHERE environment_id = ?`), envID)
	if err != nil {
		t.Fatal(err)
	}
	type secretRow struct{ id, name string }
	var list []secretRow
	for rows.Next() {
		var r secretRow
		if err := rows.Scan(&r.id, &r.name); err != nil {
			t.Fatal(err)
		}
		list = append(list, r)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	seal := func(r secretRow, v int) []byte {
		ct, err := dk.Seal([]byte(value(r.name, v)), secrets.AAD(tenantID, projectID, envID, r.name, v))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	row := "(?, ?, ?)"
	if s.dialect == "postgres" {
		row = "(?::text, ?::integer, ?::bytea)"
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	run := func(query string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(s.q(query), args...); err != nil {
			t.Fatalf("seed versions: %v", err)
		}
	}
	for v := 2; v <= upTo; v++ {
		values := make([]string, len(list))
		args := make([]any, 0, 3*len(list))
		for i, r := range list {
			values[i] = row
			args = append(args, r.id, v, seal(r, v))
		}
		run(`WITH d(sid, ver, ct) AS (VALUES `+strings.Join(values, ",")+`)
			INSERT INTO secret_versions (secret_id, version, ciphertext, note, created_by, created_at)
			SELECT d.sid, d.ver, d.ct, '', v.created_by, v.created_at FROM d JOIN secret_versions v ON v.secret_id = d.sid AND v.version = 1`, args...)
		if v == upTo {
			run(`WITH d(sid, ver, ct) AS (VALUES `+strings.Join(values, ",")+`)
				UPDATE secrets SET latest_version = d.ver, ciphertext = d.ct FROM d WHERE secrets.id = d.sid`, args...)
		}
	}
	run(`UPDATE data_keys SET uses = uses + ? WHERE id = ?`, (upTo-1)*len(list), keyID)
	run(`UPDATE environments SET revision = revision + 1 WHERE id = ?`, envID)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return envID, keyID
}

// TestBYOKDisablingTenantKeyCutsOnlyThatTenant: a tenant owner brings their own KMS key; once
// the rewrap moved the tenant's data keys under it, disabling it stops that tenant's reads and
// key-making writes with a 503 naming the key, while another tenant is untouched, and
// re-enabling it restores access.
func TestBYOKDisablingTenantKeyCutsOnlyThatTenant(t *testing.T) {
	kms := rotKMSEnv(t)
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			platform, tenantKey := kms.CreateKey(), kms.CreateKey()
			vars := rotKMSVars(kms, platform)
			s, stop := rotStart(t, d, dbURL, dir, owner, vars, app.Options{})

			// Tenant A ("default", the owner's) and tenant B ("other", bob's).
			s.withProject()
			aValues := map[string]string{}
			for _, e := range []string{"development", "staging", "production"} {
				for i := range 5 {
					name := fmt.Sprintf("A_%s_%d", strings.ToUpper(e), i)
					aValues[e+"/"+name] = "a-" + uuid.NewString()
					s.must(http.StatusCreated, "PUT", envPath+e+"/secrets/"+name, owner, map[string]string{"value": aValues[e+"/"+name]})
				}
			}
			bob := s.newUser("bob@other.example")
			s.must(http.StatusCreated, "POST", "/api/v1/tenants", bob, map[string]string{"slug": "other", "name": "Other"})
			s.must(http.StatusCreated, "POST", "/api/v1/tenants/other/projects", bob, map[string]string{"slug": "app", "name": "App"})
			const bPath = "/api/v1/tenants/other/projects/app/environments/development/secrets/B_SECRET"
			bValue := "b-" + uuid.NewString()
			s.must(http.StatusCreated, "PUT", bPath, bob, map[string]string{"value": bValue})
			admin := s.newUser("admin@default.example")
			s.join(owner, "default", admin, "admin@default.example", "admin")

			const kekPath = "/api/v1/tenants/default/keys/kek"
			// Refusals change nothing.
			disabled := kms.CreateKey()
			if err := kms.DisableKey(disabled); err != nil {
				t.Fatal(err)
			}
			unknown := "arn:aws:kms:us-east-1:111122223333:key/" + uuid.NewString()
			for _, c := range []struct {
				who, keyID string
				status     int
				code, msg  string
			}{
				{admin, tenantKey, http.StatusForbidden, "forbidden", "owners"},
				{owner, "alias/coffer", http.StatusUnprocessableEntity, "validation_failed", "ARN"},
				{owner, "not a key", http.StatusUnprocessableEntity, "validation_failed", "ARN"},
				{owner, "", http.StatusUnprocessableEntity, "validation_failed", "ARN"},
				{owner, disabled, http.StatusUnprocessableEntity, "validation_failed", "Coffer cannot use this key"},
				{owner, unknown, http.StatusUnprocessableEntity, "validation_failed", "Coffer cannot use this key"},
				{owner, platform, http.StatusUnprocessableEntity, "validation_failed", "instance's"},
			} {
				r := s.call("PUT", kekPath, c.who, map[string]string{"key_id": c.keyID})
				msg := rotErrMsg(r)
				if r.status != c.status || r.errCode() != c.code || !strings.Contains(msg, c.msg) {
					t.Errorf("PUT kek %q: %d %s, want %d %s with %q", c.keyID, r.status, r.raw, c.status, c.code, c.msg)
				}
			}
			if k := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys", owner, nil); k.body["kek"] != "platform" {
				t.Fatalf("a refused PUT kek changed the tenant's key: %s", k.raw)
			}

			set := s.must(http.StatusAccepted, "PUT", kekPath, owner, map[string]string{"key_id": tenantKey})
			job, _ := set.body["job"].(map[string]any)
			jobID, _ := job["id"].(string)
			if set.body["kek"] != tenantKey || jobID == "" {
				t.Fatalf("PUT kek answered %s", set.raw)
			}
			s.waitJob(owner, "default", jobID)
			// Another tenant cannot take the same key: disabling it must cut off one tenant.
			if r := s.call("PUT", "/api/v1/tenants/other/keys/kek", bob, map[string]string{"key_id": tenantKey}); r.status != http.StatusUnprocessableEntity {
				t.Fatalf("tenant other set tenant default's key: %d %s", r.status, r.raw)
			}
			keys := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys", owner, nil)
			envs, _ := keys.body["environments"].([]any)
			if keys.body["kek"] != tenantKey || len(envs) != 3 {
				t.Fatalf("GET keys after the rewrap: %s", keys.raw)
			}
			for _, e := range envs {
				if e.(map[string]any)["rotation_state"] != "current" {
					t.Fatalf("an environment is not current after the rewrap: %s", keys.raw)
				}
			}
			db := s.rawDB()
			var aID, bID string
			if err := db.QueryRow(`SELECT id FROM tenants WHERE slug = 'default'`).Scan(&aID); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(`SELECT id FROM tenants WHERE slug = 'other'`).Scan(&bID); err != nil {
				t.Fatal(err)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE tenant_id = ? AND kek_id <> ?`), aID, tenantKey); n != 0 {
				t.Fatalf("%d of tenant A's data keys are not under its own key", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE tenant_id = ? AND kek_id <> ?`), bID, platform); n != 0 {
				t.Fatalf("%d of tenant B's data keys moved off the platform key", n)
			}
			if n := rotInt(t, db, s.q(`SELECT COUNT(*) FROM data_keys WHERE tenant_id = ?`), aID); n < 3 {
				t.Fatalf("tenant A has %d data keys, want one per environment", n)
			}

			// Disabled by the tenant: after a restart (cold cache) only tenant A is cut off.
			if err := kms.DisableKey(tenantKey); err != nil {
				t.Fatal(err)
			}
			stop()
			s, stop = rotStart(t, d, dbURL, dir, owner, vars, app.Options{})
			for _, p := range []string{envPath + "development/secrets/A_DEVELOPMENT_0", envPath + "production/secrets?include=values"} {
				r := s.call("GET", p, owner, nil)
				msg := rotErrMsg(r)
				if r.status != http.StatusServiceUnavailable || !strings.Contains(msg, tenantKey) || !strings.Contains(msg, "disabled") {
					t.Fatalf("GET %s with tenant A's key disabled: %d %s, want 503 naming the key and \"disabled\"", p, r.status, r.raw)
				}
			}
			if r := s.must(http.StatusOK, "GET", bPath, bob, nil); r.body["value"] != bValue {
				t.Fatalf("tenant B's read with tenant A's key disabled: %s", r.raw)
			}
			r := s.call("POST", "/api/v1/tenants/default/projects", owner, map[string]string{"slug": "blocked", "name": "Blocked"})
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("creating a project with the tenant's key disabled: %d %s, want 503", r.status, r.raw)
			}
			if n := rotInt(t, db, `SELECT COUNT(*) FROM projects WHERE slug = 'blocked'`); n != 0 {
				t.Fatalf("a refused project creation left %d rows", n)
			}
			if r := s.call("PUT", envPath+"staging/secrets/NEW", owner, map[string]string{"value": "x"}); r.status != http.StatusServiceUnavailable {
				t.Fatalf("writing with the tenant's key disabled: %d %s, want 503", r.status, r.raw)
			}

			// Re-enabled: readable again, same process.
			if err := kms.EnableKey(tenantKey); err != nil {
				t.Fatal(err)
			}
			for key, v := range aValues {
				env, name, _ := strings.Cut(key, "/")
				if r := s.must(http.StatusOK, "GET", envPath+env+"/secrets/"+name, owner, nil); r.body["value"] != v {
					t.Fatalf("%s after re-enabling the key: %s", key, r.raw)
				}
			}
			s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", owner, map[string]string{"slug": "blocked", "name": "Blocked"})
		})
	}

	t.Run("local KEK", func(t *testing.T) {
		dbURL, dir := storetest.Database(t, "sqlite")
		owner := newToken(t)
		s, _ := rotStart(t, "sqlite", dbURL, dir, owner, nil, app.Options{})
		r := s.call("PUT", "/api/v1/tenants/default/keys/kek", owner, map[string]string{"key_id": kms.CreateKey()})
		if r.status != http.StatusConflict || r.errCode() != "conflict" {
			t.Fatalf("PUT kek on a server without KMS: %d %s, want 409", r.status, r.raw)
		}
	})
}

// TestRotateAPI rotates an environment, a project and a whole tenant through the API: each
// job's progress ends complete, every environment in scope gets a new data key and keeps only
// it, environments out of scope keep theirs, and readers never fail.
func TestRotateAPI(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		want := rotValues{}
		envs := map[string]string{} // "project/env" → path
		for _, p := range []string{"web", "api"} {
			s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": p, "name": p})
			for _, e := range []string{"development", "staging", "production"} {
				path := "/api/v1/tenants/default/projects/" + p + "/environments/" + e + "/"
				values := map[string]string{}
				var names []string
				for i := range 30 {
					name := fmt.Sprintf("R_%02d", i)
					names = append(names, name)
					values[name] = "first-" + uuid.NewString()
				}
				rotBulk(s, path, values, names, 1000)
				for _, name := range names[:10] {
					values[name] = "second-" + uuid.NewString()
				}
				rotBulk(s, path, values, names[:10], 1000)
				want[path] = values
				envs[p+"/"+e] = path
			}
		}
		const versionsPerEnv = 40
		keyIDs := func() map[string]string {
			k := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys", s.owner, nil)
			out := map[string]string{}
			list, _ := k.body["environments"].([]any)
			for _, it := range list {
				e := it.(map[string]any)
				if e["data_keys"] != float64(1) || e["rotation_state"] != "current" {
					t.Fatalf("an environment does not hold exactly its current key: %s", k.raw)
				}
				out[e["project"].(string)+"/"+e["environment"].(string)] = e["data_key_id"].(string)
			}
			if len(out) != len(envs) {
				t.Fatalf("GET keys lists %d environments, want %d: %s", len(out), len(envs), k.raw)
			}
			return out
		}

		var running atomic.Bool
		running.Store(true)
		r := startRotReader(s, want, running.Load, 0)
		before := keyIDs()
		for _, c := range []struct {
			name  string
			body  map[string]string
			scope []string
		}{
			{"environment", map[string]string{"project": "web", "environment": "staging"}, []string{"web/staging"}},
			{"project", map[string]string{"project": "api"}, []string{"api/development", "api/staging", "api/production"}},
			{"tenant", map[string]string{}, []string{"web/development", "web/staging", "web/production", "api/development", "api/staging", "api/production"}},
		} {
			created := s.must(http.StatusAccepted, "POST", "/api/v1/tenants/default/keys/rotate", s.owner, c.body)
			id, _ := created.body["id"].(string)
			if created.body["kind"] != "reseal" || created.body["total"] != float64(versionsPerEnv*len(c.scope)) {
				t.Fatalf("%s rotation: job %s, want a reseal of %d versions", c.name, created.raw, versionsPerEnv*len(c.scope))
			}
			s.waitJob(s.owner, "default", id)
			job := s.must(http.StatusOK, "GET", "/api/v1/tenants/default/keys/jobs/"+id, s.owner, nil)
			if job.body["done"] != job.body["total"] || job.body["total"] != float64(versionsPerEnv*len(c.scope)) || job.body["finished_at"] == nil {
				t.Fatalf("%s rotation: finished job %s, want done = total = %d", c.name, job.raw, versionsPerEnv*len(c.scope))
			}
			after := keyIDs()
			for env, k := range after {
				inScope := false
				for _, sc := range c.scope {
					inScope = inScope || sc == env
				}
				if inScope == (k == before[env]) {
					t.Fatalf("%s rotation: %s data key %s → %s (in scope: %v)", c.name, env, before[env], k, inScope)
				}
			}
			before = after
		}
		running.Store(false)
		r.finish(t, "reads during rotations", false)
		rotCheckAll(t, s, want, "after the rotations")

		// A scope that names no project, or a missing one, starts nothing.
		bad := s.call("POST", "/api/v1/tenants/default/keys/rotate", s.owner, map[string]string{"environment": "staging"})
		if bad.status != http.StatusUnprocessableEntity {
			t.Fatalf("rotate with an environment but no project: %d %s, want 422", bad.status, bad.raw)
		}
		if nf := s.call("POST", "/api/v1/tenants/default/keys/rotate", s.owner, map[string]string{"project": "nope"}); nf.status != http.StatusNotFound {
			t.Fatalf("rotate of a missing project: %d %s, want 404", nf.status, nf.raw)
		}
	})
}

// TestResealRetiresKeyUnderAReader holds a read on one replica right after it fetched its rows
// while another replica reseals the environment and retires the data key those rows name:
// the read, which then looks the retired key up, must still answer every value (the version
// was resealed before its key went) rather than fail an integrity check.
func TestResealRetiresKeyUnderAReader(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			dbURL, dir := storetest.Database(t, d)
			owner := newToken(t)
			runner, _ := rotStart(t, d, dbURL, dir, owner, nil, app.Options{})
			runner.withProject()
			path := envPath + "development/"
			values := map[string]string{}
			var names []string
			for i := range 20 {
				names = append(names, fmt.Sprintf("H_%02d", i))
				values[names[i]] = "held-" + uuid.NewString()
			}
			rotBulk(runner, path, values, names, 1000)

			// The reader replica looks every data key up in the database (no key cache), and
			// its next read can be held between the snapshot its ciphertexts come from and the
			// one its data key comes from. The query hook runs once a statement has started:
			// pgx has run it by then, so Postgres is held after the ciphertexts are read; the
			// SQLite driver reads at the first row, so SQLite is held on the key lookup.
			holdOn := func(sql string) bool {
				return strings.Contains(sql, "FROM secrets s") && strings.Contains(sql, "ciphertext")
			}
			if d == "sqlite" {
				holdOn = func(sql string) bool { return strings.Contains(sql, "FROM data_keys k WHERE k.tenant_id") }
			}
			var armed atomic.Bool
			held := make(chan chan struct{})
			hook := func(sql string) {
				if holdOn(sql) && armed.CompareAndSwap(true, false) {
					release := make(chan struct{})
					held <- release
					<-release
				}
			}
			reader, _ := rotStart(t, d, dbURL, dir, owner, nil, app.Options{QueryHook: hook, DisableKeyCache: true})

			for _, c := range []struct {
				name string
				get  func() (int, []byte, error)
			}{
				{"list", func() (int, []byte, error) {
					var page struct {
						Items []struct{ Name, Value string } `json:"items"`
					}
					status, raw, err := rotGet(reader.client, reader.base+path+"secrets?include=values&limit=1000", owner, &page)
					if err == nil && status == http.StatusOK {
						for _, it := range page.Items {
							if values[it.Name] != it.Value {
								return status, raw, fmt.Errorf("%s has a wrong value", it.Name)
							}
						}
						if len(page.Items) != len(values) {
							return status, raw, fmt.Errorf("%d values listed, want %d", len(page.Items), len(values))
						}
					}
					return status, raw, err
				}},
				{"get", func() (int, []byte, error) {
					var sec struct{ Value string }
					status, raw, err := rotGet(reader.client, reader.base+path+"secrets/"+names[3], owner, &sec)
					if err == nil && status == http.StatusOK && sec.Value != values[names[3]] {
						err = fmt.Errorf("%s has a wrong value", names[3])
					}
					return status, raw, err
				}},
			} {
				armed.Store(true)
				type result struct {
					status int
					raw    []byte
					err    error
				}
				done := make(chan result, 1)
				go func() {
					status, raw, err := c.get()
					done <- result{status, raw, err}
				}()
				var release chan struct{}
				select {
				case release = <-held:
				case r := <-done:
					t.Fatalf("%s: the read was not held: %d %s %v", c.name, r.status, r.raw, r.err)
				case <-time.After(30 * time.Second):
					t.Fatalf("%s: the read never fetched its rows", c.name)
				}
				runner.rotateAndWait(owner, "default", "web", "development")
				close(release)
				r := <-done
				if r.err != nil || r.status != http.StatusOK {
					t.Errorf("%s held across a reseal that retired its key: %d %s %v", c.name, r.status, r.raw, r.err)
				}
			}
		})
	}
}
