package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestFirstRun is README's first command on a fresh machine: no environment, only a free
// port and a fresh directory instead of 127.0.0.1:8080 and ./coffer-data. The server creates
// its SQLite database and a 0600 master key, prints a setup link that creates the first
// owner, and stops cleanly on a signal.
func TestVersion(t *testing.T) {
	version, commit = "v1.2.3", "abc123"
	defer func() { version, commit = "", "" }()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "coffer-server v1.2.3\ncommit: abc123\n") {
		t.Fatalf("version printed %q", out.String())
	}
}

func TestFirstRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "coffer-data")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-data-dir", dir}, func(string) string { return "" }, &stdout, &stderr)
	}()
	link := regexp.MustCompile(`http://127\.0\.0\.1:\d+/setup\?code=[A-Za-z0-9_-]+`)
	deadline := time.Now().Add(20 * time.Second)
	for !link.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no setup link printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	setup := link.FindString(stdout.String())
	base := setup[:strings.Index(setup, "/setup")]

	res, err := http.Get(base + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", res, err)
	}
	res.Body.Close()
	info, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "coffer.db")); err != nil {
		t.Fatalf("database file: %v", err)
	}
	page, err := http.Get(setup)
	if err != nil || page.StatusCode != 200 {
		t.Fatalf("setup page: %v %v", page, err)
	}
	page.Body.Close()
	code := setup[strings.Index(setup, "code=")+5:]
	body, _ := json.Marshal(map[string]string{"code": code, "email": "me@example.com", "name": "Me", "tenant_slug": "team", "tenant_name": "Team"})
	res, err = http.Post(base+"/setup", "application/json", bytes.NewReader(body))
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("setup: %v %v", res, err)
	}
	var created struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&created); err != nil || !strings.HasPrefix(created.Token, "cfr_pat_") {
		t.Fatalf("setup answer: %+v %v", created, err)
	}
	res.Body.Close()
	req, _ := http.NewRequest("GET", base+"/api/v1/tenants", nil)
	req.Header.Set("Authorization", "Bearer "+created.Token)
	res, err = http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("tenants: %v %v", res, err)
	}
	list, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(list), `"slug":"team"`) {
		t.Fatalf("tenants = %s", list)
	}

	// The container health check: ready here, an error where nothing listens.
	listen := strings.TrimPrefix(base, "http://")
	var out bytes.Buffer
	if err := run(ctx, []string{"healthcheck"}, func(k string) string { return map[string]string{"COFFER_LISTEN": listen}[k] }, &out, io.Discard); err != nil || out.String() != "ready\n" {
		t.Fatalf("healthcheck: %v %q", err, out.String())
	}
	closed := func(k string) string { return map[string]string{"COFFER_LISTEN": "127.0.0.1:1"}[k] }
	if err := run(ctx, []string{"healthcheck", "-timeout", "2s"}, closed, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck passed with no server")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
	if strings.Contains(stderr.String(), created.Token) {
		t.Fatal("the owner's token reached the log")
	}
}
