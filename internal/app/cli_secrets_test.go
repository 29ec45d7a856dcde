package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// trickyValues is what testdata/tricky.env defines, value for value.
var trickyValues = map[string]string{
	"DB_HOST":        "db.internal",
	"DB_PORT":        "5432",
	"EMPTY":          "",
	"SPACED":         "two words",
	"SINGLE":         `literal $HOME and \n stay`,
	"DOUBLE":         "tab\there, quote \" and backslash \\ and dollar $X",
	"URL":            "https://example.com/#anchor",
	"HASH_IN_QUOTES": "value # not a comment",
	"EQUALS":         "a=b==c",
	"MULTI":          "line one\nline two\n",
	"KEY_PEM":        "-----BEGIN KEY-----\nabc\"def\n-----END KEY-----",
	"ESCAPES":        "cr\r lf\n tab\t",
	"TRAILING_SPACE": "ends with a space ",
	"CRLF":           "windows",
	"UNICODE":        "héllo ✓ 日本",
	"JSON_VALUE":     `{"a": [1, "two"]}`,
	"LAST":           "no newline at the end",
}

// cliResult is one run of the coffer binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return "exit " + itoa(r.code) + "\nstdout: " + r.stdout + "\nstderr: " + r.stderr
}

// cliRunner runs the built CLI against s with a token, in an empty working directory and
// home, so no stored sign-in or .coffer.yaml is found.
func cliRunner(t *testing.T, bin string, s *server) func(t *testing.T, stdin, token string, args ...string) cliResult {
	home := t.TempDir()
	return func(t *testing.T, stdin, token string, args ...string) cliResult {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = home
		cmd.Env = append(os.Environ(), "COFFER_SERVER="+s.base, "COFFER_TOKEN="+token, "HOME="+home,
			"XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "COFFER_CONFIG_DIR=", "NO_COLOR=1")
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return cliResult{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
	}
}

// values reads an environment's secrets with their values through the API.
func (s *server) values(env string) map[string]string {
	s.t.Helper()
	r := s.must(http.StatusOK, "GET", envPath+env+"/secrets?include=values&limit=1000", s.owner, nil)
	out := map[string]string{}
	for _, it := range r.items() {
		out[it["name"].(string)] = it["value"].(string)
	}
	return out
}

// versions reads an environment's current versions through the API.
func (s *server) versions(env string) map[string]float64 {
	s.t.Helper()
	r := s.must(http.StatusOK, "GET", envPath+env+"/secrets?limit=1000", s.owner, nil)
	out := map[string]float64{}
	for _, it := range r.items() {
		out[it["name"].(string)] = it["version"].(float64)
	}
	return out
}

// TestCLISecrets runs the secrets, import, export, diff, promote, tokens and audit commands of
// the coffer binary against one server per database.
func TestCLISecrets(t *testing.T) {
	bin := buildCLI(t)
	tricky, err := filepath.Abs(filepath.Join("testdata", "tricky.env"))
	if err != nil {
		t.Fatal(err)
	}
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		run := cliRunner(t, bin, s)
		dir := t.TempDir()
		// ok runs a command that must succeed.
		ok := func(t *testing.T, stdin string, args ...string) cliResult {
			t.Helper()
			r := run(t, stdin, s.owner, args...)
			if r.code != 0 {
				t.Fatalf("coffer %s: %s", strings.Join(args, " "), r)
			}
			return r
		}
		dev := []string{"--project", "web", "--env", "development"}
		sec := func(args ...string) []string { return append(append([]string{"secrets"}, args...), dev...) }

		t.Run("secrets", func(t *testing.T) {
			if r := ok(t, "", sec("set", "API_KEY", "alpha-one")...); r.stdout != "set API_KEY: version 1\n" {
				t.Fatalf("set: %s", r)
			}
			// No VALUE, and "-": stdin, byte for byte.
			ok(t, "beta-two\n", sec("set", "API_KEY")...)
			if r := ok(t, "", sec("get", "API_KEY")...); r.stdout != "beta-two\n\n" {
				t.Fatalf("get after a stdin set: %q", r.stdout)
			}
			ok(t, "gamma-three", sec("set", "API_KEY", "-", "--note", "third")...)
			if r := ok(t, "", sec("get", "API_KEY")...); r.stdout != "gamma-three\n" {
				t.Fatalf("get: %q", r.stdout)
			}
			if r := ok(t, "", sec("get", "API_KEY", "--version", "1", "-n")...); r.stdout != "alpha-one" {
				t.Fatalf("get --version 1 -n: %q", r.stdout)
			}
			var got struct {
				Name    string  `json:"name"`
				Version int     `json:"version"`
				Value   *string `json:"value"`
				Note    string  `json:"note"`
			}
			if err := json.Unmarshal([]byte(ok(t, "", sec("get", "API_KEY", "--json")...).stdout), &got); err != nil ||
				got.Version != 3 || got.Value == nil || *got.Value != "gamma-three" || got.Note != "third" {
				t.Fatalf("get --json: %+v, %v", got, err)
			}

			// list: names, versions and times, never values unless --reveal.
			ok(t, "", sec("set", "OTHER", "other-secret-value")...)
			r := ok(t, "", sec("list")...)
			if !strings.Contains(r.stdout, "API_KEY") || !strings.Contains(r.stdout, "OTHER") || !strings.Contains(r.stdout, "UPDATED") ||
				strings.Contains(r.stdout, "gamma-three") || strings.Contains(r.stdout, "other-secret-value") {
				t.Fatalf("list: %s", r)
			}
			var items []map[string]any
			if err := json.Unmarshal([]byte(ok(t, "", sec("list", "--json")...).stdout), &items); err != nil || len(items) != 2 {
				t.Fatalf("list --json: %v %v", items, err)
			}
			for _, it := range items {
				if _, has := it["value"]; has {
					t.Fatalf("list --json shows a value: %v", it)
				}
			}
			if items[0]["name"] != "API_KEY" || items[0]["version"] != float64(3) {
				t.Fatalf("list --json: %v", items)
			}
			r = ok(t, "", sec("list", "--reveal")...)
			if !strings.Contains(r.stdout, "gamma-three") || !strings.Contains(r.stdout, "other-secret-value") {
				t.Fatalf("list --reveal: %s", r)
			}

			var vs []struct {
				Version int    `json:"version"`
				Note    string `json:"note"`
			}
			if err := json.Unmarshal([]byte(ok(t, "", sec("versions", "API_KEY", "--json")...).stdout), &vs); err != nil ||
				len(vs) != 3 || vs[0].Version != 3 || vs[0].Note != "third" || vs[2].Version != 1 {
				t.Fatalf("versions --json: %+v %v", vs, err)
			}
			if r := ok(t, "", sec("versions", "API_KEY")...); !strings.Contains(r.stdout, "third") || strings.Contains(r.stdout, "gamma") {
				t.Fatalf("versions: %s", r)
			}

			// Compare-and-set: a stale version writes nothing and exits 3 with the server's word.
			r = run(t, "", s.owner, sec("set", "API_KEY", "stale-write", "--if-version", "2")...)
			if r.code != 3 || !strings.Contains(r.stderr, "412") || !strings.Contains(r.stderr, "version 3") ||
				!strings.Contains(r.stderr, "request ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("set --if-version stale: %s", r)
			}
			if v := s.values("development")["API_KEY"]; v != "gamma-three" {
				t.Fatalf("a stale CAS wrote %q", v)
			}
			if r := ok(t, "", sec("set", "API_KEY", "delta-four", "--if-version", "3")...); r.stdout != "set API_KEY: version 4\n" {
				t.Fatalf("set --if-version current: %s", r)
			}
			ok(t, "", sec("set", "CREATED_ONCE", "x", "--if-version", "0")...)
			if r := run(t, "", s.owner, sec("set", "CREATED_ONCE", "y", "--if-version", "0")...); r.code != 3 {
				t.Fatalf("set --if-version 0 on an existing secret: %s", r)
			}

			// rollback writes a new version with the old value.
			if r := ok(t, "", sec("rollback", "API_KEY", "--to-version", "1")...); !strings.Contains(r.stdout, "version 5") {
				t.Fatalf("rollback: %s", r)
			}
			if v := s.values("development")["API_KEY"]; v != "alpha-one" {
				t.Fatalf("after rollback: %q", v)
			}
			if r := run(t, "", s.owner, sec("rollback", "API_KEY")...); r.code != 2 {
				t.Fatalf("rollback without --to-version: %s", r)
			}

			// delete (with CAS), list --deleted, restore.
			if r := run(t, "", s.owner, sec("delete", "API_KEY", "--if-version", "4")...); r.code != 3 {
				t.Fatalf("delete --if-version stale: %s", r)
			}
			if _, live := s.values("development")["API_KEY"]; !live {
				t.Fatal("a stale CAS delete deleted")
			}
			ok(t, "", sec("delete", "API_KEY", "--if-version", "5")...)
			if r := run(t, "", s.owner, sec("get", "API_KEY")...); r.code != 4 || !strings.Contains(r.stderr, "404") {
				t.Fatalf("get a deleted secret: %s", r)
			}
			if r := ok(t, "", sec("list", "--deleted")...); !strings.Contains(r.stdout, "API_KEY") || strings.Contains(r.stdout, "OTHER") {
				t.Fatalf("list --deleted: %s", r)
			}
			ok(t, "", sec("restore", "API_KEY")...)
			if v := s.values("development")["API_KEY"]; v != "alpha-one" {
				t.Fatalf("after restore: %q", v)
			}
			ok(t, "", sec("delete", "OTHER")...)
			if _, live := s.values("development")["OTHER"]; live {
				t.Fatal("delete left OTHER live")
			}

			// destroy: asks for --yes off a terminal; erases the version's value.
			if r := run(t, "", s.owner, sec("destroy", "API_KEY", "--versions", "2")...); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
				t.Fatalf("destroy without --yes: %s", r)
			}
			if r := ok(t, "", sec("destroy", "API_KEY", "--versions", "2,3", "--yes")...); r.stdout != "destroyed versions 2, 3 of API_KEY\n" {
				t.Fatalf("destroy: %s", r)
			}
			if r := run(t, "", s.owner, sec("get", "API_KEY", "--version", "2")...); r.code == 0 || strings.Contains(r.stdout, "beta-two") {
				t.Fatalf("get a destroyed version: %s", r)
			}
			s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY?version=1", s.owner, nil)

			if r := run(t, "", s.owner, sec("get", "NO_SUCH_SECRET")...); r.code != 4 {
				t.Fatalf("get a missing secret: %s", r)
			}
			if r := run(t, "", newToken(t), sec("list")...); r.code != 77 {
				t.Fatalf("a refused token: %s", r)
			}
		})

		t.Run("import and export", func(t *testing.T) {
			stg := []string{"--project", "web", "--env", "staging"}
			imp := func(file string, more ...string) []string {
				return append(append([]string{"import", file}, stg...), more...)
			}
			r := ok(t, "", imp(tricky, "--dry-run")...)
			if !strings.Contains(r.stdout, "+ KEY_PEM") || !strings.Contains(r.stdout, "dry run, nothing written") ||
				!strings.Contains(r.stdout, "17 added, 0 changed, 0 unchanged, 0 removed") || strings.Contains(r.stdout, "db.internal") {
				t.Fatalf("import --dry-run: %s", r)
			}
			if got := s.values("staging"); len(got) != 0 {
				t.Fatalf("import --dry-run wrote %v", got)
			}
			r = ok(t, "", imp(tricky)...)
			if !strings.Contains(r.stdout, "17 added") || strings.Contains(r.stdout+r.stderr, "db.internal") {
				t.Fatalf("import: %s", r)
			}
			if got := s.values("staging"); !reflect.DeepEqual(got, trickyValues) {
				t.Fatalf("imported values:\n%q\nwant:\n%q", got, trickyValues)
			}
			// Again: nothing changes, no new versions.
			r = ok(t, "", imp(tricky)...)
			if !strings.Contains(r.stdout, "0 added, 0 changed, 17 unchanged") {
				t.Fatalf("import again: %s", r)
			}
			for name, v := range s.versions("staging") {
				if v != 1 {
					t.Fatalf("an unchanged import wrote %s version %v", name, v)
				}
			}

			// export --format dotenv into a 0600 file, imported into a new environment: the same values.
			out := filepath.Join(dir, "staging.env")
			ok(t, "", "export", "--format", "dotenv", "--output", out, "--project", "web", "--env", "staging")
			if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("export file: %v %v", fi, err)
			}
			s.must(http.StatusCreated, "POST", "/api/v1/tenants/default/projects/web/environments", s.owner, map[string]string{"slug": "copy", "name": "Copy"})
			ok(t, "", "import", out, "--project", "web", "--env", "copy")
			if got := s.values("copy"); !reflect.DeepEqual(got, trickyValues) {
				t.Fatalf("values after export and re-import:\n%q\nwant:\n%q", got, trickyValues)
			}
			// To stdout, as JSON and YAML.
			var asJSON map[string]string
			if err := json.Unmarshal([]byte(ok(t, "", "export", "--format", "json", "--project", "web", "--env", "copy").stdout), &asJSON); err != nil ||
				!reflect.DeepEqual(asJSON, trickyValues) {
				t.Fatalf("export --format json: %v %v", asJSON, err)
			}
			if r := ok(t, "", "export", "-f", "yaml", "--project", "web", "--env", "copy"); !strings.Contains(r.stdout, `"DB_HOST": "db.internal"`) {
				t.Fatalf("export --format yaml: %s", r)
			}
			if r := run(t, "", s.owner, "export", "--format", "xml", "--project", "web", "--env", "copy"); r.code != 2 {
				t.Fatalf("export --format xml: %s", r)
			}

			// A changed file: changed and removed names, values never shown.
			small := filepath.Join(dir, "small.env")
			if err := os.WriteFile(small, []byte("DB_HOST=new-host\nNEW_ONE=1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r = ok(t, "", "import", small, "--project", "web", "--env", "copy", "--delete-missing", "--dry-run", "--json")
			var plan struct {
				Added, Changed, Unchanged, Removed []string
				DryRun                             bool `json:"dry_run"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || !plan.DryRun || !reflect.DeepEqual(plan.Added, []string{"NEW_ONE"}) ||
				!reflect.DeepEqual(plan.Changed, []string{"DB_HOST"}) || len(plan.Removed) != 16 || len(plan.Unchanged) != 0 || strings.Contains(r.stdout, "new-host") {
				t.Fatalf("import --delete-missing --dry-run --json: %s", r)
			}
			if got := s.values("copy"); !reflect.DeepEqual(got, trickyValues) {
				t.Fatal("a dry run changed the environment")
			}
			r = ok(t, "", "import", small, "--project", "web", "--env", "copy", "--delete-missing")
			if !strings.Contains(r.stdout, "- MULTI") || !strings.Contains(r.stdout, "~ DB_HOST") || !strings.Contains(r.stdout, "+ NEW_ONE") {
				t.Fatalf("import --delete-missing: %s", r)
			}
			if got := s.values("copy"); !reflect.DeepEqual(got, map[string]string{"DB_HOST": "new-host", "NEW_ONE": "1"}) {
				t.Fatalf("after import --delete-missing: %v", got)
			}

			// A malformed file names its line (65); a missing one exits 66. Nothing is written.
			bad := filepath.Join(dir, "bad.env")
			if err := os.WriteFile(bad, []byte("GOOD=1\n# fine\nMULTI=\"two\nlines\" trailing\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := run(t, "", s.owner, "import", bad, "--project", "web", "--env", "copy"); r.code != 65 || !strings.Contains(r.stderr, bad+": line 4: ") {
				t.Fatalf("a malformed file: %s", r)
			}
			if r := run(t, "", s.owner, "import", filepath.Join(dir, "missing.env"), "--project", "web", "--env", "copy"); r.code != 66 {
				t.Fatalf("a missing file: %s", r)
			}
			if got := s.values("copy"); len(got) != 2 {
				t.Fatalf("a refused import wrote: %v", got)
			}
		})

		t.Run("diff and promote", func(t *testing.T) {
			s.must(http.StatusOK, "PATCH", envPath+"production/secrets", s.owner, map[string]any{"secrets": []map[string]any{
				{"name": "DB_HOST", "value": "prod-db-host"}, {"name": "PROD_ONLY", "value": "prod-only-value"}, {"name": "DB_PORT", "value": "5432"}}})
			r := ok(t, "", "diff", "staging", "production", "--project", "web")
			for _, want := range []string{"DB_HOST", "differ", "PROD_ONLY", "only in production", "KEY_PEM", "only in staging", "15 only in staging, 1 only in production, 1 differ, 1 the same"} {
				if !strings.Contains(r.stdout, want) {
					t.Fatalf("diff has no %q: %s", want, r)
				}
			}
			for _, value := range []string{"db.internal", "prod-db-host", "prod-only-value"} {
				if strings.Contains(r.stdout, value) {
					t.Fatalf("diff without --reveal shows %q: %s", value, r)
				}
			}
			r = ok(t, "", "diff", "staging", "production", "--project", "web", "--reveal")
			for _, value := range []string{"db.internal", "prod-db-host", "prod-only-value"} {
				if !strings.Contains(r.stdout, value) {
					t.Fatalf("diff --reveal does not show %q: %s", value, r)
				}
			}
			var d struct {
				Different []struct {
					Name      string  `json:"name"`
					FromValue *string `json:"from_value"`
				} `json:"different"`
				Same int `json:"same"`
			}
			if err := json.Unmarshal([]byte(ok(t, "", "diff", "staging", "production", "--project", "web", "--json").stdout), &d); err != nil ||
				len(d.Different) != 1 || d.Different[0].Name != "DB_HOST" || d.Different[0].FromValue != nil || d.Same != 1 {
				t.Fatalf("diff --json: %+v %v", d, err)
			}

			r = ok(t, "", "promote", "--from", "staging", "--to", "production", "DB_HOST", "URL", "--project", "web")
			if !strings.Contains(r.stdout, "promoted DB_HOST to production: version 2") || !strings.Contains(r.stdout, "promoted URL to production: version 1") ||
				strings.Contains(r.stdout, "db.internal") {
				t.Fatalf("promote: %s", r)
			}
			prod := s.values("production")
			if prod["DB_HOST"] != "db.internal" || prod["URL"] != trickyValues["URL"] || prod["PROD_ONLY"] != "prod-only-value" {
				t.Fatalf("production after promote: %v", prod)
			}
			if r := ok(t, "", "promote", "--from", "staging", "--to", "production", "DB_HOST", "--project", "web"); !strings.Contains(r.stdout, "nothing to promote") ||
				!strings.Contains(r.stderr, "already the same") {
				t.Fatalf("promote a name already the same: %s", r)
			}
			if r := run(t, "", s.owner, "promote", "--from", "staging", "--to", "production", "PROD_ONLY", "--project", "web"); r.code != 4 {
				t.Fatalf("promote a name only in the target: %s", r)
			}
			if r := run(t, "", s.owner, "promote", "--from", "staging", "--to", "production", "NOWHERE", "--project", "web"); r.code != 4 {
				t.Fatalf("promote a name in neither: %s", r)
			}
			if r := run(t, "", s.owner, "promote", "--from", "staging", "--to", "production", "--project", "web"); r.code != 2 {
				t.Fatalf("promote with no names and no --all: %s", r)
			}
			ok(t, "", "promote", "--from", "staging", "--to", "production", "--all", "--project", "web")
			prod = s.values("production")
			for name, v := range trickyValues {
				if prod[name] != v {
					t.Fatalf("after promote --all, production %s = %q, want %q", name, prod[name], v)
				}
			}
		})

		t.Run("tokens", func(t *testing.T) {
			r := ok(t, "", "tokens", "create", "ci", "--env", "staging", "--expires-in-days", "7", "--project", "web")
			token := strings.TrimSuffix(r.stdout, "\n")
			if !strings.HasPrefix(token, "cfr_svc_") || strings.Contains(token, "\n") || !strings.Contains(r.stderr, "shown only this once") {
				t.Fatalf("tokens create: %s", r)
			}
			s.must(http.StatusOK, "GET", envPath+"staging/secrets/DB_HOST", token, nil)
			if r := run(t, "", token, "secrets", "get", "DB_HOST", "--project", "web", "--env", "staging"); r.code != 0 || r.stdout != "db.internal\n" {
				t.Fatalf("secrets get with the service token: %s", r)
			}
			if r := run(t, "", token, "secrets", "set", "DB_HOST", "x", "--project", "web", "--env", "staging"); r.code != 77 {
				t.Fatalf("a read-only token writes: %s", r)
			}
			var list []struct {
				ID           string   `json:"id"`
				Name         string   `json:"name"`
				Prefix       string   `json:"prefix"`
				Environments []string `json:"environments"`
				Access       string   `json:"access"`
			}
			r = ok(t, "", "tokens", "list", "--json", "--project", "web")
			if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Name != "ci" || list[0].Access != "read" ||
				!reflect.DeepEqual(list[0].Environments, []string{"staging"}) || strings.Contains(r.stdout, token) {
				t.Fatalf("tokens list --json: %s", r)
			}
			if r := ok(t, "", "tokens", "list", "--project", "web"); !strings.Contains(r.stdout, list[0].ID) || strings.Contains(r.stdout, token) {
				t.Fatalf("tokens list: %s", r)
			}
			if r := run(t, "", s.owner, "tokens", "create", "bad", "--project", "web"); r.code != 2 {
				t.Fatalf("tokens create without --env: %s", r)
			}
			if r := ok(t, "", "tokens", "revoke", list[0].ID, "--project", "web"); r.stdout != "revoked "+list[0].ID+"\n" {
				t.Fatalf("tokens revoke: %s", r)
			}
			s.must(http.StatusUnauthorized, "GET", envPath+"staging/secrets/DB_HOST", token, nil)
			if r := run(t, "", token, "secrets", "get", "DB_HOST", "--project", "web", "--env", "staging"); r.code != 77 || strings.Contains(r.stdout, "db.internal") {
				t.Fatalf("a revoked token: %s", r)
			}
			if r := run(t, "", s.owner, "tokens", "revoke", "00000000-0000-0000-0000-000000000000", "--project", "web"); r.code != 4 {
				t.Fatalf("revoke an unknown token: %s", r)
			}
		})

		t.Run("audit verify", func(t *testing.T) {
			s.must(http.StatusCreated, "POST", auditPath+"/checkpoints", s.owner, nil)
			export := s.must(http.StatusOK, "GET", auditPath+"/export", s.owner, nil).raw
			keyFile, file := filepath.Join(dir, "key.txt"), filepath.Join(dir, "audit.jsonl")
			if err := os.WriteFile(keyFile, []byte(s.publicKey()), 0o600); err != nil {
				t.Fatal(err)
			}
			verify := func(data []byte) cliResult {
				t.Helper()
				if err := os.WriteFile(file, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return run(t, "", "", "audit", "verify", "--file", file, "--public-key", keyFile)
			}
			if r := verify(export); r.code != 0 || !strings.HasPrefix(r.stdout, "OK: ") || !strings.Contains(r.stdout, " checkpoints verified") {
				t.Fatalf("audit verify of the server's export: %s", r)
			}
			i := bytes.Index(export, []byte(`"action":"secret.write"`))
			if i < 0 {
				t.Fatalf("the export has no secret.write: %s", export)
			}
			tampered := bytes.Clone(export)
			copy(tampered[i:], `"action":"secret.wrote"`)
			if r := verify(tampered); r.code != 1 || !strings.Contains(r.stderr, "does not verify") {
				t.Fatalf("audit verify of a tampered export: %s", r)
			}
			if r := run(t, "", "", "audit", "verify", "--file", filepath.Join(dir, "none.jsonl"), "--public-key", keyFile); r.code != 66 {
				t.Fatalf("audit verify of a missing file: %s", r)
			}
		})
	})
}
