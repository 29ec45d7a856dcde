package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cofferhq/coffer/internal/metrics"
)

// The composition root hands *metrics.Metrics to Deps.Metrics.
var _ HTTPObserver = (*metrics.Metrics)(nil)

type observation struct {
	route, method string
	status        int
}

// recorder is an HTTPObserver that keeps what it was told.
type recorder struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recorder) ObserveHTTP(route, method string, status int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		status = -1 // makes the test fail: a duration is never negative
	}
	r.obs = append(r.obs, observation{route, method, status})
}

func (r *recorder) take() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.obs
	r.obs = nil
	return o
}

// metricsTestServer is the route table with no service behind it, as in the OpenAPI tests,
// and an observer installed.
func metricsTestServer(obs HTTPObserver) *Server {
	s := &Server{
		cfg:         Config{MaxBodyBytes: 1 << 20, MaxBulkBodyBytes: 16 << 20},
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		static:      fstest.MapFS{},
		authLimiter: newAttemptLimiter(30, 20),
		mintLimiter: newAttemptLimiter(20, 20),
		metrics:     obs,
		// A failing dependency that panics: recoverPanic answers 500 and the metric sees it.
		ready: func(context.Context) error { panic("database driver exploded") },
	}
	s.engine = s.routes()
	return s
}

func TestMetricsRecordRouteTemplates(t *testing.T) {
	rec := &recorder{}
	s := metricsTestServer(rec)
	tests := []struct {
		method, target string
		want           observation
	}{
		{http.MethodGet, "/healthz", observation{"/healthz", "GET", http.StatusOK}},
		// No token: 401 from authorizeScope, recorded under the template, not the slug.
		{http.MethodGet, "/api/v1/tenants/acme-corp/projects", observation{"/api/v1/tenants/:tenant/projects", "GET", http.StatusUnauthorized}},
		{http.MethodPut, "/api/v1/tenants/acme-corp/projects/billing/environments/prod/secrets/STRIPE_KEY?x=1",
			observation{"/api/v1/tenants/:tenant/projects/:project/environments/:env/secrets/:name", "PUT", http.StatusUnauthorized}},
		{http.MethodGet, "/api/v1/tokens", observation{"/api/v1/tokens", "GET", http.StatusUnauthorized}},
		// Unmatched routes carry no template at all.
		{http.MethodGet, "/api/v1/tenants/acme-corp/nothing-here", observation{"", "GET", http.StatusNotFound}},
		{http.MethodPut, "/healthz", observation{"", "PUT", http.StatusMethodNotAllowed}},
		{"BREW", "/secret-path-acme", observation{"", "BREW", http.StatusNotFound}},
		// A panic recovered into a 500.
		{http.MethodGet, "/readyz", observation{"/readyz", "GET", http.StatusInternalServerError}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
			if w.Code != tt.want.status {
				t.Fatalf("answered %d, want %d", w.Code, tt.want.status)
			}
			got := rec.take()
			if len(got) != 1 || got[0] != tt.want {
				t.Fatalf("recorded %+v, want exactly %+v", got, tt.want)
			}
			for _, leak := range []string{"acme", "billing", "prod", "STRIPE", "secret-path", "x=1"} {
				if strings.Contains(got[0].route, leak) {
					t.Errorf("route label %q holds %q from the URL", got[0].route, leak)
				}
			}
		})
	}
}

// TestMetricsEndToEnd runs the real instruments behind the route table: the series a scrape
// shows name templates only.
func TestMetricsEndToEnd(t *testing.T) {
	m := metrics.New(metrics.Options{})
	s := metricsTestServer(m)
	for _, target := range []string{
		"/api/v1/tenants/acme-corp/projects",
		"/api/v1/tenants/globex/projects",
		"/api/v1/tenants/acme-corp/projects/billing/environments/prod/secrets/STRIPE_KEY",
		"/no/such/route",
	} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, target, nil))
	}
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`coffer_http_requests_total{method="GET",route="/api/v1/tenants/:tenant/projects",status="401"} 2`,
		`coffer_http_requests_total{method="GET",route="/api/v1/tenants/:tenant/projects/:project/environments/:env/secrets/:name",status="401"} 1`,
		`coffer_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, leak := range []string{"acme", "globex", "billing", "STRIPE_KEY", "/no/such"} {
		if strings.Contains(body, leak) {
			t.Errorf("scrape holds %q from a URL", leak)
		}
	}
}

func TestNoMetricsObserverIsFine(t *testing.T) {
	s := metricsTestServer(nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("healthz answered %d without metrics", w.Code)
	}
}
