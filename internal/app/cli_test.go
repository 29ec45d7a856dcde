package app_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildCLI builds cmd/coffer for one test, with build tags if any.
func buildCLI(t *testing.T, tags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "coffer")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := exec.Command("go", append(args, "github.com/cofferhq/coffer/cmd/coffer")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/coffer: %v\n%s", err, out)
	}
	return bin
}

// TestCLIRun: `coffer run` injects an environment's secrets over the inherited environment
// (or alone, or only some), passes the child's exit code and signals through, and says why it
// cannot run: a refused token, an unreachable server.
func TestCLIRun(t *testing.T) {
	bin := buildCLI(t)
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusOK, "PATCH", envPath+"staging/secrets", s.owner, map[string]any{"secrets": []map[string]any{
			{"name": "API_KEY", "value": "s3cret value"}, {"name": "OTHER", "value": "o"}}})
		run := func(token string, args ...string) (string, int) {
			t.Helper()
			cmd := exec.Command(bin, append([]string{"run", "--project", "web", "--env", "staging"}, args...)...)
			cmd.Env = append(os.Environ(), "COFFER_SERVER="+s.base, "COFFER_TOKEN="+token, "INHERITED=yes", "OTHER=from-shell")
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			return out.String() + stderr.String(), cmd.ProcessState.ExitCode()
		}
		if out, code := run(s.owner, "--", "sh", "-c", `echo "$API_KEY|$OTHER|$INHERITED"; exit 3`); out != "s3cret value|o|yes\n" || code != 3 {
			t.Fatalf("run: %q, exit %d", out, code)
		}
		if out, _ := run(s.owner, "--no-inherit", "--", "/bin/sh", "-c", `echo "$API_KEY|$INHERITED"`); out != "s3cret value|\n" {
			t.Fatalf("--no-inherit: %q", out)
		}
		if out, _ := run(s.owner, "--only", "API_KEY", "--", "sh", "-c", `echo "$API_KEY|$OTHER"`); out != "s3cret value|from-shell\n" {
			t.Fatalf("--only: %q", out)
		}
		if out, code := run(newToken(t), "--", "true"); code != 77 || !strings.Contains(out, "401") || !strings.Contains(out, "coffer login") {
			t.Fatalf("a refused token: %q, exit %d", out, code)
		}
		if out, code := run(s.owner, "--", "no-such-command-here"); code != 127 {
			t.Fatalf("a missing command: %q, exit %d", out, code)
		}

		// SIGTERM to coffer reaches the child, whose exit code coffer passes on.
		cmd := exec.Command(bin, "run", "--project", "web", "--env", "staging", "--", "sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
		cmd.Env = append(os.Environ(), "COFFER_SERVER="+s.base, "COFFER_TOKEN="+s.owner)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
			t.Fatalf("child output %q: %v", buf, err)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("coffer run did not end after SIGTERM")
		}
		if code := cmd.ProcessState.ExitCode(); code != 42 {
			t.Fatalf("after SIGTERM: exit %d, want the child's 42", code)
		}

		// The server gone: 69, before any child runs.
		s.stop()
		if out, code := run(s.owner, "--", "sh", "-c", "echo ran"); code != 69 || strings.Contains(out, "ran") {
			t.Fatalf("server down: %q, exit %d", out, code)
		}
	})
}

// TestCLIHabits: version, shell completion, help with examples, and the documented exit codes
// of the usual mistakes: a bad flag (2), not signed in (78), an unknown project or
// environment (4), each in one line on stderr with the server's request id where there is one.
func TestCLIHabits(t *testing.T) {
	bin := buildCLI(t)
	home := t.TempDir()
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + home}, env...)
		cmd.Dir = home
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	if out, _, code := run(nil, "version"); code != 0 || !strings.HasPrefix(out, "coffer ") {
		t.Fatalf("version: %d %q", code, out)
	}
	for shell, marker := range map[string]string{"bash": "complete -o default", "zsh": "#compdef coffer", "fish": "complete -c coffer"} {
		if out, _, code := run(nil, "completion", shell); code != 0 || !strings.Contains(out, marker) {
			t.Fatalf("completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
	for _, c := range []string{"run", "login", "logout", "whoami", "version", "setup", "import", "export", "diff", "promote",
		"secrets list", "secrets get", "secrets set", "secrets delete", "secrets restore", "secrets versions", "secrets rollback",
		"secrets destroy", "tokens list", "tokens create", "tokens revoke", "audit verify"} {
		if out, _, code := run(nil, append(strings.Fields(c), "--help")...); code != 0 || !strings.Contains(out, "Examples:") {
			t.Fatalf("%s --help: exit %d %s", c, code, out)
		}
	}
	if _, errOut, code := run(nil, "run", "--no-such-flag", "--", "true"); code != 2 || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("a bad flag: exit %d %q", code, errOut)
	}
	if _, errOut, code := run(nil, "whoami"); code != 78 || !strings.Contains(errOut, "coffer login") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("not signed in: exit %d %q", code, errOut)
	}
	// COFFER_CONFIG_DIR moves the stored sign-in.
	cfgDir := filepath.Join(home, "elsewhere")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"server":"https://coffer.example.com","store":"file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run([]string{"COFFER_CONFIG_DIR=" + cfgDir}, "whoami"); code != 78 ||
		!strings.Contains(errOut, filepath.Join(cfgDir, "tokens", "coffer.example.com")) {
		t.Fatalf("COFFER_CONFIG_DIR: exit %d %q", code, errOut)
	}
	// A token is never sent over plain HTTP but to this machine.
	for _, server := range []string{"http://coffer.example.com", "ftp://coffer.example.com", "https://coffer.example.com/x?y"} {
		_, errOut, code := run([]string{"COFFER_SERVER=" + server, "COFFER_TOKEN=cfr_pat_x"}, "whoami")
		if code != 78 || strings.Contains(errOut, "cfr_pat_x") {
			t.Fatalf("COFFER_SERVER=%s: exit %d %q", server, code, errOut)
		}
		if _, errOut, code := run(nil, "login", "--server", server); code != 78 {
			t.Fatalf("login --server %s: exit %d %q", server, code, errOut)
		}
	}
	forEachDialect(t, func(t *testing.T, s *server) {
		env := []string{"COFFER_SERVER=" + s.base, "COFFER_TOKEN=" + s.owner}
		_, errOut, code := run(env, "run", "--project", "nope", "--env", "staging", "--", "true")
		if code != 4 || !regexp.MustCompile(`^coffer: 404 not_found: .* \(request [0-9a-f]+\)\n$`).MatchString(errOut) {
			t.Fatalf("an unknown project: exit %d %q", code, errOut)
		}
	})
}
