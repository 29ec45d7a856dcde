package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKeysSubcommands runs the operator's key commands against a data directory a server
// wrote: status, a roll-and-reseal of a tenant, and a move to a new local master key.
func TestKeysSubcommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "coffer-data")
	token := "cfr_pat_" + base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	env := map[string]string{"COFFER_BOOTSTRAP_TOKEN": token}
	getenv := func(k string) string { return env[k] }

	// A server with one project and a secret in each environment.
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-data-dir", dir}, getenv, &stdout, &stderr)
	}()
	addr := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for !addr.MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("server did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := "http://" + addr.FindStringSubmatch(stderr.String())[1]
	call := func(method, path string, body any) int {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := call("POST", "/api/v1/tenants/default/projects", map[string]string{"slug": "web", "name": "Web"}); s != http.StatusCreated {
		t.Fatalf("create project: %d", s)
	}
	for _, e := range []string{"development", "staging", "production"} {
		if s := call("PUT", "/api/v1/tenants/default/projects/web/environments/"+e+"/secrets/API_KEY", map[string]string{"value": "v-" + e}); s != http.StatusCreated {
			t.Fatalf("put secret: %d", s)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	keys := func(args ...string) string {
		t.Helper()
		var out, errw bytes.Buffer
		if err := run(context.Background(), append([]string{"keys"}, args...), getenv, &out, &errw); err != nil {
			t.Fatalf("keys %v: %v\n%s", args, err, errw.String())
		}
		return out.String()
	}
	status := keys("status", "-data-dir", dir)
	oldKEK := regexp.MustCompile(`current key-encryption key: (local:[0-9a-f]+)`).FindStringSubmatch(status)
	if oldKEK == nil || !strings.Contains(status, oldKEK[1]) || !strings.Contains(status, " 3\n") {
		t.Fatalf("status = %q, want the local KEK wrapping 3 data keys", status)
	}

	out := keys("rotate", "-tenant", "default", "--", "-data-dir", dir)
	if !strings.Contains(out, ": done, 3/3") {
		t.Fatalf("rotate = %q, want a finished reseal of 3 versions", out)
	}

	// Moving to a new local key: the new one is current, the old one only unwraps.
	oldKey, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	newKey := make([]byte, 32)
	if _, err := rand.Read(newKey); err != nil {
		t.Fatal(err)
	}
	env["COFFER_MASTER_KEY"] = base64.StdEncoding.EncodeToString(newKey)
	env["COFFER_PREVIOUS_MASTER_KEYS"] = strings.TrimSpace(string(oldKey))
	out = keys("rewrap", "-data-dir", dir)
	if !strings.Contains(out, ": done, 3/3") {
		t.Fatalf("rewrap = %q, want 3 data keys rewrapped", out)
	}
	delete(env, "COFFER_PREVIOUS_MASTER_KEYS")
	status = keys("status", "-data-dir", dir)
	if strings.Contains(status, oldKEK[1]) {
		t.Fatalf("status after rewrap still names the old KEK: %q", status)
	}

	var out2, errw bytes.Buffer
	if err := run(context.Background(), []string{"keys", "bogus"}, getenv, &out2, &errw); err == nil || !strings.Contains(errw.String(), "usage") {
		t.Fatalf("unknown command: err %v, stderr %q", err, errw.String())
	}
}
