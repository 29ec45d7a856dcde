package store

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

type tenantRow struct {
	ID        string
	Slug      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (tenantRow) TableName() string { return "tenants" }

func (r tenantRow) domain() tenant.Tenant {
	return tenant.Tenant{ID: r.ID, Slug: r.Slug, Name: r.Name, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type projectRow struct {
	ID        string
	TenantID  string
	Slug      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (projectRow) TableName() string { return "projects" }

func (r projectRow) domain() tenant.Project {
	return tenant.Project{ID: r.ID, TenantID: r.TenantID, Slug: r.Slug, Name: r.Name, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type environmentRow struct {
	ID           string
	TenantID     string
	ProjectID    string
	Slug         string
	Name         string
	Protected    bool
	CurrentKeyID string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (environmentRow) TableName() string { return "environments" }

type dataKeyRow struct {
	ID            string
	TenantID      string
	EnvironmentID string
	KEKID         string `gorm:"column:kek_id"`
	WrappedKey    []byte
	Uses          int64
	CreatedAt     time.Time
	// Filled by queries that join them, never written.
	ProjectID string `gorm:"->"`
	TenantKEK bool   `gorm:"column:tenant_kek;->"`
}

func (dataKeyRow) TableName() string { return "data_keys" }

type tenantMemberRow struct {
	TenantID  string
	UserID    string
	Role      string
	CreatedAt time.Time
}

func (tenantMemberRow) TableName() string { return "tenant_members" }

// CreateTenant implements tenant.Store.
func (s *Store) CreateTenant(ctx context.Context, t *tenant.Tenant, ownerID string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&tenantRow{ID: t.ID, Slug: t.Slug, Name: t.Name, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}).Error; err != nil {
			return conflictAs(err, "a tenant with slug %q already exists", t.Slug)
		}
		if err := tx.Create(&tenantMemberRow{TenantID: t.ID, UserID: ownerID, Role: string(tenant.RoleOwner), CreatedAt: t.CreatedAt}).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// conflictAs gives a unique violation a specific, caller-safe message.
func conflictAs(err error, format string, args ...any) error {
	if e := dbErr(err); coffer.ErrorCode(e) == coffer.ECONFLICT {
		return &coffer.Error{Code: coffer.ECONFLICT, Message: coffer.Errorf(coffer.ECONFLICT, format, args...).Message, Err: err}
	}
	return err
}

// ListTenants implements tenant.Store.
func (s *Store) ListTenants(ctx context.Context, userID, after string, limit int) ([]tenant.Membered, error) {
	var rows []struct {
		ID        string
		Slug      string
		Name      string
		CreatedAt time.Time
		UpdatedAt time.Time
		Role      string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT t.id, t.slug, t.name, t.created_at, t.updated_at, m.role
		FROM tenants t JOIN tenant_members m ON m.tenant_id = t.id AND m.user_id = ?
		WHERE t.slug > ? ORDER BY t.slug LIMIT ?`, userID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]tenant.Membered, len(rows))
	for i, r := range rows {
		out[i] = tenant.Membered{Tenant: tenant.Tenant{ID: r.ID, Slug: r.Slug, Name: r.Name, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, Role: tenant.Role(r.Role)}
	}
	return out, nil
}

// TokenScope implements auth.Store: the token, its user and the scope, in one query.
func (s *Store) TokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (auth.TokenRecord, tenant.Scope, error) {
	var rec auth.TokenRecord
	t, u := &rec.Token, &rec.User
	sc, err := s.credentialScope(ctx, `tok.id, tok.user_id, tok.name, tok.token_hash, tok.display_prefix,
		tok.expires_at, tok.last_used_at, tok.revoked_at, tok.created_at`, "api_tokens", hash, tenantSlug, projectSlug, envSlug,
		&t.ID, &t.UserID, &t.Name, &rec.Hash, &t.DisplayPrefix, &t.ExpiresAt, &t.LastUsedAt, &rec.RevokedAt, &t.CreatedAt,
		&u.Email, &u.Name, &u.InstanceAdmin, &u.CreatedAt, &u.DisabledAt)
	u.ID, sc.UserID = t.UserID, t.UserID
	if err != nil && t.ID == "" && coffer.ErrorCode(err) == coffer.ENOTFOUND {
		err = notFound("token")
	}
	return rec, sc, err
}

// SessionScope implements auth.Store: the session, its user and the scope, in one query.
func (s *Store) SessionScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (auth.SessionRecord, tenant.Scope, error) {
	var rec auth.SessionRecord
	x, u := &rec.Session, &rec.User
	sc, err := s.credentialScope(ctx, `tok.id, tok.user_id, tok.method, tok.token_hash, tok.user_agent, tok.source_ip,
		tok.created_at, tok.last_seen_at, tok.expires_at`, "sessions", hash, tenantSlug, projectSlug, envSlug,
		&x.ID, &x.UserID, &x.Method, &rec.Hash, &x.UserAgent, &x.SourceIP, &x.CreatedAt, &x.LastSeenAt, &x.ExpiresAt,
		&u.Email, &u.Name, &u.InstanceAdmin, &u.CreatedAt, &u.DisabledAt)
	u.ID, sc.UserID = x.UserID, x.UserID
	return rec, sc, err
}

// credentialScope looks up a credential by hash in table (aliased tok, with a user_id and a
// token_hash column), its user and the tenant, project and environment the slugs name for that
// user, in one query: the path every tenant route takes. cols are the credential's columns,
// scanned into the first dest values; the user's email, name, instance_admin, created_at and
// disabled_at follow. The scope joins are LEFT JOINs chained from the user's tenant membership,
// so a tenant the user is not a member of is not found, exactly like a missing one. The
// tenant's own identity provider (id, required) comes along for the session rules; every
// request to a tenant's routes runs this, so rows are scanned by hand. A missing credential is ENOTFOUND with nothing scanned; a missing (or
// invisible because not a member) tenant, project or environment is ENOTFOUND with the
// credential scanned.
func (s *Store) credentialScope(ctx context.Context, cols, table, hash, tenantSlug, projectSlug, envSlug string, dest ...any) (tenant.Scope, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+cols+`, u.email, u.name, u.instance_admin, u.created_at, u.disabled_at,
		`+scopeCols+`
		FROM `+table+` tok
		JOIN users u ON u.id = tok.user_id
		LEFT JOIN tenant_members m ON m.user_id = tok.user_id AND m.tenant_id = (SELECT id FROM tenants WHERE slug = ?)
		LEFT JOIN tenants t ON t.id = m.tenant_id
		LEFT JOIN projects p ON p.tenant_id = t.id AND p.slug = ?
		LEFT JOIN project_members pm ON pm.project_id = p.id AND pm.user_id = tok.user_id
		LEFT JOIN environments e ON e.project_id = p.id AND e.tenant_id = t.id AND e.slug = ?
		LEFT JOIN data_keys k ON k.id = e.current_key_id AND k.environment_id = e.id
		LEFT JOIN environment_access ea ON ea.environment_id = e.id AND ea.user_id = tok.user_id
		LEFT JOIN tenant_idps ti ON ti.tenant_id = t.id
		WHERE tok.token_hash = ?`, tenantSlug, projectSlug, envSlug, hash).Rows()
	if err != nil {
		return tenant.Scope{}, dbErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return tenant.Scope{}, dbErr(err)
		}
		return tenant.Scope{}, notFound("credential")
	}
	var sr scopeRow
	if err := rows.Scan(append(dest, sr.dest()...)...); err != nil {
		return tenant.Scope{}, dbErr(err)
	}
	return sr.scope(projectSlug, envSlug)
}

// scopeCols are the columns a scopeRow scans, in its order: tenant t with the caller's
// membership m, project p with pm, environment e with its key k and the caller's override ea,
// and the tenant's identity provider ti. A query without memberships selects NULL for them.
const scopeCols = `t.id, t.slug, t.name, t.created_at, t.updated_at, m.role,
		p.id, p.slug, p.name, p.created_at, p.updated_at, pm.role,
		e.id, e.slug, e.name, e.protected, e.created_at, e.updated_at, ea.access, k.id, k.uses, k.created_at, e.revision,
		ti.id, ti.required`

// scopeRow is the scope part of a credential-and-scope row; every column may be NULL (LEFT
// JOINs), which is how a missing or invisible tenant, project or environment shows.
type scopeRow struct {
	tID, tSlug, tName, tRole        sql.NullString
	tCreated, tUpdated              sql.NullTime
	pID, pSlug, pName, pRole        sql.NullString
	pCreated, pUpdated              sql.NullTime
	eID, eSlug, eName, eAccess, kID sql.NullString
	eProtected                      sql.NullBool
	eCreated, eUpdated, kCreated    sql.NullTime
	kUses, eRevision                sql.NullInt64
	idpID                           sql.NullString
	idpRequired                     sql.NullBool
}

func (r *scopeRow) dest() []any {
	return []any{&r.tID, &r.tSlug, &r.tName, &r.tCreated, &r.tUpdated, &r.tRole,
		&r.pID, &r.pSlug, &r.pName, &r.pCreated, &r.pUpdated, &r.pRole,
		&r.eID, &r.eSlug, &r.eName, &r.eProtected, &r.eCreated, &r.eUpdated, &r.eAccess, &r.kID, &r.kUses, &r.kCreated, &r.eRevision,
		&r.idpID, &r.idpRequired}
}

// scope builds the scope the slugs named; a level the row lacks is ENOTFOUND naming it.
func (r *scopeRow) scope(projectSlug, envSlug string) (tenant.Scope, error) {
	switch {
	case !r.tID.Valid:
		return tenant.Scope{}, notFound("tenant")
	case projectSlug != "" && !r.pID.Valid:
		return tenant.Scope{}, notFound("project")
	case envSlug != "" && (!r.eID.Valid || !r.kID.Valid):
		return tenant.Scope{}, notFound("environment")
	}
	sc := tenant.Scope{
		Tenant: tenant.Tenant{ID: r.tID.String, Slug: r.tSlug.String, Name: r.tName.String, CreatedAt: r.tCreated.Time, UpdatedAt: r.tUpdated.Time},
		Role:   tenant.Role(r.tRole.String),
		IdPID:  r.idpID.String,
	}
	if r.idpRequired.Bool {
		sc.RequiredIdP = r.idpID.String
	}
	if projectSlug != "" {
		sc.Project = &tenant.Project{ID: r.pID.String, TenantID: r.tID.String, Slug: r.pSlug.String, Name: r.pName.String, CreatedAt: r.pCreated.Time, UpdatedAt: r.pUpdated.Time}
		sc.ProjectRole = tenant.ProjectRole(r.pRole.String)
	}
	if envSlug != "" {
		sc.Environment = &tenant.Environment{
			ID: r.eID.String, TenantID: r.tID.String, ProjectID: r.pID.String, Slug: r.eSlug.String, Name: r.eName.String, Protected: r.eProtected.Bool,
			Key:       tenant.KeyInfo{ID: r.kID.String, Uses: r.kUses.Int64, CreatedAt: r.kCreated.Time},
			Revision:  r.eRevision.Int64,
			CreatedAt: r.eCreated.Time, UpdatedAt: r.eUpdated.Time,
		}
		sc.Override = tenant.Access(r.eAccess.String)
	}
	return sc, nil
}

// UpdateTenant implements tenant.Store.
func (s *Store) UpdateTenant(ctx context.Context, t *tenant.Tenant, e audit.Entry) error {
	return s.changeOne(ctx, "tenant", e, `UPDATE tenants SET name = ?, updated_at = ? WHERE id = ?`, t.Name, t.UpdatedAt, t.ID)
}

// changeOne runs one statement that must change a row of what, and appends its audit entry,
// in one transaction.
func (s *Store) changeOne(ctx context.Context, what string, e audit.Entry, query string, args ...any) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := mustAffect(tx.Exec(query, args...), what); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

func mustAffect(res *gorm.DB, what string) error {
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return notFound(what)
	}
	return nil
}

// DeleteTenant implements tenant.Store. A tenant with projects is refused so that deleting
// it never takes secrets with it.
func (s *Store) DeleteTenant(ctx context.Context, tenantID string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		// The tenant row is the lock between this emptiness check and a project being created:
		// without it a project committed after the count would be cascaded away with the
		// tenant after its creator was told 201. See lockTenant.
		if err := s.lockTenant(tx, tenantID, " FOR UPDATE"); err != nil {
			return err
		}
		var n int64
		if err := tx.Raw(`SELECT COUNT(*) FROM projects WHERE tenant_id = ?`, tenantID).Scan(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return coffer.Errorf(coffer.ECONFLICT, "the tenant still has %d project(s); delete them first", n)
		}
		if err := mustAffect(tx.Exec(`DELETE FROM tenants WHERE id = ?`, tenantID), "tenant"); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// ListMembers implements tenant.Store.
func (s *Store) ListMembers(ctx context.Context, tenantID, after string, limit int) ([]tenant.Member, error) {
	var rows []struct {
		UserID, Email, Name, Role string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT u.id AS user_id, u.email, u.name, m.role
		FROM tenant_members m JOIN users u ON u.id = m.user_id
		WHERE m.tenant_id = ? AND u.email > ? ORDER BY u.email LIMIT ?`, tenantID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]tenant.Member, len(rows))
	for i, r := range rows {
		out[i] = tenant.Member{UserID: r.UserID, Email: r.Email, Name: r.Name, Role: tenant.Role(r.Role)}
	}
	return out, nil
}

// tenantMemberByEmail finds the member of the tenant with an e-mail address. An address no
// user has and a user who is not a member answer alike, so that naming an address tells a
// tenant admin nothing about the rest of the instance.
func (s *Store) tenantMemberByEmail(tx *gorm.DB, tenantID, email string) (string, string, error) {
	var rows []struct{ ID, Name string }
	if err := tx.Raw(`SELECT u.id, u.name FROM users u JOIN tenant_members m ON m.user_id = u.id AND m.tenant_id = ?
		WHERE u.email = ?`+s.forUpdate(), tenantID, email).Scan(&rows).Error; err != nil {
		return "", "", err
	}
	if len(rows) == 0 {
		return "", "", coffer.Errorf(coffer.EINVALID, "no member of this tenant has that e-mail address; invite them to the tenant first")
	}
	return rows[0].ID, rows[0].Name, nil
}

// countOwners counts a tenant's owners, locking them on Postgres so that two concurrent
// removals cannot both see a second owner.
func (s *Store) countOwners(tx *gorm.DB, tenantID string) (int, error) {
	var ids []string
	err := tx.Raw(`SELECT user_id FROM tenant_members WHERE tenant_id = ? AND role = 'owner'`+s.forUpdate(), tenantID).Scan(&ids).Error
	return len(ids), err
}

// canLeaveOwner checks that a member whose role is current may stop being an owner: only an
// owner takes the owner role away, and a tenant keeps at least one.
func (s *Store) canLeaveOwner(tx *gorm.DB, tenantID string, current, actorRole tenant.Role) error {
	if current != tenant.RoleOwner {
		return nil
	}
	if actorRole != tenant.RoleOwner {
		return coffer.Errorf(coffer.EFORBIDDEN, "only owners grant or remove the owner role")
	}
	n, err := s.countOwners(tx, tenantID)
	if err != nil {
		return err
	}
	if n <= 1 {
		return coffer.Errorf(coffer.ECONFLICT, "a tenant keeps at least one owner")
	}
	return nil
}

func (s *Store) memberRole(tx *gorm.DB, tenantID, userID string) (tenant.Role, error) {
	var roles []string
	if err := tx.Raw(`SELECT role FROM tenant_members WHERE tenant_id = ? AND user_id = ?`+s.forUpdate(), tenantID, userID).Scan(&roles).Error; err != nil {
		return "", err
	}
	if len(roles) == 0 {
		return "", nil
	}
	return tenant.Role(roles[0]), nil
}

// RemoveMember implements tenant.Store; project memberships in the tenant go with it.
func (s *Store) RemoveMember(ctx context.Context, tenantID, userID string, actorRole tenant.Role, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		current, err := s.memberRole(tx, tenantID, userID)
		if err != nil {
			return err
		}
		if current == "" {
			return notFound("member")
		}
		if err := s.canLeaveOwner(tx, tenantID, current, actorRole); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM environment_access WHERE user_id = ? AND project_id IN (SELECT id FROM projects WHERE tenant_id = ?)`, userID, tenantID).Error; err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM project_members WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).Error; err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM tenant_members WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).Error; err != nil {
			return err
		}
		e.Metadata = map[string]any{"role": string(current)}
		return appendAudit(tx, e)
	})
}

// SetMemberRole implements tenant.Store. Taking the owner role away needs an owner and
// another owner left (counted under lock, as for removals).
func (s *Store) SetMemberRole(ctx context.Context, tenantID, userID string, role, actorRole tenant.Role, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		current, err := s.memberRole(tx, tenantID, userID)
		if err != nil {
			return err
		}
		if current == "" {
			return notFound("member")
		}
		if current == role {
			return nil
		}
		if err := s.canLeaveOwner(tx, tenantID, current, actorRole); err != nil {
			return err
		}
		if err := tx.Exec(`UPDATE tenant_members SET role = ? WHERE tenant_id = ? AND user_id = ?`, string(role), tenantID, userID).Error; err != nil {
			return err
		}
		e.Metadata = map[string]any{"from": string(current), "to": string(role)}
		return appendAudit(tx, e)
	})
}

func insertEnvironment(tx *gorm.DB, ne tenant.NewEnvironment) error {
	env := ne.Environment
	row := environmentRow{ID: env.ID, TenantID: env.TenantID, ProjectID: env.ProjectID, Slug: env.Slug, Name: env.Name,
		Protected: env.Protected, CurrentKeyID: ne.Key.ID, CreatedAt: env.CreatedAt, UpdatedAt: env.UpdatedAt}
	if err := tx.Create(&row).Error; err != nil {
		return conflictAs(err, "an environment with slug %q already exists in this project", env.Slug)
	}
	return tx.Create(&dataKeyRow{ID: ne.Key.ID, TenantID: env.TenantID, EnvironmentID: env.ID, KEKID: ne.Key.KEKID,
		WrappedKey: ne.Key.Wrapped, CreatedAt: ne.Key.CreatedAt}).Error
}

// CreateProject implements tenant.Store.
func (s *Store) CreateProject(ctx context.Context, p *tenant.Project, envs []tenant.NewEnvironment, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := s.lockTenant(tx, p.TenantID, " FOR SHARE"); err != nil {
			return err
		}
		if err := tx.Create(&projectRow{ID: p.ID, TenantID: p.TenantID, Slug: p.Slug, Name: p.Name, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}).Error; err != nil {
			return conflictAs(err, "a project with slug %q already exists in this tenant", p.Slug)
		}
		for _, ne := range envs {
			if err := insertEnvironment(tx, ne); err != nil {
				return err
			}
		}
		return appendAudit(tx, e)
	})
}

// lockTenant locks the tenant's row on Postgres (mode " FOR UPDATE" to delete it, " FOR
// SHARE" to add to it; they conflict, so a deletion and a creation in the tenant take turns),
// and answers ENOTFOUND once the tenant is gone. Under READ COMMITTED the statements after it
// see everything committed before the lock was granted. SQLite transactions hold the
// database's write lock from their start, so they take turns already and only check.
func (s *Store) lockTenant(tx *gorm.DB, tenantID, mode string) error {
	if s.dialect != Postgres {
		mode = ""
	}
	var ids []string
	if err := tx.Raw(`SELECT id FROM tenants WHERE id = ?`+mode, tenantID).Scan(&ids).Error; err != nil {
		return err
	}
	if len(ids) == 0 {
		return notFound("tenant")
	}
	return nil
}

// ListProjects implements tenant.Store.
func (s *Store) ListProjects(ctx context.Context, tenantID, userID string, memberOnly bool, after string, limit int) ([]tenant.Project, error) {
	var rows []projectRow
	q := s.db.WithContext(ctx).Table("projects p").Select("p.*").Where("p.tenant_id = ? AND p.slug > ?", tenantID, after)
	if memberOnly {
		q = q.Joins("JOIN project_members pm ON pm.project_id = p.id AND pm.user_id = ?", userID)
	}
	if err := q.Order("p.slug").Limit(limit).Scan(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]tenant.Project, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// UpdateProject implements tenant.Store.
func (s *Store) UpdateProject(ctx context.Context, p *tenant.Project, e audit.Entry) error {
	return s.changeOne(ctx, "project", e, `UPDATE projects SET name = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		p.Name, p.UpdatedAt, p.TenantID, p.ID)
}

// DeleteProject implements tenant.Store; environments, keys and secrets cascade.
func (s *Store) DeleteProject(ctx context.Context, tenantID, projectID string, e audit.Entry) ([]string, error) {
	var envIDs []string
	err := s.tx(ctx, func(tx *gorm.DB) error {
		envIDs = envIDs[:0]
		if err := tx.Raw(`SELECT id FROM environments WHERE tenant_id = ? AND project_id = ?`, tenantID, projectID).Scan(&envIDs).Error; err != nil {
			return err
		}
		if err := mustAffect(tx.Exec(`DELETE FROM projects WHERE tenant_id = ? AND id = ?`, tenantID, projectID), "project"); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
	return envIDs, err
}

// CreateEnvironment implements tenant.Store.
func (s *Store) CreateEnvironment(ctx context.Context, ne tenant.NewEnvironment, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := insertEnvironment(tx, ne); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// ListEnvironments implements tenant.Store.
func (s *Store) ListEnvironments(ctx context.Context, tenantID, projectID, userID, after string, limit int) ([]tenant.Environment, []tenant.Access, error) {
	var rows []struct {
		ID           string
		TenantID     string
		ProjectID    string
		Slug         string
		Name         string
		Protected    bool
		CurrentKeyID string
		CreatedAt    time.Time
		UpdatedAt    time.Time
		KUses        int64     `gorm:"column:k_uses"`
		KCreated     time.Time `gorm:"column:k_created"`
		Access       string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT e.*, k.uses AS k_uses, k.created_at AS k_created, COALESCE(ea.access, '') AS access
		FROM environments e
		JOIN data_keys k ON k.id = e.current_key_id
		LEFT JOIN environment_access ea ON ea.environment_id = e.id AND ea.user_id = ?
		WHERE e.tenant_id = ? AND e.project_id = ? AND e.slug > ? ORDER BY e.slug LIMIT ?`,
		userID, tenantID, projectID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, nil, dbErr(err)
	}
	envs := make([]tenant.Environment, len(rows))
	access := make([]tenant.Access, len(rows))
	for i, r := range rows {
		envs[i] = tenant.Environment{ID: r.ID, TenantID: r.TenantID, ProjectID: r.ProjectID, Slug: r.Slug, Name: r.Name,
			Protected: r.Protected, Key: tenant.KeyInfo{ID: r.CurrentKeyID, Uses: r.KUses, CreatedAt: r.KCreated},
			CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
		access[i] = tenant.Access(r.Access)
	}
	return envs, access, nil
}

// ProjectBySlug implements tenant.Store.
func (s *Store) ProjectBySlug(ctx context.Context, tenantID, userID, slug string) (tenant.Project, tenant.ProjectRole, error) {
	var rows []struct {
		ID, TenantID, Slug, Name, Role string
		CreatedAt, UpdatedAt           time.Time
	}
	err := s.db.WithContext(ctx).Raw(`SELECT p.id, p.tenant_id, p.slug, p.name, p.created_at, p.updated_at, COALESCE(pm.role, '') AS role FROM projects p
		LEFT JOIN project_members pm ON pm.project_id = p.id AND pm.user_id = ?
		WHERE p.tenant_id = ? AND p.slug = ?`, userID, tenantID, slug).Scan(&rows).Error
	if err != nil {
		return tenant.Project{}, "", dbErr(err)
	}
	if len(rows) == 0 {
		return tenant.Project{}, "", notFound("project")
	}
	r := rows[0]
	return tenant.Project{ID: r.ID, TenantID: r.TenantID, Slug: r.Slug, Name: r.Name, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt},
		tenant.ProjectRole(r.Role), nil
}

// Environment implements tenant.Store.
func (s *Store) Environment(ctx context.Context, tenantID, projectID, userID, slug string) (tenant.Environment, tenant.Access, error) {
	var rows []struct {
		ID, Slug, Name, CurrentKeyID string
		Protected                    bool
		Revision                     int64
		CreatedAt, UpdatedAt         time.Time
		KUses                        int64     `gorm:"column:k_uses"`
		KCreated                     time.Time `gorm:"column:k_created"`
		Access                       string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT e.id, e.slug, e.name, e.current_key_id, e.protected, e.revision, e.created_at, e.updated_at,
		k.uses AS k_uses, k.created_at AS k_created, COALESCE(ea.access, '') AS access
		FROM environments e
		JOIN data_keys k ON k.id = e.current_key_id AND k.environment_id = e.id
		LEFT JOIN environment_access ea ON ea.environment_id = e.id AND ea.user_id = ?
		WHERE e.tenant_id = ? AND e.project_id = ? AND e.slug = ?`, userID, tenantID, projectID, slug).Scan(&rows).Error
	if err != nil {
		return tenant.Environment{}, "", dbErr(err)
	}
	if len(rows) == 0 {
		return tenant.Environment{}, "", notFound("environment")
	}
	r := rows[0]
	return tenant.Environment{ID: r.ID, TenantID: tenantID, ProjectID: projectID, Slug: r.Slug, Name: r.Name, Protected: r.Protected,
		Key: tenant.KeyInfo{ID: r.CurrentKeyID, Uses: r.KUses, CreatedAt: r.KCreated}, Revision: r.Revision,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, tenant.Access(r.Access), nil
}

// UpdateEnvironment implements tenant.Store.
func (s *Store) UpdateEnvironment(ctx context.Context, env *tenant.Environment, wasProtected bool, e audit.Entry) error {
	return s.changeEnvironment(ctx, env.TenantID, env.ID, wasProtected, e,
		`UPDATE environments SET name = ?, protected = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND protected = ?`,
		env.Name, env.Protected, env.UpdatedAt, env.TenantID, env.ID, wasProtected)
}

// DeleteEnvironment implements tenant.Store; keys and secrets cascade.
func (s *Store) DeleteEnvironment(ctx context.Context, tenantID, envID string, wasProtected bool, e audit.Entry) error {
	return s.changeEnvironment(ctx, tenantID, envID, wasProtected, e,
		`DELETE FROM environments WHERE tenant_id = ? AND id = ? AND protected = ?`, tenantID, envID, wasProtected)
}

// changeEnvironment runs query, which changes the environment only while its protection is
// still wasProtected, and appends e with the environment's live secret count, in one
// transaction. No row changed: the environment is gone (ENOTFOUND) or its protection changed
// since the caller's permission was decided (ECONFLICT).
func (s *Store) changeEnvironment(ctx context.Context, tenantID, envID string, wasProtected bool, e audit.Entry, query string, args ...any) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var count int64
		if err := tx.Raw(`SELECT COUNT(*) FROM secrets WHERE tenant_id = ? AND environment_id = ? AND deleted_at IS NULL`,
			tenantID, envID).Scan(&count).Error; err != nil {
			return err
		}
		res := tx.Exec(query, args...)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			var n int64
			if err := tx.Raw(`SELECT COUNT(*) FROM environments WHERE tenant_id = ? AND id = ?`, tenantID, envID).Scan(&n).Error; err != nil {
				return err
			}
			if n == 0 {
				return notFound("environment")
			}
			return coffer.Errorf(coffer.ECONFLICT, "the environment's protection changed while you asked; reload and try again")
		}
		if e.Metadata == nil {
			e.Metadata = map[string]any{}
		}
		e.Metadata["secrets"] = count
		return appendAudit(tx, e)
	})
}

// ListProjectMembers implements tenant.Store.
func (s *Store) ListProjectMembers(ctx context.Context, tenantID, projectID, after string, limit int) ([]tenant.ProjectMember, error) {
	db := s.db.WithContext(ctx)
	var rows []struct{ UserID, Email, Name, Role string }
	err := db.Raw(`SELECT u.id AS user_id, u.email, u.name, pm.role
		FROM project_members pm JOIN users u ON u.id = pm.user_id
		WHERE pm.tenant_id = ? AND pm.project_id = ? AND u.email > ? ORDER BY u.email LIMIT ?`,
		tenantID, projectID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	var overrides []struct{ UserID, Slug, Access string }
	err = db.Raw(`SELECT ea.user_id, e.slug, ea.access FROM environment_access ea
		JOIN environments e ON e.id = ea.environment_id
		WHERE e.tenant_id = ? AND ea.project_id = ?`, tenantID, projectID).Scan(&overrides).Error
	if err != nil {
		return nil, dbErr(err)
	}
	byUser := map[string]map[string]tenant.Access{}
	for _, o := range overrides {
		if byUser[o.UserID] == nil {
			byUser[o.UserID] = map[string]tenant.Access{}
		}
		byUser[o.UserID][o.Slug] = tenant.Access(o.Access)
	}
	out := make([]tenant.ProjectMember, len(rows))
	for i, r := range rows {
		out[i] = tenant.ProjectMember{UserID: r.UserID, Email: r.Email, Name: r.Name, Role: tenant.ProjectRole(r.Role), Environments: byUser[r.UserID]}
	}
	return out, nil
}

// PutProjectMember implements tenant.Store.
func (s *Store) PutProjectMember(ctx context.Context, tenantID, projectID, email string, role tenant.ProjectRole, envs map[string]tenant.Access, e audit.Entry) (tenant.ProjectMember, error) {
	var m tenant.ProjectMember
	err := s.tx(ctx, func(tx *gorm.DB) error {
		userID, name, err := s.tenantMemberByEmail(tx, tenantID, email)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		res := tx.Exec(`UPDATE project_members SET role = ? WHERE project_id = ? AND user_id = ?`, string(role), projectID, userID)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			if err := tx.Exec(`INSERT INTO project_members (project_id, user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?, ?)`,
				projectID, userID, tenantID, string(role), now).Error; err != nil {
				return err
			}
		}
		if err := tx.Exec(`DELETE FROM environment_access WHERE project_id = ? AND user_id = ?`, projectID, userID).Error; err != nil {
			return err
		}
		for slug, access := range envs {
			var ids []string
			if err := tx.Raw(`SELECT id FROM environments WHERE tenant_id = ? AND project_id = ? AND slug = ?`, tenantID, projectID, slug).Scan(&ids).Error; err != nil {
				return err
			}
			if len(ids) == 0 {
				return coffer.Errorf(coffer.EINVALID, "the project has no environment %q", slug)
			}
			if err := tx.Exec(`INSERT INTO environment_access (environment_id, user_id, project_id, access) VALUES (?, ?, ?, ?)`,
				ids[0], userID, projectID, string(access)).Error; err != nil {
				return err
			}
		}
		m = tenant.ProjectMember{UserID: userID, Email: email, Name: name, Role: role, Environments: envs}
		e.TargetID = userID
		return appendAudit(tx, e)
	})
	return m, err
}

// RemoveProjectMember implements tenant.Store.
func (s *Store) RemoveProjectMember(ctx context.Context, tenantID, projectID, userID string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM environment_access WHERE project_id = ? AND user_id = ?`, projectID, userID).Error; err != nil {
			return err
		}
		res := tx.Exec(`DELETE FROM project_members WHERE tenant_id = ? AND project_id = ? AND user_id = ?`, tenantID, projectID, userID)
		if err := mustAffect(res, "project member"); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}
