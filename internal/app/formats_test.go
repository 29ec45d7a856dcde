package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/envfile"
)

const dotenvFixture = `# settings
export DB_HOST=db.internal
DB_PORT = 5432 # the port
QUOTED="a \"quoted\" word and a \\ backslash and \$NOT_EXPANDED"
SINGLE='it stays $HOME'
PEM="-----BEGIN KEY-----
abc
-----END KEY-----"
EMPTY=
`

// TestDotenvImportExport imports a dotenv file as one bulk write and reads the environment
// back in every format; the dotenv export reads back to the same values.
func TestDotenvImportExport(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		list := envPath + "staging/secrets"
		put := func(contentType, body string) response {
			req := s.request("PUT", list, s.owner, nil)
			req.Body = ioNopCloser(body)
			req.ContentLength = int64(len(body))
			req.Header.Set("Content-Type", contentType)
			return s.send(req)
		}
		r := put("text/plain", dotenvFixture)
		if r.status != http.StatusOK || len(r.items()) != 6 {
			t.Fatalf("import: %d %s", r.status, r.raw)
		}
		want, err := envfile.Parse([]byte(dotenvFixture))
		if err != nil {
			t.Fatal(err)
		}
		values := map[string]string{}
		for _, v := range want {
			values[v.Name] = v.Value
		}

		export := func(format string) response {
			return s.call("GET", list+"?include=values&format="+format, s.owner, nil)
		}
		dot := export("dotenv")
		if dot.status != http.StatusOK || !strings.HasPrefix(dot.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("dotenv export: %d %s %s", dot.status, dot.header.Get("Content-Type"), dot.raw)
		}
		back, err := envfile.Parse(dot.raw)
		if err != nil || len(back) != len(want) {
			t.Fatalf("the export reads back as %+v (%v):\n%s", back, err, dot.raw)
		}
		for _, v := range back {
			if values[v.Name] != v.Value {
				t.Errorf("%s: exported %q, imported %q", v.Name, v.Value, values[v.Name])
			}
		}
		js := export("json")
		var m map[string]string
		if err := json.Unmarshal(js.raw, &m); err != nil || m["PEM"] != values["PEM"] || len(m) != 6 {
			t.Fatalf("json export: %s (%v)", js.raw, err)
		}
		if y := export("yaml"); !strings.HasPrefix(y.header.Get("Content-Type"), "application/yaml") || !strings.Contains(string(y.raw), `"DB_PORT": "5432"`) {
			t.Fatalf("yaml export: %s %s", y.header.Get("Content-Type"), y.raw)
		}
		if sh := export("shell"); !strings.Contains(string(sh.raw), "export SINGLE='it stays $HOME'\n") {
			t.Fatalf("shell export: %s", sh.raw)
		}
		// Every export was audited as a reveal of the whole environment.
		var reveals int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_entries WHERE action = 'secret.reveal'`).Scan(&reveals); err != nil || reveals != 4 {
			t.Fatalf("reveal entries: %d (%v), want 4", reveals, err)
		}

		// Bad requests say what is wrong and change nothing.
		bad := put("text/plain", "GOOD=1\nALSO_GOOD=2\n3BAD=x\n")
		details, _ := bad.body["error"].(map[string]any)["details"].(map[string]any)
		if bad.status != http.StatusUnprocessableEntity || details["line"] != float64(3) || !strings.Contains(string(bad.raw), "line 3") {
			t.Fatalf("a malformed file: %d %s", bad.status, bad.raw)
		}
		if r := s.call("GET", list+"/GOOD", s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("a refused import wrote GOOD: %d", r.status)
		}
		if r := put("application/json", `{"A":"1"}`); r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("import as JSON: %d %s", r.status, r.raw)
		}
		if r := put("text/plain", "# nothing\n"); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("an empty file: %d %s", r.status, r.raw)
		}
		if r := s.call("GET", list+"?include=values&format=toml", s.owner, nil); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("an unknown format: %d", r.status)
		}
		if r := s.call("GET", list+"?format=dotenv", s.owner, nil); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("a format without include=values: %d", r.status)
		}
		// A viewer sees names, never a file of values.
		viewer := s.newUser("viewer@example.com")
		s.join(s.owner, "default", viewer, "viewer@example.com", "member")
		s.must(http.StatusOK, "POST", "/api/v1/tenants/default/projects/web/members", s.owner, map[string]any{"email": "viewer@example.com", "role": "viewer"})
		if r := s.call("GET", list+"?include=values&format=dotenv", viewer, nil); r.status != http.StatusForbidden || strings.Contains(string(r.raw), "db.internal") {
			t.Fatalf("a viewer's export: %d %s", r.status, r.raw)
		}
	})
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
