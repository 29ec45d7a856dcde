package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cofferhq/coffer/internal/metrics"
)

// sample returns the value of the series name{labels}: a counter's or gauge's value, or a
// histogram's observation count. It fails the test if the series does not exist.
func sample(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := lookup(t, g, name, labels)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func lookup(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; !ok || want != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
			t.Fatalf("series %s%v has an unexpected type", name, labels)
		}
	}
	return 0, false
}

// labelValues lists every value the label takes across the series of name.
func labelValues(t *testing.T, g prometheus.Gatherer, name, label string) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var vs []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					vs = append(vs, lp.GetValue())
				}
			}
		}
	}
	return vs
}

var (
	errIntegrity   = errors.New("integrity check failed")
	errUnavailable = errors.New("kms unavailable")
)

// classify stands in for the composition root's classifier over the crypto errors. Its
// last case returns a string outside the allowed set, as a careless classifier might.
func classify(err error) string {
	switch {
	case errors.Is(err, errIntegrity):
		return metrics.OutcomeIntegrity
	case errors.Is(err, errUnavailable):
		return metrics.OutcomeUnavailable
	default:
		return "boom: " + err.Error()
	}
}

func TestObserveKMS(t *testing.T) {
	tests := []struct {
		name     string
		classify func(error) string
		err      error
		outcome  string
	}{
		{"ok", classify, nil, metrics.OutcomeOK},
		{"integrity", classify, errIntegrity, metrics.OutcomeIntegrity},
		{"wrapped unavailable", classify, errors.Join(errors.New("decrypt"), errUnavailable), metrics.OutcomeUnavailable},
		{"classifier answer outside the set", classify, errors.New("secret-ish detail"), metrics.OutcomeError},
		{"no classifier, error", nil, errIntegrity, metrics.OutcomeError},
		{"no classifier, ok", nil, nil, metrics.OutcomeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(metrics.Options{ClassifyError: tt.classify})
			reg := m.Registry()
			m.ObserveKMS("decrypt", tt.err, 3*time.Millisecond)
			m.ObserveKMS("decrypt", tt.err, 4*time.Millisecond)
			m.ObserveKMS("generate_data_key", nil, time.Millisecond)

			if got := sample(t, reg, "coffer_kms_requests_total", map[string]string{"operation": "decrypt", "outcome": tt.outcome}); got != 2 {
				t.Errorf("decrypt/%s = %v, want 2", tt.outcome, got)
			}
			if got := sample(t, reg, "coffer_kms_request_duration_seconds", map[string]string{"operation": "decrypt"}); got != 2 {
				t.Errorf("decrypt duration count = %v, want 2", got)
			}
			if got := sample(t, reg, "coffer_kms_requests_total", map[string]string{"operation": "generate_data_key", "outcome": "ok"}); got != 1 {
				t.Errorf("generate_data_key/ok = %v, want 1", got)
			}
			allowed := map[string]bool{"ok": true, "error": true, "integrity": true, "unavailable": true}
			for _, o := range labelValues(t, reg, "coffer_kms_requests_total", "outcome") {
				if !allowed[o] {
					t.Errorf("outcome label %q is outside the fixed set", o)
				}
			}
		})
	}
}

func TestKMSDurationBuckets(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveKMS("decrypt", nil, 1500*time.Millisecond)
	want := `
# HELP coffer_kms_request_duration_seconds Time taken by calls to the key wrapper (KMS), whatever their outcome.
# TYPE coffer_kms_request_duration_seconds histogram
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.0005"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.001"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.0025"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.005"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.01"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.025"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.05"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.1"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.25"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="0.5"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="1"} 0
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="2.5"} 1
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="5"} 1
coffer_kms_request_duration_seconds_bucket{operation="decrypt",le="+Inf"} 1
coffer_kms_request_duration_seconds_sum{operation="decrypt"} 1.5
coffer_kms_request_duration_seconds_count{operation="decrypt"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "coffer_kms_request_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestKeyCache(t *testing.T) {
	m := metrics.New(metrics.Options{})
	reg := m.Registry()
	if _, ok := lookup(t, reg, "coffer_key_cache_hits_total", nil); ok {
		t.Fatal("cache counters exist before a cache is registered")
	}
	var hits, misses atomic.Uint64
	m.RegisterKeyCache(func() (uint64, uint64) { return hits.Load(), misses.Load() })

	check := func(wantHits, wantMisses float64) {
		t.Helper()
		if got := sample(t, reg, "coffer_key_cache_hits_total", nil); got != wantHits {
			t.Errorf("hits = %v, want %v", got, wantHits)
		}
		if got := sample(t, reg, "coffer_key_cache_misses_total", nil); got != wantMisses {
			t.Errorf("misses = %v, want %v", got, wantMisses)
		}
	}
	check(0, 0)
	hits.Add(5)
	misses.Add(2)
	check(5, 2)
	hits.Add(1)
	check(6, 2)

	defer func() {
		if recover() == nil {
			t.Error("a second RegisterKeyCache did not panic")
		}
	}()
	m.RegisterKeyCache(func() (uint64, uint64) { return 0, 0 })
}

func TestRotation(t *testing.T) {
	m := metrics.New(metrics.Options{})
	reg := m.Registry()
	gauge := func(name, kind string) float64 {
		t.Helper()
		return sample(t, reg, name, map[string]string{"kind": kind})
	}
	// Both kinds are there from the start, at zero.
	for _, kind := range []string{metrics.RotationRewrap, metrics.RotationReseal} {
		for _, name := range []string{"coffer_key_rotation_items_done", "coffer_key_rotation_items_total", "coffer_key_rotation_jobs_running"} {
			if got := gauge(name, kind); got != 0 {
				t.Errorf("%s{kind=%q} = %v at start, want 0", name, kind, got)
			}
		}
	}

	m.RotationStarted(metrics.RotationRewrap)
	m.RotationProgress(metrics.RotationRewrap, 0, 1000)
	m.RotationProgress(metrics.RotationRewrap, 250, 1000)
	if got := gauge("coffer_key_rotation_jobs_running", "rewrap"); got != 1 {
		t.Errorf("running rewrap = %v, want 1", got)
	}
	if got := gauge("coffer_key_rotation_items_done", "rewrap"); got != 250 {
		t.Errorf("done rewrap = %v, want 250", got)
	}
	if got := gauge("coffer_key_rotation_items_total", "rewrap"); got != 1000 {
		t.Errorf("total rewrap = %v, want 1000", got)
	}
	if got := gauge("coffer_key_rotation_jobs_running", "reseal"); got != 0 {
		t.Errorf("running reseal = %v, want 0 (kinds are separate)", got)
	}

	m.RotationProgress(metrics.RotationRewrap, 1000, 1000)
	m.RotationFinished(metrics.RotationRewrap)
	if got := gauge("coffer_key_rotation_jobs_running", "rewrap"); got != 0 {
		t.Errorf("running rewrap after finish = %v, want 0", got)
	}
	if got := gauge("coffer_key_rotation_items_done", "rewrap"); got != 1000 {
		t.Errorf("done rewrap after finish = %v, want the last value 1000", got)
	}

	// A kind outside the set is folded, not turned into a new series of its own.
	m.RotationStarted("tenant-acme")
	if _, ok := lookup(t, reg, "coffer_key_rotation_jobs_running", map[string]string{"kind": "tenant-acme"}); ok {
		t.Error("an unknown kind became a label value")
	}
	if got := gauge("coffer_key_rotation_jobs_running", metrics.LabelOther); got != 1 {
		t.Errorf("running other = %v, want 1", got)
	}
}

func TestObserveHTTP(t *testing.T) {
	m := metrics.New(metrics.Options{})
	reg := m.Registry()
	const tmpl = "/api/v1/tenants/:tenant/projects"
	m.ObserveHTTP(tmpl, http.MethodGet, http.StatusOK, 2*time.Millisecond)
	m.ObserveHTTP(tmpl, http.MethodGet, http.StatusOK, 3*time.Millisecond)
	m.ObserveHTTP(tmpl, http.MethodPost, http.StatusCreated, time.Millisecond)
	m.ObserveHTTP("", http.MethodGet, http.StatusNotFound, time.Millisecond)
	m.ObserveHTTP("", http.MethodPut, http.StatusMethodNotAllowed, time.Millisecond)
	m.ObserveHTTP("", "X-ACME-SECRET", http.StatusNotFound, time.Millisecond)
	m.ObserveHTTP("/healthz", http.MethodGet, 999, time.Millisecond)

	counts := []struct {
		route, method, status string
		want                  float64
	}{
		{tmpl, "GET", "200", 2},
		{tmpl, "POST", "201", 1},
		{"unmatched", "GET", "404", 1},
		{"unmatched", "PUT", "405", 1},
		{"unmatched", "other", "404", 1},
		{"/healthz", "GET", "other", 1},
	}
	for _, c := range counts {
		labels := map[string]string{"route": c.route, "method": c.method, "status": c.status}
		if got := sample(t, reg, "coffer_http_requests_total", labels); got != c.want {
			t.Errorf("requests%v = %v, want %v", labels, got, c.want)
		}
	}
	if got := sample(t, reg, "coffer_http_request_duration_seconds", map[string]string{"route": tmpl, "method": "GET"}); got != 2 {
		t.Errorf("duration count GET %s = %v, want 2", tmpl, got)
	}
	if n := testutil.CollectAndCount(reg, "coffer_http_requests_total"); n != len(counts) {
		t.Errorf("%d request series, want %d", n, len(counts))
	}
}

// TestObserveHTTPAllocations pins the request path's cost: once a series exists, recording
// into it allocates nothing (no formatting of the status code, no label copies).
func TestObserveHTTPAllocations(t *testing.T) {
	m := metrics.New(metrics.Options{})
	const tmpl = "/api/v1/tenants/:tenant/projects/:project/environments/:env/secrets/:name"
	m.ObserveHTTP(tmpl, http.MethodGet, http.StatusOK, time.Millisecond) // create the series
	allocs := testing.AllocsPerRun(200, func() {
		m.ObserveHTTP(tmpl, http.MethodGet, http.StatusOK, time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("ObserveHTTP allocates %v times per call on an existing series, want 0", allocs)
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveHTTP("/api/v1/me", http.MethodGet, http.StatusOK, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE coffer_http_requests_total counter",
		`coffer_http_requests_total{method="GET",route="/api/v1/me",status="200"} 1`,
		"# TYPE coffer_key_rotation_jobs_running gauge",
		"# TYPE go_goroutines gauge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q", want)
		}
	}
}

func TestRegistryIsPrivate(t *testing.T) {
	a, b := metrics.New(metrics.Options{}), metrics.New(metrics.Options{})
	if a.Registry() == b.Registry() || a.Registry() == prometheus.DefaultRegisterer {
		t.Fatal("instances share a registry")
	}
	a.ObserveHTTP("/healthz", http.MethodGet, http.StatusOK, time.Millisecond)
	if _, ok := lookup(t, b.Registry(), "coffer_http_requests_total", map[string]string{"route": "/healthz", "method": "GET", "status": "200"}); ok {
		t.Error("a request recorded in one instance shows in another")
	}
	// Later features add their own collectors to the same registry.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "coffer_test_feature_total", Help: "test"})
	a.Registry().MustRegister(c)
	c.Inc()
	if got := sample(t, a.Registry(), "coffer_test_feature_total", nil); got != 1 {
		t.Errorf("feature counter = %v, want 1", got)
	}
}

func TestServe(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveHTTP("/api/v1/me", http.MethodGet, http.StatusOK, time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv, err := m.Serve(ctx, "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("bound address %q (%v), want 127.0.0.1 and a real port", srv.Addr(), err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + srv.Addr()

	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	code, body := get(http.MethodGet, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, `coffer_http_requests_total{method="GET",route="/api/v1/me",status="200"} 1`) {
		t.Errorf("GET /metrics: %d\n%.500s", code, body)
	}
	// Only /metrics is served: no pprof, no index, no writes.
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
		{http.MethodGet, "/metrics/x", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
	} {
		if code, _ := get(tc.method, tc.path); code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, code, tc.want)
		}
	}

	cancel()
	waited := make(chan error, 1)
	go func() { waited <- srv.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("Wait after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after its context was cancelled")
	}
	if conn, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		conn.Close()
		t.Error("listener still accepts connections after shutdown")
	}
}

func TestServeProfilesOnlyWhenAsked(t *testing.T) {
	m := metrics.New(metrics.Options{Profiling: true})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv, err := m.Serve(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/debug/pprof/": http.StatusOK, "/debug/pprof/cmdline": http.StatusOK, "/metrics": http.StatusOK} {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestServeReportsBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := metrics.New(metrics.Options{})
	if srv, err := m.Serve(t.Context(), ln.Addr().String(), nil); err == nil {
		t.Errorf("Serve on a taken port succeeded, bound %s", srv.Addr())
	}
}
