package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/events"
	"github.com/cofferhq/coffer/internal/httpapi"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/tenant"
	"github.com/cofferhq/coffer/internal/webhook"
	"github.com/cofferhq/coffer/web"
)

// Scope cache bounds (auth.ScopeCache). On Postgres, invalidations come from the listener,
// which must have proven within scopeFreshness that it hears every replica's changes; entries
// live scopeTTL at most as a backstop. On SQLite the server is the only process that writes,
// except the key subcommands, which tell it nothing: entries live scopeTTLSQLite.
const (
	scopeFreshness  = time.Second
	scopeTTL        = time.Minute
	scopeTTLSQLite  = time.Second
	scopeCacheLimit = 100_000
)

func newScopeCache(l *events.Listener, ttl time.Duration) *auth.ScopeCache {
	if l == nil {
		if ttl == 0 {
			ttl = scopeTTLSQLite
		}
		return auth.NewScopeCache(ttl, scopeCacheLimit, nil)
	}
	if ttl == 0 {
		ttl = scopeTTL
	}
	return auth.NewScopeCache(ttl, scopeCacheLimit, func() bool { return l.Fresh(scopeFreshness) })
}

// App is a running Coffer: listener bound, database migrated, key loaded.
type App struct {
	cfg      Config
	log      *slog.Logger
	Store    *store.Store
	batcher  *audit.Batcher
	listener net.Listener
	server   *http.Server
	rotator  *secrets.Rotator
	metrics  *metrics.Metrics
	// metricsAddr is the bound metrics listener, set once Serve has started it.
	metricsAddr chan string
	// Keys is the keyring: tests and the key subcommands reach rotation through it.
	Keys *secrets.Keyring
	// Fields seals instance-level secrets (OIDC client secrets, TOTP seeds, signing keys).
	Fields *secrets.Fields
	// SetupURL is the one-time setup link, empty once the instance is set up.
	SetupURL string
	// Auth is the identity service: users, tokens and sessions.
	Auth *auth.Service
	// Checkpoints signs the audit chains' checkpoints (in the background, and on demand).
	Checkpoints *audit.Checkpointer
	// Webhooks delivers events to projects' webhooks; Notify it when events commit.
	Webhooks *webhook.Dispatcher
	// Events fans committed events out to the live stream and wakes the webhooks.
	Events *events.Hub
	// Scopes caches what tokens resolve to for reads (auth.ScopeCache); nil when disabled.
	Scopes *auth.ScopeCache
	// pgListener hears other replicas' commits (Postgres only).
	pgListener *events.Listener
}

// Options are test and benchmark hooks; production leaves them zero.
type Options struct {
	// QueryHook sees every SQL statement (without values).
	QueryHook func(sql string)
	// KeyPolicy overrides secrets.DefaultKeyPolicy (tests roll keys after a few seals).
	KeyPolicy *secrets.KeyPolicy
	// JobLease overrides how long a key job's claim lasts without progress (tests of a
	// killed job resume quickly).
	JobLease time.Duration
	// AuditFlushDeadline overrides audit.DefaultFlushDeadline (tests of a hung database).
	AuditFlushDeadline time.Duration
	// DisableKeyCache makes every data-key lookup unwrap, each on its own (benchmarks and
	// tests that must see every unwrap).
	DisableKeyCache bool
	// Webhooks: WebhookRootCAs are the roots receivers' certificates must chain to (nil:
	// the system's); WebhookResolve replaces DNS for receivers' names (tests of rebinding);
	// WebhookDispatch overrides the dispatcher's timings (fast retries in tests).
	// EventQueue is each stream subscriber's buffer (0: the hub's default); tests of slow
	// subscribers make it small.
	EventQueue      int
	WebhookRootCAs  *x509.CertPool
	WebhookResolve  webhook.Resolver
	WebhookDispatch webhook.Options
	// ScopeCacheTTL overrides how long a scope cache entry may live (tests make it long, so
	// that only invalidations end one); DisableScopeCache turns the cache off.
	ScopeCacheTTL     time.Duration
	DisableScopeCache bool
	// EventsListenURL is where the Postgres listener connects instead of the database URL
	// (tests cut its connection through a proxy).
	EventsListenURL string
}

// New builds the whole program from cfg and binds its listener. Stdout receives the setup
// link; logs go to log.
func New(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer, opts Options) (*App, error) {
	st, err := store.Open(ctx, store.Options{
		URL:        cfg.DatabaseURL,
		SQLitePath: filepath.Join(cfg.DataDir, "coffer.db"),
		MaxConns:   cfg.DBMaxConns,
		QueryHook:  opts.QueryHook,
	})
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, Store: st}
	if err := a.build(ctx, stdout, opts); err != nil {
		_ = st.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) build(ctx context.Context, stdout io.Writer, opts Options) error {
	if err := a.migrate(ctx); err != nil {
		return err
	}
	var observe KeyObserver
	if a.cfg.MetricsListen != "" {
		a.metrics = metrics.New(metrics.Options{ClassifyError: classifyKeyError, Profiling: a.cfg.Profiling})
		observe = a.metrics.ObserveKMS
	}
	keyring, rotate, err := openKeyring(ctx, a.cfg, a.Store, a.log, observe, opts)
	if err != nil {
		return err
	}
	a.Keys = keyring
	a.Fields = secrets.NewFields(keyring, a.Store)
	keks := keyring.KEKs()
	policy := secrets.DefaultKeyPolicy
	if opts.KeyPolicy != nil {
		policy = *opts.KeyPolicy
	}
	a.rotator = secrets.NewRotator(a.Store, keyring, a.log, secrets.RotatorOptions{Batch: a.cfg.KeyJobBatch, Lease: opts.JobLease, MaxKeyAge: policy.MaxAge})
	if rotate {
		j, err := ensureRewrap(ctx, a.Store, a.rotator, keks.Current().KeyID())
		if err != nil {
			return err
		}
		a.log.Warn("data keys are wrapped under a previous key-encryption key; rewrapping them in the background", "job", j.ID)
	}
	if a.metrics != nil {
		a.metrics.RegisterKeyCache(keyring.Cache().Stats)
		a.metricsAddr = make(chan string, 1)
	}
	views, assets, err := web.Parse()
	if err != nil {
		return err
	}
	a.batcher = audit.NewBatcher(a.Store, 512, opts.AuditFlushDeadline)
	// Events: the store announces each commit that wrote events; services' Publish calls
	// wake the hub too. On Postgres, Serve also listens for other replicas' commits.
	a.Events = events.NewHub(a.Store, a.log, events.Options{Queue: opts.EventQueue})
	a.Store.OnEvents(func(tenants []string) {
		for _, t := range tenants {
			a.Events.Notify(t)
		}
	})
	pub := a.Events
	authSvc := auth.NewService(a.Store, store.NewID)
	authSvc.SetSessionPolicy(auth.SessionPolicy{Idle: a.cfg.SessionIdle, Absolute: a.cfg.SessionMaxAge})
	if a.Store.Dialect() == store.Postgres {
		url := a.cfg.DatabaseURL
		if opts.EventsListenURL != "" {
			url = opts.EventsListenURL
		}
		a.pgListener = &events.Listener{URL: url, Hub: a.Events, Log: a.log, ChangesChannel: store.ChangesChannel}
	}
	if !opts.DisableScopeCache {
		a.Scopes = newScopeCache(a.pgListener, opts.ScopeCacheTTL)
		a.Store.OnChange(func(tenants []string) {
			for _, t := range tenants {
				a.Scopes.Invalidate(t)
			}
		})
		if a.pgListener != nil {
			a.pgListener.Changed = a.Scopes.Invalidate
		}
		authSvc.SetScopeCache(a.Scopes)
		if a.metrics != nil {
			a.metrics.RegisterScopeCache(func() (uint64, uint64, uint64) {
				st := a.Scopes.Stats()
				return st.Hits, st.Misses, st.Bypassed
			})
		}
	}
	a.Auth = authSvc
	tenants := tenant.NewService(a.Store, keyring, pub, store.NewID)
	secretSvc := secrets.NewService(a.Store, keyring, a.batcher, pub, policy)

	a.listener, err = net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		a.batcher.Close()
		return fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	if a.cfg.BaseURL == "" {
		a.cfg.BaseURL = "http://" + a.listener.Addr().String()
	}
	setup, err := a.bootstrap(ctx, authSvc, stdout)
	if err != nil {
		a.batcher.Close()
		_ = a.listener.Close()
		return err
	}
	var sink *audit.DirSink
	if a.cfg.AuditSink != "" {
		sink = &audit.DirSink{Dir: a.cfg.AuditSink}
	}
	a.Checkpoints = audit.NewCheckpointer(a.Store, a.Fields, sink)
	if a.metrics != nil {
		a.metrics.RegisterAuditFailing(a.Checkpoints.Failing)
	}
	deps := httpapi.Deps{
		Log: a.log, Auth: authSvc, Tenants: tenants, Secrets: secretSvc, Setup: setup, Views: views, Static: web.Static(), Assets: assets,
		Keys: secrets.NewKeyAdmin(a.Store, keyring, a.rotator), AuditLog: a.Store, Auditor: a.batcher,
		Ready: func(ctx context.Context) error { return a.ready(ctx, keks) },
	}
	deps.Checkpoints, deps.AuditRecords = a.Checkpoints, a.Store
	if a.metrics != nil {
		deps.Metrics = a.metrics
	}
	// Sign-ins in progress are kept the same way for the instance's provider and tenants'.
	logins := auth.NewOIDC(a.Store, store.NewID, auth.SignupPolicy(a.cfg.OIDC.Signup))
	deps.Logins = logins
	deps.IdPs = auth.NewIdPs(a.Store, a.Fields, a.cfg.Dev)
	if o := a.cfg.OIDC; o.Issuer != "" {
		deps.OIDC = &httpapi.OIDCProvider{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Service: logins}
	}
	if a.cfg.LocalLogin {
		deps.Local = auth.NewLocal(a.Store, a.Fields, store.NewID)
	}
	// Webhooks: one guard checks receivers' addresses at registration and at every connection.
	guard := webhook.NewGuard(a.cfg.WebhookAllowPrivate, opts.WebhookResolve)
	whOpts := opts.WebhookDispatch
	whOpts.RootCAs = opts.WebhookRootCAs
	a.Webhooks = webhook.NewDispatcher(a.Store, a.Fields, guard, a.log, whOpts)
	deps.Webhooks = webhook.NewService(a.Store, a.Fields, guard, a.Webhooks, store.NewID)
	deps.Events = a.Events
	a.Events.Watch(a.Webhooks.Notify)
	handler := httpapi.New(httpapi.Config{BaseURL: a.cfg.BaseURL, BehindTLSProxy: a.cfg.BehindTLSProxy, TrustedProxies: a.cfg.TrustedProxies,
		LocalLogin: a.cfg.LocalLogin, Dev: a.cfg.Dev, AllowedOrigins: a.cfg.AllowedOrigins}, deps)
	if a.metrics != nil {
		a.metrics.RegisterEvents(func() (int64, int64, int64) {
			st := a.Events.Stats()
			return handler.StreamConnections(), st.Delivered, st.Dropped
		})
	}
	a.server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// migrate applies pending migrations. A database that is not reachable yet (a replica
// starting before Postgres, say) is waited for, with backoff, until ctx ends; any other
// failure stops the start.
func (a *App) migrate(ctx context.Context) error {
	delay := 250 * time.Millisecond
	for {
		applied, err := a.Store.Migrate(ctx)
		if err == nil {
			if len(applied) > 0 {
				a.log.Info("database migrated", "dialect", a.Store.Dialect(), "applied", applied)
			}
			return nil
		}
		if !store.Unavailable(err) {
			return err
		}
		a.log.Warn("database unavailable; waiting for it", "retry_in", delay.String(), "err", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for the database: %w", err)
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// ready reports whether the server can serve: the database answers and, with a remote key
// service, the current key-encryption key is usable.
func (a *App) ready(ctx context.Context, keks *crypto.KEKSet) error {
	if err := a.Store.Ready(ctx); err != nil {
		return err
	}
	if p, ok := keks.Current().(crypto.Prober); ok {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := p.Probe(ctx); err != nil {
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the key-encryption key is unavailable")
		}
	}
	return nil
}

// bootstrap creates the first owner from COFFER_BOOTSTRAP_TOKEN, or prints a one-time setup
// link. An instance that is already set up gets neither.
func (a *App) bootstrap(ctx context.Context, svc *auth.Service, stdout io.Writer) (*httpapi.Setup, error) {
	done, err := svc.Bootstrapped(ctx)
	if err != nil {
		return nil, err
	}
	if done {
		if a.cfg.BootstrapToken != "" {
			a.log.Info("instance already set up; COFFER_BOOTSTRAP_TOKEN is ignored")
		}
		return nil, nil
	}
	if a.cfg.BootstrapToken != "" {
		_, _, err := svc.Bootstrap(ctx, auth.BootstrapRequest{
			Email: a.cfg.BootstrapEmail, Name: "Owner", TenantSlug: "default", TenantName: "Default",
			Token: a.cfg.BootstrapToken,
		})
		if errors.Is(err, auth.ErrAlreadyBootstrapped) {
			return nil, nil // another replica won the race
		}
		if err != nil {
			return nil, fmt.Errorf("bootstrap from COFFER_BOOTSTRAP_TOKEN: %w", err)
		}
		a.log.Info("instance set up from COFFER_BOOTSTRAP_TOKEN", "email", a.cfg.BootstrapEmail, "tenant", "default")
		return nil, nil
	}
	setup, code, err := httpapi.NewSetup()
	if err != nil {
		return nil, err
	}
	a.SetupURL = a.cfg.BaseURL + "/setup?code=" + code
	fmt.Fprintf(stdout, "\nCoffer has no owner yet. Open this one-time link to create one:\n\n    %s\n\n", a.SetupURL)
	return setup, nil
}

// MetricsAddr waits for Serve to bind the metrics listener and returns its address; "" when
// metrics are off.
func (a *App) MetricsAddr() string {
	if a.metricsAddr == nil {
		return ""
	}
	addr := <-a.metricsAddr
	a.metricsAddr <- addr
	return addr
}

// rotationProgress reports a key job's progress to the metrics.
func (a *App) rotationProgress(j secrets.Job) {
	if a.metrics == nil {
		return
	}
	a.metrics.RotationProgress(j.Kind, j.Done, j.Total)
}

// Addr is the address the server listens on.
func (a *App) Addr() string { return a.listener.Addr().String() }

// Serve serves until ctx ends, then shuts down gracefully: in-flight requests finish, queued
// audit entries are written, connections close.
func (a *App) Serve(ctx context.Context) error {
	a.log.Info("coffer listening", "addr", a.Addr(), "database", a.Store.Dialect())
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var metricsSrv *metrics.Server
	if a.metrics != nil {
		var err error
		if metricsSrv, err = a.metrics.Serve(bg, a.cfg.MetricsListen, a.log); err != nil {
			stopBG()
			return fmt.Errorf("metrics listener: %w", err)
		}
		a.log.Info("metrics listening", "addr", metricsSrv.Addr())
		a.metricsAddr <- metricsSrv.Addr()
	}
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		a.rotator.Run(bg, 2*time.Second, a.rotationProgress)
	}()
	checkpointsDone := make(chan struct{})
	go func() {
		defer close(checkpointsDone)
		a.Checkpoints.Run(bg, a.cfg.AuditCheckpointInterval, a.log)
	}()
	verifierDone := make(chan struct{})
	go func() {
		defer close(verifierDone)
		a.Checkpoints.RunVerifier(bg, a.cfg.AuditVerifyInterval, a.log)
	}()
	webhooksDone := make(chan struct{}) // Webhooks.
	go func() {
		defer close(webhooksDone)
		a.Webhooks.Run(bg)
	}()
	// The event hub stops first at shutdown, so that streams (which http.Server.Shutdown
	// does not end: WebSockets are hijacked, SSE never finishes) close with 1001 at once.
	hubCtx, stopHub := context.WithCancel(bg)
	a.server.RegisterOnShutdown(stopHub)
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		var wg sync.WaitGroup
		wg.Go(func() { a.Events.Run(hubCtx) })
		if a.pgListener != nil {
			wg.Go(func() { a.pgListener.Run(hubCtx) })
		}
		wg.Go(func() { a.pruneEvents(hubCtx) })
		wg.Wait()
	}()
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(a.listener) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		err = a.server.Shutdown(shutdownCtx)
		<-errc
	}
	// A key job stops between batches (its checkpoint is committed) and resumes on next start.
	stopHub()
	<-eventsDone
	stopBG()
	<-jobsDone
	<-checkpointsDone
	<-verifierDone
	<-webhooksDone
	if metricsSrv != nil {
		_ = metricsSrv.Wait()
	}
	a.batcher.Close()
	if cerr := a.Store.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	a.log.Info("coffer stopped")
	return err
}

// pruneEvents applies the events table's retention every hour (and at start).
func (a *App) pruneEvents(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := a.Store.PruneEvents(ctx, a.cfg.EventRetention, a.cfg.EventMaxRows); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("events: retention failed; retrying in an hour", "err", err)
			}
		} else if n > 0 {
			a.log.Info("events: retention removed old events", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// TuneRuntime sets the garbage collector for a server whose live heap is small but whose
// requests allocate quickly: collecting at 4x the live heap instead of 2x halves GC work for
// a few more megabytes. An explicit GOGC in the environment wins.
func TuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}
