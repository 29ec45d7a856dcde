// Package oidctest runs a real OpenID provider (Dex, built by `make dex` into .tools/dex from
// test/dex) for tests of OIDC sign-in: one client and one password user per provider, on a free
// loopback port, stopped when the test ends. When the binary is absent the test skips, except
// under CI=true, where it fails.
package oidctest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long the provider may take to print its issuer and answer discovery;
// generous because test machines are shared.
const startTimeout = 30 * time.Second

// Options describe the client and the user of a provider. Empty fields get defaults.
type Options struct {
	// RedirectURI is the client's only allowed redirect URI. Default: http://127.0.0.1/callback.
	RedirectURI string
	// Email and Password sign the user in. Default: user@example.com and a random password.
	Email, Password string
	// Username is the user's display name. Default: "user".
	Username string
}

// Provider is a running Dex.
type Provider struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURI  string
	Email        string
	Password     string
	Username     string
	// UserID is the user's id at the password connector; Dex derives the ID token's subject
	// from it and the connector id.
	UserID string
}

// Start runs Dex for the length of the test and returns once its discovery document answers.
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	bin, err := binary()
	if err != nil {
		skip(t, "dex is not built (%v); build it with: make dex", err)
	}
	p := &Provider{
		ClientID:     "coffer-" + randomHex(t, 4),
		ClientSecret: randomHex(t, 16),
		RedirectURI:  opts.RedirectURI,
		Email:        opts.Email,
		Password:     opts.Password,
		Username:     opts.Username,
		UserID:       randomHex(t, 8),
	}
	if p.RedirectURI == "" {
		p.RedirectURI = "http://127.0.0.1/callback"
	}
	if p.Email == "" {
		p.Email = "user@example.com"
	}
	if p.Password == "" {
		p.Password = randomHex(t, 12)
	}
	if p.Username == "" {
		p.Username = "user"
	}

	// Secrets travel as flags: the process is a short-lived, loopback-only test fixture.
	cmd := exec.Command(bin,
		"-listen", "127.0.0.1:0",
		"-client-id", p.ClientID,
		"-client-secret", p.ClientSecret,
		"-redirect-uri", p.RedirectURI,
		"-email", p.Email,
		"-password", p.Password,
		"-username", p.Username,
		"-user-id", p.UserID,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("dex stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // reaps the process; stderr is complete after it
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("dex stderr:\n%s", stderr.String())
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		stop()
		t.Fatalf(format+"\ndex stderr:\n%s", append(args, stderr.String())...)
	}

	// The first stdout line is the issuer, printed once the listener is bound.
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		_, _ = io.Copy(io.Discard, stdout) // nothing more is expected; never block the child
	}()
	deadline := time.Now().Add(startTimeout)
	select {
	case p.Issuer = <-line:
	case <-time.After(startTimeout):
		fail("dex printed no issuer within %v", startTimeout)
	}
	if !strings.HasPrefix(p.Issuer, "http://") {
		fail("dex printed %q, want an issuer URL", p.Issuer)
	}
	if err := waitForDiscovery(p.Issuer, deadline); err != nil {
		fail("dex did not answer discovery: %v", err)
	}
	return p
}

// DiscoveryURL is where the provider's OpenID configuration is served.
func (p *Provider) DiscoveryURL() string {
	return p.Issuer + "/.well-known/openid-configuration"
}

func waitForDiscovery(issuer string, deadline time.Time) error {
	client := &http.Client{Timeout: 5 * time.Second}
	url := issuer + "/.well-known/openid-configuration"
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// binary finds .tools/dex in the module root: the nearest directory above the working
// directory (a test's package directory) holding a go.mod.
func binary() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			bin := filepath.Join(dir, ".tools", "dex")
			info, err := os.Stat(bin)
			if err != nil {
				return "", err // names the path
			}
			if info.IsDir() || info.Mode()&0o111 == 0 {
				return "", fmt.Errorf("%s is not an executable file", bin)
			}
			return bin, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// skip skips (or under CI=true fails) a test that needs a part that is absent. It repeats
// storetest.Skip rather than importing it: nothing outside the composition roots may import
// internal/store (imports_test.go).
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true requires every part: "+format, args...)
	}
	t.Skipf(format, args...)
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}
