package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cofferhq/coffer"
)

// Event is a stored event with the slugs of what it names, as a delivery's body carries it.
// Slugs are those at dispatch time; "" when the object is gone.
type Event struct {
	coffer.Event
	TenantSlug      string
	ProjectSlug     string
	EnvironmentSlug string
}

// Claim is a due delivery this process has claimed, with what it takes to make it.
type Claim struct {
	Delivery
	Token    string // the claim; recording an attempt needs it to still hold
	TenantID string
	URL      string
	Sealed   []byte // the webhook's sealed signing secret
	Payload  []byte
}

// Attempt is one try at a delivery.
type Attempt struct {
	At         time.Time
	StatusCode int    // the receiver's answer; 0 if none
	Error      string // why it failed; "" if delivered
	Duration   time.Duration
}

// Queue is the dispatcher's storage: the cursor of every webhook over the events table, and
// the deliveries.
type Queue interface {
	// WebhookTenants lists the tenants that have webhooks.
	WebhookTenants(ctx context.Context) ([]string, error)
	// WebhooksBehind lists the webhooks whose tenant has events after their cursor.
	WebhooksBehind(ctx context.Context) ([]string, error)
	// DispatchWebhook reads, in one transaction, up to limit events of the webhook's tenant
	// after its cursor, inserts a pending delivery due at now for each that the webhook
	// wants and that names its project (body gives its payload), and advances the cursor
	// past all of them. A webhook another replica is dispatching is skipped. It returns how
	// many events it read.
	DispatchWebhook(ctx context.Context, id string, limit int, now time.Time, body func(Webhook, Event) ([]byte, error)) (int, error)
	// ClaimDeliveries claims up to limit pending deliveries due at now, of webhooks not in
	// exclude, by moving their next attempt to now+lease under a new claim token; on
	// Postgres, rows other replicas hold are skipped (FOR UPDATE SKIP LOCKED).
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int, exclude []string) ([]Claim, error)
	// RecordAttempt records a and the delivery's new state (status, next attempt) if c's
	// claim still holds; a claim lost (lease expired, webhook deleted) records nothing.
	RecordAttempt(ctx context.Context, c Claim, a Attempt, status string, next *time.Time) error
	// ReleaseClaim makes a claimed delivery due again at once without counting an attempt.
	ReleaseClaim(ctx context.Context, c Claim) error
	// PruneDeliveries deletes deliveries finished (delivered or failed) before the time.
	PruneDeliveries(ctx context.Context, before time.Time) (int64, error)
}

// Options tune the dispatcher; zero values take the defaults.
type Options struct {
	Poll      time.Duration // how often to look for events and due retries without a Notify (2s)
	IdlePoll  time.Duration // the same while no tenant has a webhook (30s)
	Timeout   time.Duration // one attempt, connecting included (10s)
	RetryBase time.Duration // the first retry's delay, doubled after each failure (10s)
	RetryMax  time.Duration // the longest delay between attempts (1h)
	GiveUp    time.Duration // a delivery is failed this long after its event (24h)
	Lease     time.Duration // how long a claim keeps other replicas off a delivery (2m)
	Workers   int           // webhooks delivered to at once by this process (8)
	Keep      time.Duration // finished deliveries are kept this long (30 days)
	// RootCAs, when set, are the roots receivers' certificates must chain to (tests);
	// nil is the system's.
	RootCAs *x509.CertPool
}

func (o *Options) defaults() {
	set := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	set(&o.Poll, 2*time.Second)
	set(&o.IdlePoll, 30*time.Second)
	set(&o.Timeout, 10*time.Second)
	set(&o.RetryBase, 10*time.Second)
	set(&o.RetryMax, time.Hour)
	set(&o.GiveUp, 24*time.Hour)
	set(&o.Lease, 2*time.Minute)
	set(&o.Keep, 30*24*time.Hour)
	if o.Workers <= 0 {
		o.Workers = 8
	}
}

// dispatchBatch is how many events one dispatch transaction reads.
const dispatchBatch = 500

// Dispatcher turns committed events into deliveries and makes them. It is driven by the
// events table, not by memory: a restart, or a Notify that never came, loses nothing.
type Dispatcher struct {
	queue  Queue
	seal   Sealer
	client *http.Client
	log    *slog.Logger
	opts   Options
	wake   chan struct{}

	mu   sync.Mutex
	busy map[string]bool // webhooks with a delivery in flight in this process
	// tenants have webhooks, as of the last look (nil before it): Notify for any other
	// tenant costs nothing, and with none at all the dispatcher looks rarely.
	tenants map[string]bool
}

// NewDispatcher returns a dispatcher whose connections pass through guard.
func NewDispatcher(queue Queue, seal Sealer, guard *Guard, log *slog.Logger, opts Options) *Dispatcher {
	opts.defaults()
	transport := &http.Transport{
		// No proxy from the environment: it would connect on Coffer's behalf, past the guard.
		Proxy:                 nil,
		DialContext:           guard.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		// A redirect is an answer, not a 2xx: following it would send the signed body
		// somewhere the admin did not register.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Dispatcher{queue: queue, seal: seal, client: client, log: log, opts: opts,
		wake: make(chan struct{}, 1), busy: map[string]bool{}}
}

// Notify tells the dispatcher that a tenant has new events. It never blocks; wake-ups that
// arrive while one is pending are merged, and those for a tenant without webhooks are
// ignored.
func (d *Dispatcher) Notify(tenantID string) {
	d.mu.Lock()
	wanted := d.tenants == nil || d.tenants[tenantID]
	d.mu.Unlock()
	if wanted {
		d.poke()
	}
}

// Watch tells the dispatcher that a tenant has a new webhook, so that its events are
// dispatched at once rather than after the next look at the webhooks. Other replicas learn
// of it within IdlePoll; until then this one delivers for them all.
func (d *Dispatcher) Watch(tenantID string) {
	d.mu.Lock()
	if d.tenants == nil {
		d.tenants = map[string]bool{}
	}
	d.tenants[tenantID] = true
	d.mu.Unlock()
	d.poke()
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// refresh looks up which tenants have webhooks; false if none (or the lookup failed).
func (d *Dispatcher) refresh(ctx context.Context) bool {
	ids, err := d.queue.WebhookTenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "webhooks: listing tenants with webhooks failed", "err", err)
		}
		return true // look again at the short interval
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	found := len(m) > 0
	d.mu.Lock()
	d.tenants = m // Watch adds to it from now on
	d.mu.Unlock()
	return found
}

// Run dispatches and delivers until ctx ends, then waits for attempts in flight (which end
// with ctx) and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var pruned time.Time
	for {
		wait := d.opts.IdlePoll
		if d.refresh(ctx) {
			wait = d.opts.Poll
			d.dispatch(ctx)
			d.deliver(ctx, &wg)
			if now := time.Now(); now.Sub(pruned) > time.Hour {
				pruned = now
				if n, err := d.queue.PruneDeliveries(ctx, now.Add(-d.opts.Keep)); err != nil && ctx.Err() == nil {
					d.log.WarnContext(ctx, "webhooks: pruning finished deliveries failed", "err", err)
				} else if n > 0 {
					d.log.InfoContext(ctx, "webhooks: pruned finished deliveries", "deliveries", n)
				}
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// dispatch creates the deliveries of every webhook that has events to look at.
func (d *Dispatcher) dispatch(ctx context.Context) {
	ids, err := d.queue.WebhooksBehind(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "webhooks: listing webhooks with new events failed", "err", err)
		}
		return
	}
	for _, id := range ids {
		// A webhook far behind is caught up over several rounds, so deliveries keep going.
		for range 20 {
			n, err := d.queue.DispatchWebhook(ctx, id, dispatchBatch, time.Now().UTC(), Body)
			if err != nil {
				if ctx.Err() == nil {
					d.log.WarnContext(ctx, "webhooks: dispatching events failed", "webhook", id, "err", err)
				}
				break
			}
			if n < dispatchBatch {
				break
			}
		}
	}
}

// deliver claims due deliveries and makes them, one goroutine per webhook, so that a slow or
// dead receiver holds up only its own deliveries.
func (d *Dispatcher) deliver(ctx context.Context, wg *sync.WaitGroup) {
	d.mu.Lock()
	free := d.opts.Workers - len(d.busy)
	exclude := make([]string, 0, len(d.busy))
	for id := range d.busy {
		exclude = append(exclude, id)
	}
	d.mu.Unlock()
	if free <= 0 || ctx.Err() != nil {
		return
	}
	claims, err := d.queue.ClaimDeliveries(ctx, time.Now().UTC(), d.opts.Lease, 2*free, exclude)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "webhooks: claiming due deliveries failed", "err", err)
		}
		return
	}
	groups := map[string][]Claim{}
	var order []string
	for _, c := range claims {
		if _, ok := groups[c.WebhookID]; !ok {
			order = append(order, c.WebhookID)
		}
		groups[c.WebhookID] = append(groups[c.WebhookID], c)
	}
	d.mu.Lock()
	for _, id := range order {
		d.busy[id] = true
	}
	d.mu.Unlock()
	for _, id := range order {
		wg.Add(1)
		go func(group []Claim) {
			defer wg.Done()
			defer func() {
				d.mu.Lock()
				delete(d.busy, group[0].WebhookID)
				d.mu.Unlock()
				d.poke() // a worker is free: look for more
			}()
			for _, c := range group {
				d.make(ctx, c)
			}
		}(groups[id])
	}
}

// make attempts one claimed delivery and records the attempt. An attempt cut short by
// shutdown is not counted: the claim is released for the next start, or another replica.
func (d *Dispatcher) make(ctx context.Context, c Claim) {
	a := d.attempt(ctx, c)
	// What happened is written even if shutdown begins now: a claim left behind would keep
	// the delivery waiting for its lease.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		if err := d.queue.ReleaseClaim(rctx, c); err != nil {
			d.log.WarnContext(rctx, "webhooks: releasing a claimed delivery failed", "delivery", c.ID, "err", err)
		}
		return
	}
	status, next := StatusDelivered, (*time.Time)(nil)
	if a.Error != "" {
		status, next = d.retry(c, a.At)
	}
	if err := d.queue.RecordAttempt(rctx, c, a, status, next); err != nil {
		d.log.WarnContext(rctx, "webhooks: recording an attempt failed", "delivery", c.ID, "err", err)
	}
	if status == StatusFailed {
		d.log.WarnContext(ctx, "webhooks: delivery failed for good", "webhook", c.WebhookID, "event", c.EventID, "attempts", c.Attempts+1, "err", a.Error)
	}
}

// retry is a failed attempt's outcome: pending again after the backoff, or failed once the
// next attempt would fall past GiveUp after the event.
func (d *Dispatcher) retry(c Claim, at time.Time) (string, *time.Time) {
	next := at.Add(Backoff(c.Attempts+1, d.opts.RetryBase, d.opts.RetryMax))
	if next.After(c.EventAt.Add(d.opts.GiveUp)) {
		return StatusFailed, nil
	}
	return StatusPending, &next
}

// Backoff is the delay after the n-th failed attempt (n >= 1): base doubled n-1 times,
// capped at max, with "equal jitter" (a random point in its upper half) so that receivers
// coming back are not hit by every retry at once.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := max
	if n < 40 {
		if e := base << (n - 1); e > 0 && e < max {
			d = e
		}
	}
	// The jitter is not a secret: math/rand is fine here.
	return d/2 + rand.N(d/2+1)
}

// attempt POSTs the signed payload once.
func (d *Dispatcher) attempt(ctx context.Context, c Claim) Attempt {
	start := time.Now()
	a := Attempt{At: start.UTC()}
	secret, err := d.seal.Open(ctx, SecretPurpose, c.WebhookID, c.Sealed)
	if err != nil {
		a.Error = "the signing secret could not be opened: " + coffer.ErrorMessage(err)
		a.Duration = time.Since(start)
		return a
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Payload))
	if err != nil {
		a.Error = "the webhook's URL cannot be requested"
		a.Duration = time.Since(start)
		return a
	}
	eventID := strconv.FormatInt(c.EventID, 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Coffer-Webhooks/1")
	req.Header.Set(HeaderSignature, Sign(string(secret), time.Now(), c.Payload))
	req.Header.Set(HeaderEventID, eventID)
	req.Header.Set(HeaderEventType, c.EventType)
	req.Header.Set(HeaderWebhookID, c.WebhookID)
	res, err := d.client.Do(req)
	if err != nil {
		a.Error = describe(err, d.opts.Timeout)
		a.Duration = time.Since(start)
		return a
	}
	// Read a little of the answer, so that the connection can be reused; keep none of it.
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	a.StatusCode, a.Duration = res.StatusCode, time.Since(start)
	if res.StatusCode < 200 || res.StatusCode > 299 {
		a.Error = fmt.Sprintf("the receiver answered %d %s", res.StatusCode, http.StatusText(res.StatusCode))
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			a.Error += " (redirects are not followed)"
		}
	}
	return a
}

// describe turns a transport error into what the delivery records: no URL (it may hold a
// receiver's token in its query), bounded.
func describe(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %s", timeout)
		}
		err = ue.Err
	}
	msg := err.Error()
	if errors.Is(err, errRefused) {
		// The guard's own words, without the dialler's wrapping.
		for u := err; u != nil; u = errors.Unwrap(u) {
			if errors.Is(u, errRefused) && u != errRefused {
				msg = u.Error()
			}
		}
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}

// body is what a delivery sends: the event, never a value.
type body struct {
	ID          int64      `json:"id"`
	Type        string     `json:"type"`
	OccurredAt  time.Time  `json:"occurred_at"`
	Tenant      objectRef  `json:"tenant"`
	Project     *objectRef `json:"project,omitempty"`
	Environment *objectRef `json:"environment,omitempty"`
	Name        string     `json:"name,omitempty"`
	Version     int        `json:"version,omitempty"`
	Actor       actorRef   `json:"actor"`
	Target      *actorRef  `json:"target,omitempty"`
}

type objectRef struct {
	ID   string `json:"id"`
	Slug string `json:"slug,omitempty"`
}

type actorRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Body is the JSON a webhook is sent for an event (docs/webhooks.md).
func Body(_ Webhook, ev Event) ([]byte, error) {
	b := body{ID: ev.ID, Type: ev.Type, OccurredAt: ev.OccurredAt.UTC(), Tenant: objectRef{ID: ev.TenantID, Slug: ev.TenantSlug},
		Name: ev.Name, Version: ev.Version, Actor: actorRef{Type: ev.ActorType, ID: ev.ActorID}}
	if ev.ProjectID != "" {
		b.Project = &objectRef{ID: ev.ProjectID, Slug: ev.ProjectSlug}
	}
	if ev.EnvironmentID != "" {
		b.Environment = &objectRef{ID: ev.EnvironmentID, Slug: ev.EnvironmentSlug}
	}
	if ev.TargetType != "" || ev.TargetID != "" {
		b.Target = &actorRef{Type: ev.TargetType, ID: ev.TargetID}
	}
	return json.Marshal(b)
}
