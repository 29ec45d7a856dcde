package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/tenant"
)

// scope returns the tenant, project and environment the URL names, resolved for the caller
// by authorizeScope before the handler runs.
func (s *Server) scope(c *gin.Context) tenant.Scope {
	return c.MustGet(ctxScope).(tenant.Scope)
}

// allowed returns the request's scope if its caller may do a there, and otherwise answers
// the refusal: for handlers that call no domain service, which decides for the others.
func (s *Server) allowed(c *gin.Context, a tenant.Action) (tenant.Scope, bool) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, a); err != nil {
		s.fail(c, err)
		return sc, false
	}
	return sc, true
}

func (s *Server) listTenants(c *gin.Context) {
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ts, err := s.tenants.ListTenants(c.Request.Context(), principal(c).User.ID, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ts, func(t tenant.Membered) string { return t.Slug },
		func(t tenant.Membered) tenantView { return viewTenant(t.Tenant, t.Role) })
}

type createTenantReq struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
}

func (s *Server) createTenant(c *gin.Context) {
	var req createTenantReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	t, err := s.tenants.CreateTenant(c.Request.Context(), actor(c), req.Slug, req.Name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, viewTenant(t, tenant.RoleOwner))
}

func (s *Server) getTenant(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewTenant)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, viewTenant(sc.Tenant, sc.Role))
}

type nameReq struct {
	Name string `json:"name"`
}

func (s *Server) updateTenant(c *gin.Context) {
	sc := s.scope(c)
	var req nameReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	t, err := s.tenants.UpdateTenant(c.Request.Context(), actor(c), sc, req.Name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewTenant(t, sc.Role))
}

func (s *Server) deleteTenant(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.DeleteTenant(c.Request.Context(), actor(c), sc); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type memberRoleReq struct {
	Role string `json:"role"`
}

// setMemberRole changes a member's tenant role.
func (s *Server) setMemberRole(c *gin.Context) {
	var req memberRoleReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	sc := s.scope(c)
	if err := s.tenants.SetMemberRole(c.Request.Context(), actor(c), sc, c.Param("user"), tenant.Role(req.Role)); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listMembers(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ms, err := s.tenants.ListMembers(c.Request.Context(), sc, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ms, func(m tenant.Member) string { return m.Email }, viewMember)
}

func (s *Server) removeMember(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.RemoveMember(c.Request.Context(), actor(c), sc, c.Param("user")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
