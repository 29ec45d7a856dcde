package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildCLIWithTestKeychain builds cmd/coffer with go-keyring's mock provider in place of the
// OS keychain (the coffer_testkeychain tag; see cmd/coffer/keychain_testbuild.go).
func buildCLIWithTestKeychain(t *testing.T) string { return buildCLI(t, "coffer_testkeychain") }

// cliHome is one user's machine for the CLI: a config directory and a keychain stand-in.
type cliHome struct {
	t        *testing.T
	bin      string
	dir      string
	keychain string
	env      []string
}

func newCLIHome(t *testing.T, bin string, extra ...string) *cliHome {
	dir := t.TempDir()
	h := &cliHome{t: t, bin: bin, dir: dir, keychain: filepath.Join(dir, "keychain.json")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFER_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "HOME=") {
			h.env = append(h.env, kv)
		}
	}
	h.env = append(h.env, "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "COFFER_TEST_KEYCHAIN="+h.keychain)
	h.env = append(h.env, extra...)
	return h
}

// run runs coffer to the end and returns stdout, stderr and the exit code.
func (h *cliHome) run(stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	cmd := exec.Command(h.bin, args...)
	cmd.Env, cmd.Dir = h.env, h.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			h.t.Fatal(err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

var userCodeRE = regexp.MustCompile(`/device\?code=([A-Z]{4}-[A-Z]{4})`)

// login runs `coffer login` and answers the device sign-in in the owner's browser session
// with decision ("approve" or "deny"). It returns stderr and the exit code.
func (h *cliHome) login(s *server, decision string, args ...string) (string, int) {
	h.t.Helper()
	return h.loginOn(s, decision, "", args...)
}

// loginOn is login with tty, when not empty, typed on a terminal coffer runs on (script(1)
// gives it one): what it says to prompts. Its output is then the terminal's.
func (h *cliHome) loginOn(s *server, decision, tty string, args ...string) (string, int) {
	h.t.Helper()
	cmd := exec.Command(h.bin, append([]string{"login", "--server", s.base}, args...)...)
	if tty != "" {
		line := "'" + h.bin + "' login --server '" + s.base + "'"
		for _, a := range args {
			line += " '" + a + "'"
		}
		cmd = exec.Command("script", "-qefc", line, "/dev/null")
		cmd.Stdin = strings.NewReader(tty)
	}
	cmd.Env, cmd.Dir = h.env, h.dir
	var stderr io.ReadCloser
	var err error
	if tty != "" {
		stderr, err = cmd.StdoutPipe()
	} else {
		stderr, err = cmd.StderrPipe()
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	var seen bytes.Buffer
	sc := bufio.NewScanner(io.TeeReader(stderr, &seen))
	code := ""
	for code == "" && sc.Scan() {
		if m := userCodeRE.FindStringSubmatch(sc.Text()); m != nil {
			code = m[1]
		}
	}
	if code != "" {
		cookie := s.signIn(s.owner)
		page := s.browse("GET", "/device?code="+url.QueryEscape(code), cookie, "", "", "", false)
		if page.status != http.StatusOK || !strings.Contains(string(page.raw), code) || !strings.Contains(string(page.raw), "coffer CLI on") {
			h.t.Fatalf("approval page: %d %s", page.status, page.raw)
		}
		csrf := match(h.t, csrfRE, page.raw)
		r := s.browse("POST", "/device", cookie, s.base, csrf, "code="+code+"&decision="+decision, true)
		if r.status != http.StatusOK {
			h.t.Fatalf("answering the sign-in: %d %s", r.status, r.raw)
		}
	}
	_, _ = io.Copy(&seen, stderr)
	_ = cmd.Wait()
	return seen.String(), cmd.ProcessState.ExitCode()
}

type whoami struct {
	Server string `json:"server"`
	User   struct {
		Email string `json:"email"`
	} `json:"user"`
	Kind      string     `json:"kind"`
	TokenID   string     `json:"token_id"`
	ExpiresAt *time.Time `json:"expires_at"`
	StoredIn  string     `json:"stored_in"`
}

func (h *cliHome) whoami() (whoami, string, int) {
	h.t.Helper()
	out, errOut, code := h.run("", "whoami", "--json")
	var w whoami
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			h.t.Fatalf("whoami --json: %v: %s", err, out)
		}
	}
	return w, errOut, code
}

func (h *cliHome) keychainItems() map[string]string {
	h.t.Helper()
	items := map[string]string{}
	if b, err := os.ReadFile(h.keychain); err == nil {
		if err := json.Unmarshal(b, &items); err != nil {
			h.t.Fatal(err)
		}
	}
	return items
}

// tokenFile is the file store's token file for the server, if any.
func (h *cliHome) tokenFiles() []string {
	files, _ := filepath.Glob(filepath.Join(h.dir, "config", "coffer", "tokens", "*"))
	return files
}

func requireMode0600(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

// TestCLILogin: `coffer login` through the device sign-in approved in a browser session keeps
// an expiring personal token in the keychain (a stand-in) or, with consent, a 0600 file; a
// keychain that fails is found before the sign-in, or, failing on the write, the token is kept
// in the file anyway; later commands find it without flags; logout revokes it on the server.
func TestCLILogin(t *testing.T) {
	bin := buildCLIWithTestKeychain(t)
	forEachDialect(t, func(t *testing.T, s *server) {
		_, ownerEmail := isoUserID(s, s.owner)
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/GREETING", s.owner, map[string]any{"value": "hello"})

		t.Run("keychain", func(t *testing.T) {
			h := newCLIHome(t, bin)
			out, code := h.login(s, "approve")
			if code != 0 || !strings.Contains(out, "Signed in to "+s.base+" as "+ownerEmail) || !strings.Contains(out, "system keychain") {
				t.Fatalf("login: exit %d: %s", code, out)
			}
			items := h.keychainItems()
			tok := items["coffer\x00"+s.base]
			if !strings.HasPrefix(tok, "cfr_pat_") || len(items) != 1 || len(h.tokenFiles()) != 0 {
				t.Fatalf("keychain after login: %d items, token files %v", len(items), h.tokenFiles())
			}
			requireMode0600(t, filepath.Join(h.dir, "config", "coffer", "config.json"))
			if b, _ := os.ReadFile(filepath.Join(h.dir, "config", "coffer", "config.json")); bytes.Contains(b, []byte(tok)) {
				t.Fatal("config.json holds the token")
			}
			// An expiring personal token, of the approving user.
			w, errOut, code := h.whoami()
			if code != 0 || w.Server != s.base || w.User.Email != ownerEmail || w.Kind != "personal_token" || w.StoredIn != "keychain" ||
				w.ExpiresAt == nil || time.Until(*w.ExpiresAt) < 29*24*time.Hour || time.Until(*w.ExpiresAt) > 31*24*time.Hour {
				t.Fatalf("whoami: exit %d %+v %s", code, w, errOut)
			}
			// Later commands find it without flags.
			if out, errOut, code := h.run("", "run", "--project", "web", "--env", "development", "--", "sh", "-c", "echo $GREETING"); code != 0 || out != "hello\n" {
				t.Fatalf("run with the stored token: exit %d %q %s", code, out, errOut)
			}
			// Logout revokes it on the server and deletes it here.
			if _, errOut, code := h.run("", "logout"); code != 0 {
				t.Fatalf("logout: exit %d %s", code, errOut)
			}
			if r := s.call("GET", "/api/v1/me", tok, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("the token after logout: %d", r.status)
			}
			if len(h.keychainItems()) != 0 {
				t.Fatal("the token is still in the keychain after logout")
			}
			if _, errOut, code := h.whoami(); code != 78 || !strings.Contains(errOut, "coffer login") {
				t.Fatalf("whoami after logout: exit %d %s", code, errOut)
			}
		})

		t.Run("no keychain: refused before the sign-in without consent, then a file", func(t *testing.T) {
			h := newCLIHome(t, bin, "COFFER_TEST_KEYCHAIN_FAIL=all")
			before := deviceAuthorizations(t, s)
			_, errOut, code := h.run("", "login", "--server", s.base)
			if code != 78 || !strings.Contains(errOut, "keychain cannot be used here") || !strings.Contains(errOut, "--store file") {
				t.Fatalf("login without a keychain or consent: exit %d %s", code, errOut)
			}
			if deviceAuthorizations(t, s) != before {
				t.Fatal("a sign-in was started although the token could not have been kept")
			}
			h.env = append(h.env, "COFFER_TOKEN_STORE=file")
			out, code := h.login(s, "approve")
			files := h.tokenFiles()
			if code != 0 || len(files) != 1 || !strings.Contains(out, files[0]) {
				t.Fatalf("login with COFFER_TOKEN_STORE=file: exit %d, files %v: %s", code, files, out)
			}
			requireMode0600(t, files[0])
			requireMode0600(t, filepath.Join(h.dir, "config", "coffer", "config.json"))
			// Remembered: later commands need neither the variable nor a flag.
			h.env = h.env[:len(h.env)-1]
			if w, errOut, code := h.whoami(); code != 0 || w.User.Email != ownerEmail || w.StoredIn != "file "+files[0] {
				t.Fatalf("whoami: exit %d %+v %s", code, w, errOut)
			}
			if _, errOut, code := h.run("", "logout"); code != 0 {
				t.Fatalf("logout: exit %d %s", code, errOut)
			}
			if len(h.tokenFiles()) != 0 {
				t.Fatal("the token file is still there after logout")
			}
		})

		t.Run("no keychain: consent on a terminal", func(t *testing.T) {
			if _, err := exec.LookPath("script"); err != nil {
				t.Skip("script(1) is not installed: no terminal to answer the prompt on")
			}
			h := newCLIHome(t, bin, "COFFER_TEST_KEYCHAIN_FAIL=all")
			before := deviceAuthorizations(t, s)
			out, code := h.loginOn(s, "approve", "n\n")
			if code != 78 || !strings.Contains(out, "Keep the token in a file readable only by you") || deviceAuthorizations(t, s) != before {
				t.Fatalf("answering no: exit %d: %s", code, out)
			}
			out, code = h.loginOn(s, "approve", "y\n")
			files := h.tokenFiles()
			if code != 0 || len(files) != 1 {
				t.Fatalf("answering yes: exit %d, files %v: %s", code, files, out)
			}
			requireMode0600(t, files[0])
			if w, errOut, code := h.whoami(); code != 0 || w.User.Email != ownerEmail || w.StoredIn != "file "+files[0] {
				t.Fatalf("whoami: exit %d %+v %s", code, w, errOut)
			}
		})

		t.Run("the keychain refuses the write after the sign-in: the token is kept in the file", func(t *testing.T) {
			h := newCLIHome(t, bin, "COFFER_TEST_KEYCHAIN_FAIL=token")
			out, code := h.login(s, "approve")
			files := h.tokenFiles()
			if code != 0 || len(files) != 1 || !strings.Contains(out, "keychain refused the token") {
				t.Fatalf("login: exit %d, files %v: %s", code, files, out)
			}
			requireMode0600(t, files[0])
			if w, errOut, code := h.whoami(); code != 0 || w.User.Email != ownerEmail || !strings.HasPrefix(w.StoredIn, "file ") {
				t.Fatalf("whoami: exit %d %+v %s", code, w, errOut)
			}
		})

		t.Run("denied", func(t *testing.T) {
			h := newCLIHome(t, bin)
			out, code := h.login(s, "deny")
			if code != 77 || !strings.Contains(out, "denied") || len(h.keychainItems()) != 0 {
				t.Fatalf("a denied sign-in: exit %d: %s", code, out)
			}
		})

		t.Run("token from stdin; COFFER_TOKEN wins", func(t *testing.T) {
			h := newCLIHome(t, bin)
			if _, errOut, code := h.run(s.owner+"\n", "login", "--server", s.base, "--token-stdin", "--store", "file"); code != 0 {
				t.Fatalf("login --token-stdin: exit %d %s", code, errOut)
			}
			if w, _, code := h.whoami(); code != 0 || w.User.Email != ownerEmail || !strings.HasPrefix(w.StoredIn, "file ") || w.ExpiresAt != nil {
				t.Fatalf("whoami: exit %d %+v", code, w)
			}
			if _, errOut, code := h.run("not a token\n", "login", "--server", s.base, "--token-stdin", "--store", "file"); code != 77 || !strings.Contains(errOut, "401") {
				t.Fatalf("a bad token on stdin: exit %d %s", code, errOut)
			}
			other := s.newUser("other-cli@example.com")
			h.env = append(h.env, "COFFER_TOKEN="+other)
			if w, _, code := h.whoami(); code != 0 || w.User.Email != "other-cli@example.com" || w.StoredIn != "COFFER_TOKEN" {
				t.Fatalf("whoami with COFFER_TOKEN: exit %d %+v", code, w)
			}
		})
	})
}
