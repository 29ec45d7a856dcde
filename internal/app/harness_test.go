package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // raw access to the SQLite file, as an attacker with the disk would have

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// lockedBuffer collects log output from concurrent goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// queryLog records SQL statements while recording is on.
type queryLog struct {
	on  atomic.Bool
	mu  sync.Mutex
	sql []string
}

func (q *queryLog) hook(s string) {
	// The key-job runner, the webhook dispatcher and the event hub poll in the background
	// on their own schedules; their statements are not part of any request being counted.
	if !q.on.Load() || strings.Contains(s, "key_jobs") || strings.Contains(s, "webhook") || strings.Contains(s, "FROM events") {
		return
	}
	q.mu.Lock()
	q.sql = append(q.sql, s)
	q.mu.Unlock()
}

func (q *queryLog) record() { q.mu.Lock(); q.sql = nil; q.mu.Unlock(); q.on.Store(true) }

func (q *queryLog) stop() []string {
	q.on.Store(false)
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.sql...)
}

// server is one running Coffer on a fresh database.
type server struct {
	t       *testing.T
	dialect string
	base    string
	owner   string // the bootstrap owner's token; tenant "default"
	logs    *lockedBuffer
	stdout  *lockedBuffer
	queries *queryLog
	dbURL   string
	dataDir string
	client  *http.Client
	app     *app.App
	role    string // the database role it connects as, when not the administrator
	// stop shuts the server down and waits for it (also done at the test's end).
	stop func()
}

func newToken(t *testing.T) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "cfr_pat_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// start runs the whole program as cmd/server does, on port 0, bootstrapped with a token
// unless env overrides it.
func start(t *testing.T, dialect string, env map[string]string) *server {
	t.Helper()
	dbURL, dir := storetest.Database(t, dialect)
	return startOn(t, dialect, dbURL, dir, env)
}

// startOn runs a server on an existing database and data directory: a second replica, or a
// restart.
func startOn(t *testing.T, dialect, dbURL, dir string, env map[string]string) *server {
	t.Helper()
	return startWith(t, dialect, dbURL, dir, env, app.Options{})
}

// startWith is startOn with program options (a key policy, say); the query hook is the
// harness's own.
func startWith(t *testing.T, dialect, dbURL, dir string, env map[string]string, opts app.Options) *server {
	t.Helper()
	s := &server{t: t, dialect: dialect, logs: &lockedBuffer{}, stdout: &lockedBuffer{}, queries: &queryLog{}, dbURL: dbURL, dataDir: dir, client: &http.Client{Timeout: 30 * time.Second}}
	vars := map[string]string{
		"COFFER_LISTEN":       "127.0.0.1:0",
		"COFFER_DATA_DIR":     dir,
		"COFFER_DATABASE_URL": dbURL,
		"COFFER_LOG_LEVEL":    "debug",
	}
	if _, ok := env["COFFER_BOOTSTRAP_TOKEN"]; !ok {
		s.owner = newToken(t)
		vars["COFFER_BOOTSTRAP_TOKEN"] = s.owner
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.NewLogger(cfg, s.logs), s.stdout, withHook(opts, s.queries.hook))
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	s.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(s.stop)
	s.base = "http://" + a.Addr()
	s.app = a
	return s
}

// response is a decoded API answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r response) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (r response) items() []map[string]any {
	list, _ := r.body["items"].([]any)
	out := make([]map[string]any, len(list))
	for i, it := range list {
		out[i], _ = it.(map[string]any)
	}
	return out
}

// call sends a request with an optional JSON body (a string is sent verbatim).
func (s *server) call(method, path, token string, body any) response {
	s.t.Helper()
	return s.send(s.request(method, path, token, body))
}

// request builds what call sends, for a test that adds headers of its own.
func (s *server) request(method, path, token string, body any) *http.Request {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// send performs req and decodes the answer.
func (s *server) send(req *http.Request) response {
	s.t.Helper()
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			s.t.Fatalf("%s %s: response is not a JSON object: %v: %s", req.Method, req.URL.Path, err, raw)
		}
	}
	return r
}

// must calls and fails the test unless the status is want.
func (s *server) must(want int, method, path, token string, body any) response {
	s.t.Helper()
	r := s.call(method, path, token, body)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r
}

// rawDB opens the database directly, as an operator (or attacker) with access to it would.
func (s *server) rawDB() *sql.DB {
	s.t.Helper()
	var db *sql.DB
	var err error
	if s.dialect == "sqlite" {
		db, err = sql.Open("sqlite", "file:"+storetest.SQLitePath(s.dataDir)+"?_pragma=busy_timeout(10000)")
	} else {
		db, err = sql.Open("pgx", s.dbURL)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = db.Close() })
	return db
}

// q rebinds ? placeholders for the dialect.
func (s *server) q(query string) string {
	if s.dialect == "sqlite" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// newUser provisions a user through the API and returns their token.
func (s *server) newUser(email string) string {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/api/v1/users", s.owner, map[string]string{"email": email, "name": email})
	tok, _ := r.body["token"].(string)
	return tok
}

// forEachDialect runs fn against a fresh server on each database.
func forEachDialect(t *testing.T, fn func(t *testing.T, s *server)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			fn(t, start(t, d, nil))
		})
	}
}

const envPath = "/api/v1/tenants/default/projects/web/environments/"

// withProject creates project "web" in the default tenant.
func (s *server) withProject() {
	s.t.Helper()
	s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects", s.owner, map[string]string{"slug": "web", "name": "Web"})
}

// tryStart builds the program from environment variables and stops it at once.
func tryStart(vars map[string]string) error {
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.NewLogger(cfg, io.Discard), io.Discard, app.Options{})
	if err != nil {
		cancel()
		return err
	}
	cancel()
	return a.Serve(ctx)
}

func withHook(o app.Options, hook func(string)) app.Options {
	o.QueryHook = hook
	return o
}

// rotateAndWait starts a roll-and-reseal of one environment as token and waits until the
// server's background runner has finished it; it returns the job id.
func (s *server) rotateAndWait(token, tenantSlug, project, env string) string {
	s.t.Helper()
	j := s.must(http.StatusAccepted, "POST", "/api/v1/tenants/"+tenantSlug+"/keys/rotate", token,
		map[string]string{"project": project, "environment": env})
	id, _ := j.body["id"].(string)
	return s.waitJob(token, tenantSlug, id)
}

// waitJob polls a key job until it is no longer running and fails the test unless it is done.
func (s *server) waitJob(token, tenantSlug, id string) string {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := s.must(http.StatusOK, "GET", "/api/v1/tenants/"+tenantSlug+"/keys/jobs/"+id, token, nil)
		switch r.body["state"] {
		case "done":
			return id
		case "failed":
			s.t.Fatalf("key job %s failed: %s", id, r.raw)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("key job %s still running after 60s: %s", id, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// invite invites email to tenantSlug with role as token and returns the one-time code from
// the accept link.
func (s *server) invite(token, tenantSlug, email, role string) string {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/api/v1/tenants/"+tenantSlug+"/invitations", token, map[string]string{"email": email, "role": role})
	link, _ := r.body["accept_url"].(string)
	_, code, ok := strings.Cut(link, "?code=")
	if !ok || code == "" {
		s.t.Fatalf("invitation has no code in its accept_url: %s", r.raw)
	}
	return code
}

// accept accepts an invitation as token and fails the test unless it is accepted.
func (s *server) accept(token, code string) response {
	s.t.Helper()
	return s.must(http.StatusOK, "POST", "/api/v1/invitations/accept", token, map[string]string{"code": code})
}

// join makes the user with token and email a member of tenantSlug with role, invited by inviter.
func (s *server) join(inviter, tenantSlug, token, email, role string) {
	s.t.Helper()
	s.accept(token, s.invite(inviter, tenantSlug, email, role))
}
