package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsOnTheirOwnListener: with COFFER_METRICS_LISTEN set, Prometheus metrics are
// served on a separate address (never on the API's), and they count HTTP requests by route
// template, key-cache hits and misses, and rotation progress; no slug or secret name appears.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	s := start(t, "sqlite", map[string]string{"COFFER_METRICS_LISTEN": "127.0.0.1:0"})
	s.withProject()
	s.must(http.StatusCreated, "PUT", envPath+"development/secrets/METRIC_CANARY", s.owner, map[string]string{"value": "v"})
	for range 3 {
		s.must(http.StatusOK, "GET", envPath+"development/secrets/METRIC_CANARY", s.owner, nil)
	}
	s.rotateAndWait(s.owner, "default", "web", "development")
	// One open event stream that has received one event.
	stream := s.subscribe(s.owner, map[string]any{"tenant": "default", "project": "web"})
	s.must(http.StatusOK, "PUT", envPath+"development/secrets/METRIC_CANARY", s.owner, map[string]string{"value": "w"})
	nextSecretEvent(t, stream)

	if r := s.call("GET", "/metrics", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics on the API listener = %d, want 404", r.status)
	}
	addr := s.app.MetricsAddr()
	if addr == "" || addr == strings.TrimPrefix(s.base, "http://") {
		t.Fatalf("metrics address %q", addr)
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	text := string(body)
	for _, want := range []string{
		`coffer_http_requests_total{method="GET",route="/api/v1/tenants/:tenant/projects/:project/environments/:env/secrets/:name",status="200"} 3`,
		`coffer_key_cache_hits_total`,
		`coffer_key_cache_misses_total`,
		`coffer_key_rotation_items_done{kind="reseal"} 1`,
		"coffer_event_stream_connections 1\n",
		"coffer_event_stream_events_total ",
		"coffer_event_stream_dropped_total 0\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"METRIC_CANARY", "default/projects/web"} {
		if strings.Contains(text, leak) {
			t.Errorf("metrics contain %q", leak)
		}
	}
}
