package coffer_test

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cofferhq/coffer"

// under reports whether pkg is root or inside it.
func under(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }

// goList runs "go list" in the module root and returns its non-empty output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found in PATH")
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("go list %s printed nothing", strings.Join(args, " "))
	}
	return lines
}

// deps returns the transitive non-test dependencies of pkg, pkg included.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	return goList(t, "-deps", "-f", "{{.ImportPath}}", pkg)
}

// forbidden is infrastructure the domain and crypto packages must not pull in, even
// indirectly. database/sql/driver is allowed: github.com/google/uuid implements its Valuer.
var forbidden = []struct {
	root, why string
}{
	{"gorm.io", "the ORM belongs to internal/store"},
	{"github.com/gin-gonic", "the web framework belongs to internal/httpapi"},
	{"github.com/gorilla/websocket", "WebSockets belong to internal/httpapi"},
	{"github.com/jackc", "the Postgres driver belongs to internal/store"},
	{"database/sql", "SQL belongs to internal/store"},
	{"github.com/glebarez", "the SQLite driver belongs to internal/store"},
	{"modernc.org/sqlite", "the SQLite driver belongs to internal/store"},
	{"github.com/mattn/go-sqlite3", "SQL drivers belong to internal/store"},
	{"github.com/lib/pq", "SQL drivers belong to internal/store"},
	{"github.com/go-sql-driver/mysql", "SQL drivers belong to internal/store"},
	{"github.com/pressly/goose", "migrations belong to internal/store"},
	{"net/http", "HTTP belongs to internal/httpapi"},
	{module + "/internal/store", "domain packages must not depend on storage"},
	{module + "/internal/httpapi", "domain packages must not depend on HTTP"},
	{module + "/internal/app", "only cmd/ and tools/ wire the program"},
}

func TestDomainPackagesImportNoInfrastructure(t *testing.T) {
	roots := []string{"./internal/tenant", "./internal/secrets", "./internal/auth", "./internal/audit"}
	roots = append(roots, goList(t, "./internal/crypto/...")...)
	for _, root := range roots {
		t.Run(strings.TrimPrefix(root, module+"/"), func(t *testing.T) {
			ds := deps(t, root)
			for _, d := range ds {
				if d == "database/sql/driver" {
					continue
				}
				for _, f := range forbidden {
					// The AWS KMS wrapper is an adapter to a remote service, and the SDK's
					// transport is HTTP; it still may not reach storage or the web layer.
					if f.root == "net/http" && under(root, module+"/internal/crypto/awskms") {
						continue
					}
					if under(d, f.root) {
						t.Errorf("%s depends on %s: %s", root, d, f.why)
					}
				}
			}
		})
	}
	// The check above sees real dependency lists: secrets does use crypto and tenant.
	ds := deps(t, "./internal/secrets")
	for _, want := range []string{module + "/internal/crypto", module + "/internal/tenant", "crypto/aes"} {
		if !slices.Contains(ds, want) {
			t.Errorf("deps of internal/secrets lack %s; is the listing broken? %v", want, ds)
		}
	}
}

func TestCryptoImportsNothingFromCoffer(t *testing.T) {
	crypto := module + "/internal/crypto"
	for _, d := range deps(t, "./internal/crypto") {
		if under(d, module) && d != crypto {
			t.Errorf("internal/crypto depends on %s", d)
		}
	}
	// Its sub-packages (key wrappers, test helpers) may use internal/crypto and nothing else
	// of the project.
	for _, pkg := range goList(t, "./internal/crypto/...") {
		for _, d := range deps(t, pkg) {
			if under(d, module) && !under(d, crypto) {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}

func TestOnlyCompositionRootsImportStoreAndHTTP(t *testing.T) {
	restricted := []string{module + "/internal/store", module + "/internal/httpapi"}
	allowed := []string{module + "/internal/app", module + "/cmd/server", module + "/tools/loadbench"}
	seen := map[string]bool{}
	for _, line := range goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		seen[pkg] = true
		for _, imp := range imports {
			for _, r := range restricted {
				if !under(imp, r) || under(pkg, r) || slices.Contains(allowed, pkg) {
					continue
				}
				t.Errorf("%s imports %s; only %v may", pkg, imp, allowed)
			}
		}
	}
	// The scan must have seen the composition root importing both, or it proved nothing.
	app := goList(t, "-f", `{{join .Imports "\n"}}`, "./internal/app")
	for _, r := range restricted {
		if !slices.Contains(app, r) {
			t.Errorf("internal/app does not import %s; is the listing broken?", r)
		}
	}
	if !seen[module+"/internal/app"] || !seen[module+"/internal/tenant"] {
		t.Errorf("package scan missed packages: %v", seen)
	}
}
