package auth

import (
	"context"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// TenantToken is a live credential that can reach a tenant, as its admins see it: a service
// token of one of its projects, or a personal token of one of its members.
type TenantToken struct {
	Kind          string // KindServiceToken or KindPersonalToken
	ID            string
	Name          string
	DisplayPrefix string
	ExpiresAt     *time.Time
	LastUsedAt    *time.Time
	CreatedAt     time.Time
	// Personal tokens: whose it is, and their role in the tenant.
	UserID, UserEmail string
	UserRole          tenant.Role
	// Service tokens: the project, environments and access.
	ProjectSlug  string
	Environments []string
	Access       string
}

// TenantTokenStore reads and revokes the credentials reaching a tenant.
type TenantTokenStore interface {
	// TenantTokens lists the live (unrevoked, unexpired at now) service tokens of the
	// tenant's projects and personal tokens of its members.
	TenantTokens(ctx context.Context, tenantID string, now time.Time) ([]TenantToken, error)
	// TenantToken finds one of those by id; ENOTFOUND if it is neither.
	TenantToken(ctx context.Context, tenantID, id string) (TenantToken, error)
}

// ListTenantTokens lists every live credential that can reach the scope's tenant; tenant
// owners and admins only, who answer for who can read the tenant's secrets.
func (s *Service) ListTenantTokens(ctx context.Context, sc tenant.Scope) ([]TenantToken, error) {
	if err := tenant.Authorize(sc, tenant.ManageMembers); err != nil {
		return nil, err
	}
	return s.store.TenantTokens(ctx, sc.Tenant.ID, s.now())
}

// RevokeTenantToken revokes a credential that can reach the scope's tenant. A personal token
// is revoked for its user everywhere, with what it minted, as if they had revoked it; only
// owners revoke an owner's token, as only owners remove owners.
func (s *Service) RevokeTenantToken(ctx context.Context, actor audit.Actor, sc tenant.Scope, id string) error {
	if err := tenant.Authorize(sc, tenant.ManageMembers); err != nil {
		return err
	}
	t, err := s.store.TenantToken(ctx, sc.Tenant.ID, id)
	if err != nil {
		return err
	}
	if t.Kind == KindServiceToken {
		e := actor.New(audit.ActionServiceTokenRevoke, sc.Tenant.ID, "service_token", t.ID, sc.Tenant.Slug+"/"+t.ProjectSlug, nil)
		return s.store.RevokeServiceTokenInTenant(ctx, sc.Tenant.ID, t.ID, s.now(), e)
	}
	if t.UserRole == tenant.RoleOwner && sc.Role != tenant.RoleOwner {
		return coffer.Errorf(coffer.EFORBIDDEN, "only owners revoke an owner's tokens")
	}
	owner := Principal{User: User{ID: t.UserID}}
	return s.revokeToken(ctx, actor, owner, t.ID, sc.Tenant.ID)
}
