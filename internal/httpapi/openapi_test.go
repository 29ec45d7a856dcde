package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
)

// openAPIMethods are the keys of an OpenAPI path item that name operations.
var openAPIMethods = map[string]string{
	"get": http.MethodGet, "put": http.MethodPut, "post": http.MethodPost, "delete": http.MethodDelete,
	"patch": http.MethodPatch, "head": http.MethodHead, "options": http.MethodOptions, "trace": http.MethodTrace,
}

// openAPITestDoc parses the embedded document.
func openAPITestDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	return doc
}

// openAPITestOps returns every documented operation keyed by "METHOD /path".
func openAPITestOps(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		t.Fatal("openapi.json has no paths")
	}
	ops := map[string]map[string]any{}
	for path, item := range paths {
		pi, ok := item.(map[string]any)
		if !ok {
			t.Errorf("path %s is not an object", path)
			continue
		}
		for key, v := range pi {
			method, isOp := openAPIMethods[key]
			if !isOp {
				continue
			}
			o, ok := v.(map[string]any)
			if !ok {
				t.Errorf("%s %s is not an object", key, path)
				continue
			}
			ops[method+" "+path] = o
		}
	}
	return ops
}

// openAPITestServer builds the route table without any service behind it: enough to list
// routes and serve the document, which need no database.
func openAPITestServer() *Server {
	s := &Server{
		cfg:         Config{MaxBodyBytes: 1 << 20, MaxBulkBodyBytes: 16 << 20},
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		static:      fstest.MapFS{},
		authLimiter: newAttemptLimiter(30, 20),
	}
	s.engine = s.routes()
	return s
}

// openAPITestRoutes lists the registered routes as "METHOD /path/{param}", without the
// static files.
func openAPITestRoutes(t *testing.T) map[string]bool {
	t.Helper()
	s := openAPITestServer()
	routes := map[string]bool{}
	for _, r := range s.Routes() {
		if strings.HasPrefix(r.Path, "/static/") {
			continue
		}
		segs := strings.Split(r.Path, "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, ":") || strings.HasPrefix(seg, "*") {
				segs[i] = "{" + seg[1:] + "}"
			}
		}
		routes[r.Method+" "+strings.Join(segs, "/")] = true
	}
	if len(routes) == 0 {
		t.Fatal("the engine registered no routes")
	}
	return routes
}

func TestOpenAPIParses(t *testing.T) {
	doc := openAPITestDoc(t)
	v, _ := doc["openapi"].(string)
	if !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi version is %q, want 3.x", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info == nil || info["title"] == "" || info["version"] == "" {
		t.Error("info needs a title and a version")
	}
}

func TestOpenAPICoversRoutes(t *testing.T) {
	ops := openAPITestOps(t, openAPITestDoc(t))
	routes := openAPITestRoutes(t)
	var problems []string
	for r := range routes {
		if _, ok := ops[r]; !ok {
			problems = append(problems, "registered but not documented: "+r)
		}
	}
	for o := range ops {
		if !routes[o] {
			problems = append(problems, "documented but not registered: "+o)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("OpenAPI document and route table differ:\n%s", strings.Join(problems, "\n"))
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := openAPITestDoc(t)
	var problems []string
	refs := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				refs++
				s, _ := ref.(string)
				if err := openAPIResolve(doc, s); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %v", at, err))
				}
			}
			for k, c := range v {
				walk(at+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s/%d", at, i), c)
			}
		}
	}
	walk("#", doc)
	if refs == 0 {
		t.Error("the document holds no $ref at all")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("unresolved references:\n%s", strings.Join(problems, "\n"))
	}
}

// openAPIResolve follows a local JSON pointer such as #/components/schemas/Tenant.
func openAPIResolve(doc map[string]any, ref string) error {
	if !strings.HasPrefix(ref, "#/components/") {
		return fmt.Errorf("$ref %q does not point into #/components", ref)
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return fmt.Errorf("$ref %q: %s is inside a non-object", ref, part)
		}
		if cur, ok = m[part]; !ok {
			return fmt.Errorf("$ref %q: %s does not exist", ref, part)
		}
	}
	return nil
}

func TestOpenAPIOperations(t *testing.T) {
	ops := openAPITestOps(t, openAPITestDoc(t))
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[string]string{}
	var problems []string
	for _, k := range keys {
		o := ops[k]
		id, _ := o["operationId"].(string)
		switch {
		case id == "":
			problems = append(problems, k+": no operationId")
		case seen[id] != "":
			problems = append(problems, fmt.Sprintf("%s: operationId %s is also used by %s", k, id, seen[id]))
		default:
			seen[id] = k
		}
		resp, _ := o["responses"].(map[string]any)
		if len(resp) == 0 {
			problems = append(problems, k+": no responses")
		}
		path := k[strings.Index(k, " ")+1:]
		// An operation marked "security": [] is public (the audit verifier key).
		sec, marked := o["security"].([]any)
		public := marked && len(sec) == 0
		if strings.HasPrefix(path, "/api/v1/") && path != "/api/v1/openapi.json" && !public {
			if _, ok := resp["401"]; !ok {
				problems = append(problems, k+": authenticated route without a 401 response")
			}
		}
	}
	if len(problems) > 0 {
		t.Errorf("operation problems:\n%s", strings.Join(problems, "\n"))
	}
}

// The document is served as-is at /api/v1/openapi.json without a token.
func TestOpenAPIServed(t *testing.T) {
	s := openAPITestServer()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if rec.Header().Get("X-Request-ID") == "" {
		t.Error("no X-Request-ID header")
	}
	if rec.Body.String() != string(OpenAPI()) {
		t.Error("the served document differs from the embedded one")
	}
}
