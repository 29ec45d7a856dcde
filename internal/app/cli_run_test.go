package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliProc is a run of the coffer binary against a test server, in its own HOME and config
// directory.
type cliProc struct {
	t     *testing.T
	bin   string
	env   []string
	dir   string
	stdin io.Reader
}

func newCLI(t *testing.T, bin, server, token string) *cliProc {
	t.Helper()
	home := t.TempDir()
	return &cliProc{t: t, bin: bin, env: append(os.Environ(), "COFFER_SERVER="+server, "COFFER_TOKEN="+token,
		"HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "COFFER_CONFIG_DIR=")}
}

// with is a copy of p with another token (or working directory, or standard input).
func (p *cliProc) with(token string) *cliProc {
	q := *p
	q.env = append(append([]string(nil), p.env...), "COFFER_TOKEN="+token)
	return &q
}

func (p *cliProc) in(dir string) *cliProc { q := *p; q.dir = dir; return &q }

// run runs coffer to completion and returns its stdout, stderr and exit code.
func (p *cliProc) run(args ...string) (string, string, int) {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdin = p.env, p.dir, p.stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		p.t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// lineWriter hands each complete line written to it to a channel, with its arrival time.
type lineWriter struct {
	buf   []byte
	lines chan stampedLine
}

type stampedLine struct {
	text string
	at   time.Time
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- stampedLine{string(w.buf[:i]), time.Now()}
		w.buf = w.buf[i+1:]
	}
}

// watched is a running `coffer run --watch`.
type watched struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan stampedLine
	stderr *lockedBuffer
}

func (p *cliProc) start(args ...string) *watched {
	p.t.Helper()
	w := &watched{t: p.t, lines: make(chan stampedLine, 1000), stderr: &lockedBuffer{}}
	w.cmd = exec.Command(p.bin, args...)
	w.cmd.Env, w.cmd.Dir = p.env, p.dir
	w.cmd.Stdout, w.cmd.Stderr = &lineWriter{lines: w.lines}, w.stderr
	if err := w.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		}
	})
	return w
}

// next is the next line of the command's output.
func (w *watched) next(within time.Duration) stampedLine {
	w.t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(within):
		w.t.Fatalf("no output within %s; stderr:\n%s", within, w.stderr)
	}
	return stampedLine{}
}

// stop signals coffer and returns its exit code.
func (w *watched) stop(sig syscall.Signal) int {
	w.t.Helper()
	_ = w.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
		w.t.Fatalf("coffer did not end after %v; stderr:\n%s", sig, w.stderr)
	}
	return w.cmd.ProcessState.ExitCode()
}

// TestCLIRunFeatures: `coffer run` with a hundred secrets, --resolve, --watch (restart on a
// change within a second, SIGKILL after the grace, reconnect and resume after a server
// restart), `coffer setup` with a later run in a subdirectory, and --fallback (an encrypted
// copy, used only when the server is down and the copy is fresh and opens with the token).
func TestCLIRunFeatures(t *testing.T) {
	bin := buildCLI(t)
	forEachDialect(t, func(t *testing.T, s *server) {
		dialectT := t // a restarted server lives as long as the dialect's test, not a subtest
		s.withProject()
		put := func(s *server, env, name, value string) {
			t.Helper()
			r := s.call("PUT", envPath+env+"/secrets/"+name, s.owner, map[string]string{"value": value})
			if r.status != http.StatusOK && r.status != http.StatusCreated {
				t.Fatalf("put %s/%s: %d %s", env, name, r.status, r.raw)
			}
		}
		cli := newCLI(t, bin, s.base, s.owner)
		staging := []string{"run", "--project", "web", "--env", "staging"}

		t.Run("hundred", func(t *testing.T) {
			var list []map[string]any
			for i := range 100 {
				list = append(list, map[string]any{"name": fmt.Sprintf("MANY_%03d", i), "value": fmt.Sprintf("value %d=with;chars", i)})
			}
			s.must(http.StatusOK, "PATCH", envPath+"staging/secrets", s.owner, map[string]any{"secrets": list})
			out, stderr, code := cli.run(append(staging, "--", "sh", "-c", "env; exit 7")...)
			if code != 7 {
				t.Fatalf("exit %d, want the child's 7; stderr: %s", code, stderr)
			}
			got := map[string]string{}
			for _, l := range strings.Split(out, "\n") {
				if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "MANY_") {
					got[k] = v
				}
			}
			if len(got) != 100 {
				t.Fatalf("the child saw %d of the 100 secrets", len(got))
			}
			for i := range 100 {
				if k := fmt.Sprintf("MANY_%03d", i); got[k] != fmt.Sprintf("value %d=with;chars", i) {
					t.Fatalf("%s = %q", k, got[k])
				}
			}
		})

		t.Run("resolve", func(t *testing.T) {
			put(s, "staging", "DB_HOST", "db.staging")
			put(s, "production", "DB_PASSWORD", "prod-pw")
			put(s, "staging", "DATABASE_URL", "postgres://app:${production.DB_PASSWORD}@${DB_HOST}/app")
			script := []string{"--", "sh", "-c", `printf %s "$DATABASE_URL"`}
			if out, stderr, code := cli.run(append(append(staging, "--resolve"), script...)...); code != 0 || out != "postgres://app:prod-pw@db.staging/app" {
				t.Fatalf("--resolve: %q, exit %d, %s", out, code, stderr)
			}
			if out, _, _ := cli.run(append(staging, script...)...); out != "postgres://app:${production.DB_PASSWORD}@${DB_HOST}/app" {
				t.Fatalf("without --resolve: %q", out)
			}
		})

		t.Run("setup", func(t *testing.T) {
			repo := t.TempDir()
			deep := filepath.Join(repo, "sub", "deep")
			if err := os.MkdirAll(filepath.Join(repo, ".git"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(deep, 0o755); err != nil {
				t.Fatal(err)
			}
			head := func(branch string) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(repo, ".git", "HEAD"), []byte("ref: refs/heads/"+branch+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			head("feature/x")
			put(s, "development", "WHICH", "dev-value")
			put(s, "staging", "WHICH", "staging-value")
			put(s, "production", "WHICH", "prod-value")
			here := cli.in(deep)
			setup := []string{"setup", "--project", "web", "--env", "staging", "--branch", "feature/*=development", "--branch", "main=production"}
			if out, stderr, code := here.run(setup...); code != 0 || !strings.Contains(out, filepath.Join(repo, ".coffer.yaml")) {
				t.Fatalf("setup: %q, exit %d, %s", out, code, stderr)
			}
			if _, err := os.Stat(filepath.Join(deep, ".coffer.yaml")); err == nil {
				t.Fatal("setup wrote in the subdirectory, not at the repository's root")
			}
			b, err := os.ReadFile(filepath.Join(repo, ".coffer.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"tenant: default", "project: web", "environment: staging", "pattern: feature/*", "environment: development", "pattern: main"} {
				if !strings.Contains(string(b), want) {
					t.Fatalf(".coffer.yaml lacks %q:\n%s", want, b)
				}
			}
			which := func() string {
				t.Helper()
				out, stderr, code := here.run("run", "--", "sh", "-c", `printf %s "$WHICH"`)
				if code != 0 {
					t.Fatalf("run from .coffer.yaml: exit %d, %s", code, stderr)
				}
				return out
			}
			for branch, want := range map[string]string{"feature/x": "dev-value", "main": "prod-value", "other": "staging-value", "feature/x/y": "staging-value"} {
				head(branch)
				if got := which(); got != want {
					t.Fatalf("on branch %s: WHICH = %q, want %q", branch, got, want)
				}
			}
			// An existing file is kept unless --force.
			if _, stderr, code := here.run(setup...); code != 3 || !strings.Contains(stderr, "--force") {
				t.Fatalf("setup over an existing file: exit %d, %s", code, stderr)
			}
			if _, stderr, code := here.run(append(setup, "--env", "development", "--force")...); code != 0 {
				t.Fatalf("setup --force: exit %d, %s", code, stderr)
			}
			head("other")
			if got := which(); got != "dev-value" {
				t.Fatalf("after setup --force: WHICH = %q", got)
			}
			// A project the server does not have is refused; nothing is written.
			other := t.TempDir()
			if _, stderr, code := cli.in(other).run("setup", "--project", "nope", "--env", "staging"); code != 4 {
				t.Fatalf("setup of a missing project: exit %d, %s", code, stderr)
			}
			if _, err := os.Stat(filepath.Join(other, ".coffer.yaml")); err == nil {
				t.Fatal("a refused setup wrote .coffer.yaml")
			}
			// Interactively: the answers on stdin, checked against the lists; a wrong
			// project is asked again.
			asked := cli.in(other)
			asked.stdin = strings.NewReader("\nnope\nweb\nstaging\n\nrelease/*=development\n\n")
			out, stderr, code := asked.run("setup")
			if code != 0 || !strings.Contains(stderr, "Your projects: web") || !strings.Contains(stderr, `"nope" is not one of them`) {
				t.Fatalf("interactive setup: %q, exit %d, %s", out, code, stderr)
			}
			b, err = os.ReadFile(filepath.Join(other, ".coffer.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"tenant: default", "project: web", "environment: staging", "pattern: main", "environment: production", "pattern: release/*"} {
				if !strings.Contains(string(b), want) {
					t.Fatalf("interactive .coffer.yaml lacks %q:\n%s", want, b)
				}
			}
		})

		t.Run("watch", func(t *testing.T) {
			put(s, "staging", "SOME_VAR", "one")
			w := cli.start(append(staging, "--watch", "--", "sh", "-c", `trap 'exit 5' TERM; echo "v=$SOME_VAR"; while :; do sleep 0.05; done`)...)
			if l := w.next(10 * time.Second); l.text != "v=one" {
				t.Fatalf("first run printed %q", l.text)
			}
			// Another environment's change restarts nothing; this one's does, within a second.
			put(s, "production", "SOME_VAR", "prod")
			t0 := time.Now()
			put(s, "staging", "SOME_VAR", "two")
			l := w.next(5 * time.Second)
			if l.text != "v=two" {
				t.Fatalf("after the change the command printed %q; stderr:\n%s", l.text, w.stderr)
			}
			t.Logf("a change to the running command's new value: %s", l.at.Sub(t0))
			if d := l.at.Sub(t0); d > time.Second {
				t.Fatalf("the restarted command printed the new value %s after the API call, want ≤ 1s", d)
			}
			if !strings.Contains(w.stderr.String(), "restarting") {
				t.Fatalf("no restart notice on stderr:\n%s", w.stderr)
			}
			// SIGTERM to coffer reaches the command; its own exit ends coffer with its code.
			if code := w.stop(syscall.SIGTERM); code != 5 {
				t.Fatalf("after SIGTERM: exit %d, want the command's 5; stderr:\n%s", code, w.stderr)
			}

			// A command that ignores SIGTERM is killed after --watch-grace, and restarted.
			w = cli.start(append(staging, "--watch", "--watch-grace", "300ms", "--", "sh", "-c", `trap '' TERM; echo "v=$SOME_VAR"; while :; do sleep 0.05; done`)...)
			if l := w.next(10 * time.Second); l.text != "v=two" {
				t.Fatalf("first run printed %q", l.text)
			}
			t0 = time.Now()
			put(s, "staging", "SOME_VAR", "three")
			l = w.next(5 * time.Second)
			if l.text != "v=three" {
				t.Fatalf("after the change the stubborn command printed %q; stderr:\n%s", l.text, w.stderr)
			}
			if d := l.at.Sub(t0); d < 300*time.Millisecond || d > 1300*time.Millisecond {
				t.Fatalf("the stubborn command was replaced %s after the change, want the 300ms grace and little more", d)
			}
			if !strings.Contains(w.stderr.String(), "killing it") {
				t.Fatalf("no kill notice on stderr:\n%s", w.stderr)
			}
			if code := w.stop(syscall.SIGINT); code != 128+int(syscall.SIGINT) {
				t.Fatalf("after SIGINT: exit %d; stderr:\n%s", code, w.stderr)
			}

			// The server restarts: the stream reconnects, resumes, and a change made after
			// the restart still restarts the command.
			w = cli.start(append(staging, "--watch", "--", "sh", "-c", `trap 'exit 0' TERM; echo "v=$SOME_VAR"; while :; do sleep 0.05; done`)...)
			if l := w.next(10 * time.Second); l.text != "v=three" {
				t.Fatalf("first run printed %q", l.text)
			}
			put(s, "staging", "SOME_VAR", "four") // gives the stream an event id to resume after
			if l := w.next(5 * time.Second); l.text != "v=four" {
				t.Fatalf("printed %q", l.text)
			}
			addr := strings.TrimPrefix(s.base, "http://")
			s.stop()
			again := startOn(dialectT, s.dialect, s.dbURL, s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": "", "COFFER_LISTEN": addr})
			again.owner = s.owner
			put(again, "staging", "SOME_VAR", "five")
			if l := w.next(20 * time.Second); l.text != "v=five" {
				t.Fatalf("after the server's restart the command printed %q; stderr:\n%s", l.text, w.stderr)
			}
			t.Logf("stderr across the server's restart:\n%s", w.stderr)
			if e := w.stderr.String(); !strings.Contains(e, "event stream lost") || !strings.Contains(e, "reconnected, resuming after event") {
				t.Fatalf("stderr lacks the reconnect notices:\n%s", e)
			}
			if code := w.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, w.stderr)
			}
			*s = *again
		})

		t.Run("fallback", func(t *testing.T) {
			const canary = "fallback-canary-7f3a9c"
			put(s, "staging", "API_KEY", canary)
			file := filepath.Join(t.TempDir(), "cache", "web-staging")
			fb := append(staging, "--fallback", file)
			script := []string{"--", "sh", "-c", `printf %s "$API_KEY"`}
			if out, stderr, code := cli.run(append(fb, script...)...); code != 0 || out != canary {
				t.Fatalf("a good run: %q, exit %d, %s", out, code, stderr)
			}
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatalf("no fallback copy: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("the copy's mode is %v, want 0600", fi.Mode().Perm())
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, plain := range []string{canary, "prod-pw", "value 42=with;chars", "staging-value"} {
				if bytes.Contains(raw, []byte(plain)) {
					t.Fatalf("the copy holds the plaintext %q", plain)
				}
			}
			// A refused token never falls back, even with a copy at hand.
			if out, stderr, code := cli.with(newToken(t)).run(append(fb, script...)...); code != 77 || out != "" {
				t.Fatalf("a refused token with a copy: %q, exit %d, %s", out, code, stderr)
			}

			s.stop()
			out, stderr, code := cli.run(append(fb, script...)...)
			if code != 0 || out != canary || !strings.Contains(stderr, "using the fallback copy") || !strings.Contains(stderr, "ago") {
				t.Fatalf("server down, fresh copy: %q, exit %d, %s", out, code, stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("the warning is not one line: %q", stderr)
			}
			refused := func(name, want string, c *cliProc, args ...string) {
				t.Helper()
				out, stderr, code := c.run(append(args, script...)...)
				if code != 69 || out != "" || !strings.Contains(stderr, want) {
					t.Fatalf("%s: %q, exit %d, %s", name, out, code, stderr)
				}
			}
			refused("too old", "older than --fallback-max-age", cli, append(fb, "--fallback-max-age", "1ms")...)
			refused("another token", "cannot be decrypted", cli.with(newToken(t)), fb...)
			refused("another environment", "holds default/web/staging", cli, "run", "--project", "web", "--env", "production", "--fallback", file)
			refused("no copy", "no fallback copy", cli, append(staging, "--fallback", file+".missing")...)
			refused("no --fallback", "cannot reach", cli, staging...)

			// The age is the authenticated one: a copy made to look fresh does not open.
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			doc["fetched_at"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
			forged, _ := json.Marshal(doc)
			if err := os.WriteFile(file, forged, 0o600); err != nil {
				t.Fatal(err)
			}
			refused("forged fetch time", "cannot be decrypted", cli, append(fb, "--fallback-max-age", "1ms")...)
			if err := os.WriteFile(file, raw, 0o600); err != nil {
				t.Fatal(err)
			}

			// --watch with the server down starts from the copy, keeps trying the stream, and
			// once the server is back re-reads and restarts the command with what changed.
			w := cli.start(append(append(fb, "--watch"), "--", "sh", "-c", `trap 'exit 0' TERM; echo "k=$API_KEY"; while :; do sleep 0.05; done`)...)
			if l := w.next(10 * time.Second); l.text != "k="+canary {
				t.Fatalf("watch from the copy printed %q; stderr:\n%s", l.text, w.stderr)
			}
			again := startOn(dialectT, s.dialect, s.dbURL, s.dataDir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": "", "COFFER_LISTEN": strings.TrimPrefix(s.base, "http://")})
			again.owner = s.owner
			put(again, "staging", "API_KEY", "rotated")
			if l := w.next(20 * time.Second); l.text != "k=rotated" {
				t.Fatalf("after the server came back the command printed %q; stderr:\n%s", l.text, w.stderr)
			}
			if e := w.stderr.String(); !strings.Contains(e, "using the fallback copy") || !strings.Contains(e, "event stream reconnected") {
				t.Fatalf("stderr lacks the fallback and reconnect notices:\n%s", e)
			}
			if code := w.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, w.stderr)
			}
		})
	})
}
