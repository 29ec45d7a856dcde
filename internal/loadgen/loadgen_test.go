package loadgen_test

import (
	"context"
	"errors"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// Short windows keep the suite fast; warmup is non-zero only because zero
// means "use the 1s default".
const (
	testDuration = 300 * time.Millisecond
	testWarmup   = 20 * time.Millisecond
)

func TestRunCountsRequestsAndBytes(t *testing.T) {
	body := strings.Repeat("x", 1000)
	var served atomic.Int64
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte(body))
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c] = true
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Connections: 4,
		Duration:    testDuration,
		Warmup:      testWarmup,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Errors != 0 {
		t.Errorf("Errors = %d, want 0", res.Errors)
	}
	if res.Requests < 50 {
		t.Fatalf("Requests = %d, implausibly few for %v against a local server", res.Requests, testDuration)
	}
	// The server also saw warmup requests and ones cut off at the end.
	if n := served.Load(); res.Requests > n {
		t.Errorf("Requests = %d, but the server only served %d", res.Requests, n)
	}
	if want := res.Requests * int64(len(body)); res.Bytes != want {
		t.Errorf("Bytes = %d, want %d (%d requests × %d)", res.Bytes, want, res.Requests, len(body))
	}
	if len(res.Status) != 1 || res.Status[200] != res.Requests {
		t.Errorf("Status = %v, want only 200:%d", res.Status, res.Requests)
	}
	if res.Elapsed != testDuration {
		t.Errorf("Elapsed = %v, want %v", res.Elapsed, testDuration)
	}
	if want := float64(res.Requests) / testDuration.Seconds(); math.Abs(res.RPS-want) > 1e-9*want {
		t.Errorf("RPS = %v, want %v", res.RPS, want)
	}
	if !(0 < res.P50 && res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) {
		t.Errorf("percentiles not ordered: p50=%v p90=%v p99=%v max=%v", res.P50, res.P90, res.P99, res.Max)
	}
	if res.Max > testDuration+testWarmup {
		t.Errorf("Max = %v exceeds the whole run", res.Max)
	}
	mu.Lock()
	nconns := len(conns)
	mu.Unlock()
	if nconns > 4 {
		t.Errorf("server saw %d connections, want at most 4 (one keep-alive per worker)", nconns)
	}
}

func TestRunCountsNon2xxAsErrors(t *testing.T) {
	const okBody, errBody = "0123456789", "down"
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(errBody))
			return
		}
		w.Write([]byte(okBody))
	}))
	defer srv.Close()

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Connections: 4,
		Duration:    testDuration,
		Warmup:      testWarmup,
	})
	if err != nil {
		t.Fatalf("Run: %v (a partly failing run is not an error)", err)
	}
	ok, bad := res.Status[200], res.Status[503]
	if ok == 0 || bad == 0 || len(res.Status) != 2 {
		t.Fatalf("Status = %v, want both 200 and 503 only", res.Status)
	}
	if res.Requests != ok {
		t.Errorf("Requests = %d, want Status[200] = %d", res.Requests, ok)
	}
	if res.Errors != bad {
		t.Errorf("Errors = %d, want Status[503] = %d", res.Errors, bad)
	}
	// Responses alternate by server arrival, so the counts can differ only
	// by the requests straddling either edge of the window: at most one per
	// worker at each edge.
	if d := ok - bad; d < -9 || d > 9 {
		t.Errorf("200s = %d and 503s = %d, expected near-equal", ok, bad)
	}
	if want := ok*int64(len(okBody)) + bad*int64(len(errBody)); res.Bytes != want {
		t.Errorf("Bytes = %d, want %d", res.Bytes, want)
	}
	if !strings.HasSuffix(res.String(), "errors="+strconv.FormatInt(bad, 10)) {
		t.Errorf("String() = %q, want errors=%d", res.String(), bad)
	}
}

func TestRunAllNon2xxFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Connections: 2,
		Duration:    100 * time.Millisecond,
		Warmup:      testWarmup,
	})
	if err == nil {
		t.Fatal("Run succeeded although every request got 500")
	}
	if res.Requests != 0 || res.Errors == 0 || res.Status[500] != res.Errors {
		t.Errorf("Requests=%d Errors=%d Status=%v, want 0 requests and all errors as 500s", res.Requests, res.Errors, res.Status)
	}
	for _, want := range []string{"first failure: HTTP status 500", "500:" + strconv.FormatInt(res.Errors, 10)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestRunTransportErrorsDoNotLeakURL(t *testing.T) {
	// A closed listener gives fast, deterministic connection failures.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	const secret = "s3cr3t-token"

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL + "/v1/secrets/" + secret + "?token=" + secret,
		Header:      http.Header{"Authorization": {"Bearer " + secret}},
		Connections: 2,
		Duration:    50 * time.Millisecond,
		Warmup:      time.Millisecond,
	})
	if err == nil {
		t.Fatal("Run succeeded against a closed server")
	}
	if res.Errors == 0 || res.Requests != 0 || len(res.Status) != 0 {
		t.Errorf("Requests=%d Errors=%d Status=%v, want only transport errors", res.Requests, res.Errors, res.Status)
	}
	msg := err.Error()
	if strings.Contains(msg, secret) {
		t.Errorf("error leaks the URL or header: %q", msg)
	}
	if !strings.Contains(msg, "connection refused") || !strings.Contains(msg, "status counts: none") {
		t.Errorf("error %q should name the first failure and the (empty) status counts", msg)
	}
}

func TestRunSendsHeaders(t *testing.T) {
	var bad atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer abc":
			bad.Store("Authorization=" + r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusUnauthorized)
		case r.Host != "vault.example":
			bad.Store("Host=" + r.Host)
			w.WriteHeader(http.StatusMisdirectedRequest)
		case r.Header.Get("Accept-Encoding") != "":
			// The default transport must not ask for compression.
			bad.Store("Accept-Encoding=" + r.Header.Get("Accept-Encoding"))
			w.WriteHeader(http.StatusBadRequest)
		case r.ProtoMajor != 1:
			bad.Store("proto=" + r.Proto)
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()

	hdr := http.Header{"Authorization": {"Bearer abc"}, "Host": {"vault.example"}}
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Header:      hdr,
		Connections: 2,
		Duration:    50 * time.Millisecond,
		Warmup:      time.Millisecond,
	})
	if v := bad.Load(); v != nil {
		t.Fatalf("server saw unexpected %v", v)
	}
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Errorf("Requests=%d Errors=%d, want successes only", res.Requests, res.Errors)
	}
	if len(hdr) != 2 || hdr.Get("Host") != "vault.example" {
		t.Errorf("caller's Header was modified: %v", hdr)
	}
}

func TestRunUsesGivenClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Header.Get("X-Via")))
	}))
	defer srv.Close()
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Set("X-Via", "custom")
		return http.DefaultTransport.RoundTrip(r)
	})}

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Client:      client,
		Connections: 2,
		Duration:    50 * time.Millisecond,
		Warmup:      time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Bytes != res.Requests*int64(len("custom")) {
		t.Errorf("Bytes = %d for %d requests: custom client was not used", res.Bytes, res.Requests)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRunBadOptions(t *testing.T) {
	valid := loadgen.Options{URL: "http://127.0.0.1:1/"}
	cases := map[string]func(*loadgen.Options){
		"empty URL":          func(o *loadgen.Options) { o.URL = "" },
		"unparsable URL":     func(o *loadgen.Options) { o.URL = "http://[::1/secret" },
		"relative URL":       func(o *loadgen.Options) { o.URL = "/v1/secret" },
		"unsupported scheme": func(o *loadgen.Options) { o.URL = "ftp://host/secret" },
		"missing host":       func(o *loadgen.Options) { o.URL = "http:///secret" },
		"negative conns":     func(o *loadgen.Options) { o.Connections = -1 },
		"negative duration":  func(o *loadgen.Options) { o.Duration = -time.Second },
		"negative warmup":    func(o *loadgen.Options) { o.Warmup = -time.Second },
		"full URL in Paths":  func(o *loadgen.Options) { o.Paths = []string{"/ok", "http://elsewhere/secret"} },
		"relative path":      func(o *loadgen.Options) { o.Paths = []string{"secret"} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			o := valid
			mutate(&o)
			start := time.Now()
			_, err := loadgen.Run(context.Background(), o)
			if err == nil {
				t.Fatal("Run accepted bad options")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the URL: %q", err)
			}
			// Validation must happen before any load: the default run
			// would otherwise take 11s.
			if d := time.Since(start); d > time.Second {
				t.Errorf("bad options took %v to reject", d)
			}
		})
	}
}

// hangingServer never answers until the test ends or the client gives up,
// modelling requests that are in flight when a run stops.
func hangingServer(t *testing.T) *httptest.Server {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv
}

func TestRunCancelledContextReturnsPromptly(t *testing.T) {
	srv := hangingServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)

	start := time.Now()
	res, err := loadgen.Run(ctx, loadgen.Options{
		URL:         srv.URL,
		Connections: 8,
		Duration:    time.Minute,
		Warmup:      time.Millisecond,
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %v after cancellation at 50ms", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if res.Requests != 0 || res.Errors != 0 {
		t.Errorf("Requests=%d Errors=%d: aborted requests must not be counted", res.Requests, res.Errors)
	}
}

func TestRunAlreadyCancelledContext(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	start := time.Now()
	_, err := loadgen.Run(ctx, loadgen.Options{URL: srv.URL})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	// The default 11s run must not start at all.
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %v with an already cancelled context", d)
	}
}

func TestRunInFlightAtEndNotCounted(t *testing.T) {
	srv := hangingServer(t)
	start := time.Now()
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Connections: 4,
		Duration:    50 * time.Millisecond,
		Warmup:      time.Millisecond,
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %v for a 51ms run", d)
	}
	if err == nil || !strings.Contains(err.Error(), "no request completed") {
		t.Errorf("err = %v, want a no-request-completed error", err)
	}
	if res.Requests != 0 || res.Errors != 0 || len(res.Status) != 0 {
		t.Errorf("Requests=%d Errors=%d Status=%v, want nothing counted", res.Requests, res.Errors, res.Status)
	}
	if res.Elapsed != 50*time.Millisecond {
		t.Errorf("Elapsed = %v, want 50ms", res.Elapsed)
	}
}

func TestResultString(t *testing.T) {
	r := loadgen.Result{
		RPS:    12345.4,
		P50:    1234567 * time.Nanosecond,
		P90:    2 * time.Millisecond,
		P99:    3400 * time.Microsecond,
		Max:    10123456 * time.Nanosecond,
		Errors: 7,
	}
	want := "12345 req/s  p50=1.23ms p90=2ms p99=3.4ms max=10.1ms errors=7"
	if got := r.String(); got != want {
		t.Errorf("String() = %q\nwant       %q", got, want)
	}
	if got := (loadgen.Result{}).String(); got != "0 req/s  p50=0s p90=0s p99=0s max=0s errors=0" {
		t.Errorf("zero String() = %q", got)
	}
}

// pathCounter is a server that counts requests per path and query, answering 500 for the
// paths in fail and 401 without the expected header.
func pathCounter(t *testing.T, fail ...string) (*httptest.Server, func() map[string]int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.RequestURI()]++
		mu.Unlock()
		switch {
		case r.Header.Get("Authorization") != "Bearer abc":
			w.WriteHeader(http.StatusUnauthorized)
		case slices.Contains(fail, r.URL.Path):
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

func TestRunPathsRoundRobin(t *testing.T) {
	srv, seen := pathCounter(t)
	paths := []string{"/a?include=values", "/b", "/c/d%2Fe"}
	const conns = 4
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		URL:         srv.URL + "/ignored?x=1",
		Paths:       paths,
		Header:      http.Header{"Authorization": {"Bearer abc"}},
		Connections: conns,
		Duration:    testDuration,
		Warmup:      testWarmup,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Errors != 0 || res.Requests < 30 {
		t.Fatalf("Requests=%d Errors=%d, want many successes", res.Requests, res.Errors)
	}
	got := seen()
	if len(got) != len(paths) {
		t.Fatalf("server saw %v, want exactly %q", got, paths)
	}
	// Sent in turn, the counts differ by at most one; the server may miss up to one request
	// per connection cut off at the end.
	lo, hi := math.MaxInt, 0
	for _, p := range paths {
		lo, hi = min(lo, got[p]), max(hi, got[p])
	}
	if hi-lo > conns+1 {
		t.Errorf("counts per path %v are not round-robin", got)
	}
}

func TestSweepSendsEachPathOnce(t *testing.T) {
	srv, seen := pathCounter(t, "/p/7", "/p/8")
	paths := make([]string, 100)
	for i := range paths {
		paths[i] = "/p/" + strconv.Itoa(i)
	}
	res, err := loadgen.Sweep(context.Background(), loadgen.Options{
		URL:         srv.URL,
		Paths:       paths,
		Header:      http.Header{"Authorization": {"Bearer abc"}},
		Connections: 8,
		Duration:    time.Hour, // ignored: a sweep ends when every path has been sent
	})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	got := seen()
	for _, p := range paths {
		if got[p] != 1 {
			t.Errorf("%s requested %d times, want once", p, got[p])
		}
	}
	if len(got) != len(paths) {
		t.Errorf("server saw %d distinct paths, want %d", len(got), len(paths))
	}
	if res.Requests != 98 || res.Errors != 2 || res.Status[500] != 2 || res.Status[200] != 98 {
		t.Errorf("Requests=%d Errors=%d Status=%v, want 98 successes and 2 failures", res.Requests, res.Errors, res.Status)
	}
	if res.Elapsed <= 0 || res.RPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("Elapsed=%v RPS=%v p50=%v p99=%v", res.Elapsed, res.RPS, res.P50, res.P99)
	}
}

func TestSweepWithoutPathsSendsURLOnce(t *testing.T) {
	srv, seen := pathCounter(t)
	res, err := loadgen.Sweep(context.Background(), loadgen.Options{
		URL:         srv.URL + "/one?x=1",
		Header:      http.Header{"Authorization": {"Bearer abc"}},
		Connections: 4,
	})
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if got := seen(); len(got) != 1 || got["/one?x=1"] != 1 || res.Requests != 1 {
		t.Errorf("server saw %v, result %d requests; want /one?x=1 once", got, res.Requests)
	}
}
