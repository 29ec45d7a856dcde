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
	"github.com/cofferhq/coffer/internal/envfile"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

// The environment's workflow pages: bulk edit as .env text, compare and promote, a secret's
// history with rollback, and the environment at a point in time.

// envPages adds them to ts, the /t/:tenant group behind pageScope.
func (s *Server) envPages(ts *gin.RouterGroup) {
	ts.GET("/p/:project/e/:env/bulk", s.bulkPage)
	ts.POST("/p/:project/e/:env/bulk", s.bulkSubmit)
	ts.GET("/p/:project/compare", s.comparePage)
	ts.POST("/p/:project/promote", s.promotePage)
	ts.GET("/p/:project/e/:env/history/:name", s.historyPage)
	ts.POST("/p/:project/e/:env/history/:name/rollback", s.rollbackPage)
	ts.POST("/p/:project/e/:env/history/:name/destroy", s.destroyPage)
	ts.POST("/p/:project/e/:env/secrets/:name/restore", s.restoreSecretPage)
	ts.GET("/p/:project/e/:env/at", s.pointInTimePage)
	ts.POST("/p/:project/e/:env/at", s.restoreAtPage)
}

type bulkLine struct {
	Name            string
	Version         int // the current version, 0 when added
	Added, Removed  bool
	Changed, Remain bool
}

type bulkPage struct {
	Chrome                                 chrome
	TenantName, Project, ProjectName, Base string
	EnvName, Text, Error                   string
	RemoveMissing, Previewed               bool
	Lines                                  []bulkLine
	Added, Changed, Removed, Unchanged     int
}

func (s *Server) bulkFrame(c *gin.Context, page *bulkPage) error {
	sc := s.scope(c)
	ch, err := s.frame(c, "Bulk edit · "+sc.Environment.Name, sc.Tenant.Slug)
	page.Chrome, page.TenantName, page.Project, page.ProjectName = ch, sc.Tenant.Name, sc.Project.Slug, sc.Project.Name
	page.EnvName, page.Base = sc.Environment.Name, envBase(sc)
	return err
}

// bulkPage is the empty bulk-edit form: paste a .env, preview, apply.
func (s *Server) bulkPage(c *gin.Context) {
	if err := tenant.Authorize(s.scope(c), tenant.WriteSecrets); err != nil {
		s.pageError(c, err)
		return
	}
	var page bulkPage
	if err := s.bulkFrame(c, &page); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, http.StatusOK, "dash_bulk.html", page)
}

// bulkSubmit previews (action=preview) or applies (action=apply) pasted .env text. The
// preview compares with the current values inside the server (an audited read of the
// environment) and shows names only; the apply writes added and changed secrets and, when
// asked, deletes the missing ones, as one compare-and-set bulk write against the versions the
// preview showed: if anything changed since, nothing is written.
func (s *Server) bulkSubmit(c *gin.Context) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.WriteSecrets); err != nil {
		s.pageError(c, err)
		return
	}
	page := bulkPage{Text: c.PostForm("text"), RemoveMissing: c.PostForm("remove_missing") == "on"}
	if err := s.bulkFrame(c, &page); err != nil {
		s.pageError(c, err)
		return
	}
	fail := func(status int, msg string) {
		page.Error, page.Previewed = msg, false
		s.render(c, status, "dash_bulk.html", page)
	}
	vars, err := envfile.Parse([]byte(page.Text))
	if err != nil {
		fail(http.StatusUnprocessableEntity, coffer.ErrorMessage(err))
		return
	}
	if c.PostForm("action") == "apply" {
		s.bulkApply(c, sc, vars, page.RemoveMissing, fail)
		return
	}
	current := map[string]struct {
		version int
		value   string
	}{}
	more, err := s.secrets.Reveal(c.Request.Context(), actor(c), sc, secrets.ListOptions{Limit: secrets.MaxBatch}, func(sec *secrets.Secret, value []byte) {
		current[sec.Name] = struct {
			version int
			value   string
		}{sec.Version, string(value)}
	})
	if err != nil {
		s.pageError(c, err)
		return
	}
	if more {
		// A preview of part of the environment would call the rest missing, or new.
		clear(current)
		fail(http.StatusUnprocessableEntity, "this environment has more than "+strconv.Itoa(secrets.MaxBatch)+" secrets: bulk edit it through the API")
		return
	}
	inText := map[string]bool{}
	for _, v := range vars {
		inText[v.Name] = true
		cur, ok := current[v.Name]
		l := bulkLine{Name: v.Name, Version: cur.version, Added: !ok, Changed: ok && cur.value != v.Value, Remain: ok && cur.value == v.Value}
		page.Lines = append(page.Lines, l)
	}
	for name, cur := range current {
		if !inText[name] && page.RemoveMissing {
			page.Lines = append(page.Lines, bulkLine{Name: name, Version: cur.version, Removed: true})
		} else if !inText[name] {
			page.Lines = append(page.Lines, bulkLine{Name: name, Version: cur.version, Remain: true})
		}
	}
	clear(current)
	slices.SortFunc(page.Lines, func(a, b bulkLine) int { return strings.Compare(a.Name, b.Name) })
	for _, l := range page.Lines {
		switch {
		case l.Added:
			page.Added++
		case l.Changed:
			page.Changed++
		case l.Removed:
			page.Removed++
		default:
			page.Unchanged++
		}
	}
	page.Previewed = true
	s.render(c, http.StatusOK, "dash_bulk.html", page)
}

// bulkApply writes what the preview showed: each line's expected version came back with the
// form (v_<NAME>), so a secret changed since the preview fails the whole write.
func (s *Server) bulkApply(c *gin.Context, sc tenant.Scope, vars []envfile.Var, removeMissing bool, fail func(int, string)) {
	expect := func(name string) (*int, bool) {
		v, err := strconv.Atoi(c.PostForm("v_" + name))
		if err != nil || v < 0 {
			return nil, false
		}
		return &v, true
	}
	var changes []secrets.Change
	inText := map[string]bool{}
	for _, v := range vars {
		inText[v.Name] = true
		e, ok := expect(v.Name)
		if !ok {
			fail(http.StatusUnprocessableEntity, v.Name+" was not in the preview: preview again")
			return
		}
		if c.PostForm("same_"+v.Name) == "1" {
			continue // unchanged in the preview
		}
		changes = append(changes, secrets.Change{Op: secrets.OpPut, Name: v.Name, Value: v.Value, Expect: e})
	}
	if removeMissing {
		for _, name := range c.PostFormArray("remove") {
			if inText[name] {
				continue
			}
			e, ok := expect(name)
			if !ok {
				fail(http.StatusUnprocessableEntity, name+" was not in the preview: preview again")
				return
			}
			changes = append(changes, secrets.Change{Op: secrets.OpDelete, Name: name, Expect: e})
		}
	}
	if len(changes) == 0 {
		c.Redirect(http.StatusSeeOther, envBase(sc)+"?saved="+url.QueryEscape("nothing: no change"))
		return
	}
	res, err := s.secrets.Apply(c.Request.Context(), actor(c), sc, changes)
	if err != nil {
		if code := coffer.ErrorCode(err); code == coffer.EPRECONDITION || code == coffer.EINVALID || code == coffer.ETOOLARGE {
			msg := coffer.ErrorMessage(err)
			if code == coffer.EPRECONDITION {
				msg += " Preview again to see the current versions; nothing was written."
			}
			fail(statusOf[code], msg)
			return
		}
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"?saved="+url.QueryEscape(strconv.Itoa(len(res))+" changes in one write"))
}

type compareRow struct {
	Name                   string
	FromVersion, ToVersion int
	Kind                   string // "only-from", "only-to", "different"
}

type comparePage struct {
	Chrome                           chrome
	TenantName, Project, ProjectName string
	From, To                         string
	Envs                             []tenant.Environment
	Rows                             []compareRow
	Same                             int
	Compared, CanPromote             bool
	Flash, Error                     string
}

// comparePage compares two environments' values inside the server (read access to both
// needed; no value is sent, so no reveal is audited) and shows names and versions only; what exists only in "from" or differs can be
// promoted.
func (s *Server) comparePage(c *gin.Context) {
	s.renderCompare(c, http.StatusOK, c.Query("from"), c.Query("to"), c.Query("promoted"), "")
}

func (s *Server) renderCompare(c *gin.Context, status int, fromSlug, toSlug, flash, problem string) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	envs, _, err := s.tenants.ListEnvironments(ctx, sc, "", 100)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page := comparePage{TenantName: sc.Tenant.Name, Project: sc.Project.Slug, ProjectName: sc.Project.Name, Envs: envs,
		From: fromSlug, To: toSlug, Error: problem}
	if flash != "" {
		page.Flash = "Promoted " + flash + "."
	}
	if page.From != "" && page.To != "" {
		from, err := s.tenants.EnvironmentScope(ctx, sc, page.From)
		if err != nil {
			s.pageError(c, err)
			return
		}
		to, err := s.tenants.EnvironmentScope(ctx, sc, page.To)
		if err != nil {
			s.pageError(c, err)
			return
		}
		d, err := s.secrets.Diff(ctx, actor(c), from, to, false)
		if err != nil {
			s.pageError(c, err)
			return
		}
		for _, e := range d.OnlyFrom {
			page.Rows = append(page.Rows, compareRow{Name: e.Name, FromVersion: e.FromVersion, Kind: "only-from"})
		}
		for _, e := range d.Different {
			page.Rows = append(page.Rows, compareRow{Name: e.Name, FromVersion: e.FromVersion, ToVersion: e.ToVersion, Kind: "different"})
		}
		for _, e := range d.OnlyTo {
			page.Rows = append(page.Rows, compareRow{Name: e.Name, ToVersion: e.ToVersion, Kind: "only-to"})
		}
		slices.SortFunc(page.Rows, func(a, b compareRow) int { return strings.Compare(a.Name, b.Name) })
		page.Same, page.Compared = d.Same, true
		page.CanPromote = tenant.Authorize(to, tenant.WriteSecrets) == nil
	}
	if page.Chrome, err = s.frame(c, "Compare · "+sc.Project.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_compare.html", page)
}

// promotePage copies the chosen secrets from one environment to the other, compare-and-set
// on both sides with the versions the comparison showed (fv_/tv_<NAME>).
func (s *Server) promotePage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	fromSlug, toSlug := c.PostForm("from"), c.PostForm("to")
	q := "?from=" + url.QueryEscape(fromSlug) + "&to=" + url.QueryEscape(toSlug)
	from, err := s.tenants.EnvironmentScope(ctx, sc, fromSlug)
	if err != nil {
		s.pageError(c, err)
		return
	}
	to, err := s.tenants.EnvironmentScope(ctx, sc, toSlug)
	if err != nil {
		s.pageError(c, err)
		return
	}
	names := c.PostFormArray("name")
	if len(names) == 0 {
		s.renderCompare(c, http.StatusUnprocessableEntity, fromSlug, toSlug, "", "Choose at least one variable to promote.")
		return
	}
	items := make([]secrets.Promotion, 0, len(names))
	for _, n := range names {
		fv, err1 := strconv.Atoi(c.PostForm("fv_" + n))
		tv, err2 := strconv.Atoi(c.PostForm("tv_" + n))
		if err1 != nil || err2 != nil {
			s.renderCompare(c, http.StatusUnprocessableEntity, fromSlug, toSlug, "", n+" was not in the comparison: compare again.")
			return
		}
		items = append(items, secrets.Promotion{Name: n, FromVersion: fv, ToVersion: tv})
	}
	if _, err := s.secrets.Promote(ctx, actor(c), from, to, items); err != nil {
		if code := coffer.ErrorCode(err); code == coffer.EPRECONDITION || code == coffer.EINVALID {
			s.renderCompare(c, statusOf[code], fromSlug, toSlug, "", coffer.ErrorMessage(err)+" Nothing was promoted.")
			return
		}
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/p/"+sc.Project.Slug+"/compare"+q+"&promoted="+url.QueryEscape(strings.Join(names, ", ")))
}

type historyPage struct {
	Chrome                                    chrome
	TenantName, Project, ProjectName, EnvName string
	Base, Name, Flash                         string
	Current                                   int
	Versions                                  []secrets.Version
	CanWrite, CanDestroy                      bool
}

// historyPage lists a secret's versions (who, when, note, destroyed) with a rollback to each.
func (s *Server) historyPage(c *gin.Context) {
	sc := s.scope(c)
	name := c.Param("name")
	vs, err := s.secrets.Versions(c.Request.Context(), sc, name, 0, maxLimit)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page := historyPage{TenantName: sc.Tenant.Name, Project: sc.Project.Slug, ProjectName: sc.Project.Name, EnvName: sc.Environment.Name,
		Base: envBase(sc), Name: name, Versions: vs, CanWrite: tenant.Authorize(sc, tenant.WriteSecrets) == nil,
		CanDestroy: tenant.Authorize(sc, tenant.DestroySecrets) == nil}
	if len(vs) > 0 {
		page.Current = vs[0].Version
	}
	if v := c.Query("rolled_back"); v != "" {
		page.Flash = "Rolled back: version " + v + " is the current value again, as a new version."
	} else if v := c.Query("destroyed"); v != "" {
		page.Flash = "Destroyed for good: versions " + v + "."
	}
	if page.Chrome, err = s.frame(c, name+" · "+sc.Environment.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, http.StatusOK, "dash_history.html", page)
}

func (s *Server) rollbackPage(c *gin.Context) {
	sc := s.scope(c)
	name := c.Param("name")
	v, err := strconv.Atoi(c.PostForm("version"))
	if err != nil || v < 1 {
		s.pageError(c, coffer.Errorf(coffer.EINVALID, "version must be a version number"))
		return
	}
	if _, err := s.secrets.Rollback(c.Request.Context(), actor(c), sc, name, v); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"/history/"+url.PathEscape(name)+"?rolled_back="+strconv.Itoa(v))
}

// destroyPage erases the chosen versions' values for good (project admins; never the current
// one): the same Destroy as the API, audited with the versions.
func (s *Server) destroyPage(c *gin.Context) {
	sc := s.scope(c)
	name := c.Param("name")
	var versions []int
	for _, v := range c.PostFormArray("version") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.pageError(c, coffer.Errorf(coffer.EINVALID, "versions are version numbers"))
			return
		}
		versions = append(versions, n)
	}
	destroyed, err := s.secrets.Destroy(c.Request.Context(), actor(c), sc, name, versions)
	if err != nil {
		s.pageError(c, err)
		return
	}
	list := make([]string, len(destroyed))
	for i, v := range destroyed {
		list[i] = strconv.Itoa(v)
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"/history/"+url.PathEscape(name)+"?destroyed="+url.QueryEscape(strings.Join(list, ", ")))
}

// restoreSecretPage brings a deleted secret back at its last version.
func (s *Server) restoreSecretPage(c *gin.Context) {
	sc := s.scope(c)
	res, err := s.secrets.Restore(c.Request.Context(), actor(c), sc, c.Param("name"))
	if err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"?saved="+url.QueryEscape(res.Name+" (restored at version "+strconv.Itoa(res.Version)+")"))
}

type pointInTimePage struct {
	Chrome                                    chrome
	TenantName, Project, ProjectName, EnvName string
	Base, At, Error, Flash                    string
	Secrets                                   []secrets.Secret
	Shown, CanWrite                           bool
}

// pointInTimePage shows the environment's names and versions as they were at a time, and
// offers to put the environment back as it was then.
func (s *Server) pointInTimePage(c *gin.Context) {
	s.renderPointInTime(c, http.StatusOK, c.Query("at"), "")
}

func (s *Server) renderPointInTime(c *gin.Context, status int, atText, problem string) {
	sc := s.scope(c)
	page := pointInTimePage{TenantName: sc.Tenant.Name, Project: sc.Project.Slug, ProjectName: sc.Project.Name, EnvName: sc.Environment.Name,
		Base: envBase(sc), At: atText, Error: problem, CanWrite: tenant.Authorize(sc, tenant.WriteSecrets) == nil}
	if n := c.Query("restored"); n != "" {
		page.Flash = "Restored: " + n + " changes in one write."
	}
	if page.At != "" && problem == "" {
		at, err := parseAt(page.At)
		if err != nil {
			status, page.Error = http.StatusUnprocessableEntity, coffer.ErrorMessage(err)
		} else if page.Secrets, err = s.secrets.ListAt(c.Request.Context(), actor(c), sc, at, false); err != nil {
			s.pageError(c, err)
			return
		} else {
			page.Shown = true
		}
	}
	var err error
	if page.Chrome, err = s.frame(c, "Point in time · "+sc.Environment.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_at.html", page)
}

// restoreAtPage puts the environment back as it was at a time, in one write.
func (s *Server) restoreAtPage(c *gin.Context) {
	sc := s.scope(c)
	v := c.PostForm("at")
	at, err := parseAt(v)
	if err != nil {
		s.renderPointInTime(c, http.StatusUnprocessableEntity, v, coffer.ErrorMessage(err))
		return
	}
	if at.After(time.Now()) {
		s.renderPointInTime(c, http.StatusUnprocessableEntity, v, "choose a moment in the past")
		return
	}
	res, err := s.secrets.RollbackTo(c.Request.Context(), actor(c), sc, at)
	if err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, envBase(sc)+"/at?at="+url.QueryEscape(v)+"&restored="+strconv.Itoa(len(res)))
}
