// Package loadgen owns the closed-loop HTTP load generator behind
// `make bench`: a fixed set of workers, each on its own keep-alive
// connection, issue GETs back to back against one URL (or a list of paths
// on one host, in turn) and the package reports throughput, latency
// percentiles and failures for the measured window. It exists to compare
// endpoints (e.g. an audited secrets read against a bare handler) under
// identical client behaviour. Sweep is the single pass over the paths that
// measures a cold cache.
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
	"sync/atomic"
	"time"
)

const (
	defaultConnections = 64
	defaultDuration    = 10 * time.Second
	defaultWarmup      = time.Second
)

// Options configures a Run. Zero values select the documented defaults.
type Options struct {
	URL string
	// Paths, when not empty, replace URL's path and query: each request
	// takes the next of them (each a path with its query, if any) on URL's
	// scheme and host, round-robin over all workers. A load spread over many
	// resources (one read per environment) exercises caches as one URL
	// cannot.
	Paths       []string
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
	o, targets, err := opts.prepare()
	if err != nil {
		return Result{}, err
	}
	client, done := o.client()
	defer done()

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
		wg.Go(func() { w.run(runCtx, client, targets, from, until) })
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

	return res, outcome(ctx, res, workers)
}

// Sweep requests every target exactly once, URL alone or each of Paths in
// order, with Connections workers, and reports the whole pass (Duration and
// Warmup do not apply). It measures what a timed run buries under its later
// requests: the first read of each resource, as after a restart with empty
// caches. The errors are Run's.
func Sweep(ctx context.Context, opts Options) (Result, error) {
	o, targets, err := opts.prepare()
	if err != nil {
		return Result{}, err
	}
	client, done := o.client()
	defer done()

	start := time.Now()
	workers := make([]worker, min(o.Connections, len(targets.reqs)))
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.hist = newHistogram()
		w.status = make(map[int]int64)
		wg.Go(func() { w.sweep(ctx, client, targets) })
	}
	wg.Wait()
	res := merge(workers)
	res.Elapsed = time.Since(start)
	res.RPS = float64(res.Requests) / res.Elapsed.Seconds()
	return res, outcome(ctx, res, workers)
}

// outcome is the error a finished run returns with its result: the
// caller's cancellation, or the absence of any successful request.
func outcome(ctx context.Context, res Result, workers []worker) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if res.Requests == 0 {
		if res.Errors == 0 {
			return errors.New("loadgen: no request completed within the measured window")
		}
		return fmt.Errorf("loadgen: all %d requests failed; first failure: %v; status counts: %s",
			res.Errors, firstFailure(workers), formatStatus(res.Status))
	}
	return nil
}

// client is o.Client, or a new one sized for o.Connections; done releases
// what a new one holds.
func (o Options) client() (c *http.Client, done func()) {
	if o.Client != nil {
		return o.Client, func() {}
	}
	tr := newTransport(o.Connections)
	// Leaving idle keep-alive connections behind would leak one goroutine
	// pair per worker into whatever runs next.
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

// targets hands out the prepared requests in turn. One counter shared by
// all workers keeps the order round-robin over the whole list, whichever
// worker is free first, and tells Sweep when every request has been sent.
type targets struct {
	reqs []*http.Request
	next atomic.Uint64
}

// take returns the request for the n-th send (counting from 0) and that n.
func (t *targets) take() (*http.Request, uint64) {
	n := t.next.Add(1) - 1
	return t.reqs[n%uint64(len(t.reqs))], n
}

func (opts Options) prepare() (Options, *targets, error) {
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
	if len(o.Paths) == 0 {
		return o, &targets{reqs: []*http.Request{base}}, nil
	}
	t := &targets{reqs: make([]*http.Request, len(o.Paths))}
	for i, p := range o.Paths {
		// Parsed on their own (not resolved against URL) so that a path is
		// taken as written, and must be one: a full URL would send the
		// load, and the headers, elsewhere.
		pu, err := url.ParseRequestURI(p)
		if err != nil || pu.Scheme != "" || pu.Host != "" {
			return o, nil, fmt.Errorf("loadgen: Paths[%d] is not an absolute path", i)
		}
		r := base.Clone(context.Background())
		r.URL.Path, r.URL.RawPath, r.URL.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
		t.reqs[i] = r
	}
	return o, t, nil
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

func (w *worker) run(ctx context.Context, c *http.Client, t *targets, from, until time.Time) {
	for ctx.Err() == nil {
		base, _ := t.take()
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
		w.record(code, n, err, t0, t1)
	}
}

// sweep sends targets in turn until each has been sent once.
func (w *worker) sweep(ctx context.Context, c *http.Client, t *targets) {
	for ctx.Err() == nil {
		base, n := t.take()
		if n >= uint64(len(t.reqs)) {
			return
		}
		t0 := time.Now()
		code, size, err := fetch(c, base.Clone(ctx))
		if err != nil && ctx.Err() != nil {
			return
		}
		w.record(code, size, err, t0, time.Now())
	}
}

// record counts one request sent at t0 and answered (or failed) at t1.
func (w *worker) record(code int, n int64, err error, t0, t1 time.Time) {
	if err != nil {
		w.fail(t1, sanitize(err))
		return
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
