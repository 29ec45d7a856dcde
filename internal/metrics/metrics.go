// Package metrics owns Coffer's Prometheus instruments, the registry that holds them, and the
// separate listener that exposes them. Every label value is drawn from a small fixed set or
// from the program's own constants (operation names, route templates): never a tenant slug,
// a secret name, a raw URL or an error message, which would leak what the server holds and
// grow the series without bound. It imports nothing from the rest of the project; callers
// pass what it needs to know (how to classify an error, how to read cache counters).
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// KMS outcomes: the only values of the outcome label.
const (
	OutcomeOK          = "ok"
	OutcomeError       = "error"
	OutcomeIntegrity   = "integrity"
	OutcomeUnavailable = "unavailable"
)

// Rotation kinds: the only values of the kind label on the rotation gauges.
const (
	RotationRewrap = "rewrap"
	RotationReseal = "reseal"
)

// Fallback label values for inputs outside the fixed sets.
const (
	// RouteUnmatched labels requests that matched no route template (404, 405).
	RouteUnmatched = "unmatched"
	// LabelOther stands for an HTTP method, status or rotation kind outside the known set,
	// so that a client sending made-up methods cannot create series.
	LabelOther = "other"
)

// Options adjusts New.
type Options struct {
	// ClassifyError maps a non-nil KMS error to one of OutcomeError, OutcomeIntegrity or
	// OutcomeUnavailable. Anything else it returns is recorded as OutcomeError. Nil means
	// every error is OutcomeError.
	ClassifyError func(error) string
	// Profiling also serves Go's profiles (net/http/pprof) under /debug/pprof/ on the
	// metrics listener: for measuring a running server, never on a public address.
	Profiling bool
}

// Metrics holds the registry and the instruments the program records into. Its methods are
// safe for concurrent use.
type Metrics struct {
	reg       *prometheus.Registry
	handler   http.Handler
	classify  func(error) string
	profiling bool

	kmsRequests *prometheus.CounterVec
	kmsDuration *prometheus.HistogramVec

	rotationDone    *prometheus.GaugeVec
	rotationTotal   *prometheus.GaugeVec
	rotationRunning *prometheus.GaugeVec

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

// kmsBuckets span a local key wrapper (well under a millisecond) to a slow cloud KMS call.
var kmsBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// New builds the instruments on a registry of their own (not the global default, so tests
// and several servers in one process do not collide), together with the Go runtime and
// process collectors.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), classify: o.ClassifyError, profiling: o.Profiling}
	m.kmsRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_kms_requests_total",
		Help: "Calls to the key wrapper (KMS), by operation and outcome.",
	}, []string{"operation", "outcome"})
	m.kmsDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "coffer_kms_request_duration_seconds",
		Help:    "Time taken by calls to the key wrapper (KMS), whatever their outcome.",
		Buckets: kmsBuckets,
	}, []string{"operation"})
	m.rotationDone = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coffer_key_rotation_items_done",
		Help: "Items processed so far by the current or last key rotation job of this kind.",
	}, []string{"kind"})
	m.rotationTotal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coffer_key_rotation_items_total",
		Help: "Items the current or last key rotation job of this kind has to process.",
	}, []string{"kind"})
	m.rotationRunning = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coffer_key_rotation_jobs_running",
		Help: "Key rotation jobs of this kind now running.",
	}, []string{"kind"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_requests_total",
		Help: "HTTP requests answered, by route template, method and status.",
	}, []string{"route", "method", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "coffer_http_request_duration_seconds",
		Help:    "Time taken to answer HTTP requests, by route template and method.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method"})

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.kmsRequests, m.kmsDuration,
		m.rotationDone, m.rotationTotal, m.rotationRunning,
		m.httpRequests, m.httpDuration,
	)
	// The rotation series exist from the start, so a dashboard shows 0 rather than no data.
	for _, k := range []string{RotationRewrap, RotationReseal} {
		m.rotationDone.WithLabelValues(k)
		m.rotationTotal.WithLabelValues(k)
		m.rotationRunning.WithLabelValues(k)
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg, // counts its own failures in promhttp_metric_handler_errors_total
		// Scrapes are rare; a flood of them must not pile up collectors' work.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// Registry is where later features register their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveKMS records one call to the key wrapper. op must be one of the caller's constants
// ("generate_data_key", "decrypt", ...), never anything taken from a request.
func (m *Metrics) ObserveKMS(op string, err error, d time.Duration) {
	m.kmsRequests.WithLabelValues(op, m.outcome(err)).Inc()
	m.kmsDuration.WithLabelValues(op).Observe(d.Seconds())
}

func (m *Metrics) outcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	if m.classify == nil {
		return OutcomeError
	}
	switch o := m.classify(err); o {
	case OutcomeIntegrity, OutcomeUnavailable:
		return o
	default:
		return OutcomeError
	}
}

// RegisterKeyCache exposes the DEK cache's hit and miss counters, read from stats at each
// scrape. stats must be cheap and safe for concurrent use, and its counts must only grow.
// It panics if called twice on the same Metrics: that is a wiring mistake.
func (m *Metrics) RegisterKeyCache(stats func() (hits, misses uint64)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coffer_key_cache_hits_total",
			Help: "Reads whose data key was found in the DEK cache.",
		}, func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coffer_key_cache_misses_total",
			Help: "Reads whose data key had to be unwrapped by the KMS.",
		}, func() float64 { _, miss := stats(); return float64(miss) }),
	)
}

// RegisterScopeCache exposes the scope cache's lookups: answered from it, asked of the
// database, and asked of the database because the cache was bypassed (the Postgres listener
// down or silent).
func (m *Metrics) RegisterScopeCache(stats func() (hits, misses, bypassed uint64)) {
	counter := func(name, help string, pick func(h, m, b uint64) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { h, mi, b := stats(); return float64(pick(h, mi, b)) })
	}
	m.reg.MustRegister(
		counter("coffer_scope_cache_hits_total", "Reads whose token and scope came from the scope cache.",
			func(h, _, _ uint64) uint64 { return h }),
		counter("coffer_scope_cache_misses_total", "Reads whose token and scope were looked up in the database.",
			func(_, m, _ uint64) uint64 { return m }),
		counter("coffer_scope_cache_bypassed_total", "Reads that skipped the scope cache because other replicas' changes may not have been heard.",
			func(_, _, b uint64) uint64 { return b }),
	)
}

// RegisterAuditFailing exposes how many audit chains failed their last background
// verification, read from failing at each scrape. It panics if called twice.
func (m *Metrics) RegisterAuditFailing(failing func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "coffer_audit_chains_failing",
		Help: "Audit chains whose last background verification failed (see the error log for the first bad sequence).",
	}, func() float64 { return float64(failing()) }))
}

// RegisterEvents exposes the event stream: open connections, and events queued for and
// subscribers dropped (for not keeping up) since start, read at each scrape.
func (m *Metrics) RegisterEvents(stats func() (connections, delivered, dropped int64)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coffer_event_stream_connections",
			Help: "Open event stream connections (WebSocket and SSE).",
		}, func() float64 { c, _, _ := stats(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coffer_event_stream_events_total",
			Help: "Events queued for stream subscribers (before each subscriber's permission check).",
		}, func() float64 { _, d, _ := stats(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coffer_event_stream_dropped_total",
			Help: "Stream subscribers closed because they did not read their events fast enough.",
		}, func() float64 { _, _, d := stats(); return float64(d) }),
	)
}

// RotationStarted records that a rotation job of this kind began.
func (m *Metrics) RotationStarted(kind string) {
	m.rotationRunning.WithLabelValues(rotationKind(kind)).Inc()
}

// RotationFinished records that a rotation job of this kind ended, however it ended. The
// progress gauges keep the job's last values, so a stalled or failed job stays visible.
func (m *Metrics) RotationFinished(kind string) {
	m.rotationRunning.WithLabelValues(rotationKind(kind)).Dec()
}

// RotationProgress records how far the running rotation job of this kind has got.
func (m *Metrics) RotationProgress(kind string, done, total int64) {
	k := rotationKind(kind)
	m.rotationDone.WithLabelValues(k).Set(float64(done))
	m.rotationTotal.WithLabelValues(k).Set(float64(total))
}

func rotationKind(kind string) string {
	switch kind {
	case RotationRewrap, RotationReseal:
		return kind
	default:
		return LabelOther
	}
}

// ObserveHTTP records one answered request. route is the router's template (for gin,
// c.FullPath(), such as /api/v1/tenants/:tenant/projects), never the request's URL, so that
// tenant slugs and secret names never become label values; "" means no route matched.
func (m *Metrics) ObserveHTTP(route, method string, status int, d time.Duration) {
	if route == "" {
		route = RouteUnmatched
	}
	method = httpMethod(method)
	m.httpRequests.WithLabelValues(route, method, statusLabel(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// httpMethod keeps the standard methods and folds the rest, which any client can invent.
func httpMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	default:
		return LabelOther
	}
}

// statusLabels holds the decimal form of every valid status code, so the hot path does not
// format (and allocate) one per request.
var statusLabels = func() (s [600]string) {
	for code := 100; code < len(s); code++ {
		s[code] = strconv.Itoa(code)
	}
	return s
}()

func statusLabel(code int) string {
	if code < 100 || code >= len(statusLabels) {
		return LabelOther
	}
	return statusLabels[code]
}
