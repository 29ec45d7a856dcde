// Package httpapi is the only package that speaks HTTP: the route table, middleware, request
// and response shapes, and the one mapping from domain errors to status codes. Handlers
// resolve the object a URL names, check the caller's permission on that object, and call the
// domain services.
package httpapi

import (
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/events"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
	"github.com/cofferhq/coffer/internal/webhook"
)

// Config holds the HTTP settings.
type Config struct {
	// BaseURL is how users reach the server, used in printed links.
	BaseURL string
	// BehindTLSProxy says a TLS-terminating proxy fronts the server: HSTS is sent.
	BehindTLSProxy bool
	MaxBodyBytes   int64
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed; empty: none, the
	// client is the peer.
	TrustedProxies []string
	// MaxBulkBodyBytes bounds bulk secret writes, which carry many values.
	MaxBulkBodyBytes int64
	// LocalLogin turns on e-mail and password sign-in (with Deps.Local); off, its pages and
	// endpoints answer 404.
	LocalLogin bool
	// Dev is development mode: tenants' providers may then be on private addresses.
	Dev bool
	// AllowedOrigins are origins besides the base URL's whose pages may open the event
	// stream (scheme://host[:port]).
	AllowedOrigins []string
}

// Auditor appends audit entries durably (the group-commit batcher).
type Auditor interface {
	Append(ctx context.Context, entries ...audit.Entry) error
}

// Readiness reports whether the server can serve: database reachable, migrations applied,
// key loaded.
type Readiness func(ctx context.Context) error

// Server serves the REST API and the pages.
type Server struct {
	cfg      Config
	log      *slog.Logger
	auth     *auth.Service
	tenants  *tenant.Service
	secrets  *secrets.Service
	keyAdmin *secrets.KeyAdmin
	auditLog audit.Log
	// checkpoints signs and checks the audit chains' checkpoints; auditRecords exports them.
	checkpoints  AuditCheckpoints
	auditRecords AuditRecords
	// auditor records refused attempts on secrets (recordDenied), at most deniedLimiter's
	// rate per principal.
	auditor       Auditor
	deniedLimiter *attemptLimiter
	ready         Readiness
	setup         *Setup
	views         *template.Template
	static        fs.FS
	assets        Assets
	authLimiter   *attemptLimiter
	// mintLimiter bounds how fast one user creates tokens and users (credentials).
	mintLimiter *attemptLimiter
	metrics     HTTPObserver // nil: no metrics
	local       *localLogin  // nil: local accounts are off
	oidc        *oidcLogin   // nil: no OpenID provider configured
	// logins keeps sign-ins in progress, through any provider.
	logins *auth.OIDC
	// idps runs tenants' own providers; tenantIdPs keeps their discovery; idpStarts limits
	// sign-ins started through them per address.
	idps       *auth.IdPs
	tenantIdPs *tenantProviders
	idpStarts  *attemptLimiter
	// deviceStarts limits device sign-ins started per address.
	deviceStarts *attemptLimiter
	// webhooks manages projects' webhooks.
	webhooks *webhook.Service
	// secureCookies says the base URL is HTTPS: cookies get Secure and the __Host- prefix.
	secureCookies bool
	// bodyLimits are the routes ("METHOD /path/:param") that take more than MaxBodyBytes.
	bodyLimits map[string]int64
	// cop refuses cross-origin state-changing browser requests.
	cop    *http.CrossOriginProtection
	engine *gin.Engine
	// hub feeds the event stream (nil: the stream answers 503); hubStopped closes with it.
	hub        *events.Hub
	hubStopped <-chan struct{}
	// streamConns counts open stream connections, for /metrics.
	streamConns atomic.Int64
}

// Deps are the services the server calls.
type Deps struct {
	Log     *slog.Logger
	Auth    *auth.Service
	Tenants *tenant.Service
	Secrets *secrets.Service
	Keys    *secrets.KeyAdmin
	Ready   Readiness
	Setup   *Setup
	Views   *template.Template
	Static  fs.FS
	// Assets names the static files by content (web.Assets); nil serves plain names only.
	Assets Assets
	// Metrics, when set, is told of every request by route template and status. Leave it
	// nil, not a typed nil pointer, to record nothing.
	Metrics HTTPObserver
	// Local signs users in with e-mail and password (used when Config.LocalLogin is set).
	Local *auth.Local
	// AuditLog reads and verifies the audit chains.
	AuditLog audit.Log
	// Checkpoints signs, lists and verifies the chains' checkpoints; AuditRecords reads
	// entries as stored, for export.
	Checkpoints  AuditCheckpoints
	AuditRecords AuditRecords
	// Auditor appends entries that belong to no change (refused attempts).
	Auditor Auditor
	// OIDC, when set, is the OpenID provider browsers sign in with.
	OIDC *OIDCProvider
	// Logins keeps sign-ins in progress (with or without OIDC); IdPs runs tenants' own
	// providers. Both are needed for tenants' providers.
	Logins *auth.OIDC
	IdPs   *auth.IdPs
	// Webhooks manages projects' webhooks.
	Webhooks *webhook.Service
	// Events feeds the live event stream.
	Events *events.Hub
}

// New builds the server and its route table.
func New(cfg Config, d Deps) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxBulkBodyBytes <= 0 {
		cfg.MaxBulkBodyBytes = 16 << 20
	}
	s := &Server{
		cfg: cfg, log: d.Log, auth: d.Auth, tenants: d.Tenants, secrets: d.Secrets, ready: d.Ready,
		setup: d.Setup, views: d.Views, static: d.Static, assets: d.Assets, authLimiter: newAttemptLimiter(30, 20), mintLimiter: newAttemptLimiter(20, 20),
		metrics: d.Metrics, keyAdmin: d.Keys, auditLog: d.AuditLog, checkpoints: d.Checkpoints, auditRecords: d.AuditRecords, auditor: d.Auditor, deniedLimiter: newAttemptLimiter(20, 20),
		secureCookies: strings.HasPrefix(cfg.BaseURL, "https://"), cop: http.NewCrossOriginProtection(),
	}
	// Behind a proxy that rewrites Host, the Origin browsers send is the base URL's.
	if cfg.BaseURL != "" {
		if err := s.cop.AddTrustedOrigin(strings.TrimSuffix(cfg.BaseURL, "/")); err != nil {
			panic(fmt.Sprintf("httpapi: base URL %q is not an origin: %v", cfg.BaseURL, err))
		}
	}
	s.oidc = newOIDCLogin(cfg.BaseURL, d.OIDC)
	if d.Events != nil {
		s.hub, s.hubStopped = d.Events, d.Events.Stopped()
	}
	s.logins, s.idps = d.Logins, d.IdPs
	s.webhooks = d.Webhooks // Webhooks.
	if s.logins == nil && d.OIDC != nil {
		s.logins = d.OIDC.Service
	}
	s.tenantIdPs = &tenantProviders{client: newProviderClient(cfg.Dev), byKey: map[string]*discovery{}}
	s.idpStarts = newAttemptLimiter(60, 30)
	s.deviceStarts = newAttemptLimiter(20, 10)
	if cfg.LocalLogin {
		s.local = newLocalLogin(d.Local)
	}
	s.engine = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// routes is the route table, grouped by who may call.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	s.bodyLimits = map[string]int64{}
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	// Only configured proxies are believed: behind one, the client is the rightmost address in
	// X-Forwarded-For that is not itself a trusted proxy; otherwise it is the peer.
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		// Config validates the CIDRs first; reaching here is a programming error.
		panic(fmt.Sprintf("httpapi: trusted proxies: %v", err))
	}
	if s.metrics != nil {
		r.Use(s.observe)
	}
	r.Use(withRequestID, s.secureHeaders, s.accessLog, s.recoverPanic, s.limitBody, s.crossOrigin)
	r.NoRoute(func(c *gin.Context) { s.fail(c, coffer.Errorf(coffer.EROUTENOTFOUND, "no such route")) })
	r.NoMethod(func(c *gin.Context) { s.fail(c, coffer.Errorf(coffer.EMETHOD, "method not allowed on this route")) })

	// Public.
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/", s.index)
	r.GET("/setup", s.setupForm)
	r.POST("/setup", s.setupSubmit)
	r.GET("/invitations/accept", s.invitationPage)
	r.GET("/auth/oidc/login", s.oidcStart)
	r.GET("/auth/oidc/callback", s.oidcCallback)
	r.POST("/auth/logout", s.logout)
	// Local accounts; 404 while they are off.
	r.GET("/login", s.loginForm) // the sign-in choice; 404 with neither local accounts nor OIDC
	r.POST("/login", s.localOn, s.loginSubmit)
	r.GET("/login/totp", s.localOn, s.totpLoginForm)
	r.POST("/login/totp", s.localOn, s.totpLoginSubmit)
	r.GET("/password/reset", s.localOn, s.resetForm)
	r.POST("/password/reset", s.localOn, s.resetSubmit)
	r.POST("/api/v1/users/:id/password-reset", s.localOn, s.authenticate, s.issuePasswordReset) // instance admins; checked by the service
	acc := r.Group("/account", s.pageSession)
	acc.GET("", s.account)
	acc.POST("/sessions/:id/revoke", s.accountRevokeSession)
	acc.POST("/tokens", s.accountCreateToken)
	acc.POST("/tokens/:id/revoke", s.accountRevokeToken)
	// TOTP enrolment, for local accounts only: 404 while they are off, signed in or not.
	r.GET("/account/totp", s.localOn, s.pageSession, s.accountTOTP)
	r.POST("/account/totp", s.localOn, s.pageSession, s.confirmTOTP)
	r.POST("/account/totp/disable", s.localOn, s.pageSession, s.disableTOTP)
	r.POST("/invitations/accept", s.pageSession, s.invitationAcceptForm)
	r.GET("/static/*file", s.staticFile)
	// The web dashboard (dashboard.go).
	d := r.Group("/t", s.dashboardCSP)
	d.GET("", s.pageSession, s.tenantsPage)
	ts := d.Group("/:tenant", s.pageScope)
	ts.GET("", s.projectsPage)
	ts.POST("/projects", s.createProjectPage)
	ts.GET("/p/:project", s.projectPage)
	ts.GET("/p/:project/e/:env", s.envPage)
	ts.POST("/p/:project/e/:env/reveal", s.revealPage)
	ts.POST("/p/:project/e/:env/secrets", s.putSecretPage)
	ts.POST("/p/:project/e/:env/secrets/:name/delete", s.deleteSecretPage)
	ts.GET("/p/:project/e/:env/rows/:name", s.rowFragment)
	s.envPages(ts)
	s.tenantPages(ts)
	r.GET("/api/v1/openapi.json", s.openapi)
	r.GET("/api/v1/audit/public-key", s.auditPublicKey)
	r.GET("/api/v1/events", s.events) // authenticates before any upgrade (events.go)
	// Device sign-in (device.go): the client starts and polls without credentials; the user
	// answers on a signed-in page.
	r.POST("/api/v1/device/code", s.startDevice)
	r.POST("/api/v1/device/token", s.pollDevice)
	r.GET("/device", s.pageSession, s.devicePageGet)
	r.POST("/device", s.pageSession, s.devicePagePost)

	// Any authenticated user.
	v1 := r.Group("/api/v1", s.authenticate)
	v1.GET("/me", s.me)
	v1.GET("/sessions", s.listSessions)
	v1.DELETE("/sessions/:id", s.revokeSession)
	v1.GET("/tokens", s.listTokens)
	v1.POST("/tokens", s.createToken)
	v1.DELETE("/tokens/:id", s.revokeToken)
	v1.POST("/users", s.createUser) // instance admins; checked by the service
	v1.POST("/users/:id/disable", s.disableUser)
	v1.POST("/users/:id/enable", s.enableUser)
	v1.GET("/tenants", s.listTenants)
	v1.POST("/tenants", s.createTenant)
	v1.POST("/invitations/accept", s.acceptInvitation) // the invitation's addressee; checked by the service

	// Tenant members: the token and the tenant, project and environment of the URL are
	// resolved together, and anyone who is not a member gets 404.
	t := r.Group("/api/v1/tenants/:tenant", auditReceipts, s.recordDenied, s.authorizeScope)
	t.GET("", s.getTenant)
	t.PATCH("", s.updateTenant)
	t.DELETE("", s.deleteTenant)
	t.GET("/members", s.listMembers)
	t.GET("/invitations", s.listInvitations)
	t.POST("/invitations", s.createInvitation)
	t.DELETE("/invitations/:invitation", s.revokeInvitation)
	t.DELETE("/members/:user", s.removeMember)
	t.PUT("/members/:user", s.setMemberRole)
	t.GET("/audit", s.listAudit)
	t.GET("/audit/verify", s.verifyAudit)
	t.GET("/audit/checkpoints", s.listCheckpoints)
	t.POST("/audit/checkpoints", s.makeCheckpoint)
	t.GET("/audit/export", s.exportAudit)
	t.GET("/audit/proof", s.auditProof)
	t.GET("/audit/revealed", s.auditRevealed)
	t.GET("/tokens", s.listTenantTokens)
	t.DELETE("/tokens/:id", s.revokeTenantToken)
	t.GET("/projects", s.listProjects)
	t.POST("/projects", s.createProject)
	t.GET("/keys", s.getKeys)
	t.PUT("/keys/kek", s.setKEK)
	t.POST("/keys/rotate", s.rotateKeys)
	t.GET("/keys/jobs/:id", s.getKeyJob)
	t.GET("/idp", s.getIdP)
	t.PUT("/idp", s.putIdP)
	t.DELETE("/idp", s.deleteIdP)

	p := t.Group("/projects/:project")
	p.GET("", s.getProject)
	p.PATCH("", s.updateProject)
	p.DELETE("", s.deleteProject)
	p.GET("/members", s.listProjectMembers)
	p.POST("/members", s.putProjectMember)
	p.DELETE("/members/:user", s.removeProjectMember)
	p.GET("/diff", s.diffEnvironments)
	p.POST("/promote", s.promoteSecrets)
	p.GET("/service-tokens", s.listServiceTokens)
	p.POST("/service-tokens", s.createServiceToken)
	p.DELETE("/service-tokens/:id", s.revokeServiceToken)
	p.GET("/environments", s.listEnvironments)
	p.POST("/environments", s.createEnvironment)
	// Webhooks.
	p.GET("/webhooks", s.listWebhooks)
	p.POST("/webhooks", s.createWebhook)
	p.DELETE("/webhooks/:id", s.deleteWebhook)
	p.GET("/webhooks/:id/deliveries", s.listDeliveries)

	e := p.Group("/environments/:env")
	envRoute := e.BasePath()
	e.GET("", s.getEnvironment)
	e.PATCH("", s.updateEnvironment)
	e.DELETE("", s.deleteEnvironment)
	e.GET("/secrets", s.listSecrets)
	e.POST("/rollback", s.rollbackEnvironment)
	e.PATCH("/secrets", s.bulkSecrets)
	e.PUT("/secrets", s.importSecrets)
	s.bodyLimits[http.MethodPatch+" "+envRoute+"/secrets"] = s.cfg.MaxBulkBodyBytes
	s.bodyLimits[http.MethodPut+" "+envRoute+"/secrets"] = s.cfg.MaxBulkBodyBytes
	e.GET("/secrets/:name", s.getSecret)
	e.PUT("/secrets/:name", s.putSecret)
	e.DELETE("/secrets/:name", s.deleteSecret)
	e.GET("/secrets/:name/versions", s.listVersions)
	e.POST("/secrets/:name/rollback", s.rollbackSecret)
	e.POST("/secrets/:name/restore", s.restoreSecret)
	e.POST("/secrets/:name/destroy", s.destroySecretVersions)
	return r
}

// Routes lists every registered method and path, for the OpenAPI coverage test.
func (s *Server) Routes() gin.RoutesInfo { return s.engine.Routes() }

func (s *Server) healthz(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }

func (s *Server) readyz(c *gin.Context) {
	if err := s.ready(c.Request.Context()); err != nil {
		s.log.WarnContext(c.Request.Context(), "not ready", "err", err)
		s.fail(c, coffer.Wrap(coffer.EUNAVAILABLE, err, "not ready: "+coffer.ErrorMessage(err)))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
