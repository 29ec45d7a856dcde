package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

// The web dashboard (docs in README, Web dashboard): server-rendered pages under /t, each
// form working without JavaScript; web/static/coffer.js and htmx enhance them. Pages go
// through the same services, and so the same tenant.Authorize, as the REST API.

// Assets maps static files to their content-hashed names (web.Assets).
type Assets interface {
	File(hashed string) (string, bool)
}

// chrome is what every dashboard page's frame shows.
type chrome struct {
	Title, Nonce, CSRF, Email string
	// Tenant is the slug of the tenant the page belongs to, "" for none.
	Tenant  string
	Tenants []tenantLink
	// Live, when set, makes the page follow the environment's events.
	Live *liveTarget
}

type tenantLink struct{ Slug, Name string }

type liveTarget struct{ Tenant, Project, Env, Rows string }

const ctxNonce = "coffer.nonce"

// dashboardCSP gives every dashboard response a fresh script nonce: only the page's own
// script elements run ('strict-dynamic' lets them load nothing else but what they insert),
// no inline script, handler or style, and the event stream may connect to this origin only.
func (s *Server) dashboardCSP(c *gin.Context) {
	var b [18]byte
	_, _ = rand.Read(b[:])
	nonce := base64.RawURLEncoding.EncodeToString(b[:]) // no "+": html/template would escape it
	c.Set(ctxNonce, nonce)
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"' 'strict-dynamic'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	c.Next()
}

// pageScope is pageSession for a tenant's pages: the session and the tenant, project and
// environment of the URL in one lookup, as authorizeScope does for the API. A scope the user
// cannot see is the same not-found page as one that does not exist.
func (s *Server) pageScope(c *gin.Context) {
	secret, ok := s.cookie(c, sessionCookie)
	var (
		p   auth.Principal
		sc  tenant.Scope
		err error
	)
	if ok {
		p, sc, err = s.auth.AuthorizeSessionScope(c.Request.Context(), secret, c.Param("tenant"), c.Param("project"), c.Param("env"))
	}
	if !ok || (err != nil && p.User.ID == "") {
		if safeMethod(c.Request.Method) {
			c.Redirect(http.StatusSeeOther, "/login?return_to="+url.QueryEscape(c.Request.URL.RequestURI()))
			c.Abort()
			return
		}
		s.fail(c, auth.ErrBadSession)
		return
	}
	if !s.checkCSRF(c, secret) {
		return
	}
	c.Set(ctxPrincipal, p)
	c.Set(ctxSessionSecret, secret)
	if err != nil {
		s.pageError(c, err)
		return
	}
	c.Set(ctxScope, sc)
	c.Next()
}

// frame builds the page frame: the user, their tenants, the CSRF token and the nonce.
func (s *Server) frame(c *gin.Context, title, tenantSlug string) (chrome, error) {
	p := principal(c)
	ch := chrome{Title: title, Nonce: c.GetString(ctxNonce), CSRF: s.csrfToken(c), Email: p.User.Email, Tenant: tenantSlug}
	ts, err := s.tenants.ListTenants(c.Request.Context(), p.User.ID, "", 50)
	if err != nil {
		return ch, err
	}
	for _, t := range ts {
		if p.IdPID == "" || t.Tenant.Slug == tenantSlug {
			ch.Tenants = append(ch.Tenants, tenantLink{Slug: t.Tenant.Slug, Name: t.Tenant.Name})
		}
	}
	return ch, nil
}

type errorPage struct {
	Chrome           chrome
	Heading, Message string
}

// pageError answers a dashboard request that failed with a page saying why, with the
// status the API would answer.
func (s *Server) pageError(c *gin.Context, err error) {
	status, ok := statusOf[coffer.ErrorCode(err)]
	if !ok || status >= 500 {
		s.fail(c, err) // logged, and answered without detail
		return
	}
	ch, _ := s.frame(c, "Not available", c.Param("tenant"))
	heading := "Not found"
	if status == http.StatusForbidden {
		heading = "Not allowed"
	}
	s.render(c, status, "dash_error.html", errorPage{Chrome: ch, Heading: heading, Message: coffer.ErrorMessage(err)})
	c.Abort()
}

type tenantsPage struct {
	Chrome chrome
	Items  []tenant.Membered
}

// tenantsPage lists the user's tenants; with one, it goes straight there.
func (s *Server) tenantsPage(c *gin.Context) {
	ts, err := s.tenants.ListTenants(c.Request.Context(), principal(c).User.ID, "", 100)
	if err != nil {
		s.pageError(c, err)
		return
	}
	if len(ts) == 1 {
		c.Redirect(http.StatusSeeOther, "/t/"+ts[0].Tenant.Slug)
		return
	}
	ch, err := s.frame(c, "Tenants", "")
	if err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, http.StatusOK, "dash_tenants.html", tenantsPage{Chrome: ch, Items: ts})
}

type projectsPage struct {
	Chrome            chrome
	TenantName, Query string
	Items             []tenant.Project
	CanCreate         bool
	Error             string
}

func (s *Server) projectsPage(c *gin.Context) { s.renderProjects(c, http.StatusOK, "") }

func (s *Server) renderProjects(c *gin.Context, status int, problem string) {
	sc := s.scope(c)
	ps, err := s.tenants.ListProjects(c.Request.Context(), sc, "", maxLimit)
	if err != nil {
		s.pageError(c, err)
		return
	}
	q := strings.TrimSpace(c.Query("q"))
	if q != "" {
		lq := strings.ToLower(q)
		ps = slices.DeleteFunc(ps, func(p tenant.Project) bool {
			return !strings.Contains(strings.ToLower(p.Slug+" "+p.Name), lq)
		})
	}
	ch, err := s.frame(c, sc.Tenant.Name, sc.Tenant.Slug)
	if err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_projects.html", projectsPage{Chrome: ch, TenantName: sc.Tenant.Name, Query: q, Items: ps,
		CanCreate: tenant.Authorize(sc, tenant.ManageTenant) == nil, Error: problem})
}

// createProjectPage is the projects page's form.
func (s *Server) createProjectPage(c *gin.Context) {
	sc := s.scope(c)
	p, err := s.tenants.CreateProject(c.Request.Context(), actor(c), sc, c.PostForm("slug"), c.PostForm("name"))
	if err != nil {
		if code := coffer.ErrorCode(err); code == coffer.EINVALID || code == coffer.ECONFLICT {
			s.renderProjects(c, statusOf[code], coffer.ErrorMessage(err))
			return
		}
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/p/"+p.Slug)
}

type gridEnv struct {
	Slug, Name string
	Protected  bool
	Visible    bool // the user may see the environment's names
	Versions   map[string]int
	// Differs names the variables whose value differs from the reference environment's, when
	// the user asked to compare (?differences=1).
	Differs map[string]bool
	scope   tenant.Scope
}

type projectPage struct {
	Chrome                           chrome
	TenantName, Project, ProjectName string
	Envs                             []gridEnv
	Names                            []string
	// Compared is set when the grid marks differing values; Reference is the environment
	// the others were compared with.
	Compared  bool
	Reference string
}

// projectPage is the grid of variables × environments: which version each environment has,
// and where one is missing. It shows metadata only. With ?differences=1 it also marks the
// values that differ from the first environment the user may read: the values are compared
// inside the server (secrets.Diff without values, which needs read access to both sides) and
// none is sent.
func (s *Server) projectPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	envs, levels, err := s.tenants.ListEnvironments(ctx, sc, "", 100)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page := projectPage{TenantName: sc.Tenant.Name, Project: sc.Project.Slug, ProjectName: sc.Project.Name}
	seen := map[string]bool{}
	for i, e := range envs {
		g := gridEnv{Slug: e.Slug, Name: e.Name, Protected: e.Protected, Visible: levels[i] != tenant.LevelNone, Versions: map[string]int{},
			Differs: map[string]bool{}}
		if g.Visible {
			esc, err := s.tenants.EnvironmentScope(ctx, sc, e.Slug)
			if err != nil {
				s.pageError(c, err)
				return
			}
			g.scope = esc
			list, _, err := s.secrets.List(ctx, esc, secrets.ListOptions{Limit: maxLimit})
			if err != nil {
				s.pageError(c, err)
				return
			}
			for _, sec := range list {
				g.Versions[sec.Name] = sec.Version
				if !seen[sec.Name] {
					seen[sec.Name] = true
					page.Names = append(page.Names, sec.Name)
				}
			}
		}
		page.Envs = append(page.Envs, g)
	}
	slices.Sort(page.Names)
	if c.Query("differences") == "1" {
		if err := s.markDifferences(c, &page); err != nil {
			s.pageError(c, err)
			return
		}
	}
	if page.Chrome, err = s.frame(c, sc.Project.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, http.StatusOK, "dash_project.html", page)
}

// markDifferences compares every environment the user may read with the first one.
func (s *Server) markDifferences(c *gin.Context, page *projectPage) error {
	var ref *gridEnv
	for i := range page.Envs {
		g := &page.Envs[i]
		if !g.Visible || tenant.Authorize(g.scope, tenant.ReadSecrets) != nil {
			continue
		}
		if ref == nil {
			ref, page.Reference = g, g.Name
			continue
		}
		d, err := s.secrets.Diff(c.Request.Context(), actor(c), ref.scope, g.scope, false)
		if err != nil {
			return err
		}
		for _, e := range d.Different {
			g.Differs[e.Name], ref.Differs[e.Name] = true, true
		}
	}
	page.Compared = ref != nil
	return nil
}

// secretRow is one row of an environment's table; Value is set only on the row the user
// asked to reveal, in the response to that request.
type secretRow struct {
	Name, Note, UpdatedBy, Error string
	Version                      int
	UpdatedAt                    time.Time
	Revealed                     bool
	Value                        string
	CanReveal, CanWrite          bool
	Base, CSRF                   string
}

type envPage struct {
	Chrome                                          chrome
	TenantName, Project, ProjectName, EnvName, Base string
	Protected, CanWrite                             bool
	Rows                                            []secretRow
	Deleted                                         []secrets.Secret
	Flash, Error                                    string
}

func envBase(sc tenant.Scope) string {
	return "/t/" + sc.Tenant.Slug + "/p/" + sc.Project.Slug + "/e/" + sc.Environment.Slug
}

// rowsOf lists the environment's secrets as rows, without values.
func (s *Server) rowsOf(c *gin.Context, sc tenant.Scope) ([]secretRow, error) {
	list, _, err := s.secrets.List(c.Request.Context(), sc, secrets.ListOptions{Limit: maxLimit})
	if err != nil {
		return nil, err
	}
	base, csrf := envBase(sc), s.csrfToken(c)
	canRead, canWrite := tenant.Authorize(sc, tenant.ReadSecrets) == nil, tenant.Authorize(sc, tenant.WriteSecrets) == nil
	rows := make([]secretRow, len(list))
	for i, sec := range list {
		rows[i] = secretRow{Name: sec.Name, Note: sec.Note, UpdatedBy: sec.CreatedBy, Version: sec.Version, UpdatedAt: sec.UpdatedAt,
			CanReveal: canRead, CanWrite: canWrite, Base: base, CSRF: csrf}
	}
	return rows, nil
}

func (s *Server) envPage(c *gin.Context) {
	var flash string
	if n := c.Query("saved"); n != "" {
		flash = "Saved " + n + "."
	} else if n := c.Query("deleted"); n != "" {
		flash = "Deleted " + n + "."
	}
	s.renderEnv(c, http.StatusOK, flash, "", nil)
}

// renderEnv renders the environment page; change, if set, replaces the row of its name (a
// revealed value, an error next to it).
func (s *Server) renderEnv(c *gin.Context, status int, flash, problem string, change *secretRow) {
	sc := s.scope(c)
	rows, err := s.rowsOf(c, sc)
	if err != nil {
		s.pageError(c, err)
		return
	}
	if change != nil {
		if i := slices.IndexFunc(rows, func(r secretRow) bool { return r.Name == change.Name }); i >= 0 {
			rows[i] = *change
		}
	}
	var deleted []secrets.Secret
	if tenant.Authorize(sc, tenant.WriteSecrets) == nil {
		all, _, err := s.secrets.List(c.Request.Context(), sc, secrets.ListOptions{Limit: maxLimit, IncludeDeleted: true})
		if err != nil {
			s.pageError(c, err)
			return
		}
		for _, sec := range all {
			if sec.DeletedAt != nil {
				deleted = append(deleted, sec)
			}
		}
	}
	ch, err := s.frame(c, sc.Environment.Name+" · "+sc.Project.Name, sc.Tenant.Slug)
	if err != nil {
		s.pageError(c, err)
		return
	}
	base := envBase(sc)
	ch.Live = &liveTarget{Tenant: sc.Tenant.Slug, Project: sc.Project.Slug, Env: sc.Environment.Slug, Rows: base + "/rows/"}
	s.render(c, status, "dash_env.html", envPage{Chrome: ch, TenantName: sc.Tenant.Name, Project: sc.Project.Slug,
		ProjectName: sc.Project.Name, EnvName: sc.Environment.Name, Base: base, Protected: sc.Environment.Protected,
		CanWrite: tenant.Authorize(sc, tenant.WriteSecrets) == nil, Rows: rows, Deleted: deleted, Flash: flash, Error: problem})
}

// partial reports whether htmx asked for a fragment rather than a page.
func partial(c *gin.Context) bool { return c.GetHeader("HX-Request") == "true" }

// rowOf finds one secret's row, without its value.
func (s *Server) rowOf(c *gin.Context, name string) (secretRow, error) {
	rows, err := s.rowsOf(c, s.scope(c))
	if err != nil {
		return secretRow{}, err
	}
	i := slices.IndexFunc(rows, func(r secretRow) bool { return r.Name == name })
	if i < 0 {
		return secretRow{}, coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", name)
	}
	return rows[i], nil
}

// revealPage reveals one value (audited, like every reveal): the row, for htmx, or the page
// with that row showing it. The value is in this response only (Cache-Control: no-store).
func (s *Server) revealPage(c *gin.Context) {
	name := c.PostForm("name")
	row, err := s.rowOf(c, name)
	if err != nil {
		s.pageError(c, err)
		return
	}
	sec, err := s.secrets.Get(c.Request.Context(), actor(c), s.scope(c), name, 0)
	if err != nil {
		s.pageError(c, err)
		return
	}
	row.Revealed, row.Value, row.Version = true, *sec.Value, sec.Version
	if partial(c) {
		s.render(c, http.StatusOK, "dash_row.html", row)
		return
	}
	s.renderEnv(c, http.StatusOK, "", "", &row)
}

// putSecretPage adds a secret (expect 0) or changes one (expect: the version the form
// showed): a compare-and-set, so an edit made on a stale page is refused with the current
// version named, and nothing is changed.
func (s *Server) putSecretPage(c *gin.Context) {
	sc := s.scope(c)
	name, value, note := c.PostForm("name"), c.PostForm("value"), c.PostForm("note")
	expect, err := strconv.Atoi(c.PostForm("expect"))
	if err != nil || expect < 0 {
		s.pageError(c, coffer.Errorf(coffer.EINVALID, "expect must be the version the form showed"))
		return
	}
	res, err := s.secrets.Put(c.Request.Context(), actor(c), sc, name, value, note, &expect)
	if err != nil {
		code := coffer.ErrorCode(err)
		if code != coffer.EPRECONDITION && code != coffer.EINVALID && code != coffer.ETOOLARGE {
			s.pageError(c, err)
			return
		}
		msg := coffer.ErrorMessage(err)
		if code == coffer.EPRECONDITION {
			msg += " Someone changed it since this page was loaded: reload to see the newer version, then edit again."
		}
		row, rerr := s.rowOf(c, name)
		if partial(c) && rerr == nil {
			row.Error = msg
			s.render(c, http.StatusOK, "dash_row.html", row) // htmx swaps 2xx only
			return
		}
		if rerr == nil {
			row.Error = msg
			s.renderEnv(c, statusOf[code], "", msg, &row)
			return
		}
		s.renderEnv(c, statusOf[code], "", msg, nil)
		return
	}
	if partial(c) {
		row, err := s.rowOf(c, name)
		if err != nil {
			s.pageError(c, err)
			return
		}
		s.render(c, http.StatusOK, "dash_row.html", row)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"?saved="+url.QueryEscape(res.Name+" (version "+strconv.Itoa(res.Version)+")"))
}

// deleteSecretPage deletes a secret (it can be restored through the API).
func (s *Server) deleteSecretPage(c *gin.Context) {
	sc := s.scope(c)
	name := c.Param("name")
	if _, err := s.secrets.Delete(c.Request.Context(), actor(c), sc, name); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"?deleted="+url.QueryEscape(name))
}

// rowFragment is one secret's row without its value, for live updates; 404 once it is gone.
func (s *Server) rowFragment(c *gin.Context) {
	row, err := s.rowOf(c, c.Param("name"))
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			c.Status(http.StatusNotFound)
			return
		}
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "dash_row.html", row)
}

// staticFile serves a static file: under its content-hashed name for good (immutable),
// under its plain name for pages that predate the hashing (revalidated each time).
func (s *Server) staticFile(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("file"), "/")
	cache := "no-cache"
	if s.assets != nil {
		if plain, ok := s.assets.File(name); ok {
			name, cache = plain, "public, max-age=31536000, immutable"
		}
	}
	b, err := fs.ReadFile(s.static, name)
	if err != nil {
		c.Status(http.StatusNotFound)
		return
	}
	c.Header("Cache-Control", cache)
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	c.Data(http.StatusOK, ct, b)
}
