package store

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

type serviceTokenRow struct {
	ID             string
	TenantID       string
	ProjectID      string
	Name           string
	TokenHash      string
	DisplayPrefix  string
	EnvironmentIDs string
	Access         string
	CreatedBy      *string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	LastUsedAt     *time.Time
	RevokedAt      *time.Time
}

func (serviceTokenRow) TableName() string { return "service_tokens" }

// ServiceTokenScope implements auth.Store: the token and, within its own tenant and project
// only, the scope the slugs name, in one query. The joins start from the token's tenant and
// project, so slugs naming any other tenant or project find nothing.
func (s *Store) ServiceTokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (auth.ServiceTokenRecord, tenant.Scope, error) {
	var (
		rec    auth.ServiceTokenRecord
		envIDs string
		sr     scopeRow
	)
	// A service token has no memberships, overrides or identity provider: those columns of
	// scopeRow are NULL here.
	rows, err := s.db.WithContext(ctx).Raw(`SELECT st.id, st.tenant_id, st.project_id, st.name, st.token_hash, st.display_prefix,
		st.environment_ids, st.access, st.created_at, st.expires_at, st.last_used_at, st.revoked_at,
		t.id, t.slug, t.name, t.created_at, t.updated_at, NULL,
		p.id, p.slug, p.name, p.created_at, p.updated_at, NULL,
		e.id, e.slug, e.name, e.protected, e.created_at, e.updated_at, NULL, k.id, k.uses, k.created_at, e.revision,
		NULL, NULL
		FROM service_tokens st
		LEFT JOIN tenants t ON t.id = st.tenant_id AND t.slug = ?
		LEFT JOIN projects p ON p.id = st.project_id AND p.tenant_id = t.id AND p.slug = ?
		LEFT JOIN environments e ON e.project_id = p.id AND e.tenant_id = t.id AND e.slug = ?
		LEFT JOIN data_keys k ON k.id = e.current_key_id AND k.environment_id = e.id
		WHERE st.token_hash = ?`, tenantSlug, projectSlug, envSlug, hash).Rows()
	if err != nil {
		return rec, tenant.Scope{}, dbErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return rec, tenant.Scope{}, dbErr(err)
		}
		return rec, tenant.Scope{}, notFound("token")
	}
	t := &rec.ServiceToken
	dest := append([]any{&t.ID, &t.TenantID, &t.ProjectID, &t.Name, &rec.Hash, &t.DisplayPrefix, &envIDs, &t.Access,
		&t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &rec.RevokedAt}, sr.dest()...)
	if err := rows.Scan(dest...); err != nil {
		return auth.ServiceTokenRecord{}, tenant.Scope{}, dbErr(err)
	}
	t.EnvironmentIDs = strings.Fields(envIDs)
	sc, err := sr.scope(projectSlug, envSlug)
	return rec, sc, err
}

// TouchServiceToken implements auth.Store.
func (s *Store) TouchServiceToken(ctx context.Context, id string, at time.Time) error {
	return dbErr(s.db.WithContext(ctx).Exec(`UPDATE service_tokens SET last_used_at = ? WHERE id = ?`, at, id).Error)
}

// ProjectEnvironments implements auth.Store.
func (s *Store) ProjectEnvironments(ctx context.Context, projectID, userID string, slugs []string) ([]tenant.Environment, []tenant.Access, error) {
	var rows []struct {
		ID, Slug, Name, Access string
		Protected              bool
	}
	err := s.db.WithContext(ctx).Raw(`SELECT e.id, e.slug, e.name, e.protected, COALESCE(ea.access, '') AS access
		FROM environments e LEFT JOIN environment_access ea ON ea.environment_id = e.id AND ea.user_id = ?
		WHERE e.project_id = ? AND e.slug IN ?`, userID, projectID, slugs).Scan(&rows).Error
	if err != nil {
		return nil, nil, dbErr(err)
	}
	bySlug := make(map[string]int, len(rows))
	for i, r := range rows {
		bySlug[r.Slug] = i
	}
	envs := make([]tenant.Environment, len(slugs))
	access := make([]tenant.Access, len(slugs))
	for i, slug := range slugs {
		j, ok := bySlug[slug]
		if !ok {
			return nil, nil, coffer.Errorf(coffer.EINVALID, "the project has no environment %q", slug)
		}
		r := rows[j]
		envs[i] = tenant.Environment{ID: r.ID, ProjectID: projectID, Slug: r.Slug, Name: r.Name, Protected: r.Protected}
		access[i] = tenant.Access(r.Access)
	}
	return envs, access, nil
}

// CreateServiceToken implements auth.Store.
func (s *Store) CreateServiceToken(ctx context.Context, t auth.ServiceToken, hash string, e audit.Entry) error {
	row := serviceTokenRow{ID: t.ID, TenantID: t.TenantID, ProjectID: t.ProjectID, Name: t.Name, TokenHash: hash,
		DisplayPrefix: t.DisplayPrefix, EnvironmentIDs: strings.Join(t.EnvironmentIDs, " "), Access: t.Access,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
	if t.CreatedBy != "" {
		row.CreatedBy = &t.CreatedBy
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// ListServiceTokens implements auth.Store: live tokens (not revoked), newest first, with the
// slugs of the environments that still exist.
func (s *Store) ListServiceTokens(ctx context.Context, projectID string) ([]auth.ServiceToken, error) {
	var rows []serviceTokenRow
	if err := s.db.WithContext(ctx).Where("project_id = ? AND revoked_at IS NULL", projectID).
		Order("created_at DESC, id DESC").Limit(1000).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	slugOf, err := s.environmentSlugs(ctx, "project_id", projectID)
	if err != nil {
		return nil, err
	}
	out := make([]auth.ServiceToken, len(rows))
	for i, r := range rows {
		t := auth.ServiceToken{ID: r.ID, TenantID: r.TenantID, ProjectID: r.ProjectID, Name: r.Name, DisplayPrefix: r.DisplayPrefix,
			EnvironmentIDs: strings.Fields(r.EnvironmentIDs), Access: r.Access, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
			LastUsedAt: r.LastUsedAt, Environments: slugsOf(strings.Fields(r.EnvironmentIDs), slugOf)}
		if r.CreatedBy != nil {
			t.CreatedBy = *r.CreatedBy
		}
		out[i] = t
	}
	return out, nil
}

// RevokeServiceToken implements auth.Store.
func (s *Store) RevokeServiceToken(ctx context.Context, projectID, id string, at time.Time, e audit.Entry) error {
	return s.changeOne(ctx, "service token", e,
		`UPDATE service_tokens SET revoked_at = ? WHERE id = ? AND project_id = ? AND revoked_at IS NULL`, at, id, projectID)
}

// RevokeServiceTokenInTenant implements auth.Store.
func (s *Store) RevokeServiceTokenInTenant(ctx context.Context, tenantID, id string, at time.Time, e audit.Entry) error {
	return s.changeOne(ctx, "service token", e,
		`UPDATE service_tokens SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL`, at, id, tenantID)
}

// tenantTokenRow is a row of either half of the tenant's credentials.
type tenantTokenRow struct {
	ID, Name, DisplayPrefix string
	ExpiresAt, LastUsedAt   *time.Time
	CreatedAt               time.Time
	UserID, Email, Role     string
	ProjectID, ProjectSlug  string
	EnvironmentIDs, Access  string
}

const (
	tenantServiceTokens = `SELECT st.id, st.name, st.display_prefix, st.expires_at, st.last_used_at, st.created_at,
		st.project_id, p.slug AS project_slug, st.environment_ids, st.access
		FROM service_tokens st JOIN projects p ON p.id = st.project_id
		WHERE st.tenant_id = ? AND st.revoked_at IS NULL`
	tenantPersonalTokens = `SELECT t.id, t.name, t.display_prefix, t.expires_at, t.last_used_at, t.created_at,
		t.user_id, u.email, m.role
		FROM api_tokens t JOIN tenant_members m ON m.user_id = t.user_id AND m.tenant_id = ? JOIN users u ON u.id = t.user_id
		WHERE t.revoked_at IS NULL`
)

// TenantTokens implements auth.Store.
func (s *Store) TenantTokens(ctx context.Context, tenantID string, now time.Time) ([]auth.TenantToken, error) {
	var svc, pat []tenantTokenRow
	db := s.db.WithContext(ctx)
	if err := db.Raw(tenantServiceTokens+` AND st.expires_at > ? ORDER BY st.created_at DESC, st.id DESC LIMIT 1000`, tenantID, now).Scan(&svc).Error; err != nil {
		return nil, dbErr(err)
	}
	if err := db.Raw(tenantPersonalTokens+` AND (t.expires_at IS NULL OR t.expires_at > ?) ORDER BY t.created_at DESC, t.id DESC LIMIT 1000`, tenantID, now).Scan(&pat).Error; err != nil {
		return nil, dbErr(err)
	}
	slugs, err := s.environmentSlugs(ctx, "tenant_id", tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]auth.TenantToken, 0, len(svc)+len(pat))
	for _, r := range svc {
		out = append(out, r.serviceToken(slugs))
	}
	for _, r := range pat {
		out = append(out, r.personalToken())
	}
	return out, nil
}

// TenantToken implements auth.Store.
func (s *Store) TenantToken(ctx context.Context, tenantID, id string) (auth.TenantToken, error) {
	var rows []tenantTokenRow
	db := s.db.WithContext(ctx)
	if err := db.Raw(tenantServiceTokens+` AND st.id = ?`, tenantID, id).Scan(&rows).Error; err != nil {
		return auth.TenantToken{}, dbErr(err)
	}
	if len(rows) == 1 {
		slugs, err := s.environmentSlugs(ctx, "tenant_id", tenantID)
		if err != nil {
			return auth.TenantToken{}, err
		}
		return rows[0].serviceToken(slugs), nil
	}
	if err := db.Raw(tenantPersonalTokens+` AND t.id = ?`, tenantID, id).Scan(&rows).Error; err != nil {
		return auth.TenantToken{}, dbErr(err)
	}
	if len(rows) == 1 {
		return rows[0].personalToken(), nil
	}
	return auth.TenantToken{}, notFound("token")
}

// environmentSlugs maps the ids of a tenant's or a project's environments (by, "tenant_id" or
// "project_id") to their slugs.
func (s *Store) environmentSlugs(ctx context.Context, by, id string) (map[string]string, error) {
	var envs []struct{ ID, Slug string }
	if err := s.db.WithContext(ctx).Raw(`SELECT id, slug FROM environments WHERE `+by+` = ?`, id).Scan(&envs).Error; err != nil {
		return nil, dbErr(err)
	}
	m := make(map[string]string, len(envs))
	for _, e := range envs {
		m[e.ID] = e.Slug
	}
	return m, nil
}

func (r tenantTokenRow) serviceToken(slugs map[string]string) auth.TenantToken {
	t := auth.TenantToken{Kind: auth.KindServiceToken, ID: r.ID, Name: r.Name, DisplayPrefix: r.DisplayPrefix,
		ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, CreatedAt: r.CreatedAt, ProjectSlug: r.ProjectSlug,
		Access: r.Access, Environments: slugsOf(strings.Fields(r.EnvironmentIDs), slugs)}
	return t
}

func (r tenantTokenRow) personalToken() auth.TenantToken {
	return auth.TenantToken{Kind: auth.KindPersonalToken, ID: r.ID, Name: r.Name, DisplayPrefix: r.DisplayPrefix,
		ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, CreatedAt: r.CreatedAt,
		UserID: r.UserID, UserEmail: r.Email, UserRole: tenant.Role(r.Role)}
}

// slugsOf names the environments a token reaches by slug, leaving out ids of environments
// deleted since.
func slugsOf(ids []string, slugOf map[string]string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if slug, ok := slugOf[id]; ok {
			out = append(out, slug)
		}
	}
	return out
}
