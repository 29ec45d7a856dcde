// Package loadgen owns the closed-loop HTTP load generator behind
// `make bench`: a fixed set of workers, each on its own keep-alive
// connection, issue GETs back to back against one URL and the package
// reports throughput, latency percentiles and failures for the measured
// window. It exists to compare endpoints (e.g. an audited secrets read
// against a bare handler) under identical client behaviour.
//
// The target URL and request headers routinely carry credentials, so
// nothing in this package prints, logs or embeds them in errors.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	defaultConnections = 64
	defaultDuration    = 10 * time.Second
	defaultWarmup      = time.Second
)

// Options configures a Run. Zero values select the documented defaults.
type Options struct {
	URL         string
	Header      http.Header   // e.g. Authorization; never printed
	Connections int           // concurrent workers, each with its own keep-alive connection (default 64)
	Duration    time.Duration // measured time (default 10s)
	Warmup      time.Duration // requests during warmup are not recorded (default 1s)
	// Client is optional. The default uses a Transport with
	// MaxIdleConnsPerHost=MaxConnsPerHost=Connections, no proxy and no
	// compression, speaking HTTP/1.1 only.
	Client *http.Client
}

// Result summarises the measured window. A request belongs to the window
// when its response body finished within it; Status therefore counts only
// fully read responses, so Requests equals the 2xx entries of Status and
// Errors equals the non-2xx entries plus transport failures.
type Result struct {
	Requests int64         // successful (2xx) requests in the measured window
	Errors   int64         // transport errors and non-2xx responses
	Status   map[int]int64 // counts per HTTP status
	Elapsed  time.Duration
	RPS      float64 // Requests / Elapsed seconds
	// Latency percentiles cover successful requests only, so a fast error
	// path cannot flatter the numbers being compared.
	P50, P90, P99, Max time.Duration
	Bytes              int64 // body bytes read
}

// String formats the result on one line for bench output.
func (r Result) String() string {
	return fmt.Sprintf("%.0f req/s  p50=%s p90=%s p99=%s max=%s errors=%d",
		r.RPS, round3(r.P50), round3(r.P90), round3(r.P99), round3(r.Max), r.Errors)
}

// round3 keeps three significant digits: full nanosecond precision is noise
// in a latency report and makes columns hard to compare by eye.
func round3(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	return d.Round(unit)
}

// Run drives load until opts.Warmup+opts.Duration has passed or ctx is
// cancelled, then returns what was measured. Failed requests are counted,
// not fatal. The error is non-nil when the options are invalid, when no
// request in the measured window succeeded, or when ctx was cancelled (the
// partial Result is still returned so a caller can report it).
func Run(ctx context.Context, opts Options) (Result, error) {
	o, base, err := opts.prepare()
	if err != nil {
		return Result{}, err
	}
	client := o.Client
	if client == nil {
		tr := newTransport(o.Connections)
		// Leaving idle keep-alive connections behind would leak one
		// goroutine pair per worker into whatever runs next.
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}

	start := time.Now()
	from := start.Add(o.Warmup)
	until := from.Add(o.Duration)
	// The deadline aborts requests still in flight at the end, which is both
	// what makes Run stop promptly and why such requests go uncounted.
	runCtx, cancel := context.WithDeadline(ctx, until)
	defer cancel()

	workers := make([]worker, o.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.hist = newHistogram()
		w.status = make(map[int]int64)
		wg.Go(func() { w.run(runCtx, client, base, from, until) })
	}
	wg.Wait()

	res := merge(workers)
	stop := time.Now()
	if stop.After(until) {
		stop = until
	}
	if stop.After(from) {
		res.Elapsed = stop.Sub(from)
		res.RPS = float64(res.Requests) / res.Elapsed.Seconds()
	}

	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Requests == 0 {
		if res.Errors == 0 {
			return res, errors.New("loadgen: no request completed within the measured window")
		}
		return res, fmt.Errorf("loadgen: all %d requests failed; first failure: %v; status counts: %s",
			res.Errors, firstFailure(workers), formatStatus(res.Status))
	}
	return res, nil
}

func (opts Options) prepare() (Options, *http.Request, error) {
	o := opts
	if o.URL == "" {
		return o, nil, errors.New("loadgen: URL is required")
	}
	// url.Parse errors quote the input, which may hold a token, so only
	// the reason is kept.
	u, err := url.Parse(o.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return o, nil, fmt.Errorf("loadgen: invalid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return o, nil, errors.New("loadgen: URL scheme must be http or https")
	}
	if u.Host == "" {
		return o, nil, errors.New("loadgen: URL has no host")
	}
	switch {
	case o.Connections < 0:
		return o, nil, errors.New("loadgen: Connections must not be negative")
	case o.Duration < 0:
		return o, nil, errors.New("loadgen: Duration must not be negative")
	case o.Warmup < 0:
		return o, nil, errors.New("loadgen: Warmup must not be negative")
	}
	if o.Connections == 0 {
		o.Connections = defaultConnections
	}
	if o.Duration == 0 {
		o.Duration = defaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = defaultWarmup
	}

	base, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return o, nil, fmt.Errorf("loadgen: invalid URL: %v", sanitize(err))
	}
	if o.Header != nil {
		base.Header = o.Header.Clone()
	}
	// The client ignores a Host entry in Header; honour it the way a user
	// setting it would expect, e.g. to hit a virtual host by IP.
	if h := base.Header.Get("Host"); h != "" {
		base.Host = h
		base.Header.Del("Host")
	}
	return o, base, nil
}

func newTransport(conns int) *http.Transport {
	tr := &http.Transport{
		// Benchmarks run against a local or directly reachable server; an
		// ambient HTTP_PROXY would silently measure the proxy instead.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		// Gzip would add client CPU that differs with payload, skewing a
		// comparison between endpoints.
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	// HTTP/2 would multiplex every worker onto one connection, defeating
	// the one-connection-per-worker model the numbers assume.
	tr.Protocols.SetHTTP1(true)
	return tr
}

// worker holds everything one goroutine records, so the hot loop touches
// no shared state.
type worker struct {
	hist     *histogram
	status   map[int]int64
	ok       int64
	errs     int64
	bytes    int64
	firstErr error
	firstAt  time.Time
}

func (w *worker) run(ctx context.Context, c *http.Client, base *http.Request, from, until time.Time) {
	for ctx.Err() == nil {
		// Clone per request: a Client with a cookie jar mutates the request
		// headers, and the base is shared by all workers.
		req := base.Clone(ctx)
		t0 := time.Now()
		code, n, err := fetch(c, req)
		t1 := time.Now()
		if err != nil && ctx.Err() != nil {
			// Aborted by the end of the run or by the caller, not a failure
			// of the server.
			return
		}
		if t1.Before(from) || !t1.Before(until) {
			continue
		}
		if err != nil {
			w.fail(t1, sanitize(err))
			continue
		}
		w.status[code]++
		w.bytes += n
		if code >= 200 && code < 300 {
			w.ok++
			w.hist.record(t1.Sub(t0))
		} else {
			w.fail(t1, fmt.Errorf("HTTP status %d %s", code, http.StatusText(code)))
		}
	}
}

func (w *worker) fail(at time.Time, err error) {
	w.errs++
	if w.firstErr == nil {
		w.firstErr, w.firstAt = err, at
	}
}

func fetch(c *http.Client, req *http.Request) (code int, n int64, err error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	// The body must be drained, not just closed, or the connection cannot
	// be reused and every request would pay for a new dial.
	n, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, n, fmt.Errorf("reading body: %w", err)
	}
	return resp.StatusCode, n, nil
}

// sanitize strips the *url.Error wrapper, whose message quotes the full
// URL (query string included) and so could leak a credential.
func sanitize(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func merge(workers []worker) Result {
	res := Result{Status: make(map[int]int64)}
	hist := newHistogram()
	for i := range workers {
		w := &workers[i]
		res.Requests += w.ok
		res.Errors += w.errs
		res.Bytes += w.bytes
		for code, c := range w.status {
			res.Status[code] += c
		}
		hist.merge(w.hist)
	}
	res.P50 = hist.quantile(0.50)
	res.P90 = hist.quantile(0.90)
	res.P99 = hist.quantile(0.99)
	res.Max = hist.max
	return res
}

func firstFailure(workers []worker) error {
	var first *worker
	for i := range workers {
		w := &workers[i]
		if w.firstErr != nil && (first == nil || w.firstAt.Before(first.firstAt)) {
			first = w
		}
	}
	if first == nil {
		return nil
	}
	return first.firstErr
}

func formatStatus(status map[int]int64) string {
	if len(status) == 0 {
		return "none"
	}
	codes := make([]int, 0, len(status))
	for code := range status {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	parts := make([]string, len(codes))
	for i, code := range codes {
		parts[i] = fmt.Sprintf("%d:%d", code, status[code])
	}
	return strings.Join(parts, " ")
}
