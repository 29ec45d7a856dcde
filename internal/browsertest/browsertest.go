// Package browsertest drives Debian's headless Chromium for end-to-end tests of the web
// dashboard: one browser per test, tabs that record every Content-Security-Policy violation,
// console error and uncaught exception, screenshots at the widths and colour schemes the
// dashboard supports, and tabs with JavaScript turned off. Only tests import it.
//
// Without Chromium the tests skip with a message naming the package to install, except under
// CI=true, where they fail.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// ExecName is the browser binary, from Debian's chromium package.
	ExecName = "chromium"

	// TabTimeout bounds everything a tab does, from opening to its last action, so a page
	// that never loads fails the test instead of hanging it.
	TabTimeout = 60 * time.Second

	startTimeout = 30 * time.Second
	closeTimeout = 10 * time.Second
)

// Browser is one headless Chromium with a fresh profile, stopped when its test ends.
type Browser struct {
	// ctx is chromedp's handle on the browser: chromedp keeps the browser in the context, so
	// a Browser has to hold it. It ends when the test does.
	ctx context.Context
}

// flags are every command-line switch Chromium gets; chromedp's defaults are not used, so
// this list is the whole of it.
func flags(userDataDir string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root in containers, where the sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(userDataDir),
	}
}

// Start runs a browser for t and stops it when t ends. Without Chromium it skips t (fails it
// under CI=true).
func Start(t testing.TB) *Browser {
	t.Helper()
	path, err := exec.LookPath(ExecName)
	if err != nil {
		skip(t, "%s is not installed (%v); install Debian's package with: apt-get install -y chromium chromium-driver", ExecName, err)
	}
	// Made before the cleanup below is registered, so the profile is removed after the
	// browser has stopped.
	profile := t.TempDir()
	out := &lockedBuffer{}
	opts := append(flags(profile), chromedp.ExecPath(path), chromedp.CombinedOutput(out))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// A graceful close lets Chromium finish writing its profile before the temporary
		// directory is removed; cancel kills whatever is left.
		cctx, ccancel := context.WithTimeout(ctx, closeTimeout)
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("browsertest: closing chromium: %v", err)
		}
		ccancel()
		cancel()
		cancelAlloc()
	})

	// The first action starts the browser, and ties its life to ctx: it must not carry a
	// timeout of its own, so the start is bounded from here.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browsertest: start %s: %v\n%s", path, err, out)
		}
	case <-time.After(startTimeout):
		t.Fatalf("browsertest: %s did not start within %s\n%s", path, startTimeout, out)
	}
	return &Browser{ctx: ctx}
}

// skip skips t, or fails it under CI=true, where every part the tests need must be present
// (the same rule as internal/store/storetest).
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true requires every part: "+format, args...)
	}
	t.Skipf(format, args...)
}

// repoRoot is the nearest directory at or above the working directory (a test's package
// directory) holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// fileName makes a test name ("TestX/sqlite") and a label safe as part of a file name.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// lockedBuffer collects Chromium's output, written from chromedp's goroutine.
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
	if b.buf.Len() == 0 {
		return "(no output from chromium)"
	}
	return fmt.Sprintf("chromium output:\n%s", b.buf.String())
}
