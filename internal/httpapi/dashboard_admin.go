package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
	"github.com/cofferhq/coffer/internal/webhook"
)

// adminPages adds the dashboard's administration pages (keys, settings, a project's webhooks
// and service tokens) to ts, the group of /t/:tenant routes behind pageScope. Each goes
// through the same service call as its API route, so the services decide who may.
func (s *Server) adminPages(ts *gin.RouterGroup) {
	ts.GET("/keys", s.keysPage)
	ts.POST("/keys/rotate", s.rotateKeysPage)
	ts.POST("/keys/kek", s.setKEKPage)
	ts.GET("/settings", s.settingsPage)
	ts.POST("/settings/name", s.renameTenantPage)
	ts.POST("/settings/idp", s.putIdPPage)
	ts.POST("/settings/idp/delete", s.deleteIdPPage)
	ts.GET("/p/:project/webhooks", s.webhooksPage)
	ts.POST("/p/:project/webhooks", s.createWebhookPage)
	ts.POST("/p/:project/webhooks/:id/delete", s.deleteWebhookPage)
	ts.GET("/p/:project/service-tokens", s.serviceTokensPage)
	ts.POST("/p/:project/service-tokens", s.createServiceTokenPage)
	ts.POST("/p/:project/service-tokens/:id/revoke", s.revokeServiceTokenPage)
}

// formProblem reports whether err is the caller's to fix on the form (re-rendered next to
// the field, with the API's status) rather than a page of its own.
func formProblem(err error) bool {
	switch coffer.ErrorCode(err) {
	case coffer.EINVALID, coffer.ECONFLICT, coffer.ETOOLARGE, coffer.ERATELIMITED:
		return true
	}
	return false
}

// formError re-renders a page with err next to its form, or answers the error page.
func (s *Server) formError(c *gin.Context, err error, render func(status int, problem string)) {
	if !formProblem(err) {
		s.pageError(c, err)
		return
	}
	render(statusOf[coffer.ErrorCode(err)], coffer.ErrorMessage(err))
}

// ageOf says how old something created at t is, in words a page shows.
func ageOf(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Hour:
		return "under an hour"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " hours"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days"
}

// Keys.

type keyEnvRow struct {
	Project, Environment, KeyID, Age, State string
	CreatedAt                               time.Time
	Seals                                   int64
	Keys                                    int
}

type keysPage struct {
	Chrome     chrome
	TenantName string
	// KEK is "platform" or the ARN of the tenant's own KMS key.
	KEK                 string
	OwnKEK              bool
	Envs                []keyEnvRow
	Jobs                []secrets.Job
	Targets             []string // "project" and "project/environment", for the rotate form
	Flash               string
	RotateError, KEKErr string
	KEKInput            string
}

func (s *Server) keysPage(c *gin.Context) {
	var flash string
	if id := c.Query("job"); id != "" {
		flash = "Started job " + id + "."
	}
	s.renderKeys(c, http.StatusOK, flash, "", "", "")
}

// renderKeys renders the key status (the service refuses all but owners, as for GET …/keys);
// the job named by ?job= is listed even once it has finished.
func (s *Server) renderKeys(c *gin.Context, status int, flash, rotateErr, kekErr, kekInput string) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	st, err := s.keyAdmin.Status(ctx, sc)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page := keysPage{TenantName: sc.Tenant.Name, KEK: "platform", OwnKEK: st.TenantKEK != "", Jobs: st.Jobs, Flash: flash,
		RotateError: rotateErr, KEKErr: kekErr, KEKInput: kekInput}
	if st.TenantKEK != "" {
		page.KEK = st.TenantKEK
	}
	seen := map[string]bool{}
	for _, e := range st.Environments {
		state := "current"
		switch {
		case e.Stale > 0:
			state = "rewrap pending"
		case e.Keys > 1:
			state = "reseal pending"
		}
		page.Envs = append(page.Envs, keyEnvRow{Project: e.Project, Environment: e.Environment, KeyID: e.KeyID, Age: ageOf(e.CreatedAt),
			State: state, CreatedAt: e.CreatedAt, Seals: e.Seals, Keys: e.Keys})
		if !seen[e.Project] {
			seen[e.Project] = true
			page.Targets = append(page.Targets, e.Project)
		}
		page.Targets = append(page.Targets, e.Project+"/"+e.Environment)
	}
	if id := c.Query("job"); id != "" && !slices.ContainsFunc(page.Jobs, func(j secrets.Job) bool { return j.ID == id }) {
		if j, err := s.keyAdmin.Job(ctx, sc, id); err == nil {
			page.Jobs = append([]secrets.Job{j}, page.Jobs...)
		}
	}
	if page.Chrome, err = s.frame(c, "Keys · "+sc.Tenant.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_keys.html", page)
}

// rotateKeysPage starts a roll-and-reseal of the tenant, a project or an environment
// (target "", "project" or "project/environment"), as POST …/keys/rotate.
func (s *Server) rotateKeysPage(c *gin.Context) {
	sc := s.scope(c)
	project, env, _ := strings.Cut(c.PostForm("target"), "/")
	j, err := s.keyAdmin.Rotate(c.Request.Context(), actor(c), sc, project, env)
	if err != nil {
		s.formError(c, err, func(status int, problem string) { s.renderKeys(c, status, "", problem, "", "") })
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/keys?job="+url.QueryEscape(j.ID))
}

// setKEKPage sets the tenant's own KMS key, as PUT …/keys/kek: the service proves the key
// usable first, and starts the rewrap job.
func (s *Server) setKEKPage(c *gin.Context) {
	sc := s.scope(c)
	keyID := c.PostForm("key_id")
	j, err := s.keyAdmin.SetTenantKEK(c.Request.Context(), actor(c), sc, keyID)
	if err != nil {
		s.formError(c, err, func(status int, problem string) { s.renderKeys(c, status, "", "", problem, keyID) })
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/keys?job="+url.QueryEscape(j.ID))
}

// Settings.

type settingsPage struct {
	Chrome                 chrome
	TenantName, Slug       string
	IdP                    *idpView
	Flash, NameError, Name string
	// The provider form: the stored settings, or as it was sent when shown again with an
	// error. Never the client secret: it is write-only.
	IdPError, Issuer, ClientID string
	Required                   bool
	// idpSent is set when the form fields come from a refused post rather than the store.
	idpSent bool
}

// settingsFlashes are the flashes the settings page shows after a redirect, by query key.
var settingsFlashes = []struct{ key, text string }{
	{"renamed", "Renamed the tenant."},
	{"idp_saved", "Saved the identity provider."},
	{"idp_removed", "Removed the identity provider."},
}

func (s *Server) settingsPage(c *gin.Context) {
	var page settingsPage
	for _, f := range settingsFlashes {
		if c.Query(f.key) != "" {
			page.Flash = f.text
			break
		}
	}
	s.renderSettings(c, http.StatusOK, page)
}

// renderSettings shows the tenant's settings, to owners only: the provider they configure
// decides who can sign in to the tenant.
func (s *Server) renderSettings(c *gin.Context, status int, page settingsPage) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		s.pageError(c, err)
		return
	}
	page.TenantName, page.Slug = sc.Tenant.Name, sc.Tenant.Slug
	if page.Name == "" {
		page.Name = sc.Tenant.Name
	}
	if s.idps != nil {
		idp, err := s.idps.Get(c.Request.Context(), sc)
		switch {
		case err == nil:
			v := s.viewIdP(idp)
			page.IdP = &v
			if !page.idpSent {
				page.Issuer, page.ClientID, page.Required = idp.Issuer, idp.ClientID, idp.Required
			}
		case coffer.ErrorCode(err) != coffer.ENOTFOUND:
			s.pageError(c, err)
			return
		}
	}
	var err error
	if page.Chrome, err = s.frame(c, "Settings · "+sc.Tenant.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_settings.html", page)
}

// renameTenantPage renames the tenant, as PATCH /api/v1/tenants/:tenant.
func (s *Server) renameTenantPage(c *gin.Context) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		s.pageError(c, err) // the page is the owners'; the service alone would let admins rename
		return
	}
	name := c.PostForm("name")
	if _, err := s.tenants.UpdateTenant(c.Request.Context(), actor(c), sc, name); err != nil {
		s.formError(c, err, func(status int, problem string) {
			s.renderSettings(c, status, settingsPage{NameError: problem, Name: name})
		})
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/settings?renamed=1")
}

// Webhooks.

type webhookRow struct {
	webhook.Webhook
	AllEvents  bool
	Deliveries []webhook.Delivery
}

type webhooksPage struct {
	Chrome                           chrome
	TenantName, Project, ProjectName string
	Items                            []webhookRow
	EventTypes                       []string
	// SigningSecret is set in the response that created the webhook only.
	SigningSecret, CreatedURL string
	Flash, Error, URLInput    string
	Checked                   map[string]bool
}

// recentDeliveries is how many of each webhook's deliveries its page shows.
const recentDeliveries = 5

func (s *Server) webhooksOn(c *gin.Context) bool {
	if s.webhooks == nil {
		s.pageError(c, coffer.Errorf(coffer.ENOTFOUND, "webhooks are not available"))
		return false
	}
	return true
}

func (s *Server) webhooksPage(c *gin.Context) {
	var flash string
	if u := c.Query("deleted"); u != "" {
		flash = "Deleted the webhook to " + u + "."
	}
	s.renderWebhooks(c, http.StatusOK, webhooksPage{Flash: flash})
}

// renderWebhooks lists the project's webhooks with their latest deliveries (the service
// refuses all but project admins, as for GET …/webhooks).
func (s *Server) renderWebhooks(c *gin.Context, status int, page webhooksPage) {
	if !s.webhooksOn(c) {
		return
	}
	sc := s.scope(c)
	ctx := c.Request.Context()
	ws, err := s.webhooks.List(ctx, sc)
	if err != nil {
		s.pageError(c, err)
		return
	}
	for _, w := range ws {
		ds, err := s.webhooks.Deliveries(ctx, sc, w.ID, 0, recentDeliveries)
		if err != nil {
			s.pageError(c, err)
			return
		}
		page.Items = append(page.Items, webhookRow{Webhook: w, AllEvents: slices.Contains(w.Events, webhook.AllEvents), Deliveries: ds})
	}
	page.TenantName, page.Project, page.ProjectName, page.EventTypes = sc.Tenant.Name, sc.Project.Slug, sc.Project.Name, webhook.EventTypes
	if page.Chrome, err = s.frame(c, "Webhooks · "+sc.Project.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	if page.SigningSecret != "" {
		c.Header("Cache-Control", "no-store")
	}
	s.render(c, status, "dash_webhooks.html", page)
}

// createWebhookPage registers a webhook, as POST …/webhooks, and shows its signing secret in
// this response only.
func (s *Server) createWebhookPage(c *gin.Context) {
	if !s.webhooksOn(c) {
		return
	}
	sc := s.scope(c)
	rawURL, events := c.PostForm("url"), c.PostFormArray("events")
	w, secret, err := s.webhooks.Create(c.Request.Context(), actor(c), sc, webhook.CreateRequest{URL: rawURL, Events: events})
	if err != nil {
		s.formError(c, err, func(status int, problem string) {
			checked := map[string]bool{}
			for _, e := range events {
				checked[e] = true
			}
			s.renderWebhooks(c, status, webhooksPage{Error: problem, URLInput: rawURL, Checked: checked})
		})
		return
	}
	s.renderWebhooks(c, http.StatusCreated, webhooksPage{SigningSecret: secret, CreatedURL: w.URL})
}

// deleteWebhookPage deletes a webhook, as DELETE …/webhooks/:id.
func (s *Server) deleteWebhookPage(c *gin.Context) {
	if !s.webhooksOn(c) {
		return
	}
	sc := s.scope(c)
	ctx := c.Request.Context()
	id := c.Param("id")
	// The flash names the webhook as the server knows it, not as the form said.
	what := "it"
	if ws, err := s.webhooks.List(ctx, sc); err == nil {
		if i := slices.IndexFunc(ws, func(w webhook.Webhook) bool { return w.ID == id }); i >= 0 {
			what = ws[i].URL
		}
	}
	if err := s.webhooks.Delete(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/p/"+sc.Project.Slug+"/webhooks?deleted="+url.QueryEscape(what))
}

// Service tokens.

type serviceTokensPage struct {
	Chrome                           chrome
	TenantName, Project, ProjectName string
	Items                            []auth.ServiceToken
	Envs                             []tenant.Environment
	// Token is set in the response that created it only.
	Token, TokenName string
	Flash, Error     string
	// The form as it was sent, when it is shown again with an error.
	Name, Access, Days string
	Checked            map[string]bool
}

func (s *Server) serviceTokensPage(c *gin.Context) {
	var flash string
	if n := c.Query("revoked"); n != "" {
		flash = "Revoked " + n + "."
	}
	s.renderServiceTokens(c, http.StatusOK, serviceTokensPage{Flash: flash})
}

// renderServiceTokens lists the project's service tokens (the service refuses all but
// project admins, as for GET …/service-tokens) with the form that creates one.
func (s *Server) renderServiceTokens(c *gin.Context, status int, page serviceTokensPage) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	ts, err := s.auth.ListServiceTokens(ctx, sc)
	if err != nil {
		s.pageError(c, err)
		return
	}
	envs, _, err := s.tenants.ListEnvironments(ctx, sc, "", 100)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page.TenantName, page.Project, page.ProjectName, page.Items, page.Envs = sc.Tenant.Name, sc.Project.Slug, sc.Project.Name, ts, envs
	if page.Access == "" {
		page.Access = auth.AccessRead
	}
	if page.Days == "" {
		page.Days = "30"
	}
	if page.Chrome, err = s.frame(c, "Service tokens · "+sc.Project.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	if page.Token != "" {
		c.Header("Cache-Control", "no-store")
	}
	s.render(c, status, "dash_service_tokens.html", page)
}

// createServiceTokenPage mints a project's service token, as POST …/service-tokens, and shows
// it in this response only.
func (s *Server) createServiceTokenPage(c *gin.Context) {
	sc := s.scope(c)
	// Decided before the mint limiter, as the API does.
	if err := tenant.Authorize(sc, tenant.ManageTokens); err != nil {
		s.pageError(c, err)
		return
	}
	name, access, days, envs := c.PostForm("name"), c.PostForm("access"), c.PostForm("expires_in_days"), c.PostFormArray("environments")
	again := func(status int, problem string) {
		checked := map[string]bool{}
		for _, e := range envs {
			checked[e] = true
		}
		s.renderServiceTokens(c, status, serviceTokensPage{Error: problem, Name: name, Access: access, Days: days, Checked: checked})
	}
	uid := principal(c).User.ID
	if !s.mintLimiter.allow(uid) {
		again(http.StatusTooManyRequests, "Too many credentials created; wait a minute.")
		return
	}
	s.mintLimiter.spend(uid)
	n, err := strconv.Atoi(strings.TrimSpace(days))
	if err != nil {
		again(http.StatusUnprocessableEntity, "Expiry must be a whole number of days.")
		return
	}
	t, secret, err := s.auth.CreateServiceToken(c.Request.Context(), actor(c), sc, auth.ServiceTokenRequest{
		Name: name, Environments: envs, Access: access, ExpiresIn: time.Duration(n) * 24 * time.Hour,
	})
	if err != nil {
		s.formError(c, err, again)
		return
	}
	s.renderServiceTokens(c, http.StatusCreated, serviceTokensPage{Token: secret, TokenName: t.Name})
}

// revokeServiceTokenPage revokes a project's service token, as DELETE …/service-tokens/:id.
func (s *Server) revokeServiceTokenPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	id := c.Param("id")
	what := "the token"
	if ts, err := s.auth.ListServiceTokens(ctx, sc); err == nil {
		if i := slices.IndexFunc(ts, func(t auth.ServiceToken) bool { return t.ID == id }); i >= 0 {
			what = ts[i].Name + " (" + ts[i].DisplayPrefix + "…)"
		}
	}
	if err := s.auth.RevokeServiceToken(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/p/"+sc.Project.Slug+"/service-tokens?revoked="+url.QueryEscape(what))
}
