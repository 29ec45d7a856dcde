package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/tenant"
)

// The dashboard's members pages: a tenant's members and pending invitations, and a project's
// members with their roles and per-environment overrides. They go through the services of
// GET/DELETE …/members, …/invitations and …/projects/:project/members, so the same
// tenant.Authorize decides; each form handler also asks it first, so that a refused caller
// learns nothing from the form's validation.
//
// The tenant service has no way to change a tenant member's role (the API has none either),
// so the tenant page offers invite, revoke and remove; roles are changed on project pages.

// memberPages adds them to ts, the /t/:tenant group behind pageScope.
func (s *Server) memberPages(ts *gin.RouterGroup) {
	ts.GET("/members", s.membersPage)
	ts.POST("/members/:user/remove", s.removeMemberPage)
	ts.POST("/members/:user/role", s.memberRolePage)
	ts.POST("/invitations", s.invitePage)
	ts.POST("/invitations/:invitation/revoke", s.revokeInvitationPage)
	ts.GET("/p/:project/members", s.projectMembersPage)
	ts.POST("/p/:project/members", s.putProjectMemberPage)
	ts.POST("/p/:project/members/:user/remove", s.removeProjectMemberPage)
}

// memberRow is a tenant member as the page shows it.
type memberRow struct {
	tenant.Member
	You       bool // the signed-in user
	CanRemove bool // the caller may remove them: only owners remove owners, nobody themselves here
}

// invitedLink is the answer to the invite form: the one-time accept link, rendered in that
// response only (every response is Cache-Control: no-store).
type invitedLink struct {
	Email, Role, URL string
	ExpiresAt        time.Time
}

type membersPage struct {
	Chrome      chrome
	TenantName  string
	Members     []memberRow
	More        bool // more members than the page lists
	Invitations []tenant.Invitation
	CanManage   bool
	Roles       []tenant.Role // the roles the caller may invite with
	Invited     *invitedLink
	// Email and Role are the invite form's values, kept when it is refused.
	Email, Role  string
	Flash, Error string
}

func membersBase(sc tenant.Scope) string { return "/t/" + sc.Tenant.Slug + "/members" }

// membersPage lists the tenant's members (any member may, as for GET …/members) and, for
// owners and admins, the pending invitations and the forms that manage both.
func (s *Server) membersPage(c *gin.Context) {
	var page membersPage
	if n := c.Query("removed"); n != "" {
		page.Flash = "Removed " + n + " from the tenant."
	} else if n := c.Query("revoked"); n != "" {
		page.Flash = "Revoked the invitation for " + n + "."
	} else if n := c.Query("role"); n != "" {
		page.Flash = "Changed the role of " + n + "."
	}
	s.renderMembers(c, http.StatusOK, page)
}

// renderMembers fills in the page's lists and frame and renders it with status.
func (s *Server) renderMembers(c *gin.Context, status int, page membersPage) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	ms, err := s.tenants.ListMembers(ctx, sc, "", maxLimit+1)
	if err != nil {
		s.pageError(c, err)
		return
	}
	if len(ms) > maxLimit {
		ms, page.More = ms[:maxLimit], true
	}
	page.CanManage = tenant.Authorize(sc, tenant.ManageMembers) == nil
	for _, m := range ms {
		you := m.UserID == sc.UserID
		page.Members = append(page.Members, memberRow{Member: m, You: you,
			CanRemove: page.CanManage && !you && tenant.CheckGrantRole(sc.Role, m.Role) == nil})
	}
	if page.CanManage {
		if page.Invitations, err = s.tenants.ListInvitations(ctx, sc, "", maxLimit); err != nil {
			s.pageError(c, err)
			return
		}
		for _, r := range []tenant.Role{tenant.RoleMember, tenant.RoleAdmin, tenant.RoleOwner} {
			if tenant.CheckGrantRole(sc.Role, r) == nil {
				page.Roles = append(page.Roles, r)
			}
		}
		if page.Role == "" {
			page.Role = string(tenant.RoleMember)
		}
	}
	if page.Chrome, err = s.frame(c, "Members · "+sc.Tenant.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	page.TenantName = sc.Tenant.Name
	s.render(c, status, "dash_members.html", page)
}

// invitePage is the invite form (as POST …/invitations): the answer is the members page with
// the one-time accept link, shown in this response and never again.
func (s *Server) invitePage(c *gin.Context) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ManageMembers); err != nil {
		s.pageError(c, err)
		return
	}
	page := membersPage{Email: c.PostForm("email"), Role: c.PostForm("role")}
	email, err := normalizeEmail(page.Email)
	if err == nil {
		inv, code, cerr := s.tenants.CreateInvitation(c.Request.Context(), actor(c), sc, email, tenant.Role(page.Role))
		if cerr == nil {
			page.Email, page.Role = "", ""
			page.Invited = &invitedLink{Email: inv.Email, Role: string(inv.Role), URL: s.acceptLink(code), ExpiresAt: inv.ExpiresAt}
			s.renderMembers(c, http.StatusOK, page)
			return
		}
		err = cerr
	}
	if code := coffer.ErrorCode(err); code == coffer.EINVALID || code == coffer.ECONFLICT {
		page.Error = coffer.ErrorMessage(err)
		s.renderMembers(c, statusOf[code], page)
		return
	}
	s.pageError(c, err)
}

// acceptLink is an invitation's accept URL, as createInvitation answers it.
func (s *Server) acceptLink(code string) string {
	return strings.TrimRight(s.cfg.BaseURL, "/") + "/invitations/accept?code=" + url.QueryEscape(code)
}

// revokeInvitationPage is a pending invitation's revoke form (as DELETE …/invitations/:id).
func (s *Server) revokeInvitationPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	if err := tenant.Authorize(sc, tenant.ManageMembers); err != nil {
		s.pageError(c, err)
		return
	}
	id := c.Param("invitation")
	// The flash names the invitation as the server knows it, not as the form said.
	what := "the invitation"
	if invs, err := s.tenants.ListInvitations(ctx, sc, "", maxLimit); err == nil {
		if i := slices.IndexFunc(invs, func(inv tenant.Invitation) bool { return inv.ID == id }); i >= 0 {
			what = invs[i].Email
		}
	}
	if err := s.tenants.RevokeInvitation(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, membersBase(sc)+"?revoked="+url.QueryEscape(what))
}

// removeMemberPage is a member's remove form (as DELETE …/members/:user): they lose the
// tenant and every project in it.
func (s *Server) removeMemberPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	if err := tenant.Authorize(sc, tenant.ManageMembers); err != nil {
		s.pageError(c, err)
		return
	}
	id := c.Param("user")
	what := "the member"
	if m, ok := s.memberOf(c, sc, id); ok {
		what = m.Email
	}
	if err := s.tenants.RemoveMember(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, membersBase(sc)+"?removed="+url.QueryEscape(what))
}

// memberOf finds a tenant member by user id, for a page's message; false if it cannot.
func (s *Server) memberOf(c *gin.Context, sc tenant.Scope, userID string) (tenant.Member, bool) {
	ms, err := s.tenants.ListMembers(c.Request.Context(), sc, "", maxLimit)
	if err != nil {
		return tenant.Member{}, false
	}
	i := slices.IndexFunc(ms, func(m tenant.Member) bool { return m.UserID == userID })
	if i < 0 {
		return tenant.Member{}, false
	}
	return ms[i], true
}

// memberRolePage is a member's role form (as PUT …/members/:user).
func (s *Server) memberRolePage(c *gin.Context) {
	sc := s.scope(c)
	id := c.Param("user")
	if err := s.tenants.SetMemberRole(c.Request.Context(), actor(c), sc, id, tenant.Role(c.PostForm("role"))); err != nil {
		if code := coffer.ErrorCode(err); code == coffer.EINVALID || code == coffer.ECONFLICT {
			s.renderMembers(c, statusOf[code], membersPage{Error: coffer.ErrorMessage(err)})
			return
		}
		s.pageError(c, err)
		return
	}
	what := "the member"
	if m, ok := s.memberOf(c, sc, id); ok {
		what = m.Email + " to " + string(m.Role)
	}
	c.Redirect(http.StatusSeeOther, membersBase(sc)+"?role="+url.QueryEscape(what))
}

// envAccess is one environment's override of a project member's role; "" is none.
type envAccess struct {
	Slug, Name string
	Protected  bool
	Override   tenant.Access
}

type projectMemberRow struct {
	tenant.ProjectMember
	Access []envAccess // the caller's visible environments, in the project's order
	Error  string      // why the row's form was refused
}

type projectMembersPage struct {
	Chrome                                 chrome
	TenantName, Project, ProjectName, Base string
	Members                                []projectMemberRow
	More                                   bool
	Envs                                   []envAccess // for the add form: no overrides
	Roles                                  []tenant.ProjectRole
	Accesses                               []tenant.Access
	CanManage                              bool
	// Email and Role are the add form's values, kept when it is refused.
	Email, Role  string
	Flash, Error string
}

func projectMembersBase(sc tenant.Scope) string {
	return "/t/" + sc.Tenant.Slug + "/p/" + sc.Project.Slug + "/members"
}

// projectMembersPage lists the project's members (anyone who sees the project may, as for GET
// …/projects/:project/members) and, for project admins, the forms that change them.
func (s *Server) projectMembersPage(c *gin.Context) {
	var page projectMembersPage
	if n := c.Query("saved"); n != "" {
		page.Flash = "Saved " + n + "."
	} else if n := c.Query("removed"); n != "" {
		page.Flash = "Removed " + n + " from the project."
	}
	s.renderProjectMembers(c, http.StatusOK, page, nil)
}

// renderProjectMembers renders the page; rowError, if set, is the error of one member's form.
func (s *Server) renderProjectMembers(c *gin.Context, status int, page projectMembersPage, rowError *projectMemberRow) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	ms, err := s.tenants.ListProjectMembers(ctx, sc, "", maxLimit+1)
	if err != nil {
		s.pageError(c, err)
		return
	}
	if len(ms) > maxLimit {
		ms, page.More = ms[:maxLimit], true
	}
	envs, levels, err := s.tenants.ListEnvironments(ctx, sc, "", maxLimit)
	if err != nil {
		s.pageError(c, err)
		return
	}
	// Only the environments the caller sees: an override names an environment.
	for i, e := range envs {
		if levels[i] != tenant.LevelNone {
			page.Envs = append(page.Envs, envAccess{Slug: e.Slug, Name: e.Name, Protected: e.Protected})
		}
	}
	for _, m := range ms {
		row := projectMemberRow{ProjectMember: m}
		for _, e := range page.Envs {
			e.Override = m.Environments[e.Slug]
			row.Access = append(row.Access, e)
		}
		if rowError != nil && rowError.Email == m.Email {
			row.Error = rowError.Error
		}
		page.Members = append(page.Members, row)
	}
	page.CanManage = tenant.Authorize(sc, tenant.ManageProject) == nil
	if page.CanManage {
		page.Roles = []tenant.ProjectRole{tenant.ProjectViewer, tenant.ProjectDeveloper, tenant.ProjectAdmin}
		page.Accesses = []tenant.Access{tenant.AccessNone, tenant.AccessRead, tenant.AccessWrite}
		if page.Role == "" {
			page.Role = string(tenant.ProjectViewer)
		}
	}
	if page.Chrome, err = s.frame(c, "Members · "+sc.Project.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	page.TenantName, page.Project, page.ProjectName, page.Base = sc.Tenant.Name, sc.Project.Slug, sc.Project.Name, projectMembersBase(sc)
	s.render(c, status, "dash_project_members.html", page)
}

// putProjectMemberPage is both the add form and a member's change form (as POST
// …/projects/:project/members): email, role and env[<slug>] = none, read or write for each
// override (empty: the role decides). Like the API, it sets the member's overrides to exactly
// those the form sent.
func (s *Server) putProjectMemberPage(c *gin.Context) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ManageProject); err != nil {
		s.pageError(c, err)
		return
	}
	form, role := c.PostForm("email"), c.PostForm("role")
	envs := map[string]tenant.Access{}
	for slug, a := range c.PostFormMap("env") {
		if a != "" {
			envs[slug] = tenant.Access(a)
		}
	}
	email, err := normalizeEmail(form)
	if err == nil {
		var m tenant.ProjectMember
		if m, err = s.tenants.PutProjectMember(c.Request.Context(), actor(c), sc, email, tenant.ProjectRole(role), envs); err == nil {
			c.Redirect(http.StatusSeeOther, projectMembersBase(sc)+"?saved="+url.QueryEscape(m.Email+" ("+string(m.Role)+")"))
			return
		}
	}
	code := coffer.ErrorCode(err)
	if code != coffer.EINVALID && code != coffer.ECONFLICT {
		s.pageError(c, err)
		return
	}
	msg := coffer.ErrorMessage(err)
	if c.PostForm("row") != "" {
		// A member's own form: the error goes next to their row.
		s.renderProjectMembers(c, statusOf[code], projectMembersPage{}, &projectMemberRow{ProjectMember: tenant.ProjectMember{Email: form}, Error: msg})
		return
	}
	s.renderProjectMembers(c, statusOf[code], projectMembersPage{Email: form, Role: role, Error: msg}, nil)
}

// removeProjectMemberPage is a project member's remove form (as DELETE
// …/projects/:project/members/:user); they stay a member of the tenant.
func (s *Server) removeProjectMemberPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	if err := tenant.Authorize(sc, tenant.ManageProject); err != nil {
		s.pageError(c, err)
		return
	}
	id := c.Param("user")
	what := "the member"
	if ms, err := s.tenants.ListProjectMembers(ctx, sc, "", maxLimit); err == nil {
		if i := slices.IndexFunc(ms, func(m tenant.ProjectMember) bool { return m.UserID == id }); i >= 0 {
			what = ms[i].Email
		}
	}
	if err := s.tenants.RemoveProjectMember(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, projectMembersBase(sc)+"?removed="+url.QueryEscape(what))
}
