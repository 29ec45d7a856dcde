package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

var normalizeEmail = auth.NormalizeEmail

func (s *Server) listProjects(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ps, err := s.tenants.ListProjects(c.Request.Context(), sc, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ps, func(p tenant.Project) string { return p.Slug }, viewProject)
}

type createReq struct {
	Slug      string `json:"slug"`
	Name      string `json:"name"`
	Protected bool   `json:"protected"`
}

func (s *Server) createProject(c *gin.Context) {
	sc := s.scope(c)
	var req struct {
		Slug string `json:"slug"`
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	p, err := s.tenants.CreateProject(c.Request.Context(), actor(c), sc, req.Slug, req.Name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, viewProject(p))
}

func (s *Server) getProject(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewProject)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, viewProject(*sc.Project))
}

func (s *Server) updateProject(c *gin.Context) {
	sc := s.scope(c)
	var req nameReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	p, err := s.tenants.UpdateProject(c.Request.Context(), actor(c), sc, req.Name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewProject(p))
}

func (s *Server) deleteProject(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.DeleteProject(c.Request.Context(), actor(c), sc); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listProjectMembers(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ms, err := s.tenants.ListProjectMembers(c.Request.Context(), sc, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ms, func(m tenant.ProjectMember) string { return m.Email }, viewProjectMember)
}

type projectMemberReq struct {
	Email        string                   `json:"email"`
	Role         string                   `json:"role"`
	Environments map[string]tenant.Access `json:"environments"`
}

func (s *Server) putProjectMember(c *gin.Context) {
	sc := s.scope(c)
	var req projectMemberReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	email, err := normalizeEmail(req.Email)
	if err != nil {
		s.fail(c, err)
		return
	}
	m, err := s.tenants.PutProjectMember(c.Request.Context(), actor(c), sc, email, tenant.ProjectRole(req.Role), req.Environments)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewProjectMember(m))
}

func (s *Server) removeProjectMember(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.RemoveProjectMember(c.Request.Context(), actor(c), sc, c.Param("user")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) listEnvironments(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	envs, levels, err := s.tenants.ListEnvironments(c.Request.Context(), sc, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	type envLevel struct {
		env   tenant.Environment
		level tenant.Level
	}
	items := make([]envLevel, len(envs))
	for i := range envs {
		items[i] = envLevel{envs[i], levels[i]}
	}
	respondPage(c, p, items, func(e envLevel) string { return e.env.Slug },
		func(e envLevel) environmentView { return viewEnvironment(e.env, e.level) })
}

func (s *Server) createEnvironment(c *gin.Context) {
	sc := s.scope(c)
	var req createReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	env, err := s.tenants.CreateEnvironment(c.Request.Context(), actor(c), sc, req.Slug, req.Name, req.Protected)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, viewEnvironment(env, sc.Membership().EnvironmentLevel(env.Protected, "")))
}

func (s *Server) getEnvironment(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewSecrets)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, viewEnvironment(*sc.Environment, sc.Level()))
}

type updateEnvironmentReq struct {
	Name      *string `json:"name"`
	Protected *bool   `json:"protected"`
}

func (s *Server) updateEnvironment(c *gin.Context) {
	sc := s.scope(c)
	var req updateEnvironmentReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	env, err := s.tenants.UpdateEnvironment(c.Request.Context(), actor(c), sc, tenant.EnvironmentPatch{Name: req.Name, Protected: req.Protected})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewEnvironment(env, sc.Membership().EnvironmentLevel(env.Protected, sc.Override)))
}

func (s *Server) deleteEnvironment(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.DeleteEnvironment(c.Request.Context(), actor(c), sc); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
