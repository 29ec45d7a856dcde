package store

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

// DataKey implements secrets.KeyStore. It also says whether the key's KEK is one the tenant
// registered, so the keyring never sends an unregistered KEK id read from a row to the KMS.
func (s *Store) DataKey(ctx context.Context, tenantID, envID, keyID string) (tenant.WrappedKey, error) {
	var rows []dataKeyRow
	err := s.db.WithContext(ctx).Raw(`SELECT k.*, EXISTS (SELECT 1 FROM tenant_keks tk
			WHERE tk.tenant_id = k.tenant_id AND tk.kek_id = k.kek_id AND tk.retired_at IS NULL) AS tenant_kek
		FROM data_keys k WHERE k.tenant_id = ? AND k.environment_id = ? AND k.id = ?`,
		tenantID, envID, keyID).Scan(&rows).Error
	if err != nil {
		return tenant.WrappedKey{}, dbErr(err)
	}
	if len(rows) == 0 {
		return tenant.WrappedKey{}, coffer.Wrap(coffer.EINTERNAL, secrets.ErrUnknownDataKey, "a stored value failed its integrity check: it names a data key its environment does not have")
	}
	r := rows[0]
	return tenant.WrappedKey{ID: r.ID, KEKID: r.KEKID, Wrapped: r.WrappedKey, CreatedAt: r.CreatedAt, TenantKEK: r.TenantKEK}, nil
}

// TenantKEK implements secrets.KeyStore.
func (s *Store) TenantKEK(ctx context.Context, tenantID string) (string, error) {
	var rows []sql.NullString
	if err := s.db.WithContext(ctx).Raw(`SELECT kek_id FROM tenants WHERE id = ?`, tenantID).Scan(&rows).Error; err != nil {
		return "", dbErr(err)
	}
	if len(rows) == 0 {
		return "", notFound("tenant")
	}
	return rows[0].String, nil
}

// KeyCheck is the record that proves a key-encryption key is the one this instance adopted.
type KeyCheck struct {
	KEKID   string
	Wrapped []byte
}

// KeyState is what the startup key check needs to know about the database.
type KeyState struct {
	Checks []KeyCheck
	// InUse lists the platform KEKs that wrap at least one data key or platform key.
	InUse []string
}

// Empty reports whether nothing was ever wrapped in this database: the only case in which a new
// key-encryption key may be generated and adopted without further proof.
func (k KeyState) Empty() bool { return len(k.Checks) == 0 && len(k.InUse) == 0 }

// KeyState implements the startup key check's view of the database.
func (s *Store) KeyState(ctx context.Context) (KeyState, error) {
	db := s.db.WithContext(ctx)
	var st KeyState
	if err := db.Raw(`SELECT kek_id, wrapped FROM key_checks ORDER BY kek_id`).Scan(&st.Checks).Error; err != nil {
		return KeyState{}, dbErr(err)
	}
	err := db.Raw(`SELECT DISTINCT k.kek_id FROM data_keys k
		WHERE NOT EXISTS (SELECT 1 FROM tenant_keks tk WHERE tk.tenant_id = k.tenant_id AND tk.kek_id = k.kek_id)
		UNION SELECT DISTINCT kek_id FROM platform_keys ORDER BY 1`).Scan(&st.InUse).Error
	if err != nil {
		return KeyState{}, dbErr(err)
	}
	return st, nil
}

// SampleDataKey returns one data key wrapped under kekID with the ids its context names, so a
// KEK adopted before key-check records existed can be proven by opening it.
func (s *Store) SampleDataKey(ctx context.Context, kekID string) (tenantID, projectID, envID string, wk tenant.WrappedKey, err error) {
	var rows []dataKeyRow
	err = s.db.WithContext(ctx).Raw(`SELECT k.*, e.project_id FROM data_keys k JOIN environments e ON e.id = k.environment_id
		WHERE k.kek_id = ? ORDER BY k.id LIMIT 1`, kekID).Scan(&rows).Error
	if err != nil {
		return "", "", "", tenant.WrappedKey{}, dbErr(err)
	}
	if len(rows) == 0 {
		return "", "", "", tenant.WrappedKey{}, notFound("data key")
	}
	r := rows[0]
	return r.TenantID, r.ProjectID, r.EnvironmentID, tenant.WrappedKey{ID: r.ID, KEKID: r.KEKID, Wrapped: r.WrappedKey, CreatedAt: r.CreatedAt}, nil
}

// AddKeyCheck records that a KEK was adopted; a record that exists already is kept (another
// replica adopted the same key at the same time).
func (s *Store) AddKeyCheck(ctx context.Context, kekID string, wrapped []byte) error {
	return dbErr(s.db.WithContext(ctx).Exec(`INSERT INTO key_checks (kek_id, wrapped, created_at) VALUES (?, ?, ?)
		ON CONFLICT (kek_id) DO NOTHING`, kekID, wrapped, time.Now().UTC()).Error)
}

// PlatformKey returns the platform data key, creating it with create on first use.
func (s *Store) PlatformKey(ctx context.Context, create func(ctx context.Context) (tenant.WrappedKey, error)) (tenant.WrappedKey, error) {
	var rows []dataKeyRow
	load := func(db *gorm.DB) error {
		return db.Raw(`SELECT id, kek_id, wrapped_key, created_at FROM platform_keys WHERE slot = 1`).Scan(&rows).Error
	}
	db := s.db.WithContext(ctx)
	if err := load(db); err != nil {
		return tenant.WrappedKey{}, dbErr(err)
	}
	if len(rows) == 0 {
		wk, err := create(ctx)
		if err != nil {
			return tenant.WrappedKey{}, err
		}
		if err := db.Exec(`INSERT INTO platform_keys (id, slot, kek_id, wrapped_key, created_at) VALUES (?, 1, ?, ?, ?)
			ON CONFLICT (slot) DO NOTHING`, wk.ID, wk.KEKID, wk.Wrapped, time.Now().UTC()).Error; err != nil {
			return tenant.WrappedKey{}, dbErr(err)
		}
		if err := load(db); err != nil {
			return tenant.WrappedKey{}, dbErr(err)
		}
		if len(rows) == 0 {
			return tenant.WrappedKey{}, coffer.Errorf(coffer.EINTERNAL, "platform key vanished after creation")
		}
	}
	r := rows[0]
	return tenant.WrappedKey{ID: r.ID, KEKID: r.KEKID, Wrapped: r.WrappedKey, CreatedAt: r.CreatedAt}, nil
}

// TenantKeys implements secrets.KeyAdminStore.
func (s *Store) TenantKeys(ctx context.Context, tenantID, platformKEK string) (secrets.TenantKeys, error) {
	db := s.db.WithContext(ctx)
	var out secrets.TenantKeys
	kek, err := s.TenantKEK(ctx, tenantID)
	if err != nil {
		return out, err
	}
	out.TenantKEK = kek
	target := kek
	if target == "" {
		target = platformKEK
	}
	var rows []struct {
		Project, Environment, KeyID, KEKID string
		CreatedAt                          time.Time
		Seals                              int64
		Keys, Stale                        int
	}
	err = db.Raw(`SELECT p.slug AS project, e.slug AS environment, k.id AS key_id, k.kek_id AS kek_id, k.created_at, k.uses AS seals,
			(SELECT COUNT(*) FROM data_keys a WHERE a.environment_id = e.id) AS keys,
			(SELECT COUNT(*) FROM data_keys b WHERE b.environment_id = e.id AND b.kek_id <> ?) AS stale
		FROM environments e JOIN projects p ON p.id = e.project_id JOIN data_keys k ON k.id = e.current_key_id
		WHERE e.tenant_id = ? ORDER BY p.slug, e.slug LIMIT 1000`, target, tenantID).Scan(&rows).Error
	if err != nil {
		return out, dbErr(err)
	}
	for _, r := range rows {
		out.Environments = append(out.Environments, secrets.EnvironmentKey{Project: r.Project, Environment: r.Environment,
			KeyID: r.KeyID, KEKID: r.KEKID, CreatedAt: r.CreatedAt, Seals: r.Seals, Keys: r.Keys, Stale: r.Stale})
	}
	var jobs []keyJobRow
	if err := db.Raw(`SELECT * FROM key_jobs WHERE tenant_id = ? AND state = 'running' ORDER BY created_at`, tenantID).Scan(&jobs).Error; err != nil {
		return out, dbErr(err)
	}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, j.domain())
	}
	return out, nil
}

// SetTenantKEK implements secrets.KeyAdminStore: the tenant's KEK changes and is registered, so
// that data keys wrapped under it may be sent to the KMS, and the rewrap job that moves the
// existing keys is created, all in one transaction.
func (s *Store) SetTenantKEK(ctx context.Context, tenantID, kekID string, e audit.Entry, job secrets.Job, jobEntry audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		// One tenant's key is never another's: whoever disables it must cut off only
		// their own tenant.
		var others int64
		if err := tx.Raw(`SELECT COUNT(*) FROM tenant_keks WHERE kek_id = ? AND tenant_id <> ?`, kekID, tenantID).Scan(&others).Error; err != nil {
			return err
		}
		if others > 0 {
			return coffer.Errorf(coffer.EINVALID, "Coffer cannot use this key for this tenant; use a key of the tenant's own")
		}
		if err := s.createJob(tx, job, jobEntry); err != nil {
			return err
		}
		if err := mustAffect(tx.Exec(`UPDATE tenants SET kek_id = ?, updated_at = ? WHERE id = ?`, kekID, time.Now().UTC(), tenantID), "tenant"); err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO tenant_keks (tenant_id, kek_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT (tenant_id, kek_id) DO UPDATE SET retired_at = NULL`, tenantID, kekID, time.Now().UTC()).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// ResolveScope implements secrets.KeyAdminStore.
func (s *Store) ResolveScope(ctx context.Context, tenantID, projectSlug, envSlug string) (tenant.Scope, error) {
	var prows []projectRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM projects WHERE tenant_id = ? AND slug = ?`, tenantID, projectSlug).Scan(&prows).Error; err != nil {
		return tenant.Scope{}, dbErr(err)
	}
	if len(prows) == 0 {
		return tenant.Scope{}, notFound("project")
	}
	p := prows[0].domain()
	sc := tenant.Scope{Project: &p}
	if envSlug == "" {
		return sc, nil
	}
	var erows []environmentRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM environments WHERE tenant_id = ? AND project_id = ? AND slug = ?`,
		tenantID, p.ID, envSlug).Scan(&erows).Error; err != nil {
		return tenant.Scope{}, dbErr(err)
	}
	if len(erows) == 0 {
		return tenant.Scope{}, notFound("environment")
	}
	r := erows[0]
	sc.Environment = &tenant.Environment{ID: r.ID, TenantID: r.TenantID, ProjectID: r.ProjectID, Slug: r.Slug, Name: r.Name, Protected: r.Protected}
	return sc, nil
}

// TenantBySlug returns a tenant by its slug, for operator commands that act outside any
// request (never for a request: those resolve tenants through the caller's membership).
func (s *Store) TenantBySlug(ctx context.Context, slug string) (tenant.Tenant, error) {
	var rows []tenantRow
	if err := s.db.WithContext(ctx).Raw(`SELECT id, slug, name, created_at, updated_at FROM tenants WHERE slug = ?`, slug).Scan(&rows).Error; err != nil {
		return tenant.Tenant{}, dbErr(err)
	}
	if len(rows) == 0 {
		return tenant.Tenant{}, notFound("tenant")
	}
	return rows[0].domain(), nil
}

// KEKUsage counts data keys by the KEK that wraps them, for the operator's status command.
func (s *Store) KEKUsage(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		KEKID string `gorm:"column:kek_id"`
		N     int64
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT kek_id, COUNT(*) AS n FROM data_keys GROUP BY kek_id`).Scan(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.KEKID] = r.N
	}
	return out, nil
}
