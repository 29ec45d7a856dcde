package app_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestRestoreDrill is the restore drill (make restore-drill, docs/production.md): a Postgres
// database dumped with pg_dump and restored with pg_restore into a fresh database serves every
// secret and verifies its audit chains on a server with the same key-encryption key; with
// another key the restored server refuses to start.
func TestRestoreDrill(t *testing.T) {
	tools := map[string]string{}
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			storetest.Skip(t, "%s is not installed (Debian: postgresql-client)", tool)
		}
		tools[tool] = path
	}
	dbURL, dir := storetest.Database(t, "postgres")
	s := startOn(t, "postgres", dbURL, dir, nil)
	s.withProject()
	want := map[string]string{} // path -> value
	for _, env := range []string{"development", "staging", "production"} {
		list := make([]map[string]any, 20)
		for i := range list {
			name := fmt.Sprintf("SECRET_%02d", i)
			value := fmt.Sprintf("%s-value-%d", env, i)
			list[i] = map[string]any{"name": name, "value": value}
			want[env+"/"+name] = value
		}
		s.must(http.StatusOK, "PATCH", envPath+env+"/secrets", s.owner, map[string]any{"secrets": list})
	}
	// A rolled data key and a second version, so the restore carries history and old keys.
	s.rotateAndWait(s.owner, "default", "web", "staging")
	s.must(http.StatusOK, "PUT", envPath+"staging/secrets/SECRET_00", s.owner, map[string]string{"value": "staging-value-0-v2"})
	want["staging/SECRET_00"] = "staging-value-0-v2"
	s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/audit/checkpoints", s.owner, nil)
	s.stop()

	dump := filepath.Join(t.TempDir(), "coffer.dump")
	if out, err := exec.Command(tools["pg_dump"], "--format=custom", "--no-owner", "--file", dump, "--dbname", dbURL).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	restoredURL, _ := storetest.Database(t, "postgres")
	if out, err := exec.Command(tools["pg_restore"], "--no-owner", "--exit-on-error", "--dbname", restoredURL, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}

	// The same key (the same master key file), a fresh database: every secret reads back.
	r := startOn(t, "postgres", restoredURL, dir, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""})
	r.owner = s.owner
	got := map[string]string{}
	for _, env := range []string{"development", "staging", "production"} {
		for _, item := range r.must(http.StatusOK, "GET", envPath+env+"/secrets?include=values", r.owner, nil).items() {
			got[env+"/"+item["name"].(string)] = item["value"].(string)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d secrets, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("restored %s = %q, want %q", k, got[k], v)
		}
	}
	// The audit chains verify, and the restored chain still matches its last checkpoint.
	v := r.must(http.StatusOK, "GET", "/api/v1/tenants/default/audit/verify", r.owner, nil)
	if v.body["ok"] != true {
		t.Fatalf("restored audit chain: %s", v.raw)
	}
	r.stop()

	// Another key-encryption key (a fresh data directory generates one): refused at start.
	err := tryStart(map[string]string{"COFFER_LISTEN": "127.0.0.1:0", "COFFER_DATA_DIR": t.TempDir(), "COFFER_DATABASE_URL": restoredURL})
	if err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("restored database with another key: %v, want a refusal naming the key", err)
	}
}
