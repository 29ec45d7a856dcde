package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

// BenchmarkDashboardEnvironment500 renders the environment page of 500 variables (issue 17:
// at most 50 ms of server time). The server and the client share this process: ns/op is the
// whole round trip over loopback, an upper bound of the server's time. SQLite, in a temporary
// directory.
func BenchmarkDashboardEnvironment500(b *testing.B) {
	owner := "cfr_pat_" + string(bytes.Repeat([]byte("b"), 43))
	vars := map[string]string{"COFFER_LISTEN": "127.0.0.1:0", "COFFER_DATA_DIR": b.TempDir(), "COFFER_BOOTSTRAP_TOKEN": owner, "COFFER_LOG_LEVEL": "error"}
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.NewLogger(cfg, io.Discard), io.Discard, app.Options{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	base := "http://" + a.Addr()
	call := func(method, path string, body any, want int) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+owner)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	call("POST", "/api/v1/tenants/default/projects", map[string]string{"slug": "web", "name": "Web"}, http.StatusCreated)
	list := make([]map[string]any, 500)
	for i := range list {
		list[i] = map[string]any{"name": "VARIABLE_" + itoa(i), "value": "value-" + itoa(i), "note": "note " + itoa(i)}
	}
	call("PATCH", envPath+"staging/secrets", map[string]any{"secrets": list}, http.StatusOK)
	var me struct{ User auth.User }
	req, _ := http.NewRequest("GET", base+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+owner)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	_, secret, err := a.Auth.StartSession(ctx, audit.System, me.User, "test", "benchmark", "")
	if err != nil {
		b.Fatal(err)
	}
	page, _ := http.NewRequest("GET", base+dashEnv, nil)
	page.AddCookie(&http.Cookie{Name: "coffer_session", Value: secret})
	for b.Loop() {
		resp, err := http.DefaultClient.Do(page)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n < 100_000 {
			b.Fatalf("page: %d, %d bytes", resp.StatusCode, n)
		}
		b.SetBytes(n)
	}
}
