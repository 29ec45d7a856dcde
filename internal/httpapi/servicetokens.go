package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

type serviceTokenView struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Prefix       string     `json:"prefix"`
	Environments []string   `json:"environments"`
	Access       string     `json:"access"`
	ExpiresAt    time.Time  `json:"expires_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	CreatedAt    time.Time  `json:"created_at"`
	CreatedBy    *string    `json:"created_by"`
}

func viewServiceToken(t auth.ServiceToken) serviceTokenView {
	v := serviceTokenView{ID: t.ID, Name: t.Name, Prefix: t.DisplayPrefix, Environments: t.Environments, Access: t.Access,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, CreatedAt: t.CreatedAt}
	if t.CreatedBy != "" {
		v.CreatedBy = &t.CreatedBy
	}
	return v
}

type createServiceTokenReq struct {
	Name          string   `json:"name"`
	Environments  []string `json:"environments"`
	Access        string   `json:"access"`
	ExpiresInDays int      `json:"expires_in_days"`
}

type createdServiceToken struct {
	serviceTokenView
	Token string `json:"token"`
}

// createServiceToken mints a project's service token and shows it once.
func (s *Server) createServiceToken(c *gin.Context) {
	// Decided before the mint limiter, which counts per user: a service token has none.
	if _, ok := s.allowed(c, tenant.ManageTokens); !ok || !s.minting(c) {
		return
	}
	var req createServiceTokenReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	t, secret, err := s.auth.CreateServiceToken(c.Request.Context(), actor(c), s.scope(c), auth.ServiceTokenRequest{
		Name: req.Name, Environments: req.Environments, Access: req.Access,
		ExpiresIn: time.Duration(req.ExpiresInDays) * 24 * time.Hour,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, createdServiceToken{serviceTokenView: viewServiceToken(t), Token: secret})
}

func (s *Server) listServiceTokens(c *gin.Context) {
	ts, err := s.auth.ListServiceTokens(c.Request.Context(), s.scope(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	items := make([]serviceTokenView, len(ts))
	for i, t := range ts {
		items[i] = viewServiceToken(t)
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

// revokeServiceToken revokes a project's service token; its next request is refused.
func (s *Server) revokeServiceToken(c *gin.Context) {
	if err := s.auth.RevokeServiceToken(c.Request.Context(), actor(c), s.scope(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// tenantTokenView is a credential reaching a tenant, as its admins see it.
type tenantTokenView struct {
	Kind         string     `json:"kind"`
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Prefix       string     `json:"prefix"`
	ExpiresAt    *time.Time `json:"expires_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	CreatedAt    time.Time  `json:"created_at"`
	User         *memberRef `json:"user,omitempty"`
	Project      string     `json:"project,omitempty"`
	Environments []string   `json:"environments,omitempty"`
	Access       string     `json:"access,omitempty"`
}

type memberRef struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Role  string `json:"role"`
}

// listTenantTokens lists every live token that can reach the tenant: its projects' service
// tokens and its members' personal tokens.
func (s *Server) listTenantTokens(c *gin.Context) {
	ts, err := s.auth.ListTenantTokens(c.Request.Context(), s.scope(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	items := make([]tenantTokenView, len(ts))
	for i, t := range ts {
		v := tenantTokenView{Kind: t.Kind, ID: t.ID, Name: t.Name, Prefix: t.DisplayPrefix, ExpiresAt: t.ExpiresAt,
			LastUsedAt: t.LastUsedAt, CreatedAt: t.CreatedAt, Project: t.ProjectSlug, Environments: t.Environments, Access: t.Access}
		if t.Kind == auth.KindPersonalToken {
			v.User = &memberRef{ID: t.UserID, Email: t.UserEmail, Role: string(t.UserRole)}
		}
		items[i] = v
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

// revokeTenantToken revokes a token that can reach the tenant, from its next request on.
func (s *Server) revokeTenantToken(c *gin.Context) {
	if err := s.auth.RevokeTenantToken(c.Request.Context(), actor(c), s.scope(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
