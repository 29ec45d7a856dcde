package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

type keyJobRow struct {
	ID            string
	TenantID      sql.NullString
	Kind          string
	ProjectID     string
	EnvironmentID string
	TargetKEK     string `gorm:"column:target_kek"`
	State         string
	Cursor        string
	Done          int64
	Total         int64
	Error         string
	CreatedBy     string
	LeaseOwner    string
	LeaseUntil    *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	FinishedAt    *time.Time
}

func (keyJobRow) TableName() string { return "key_jobs" }

func (r keyJobRow) domain() secrets.Job {
	return secrets.Job{ID: r.ID, TenantID: r.TenantID.String, Kind: r.Kind, ProjectID: r.ProjectID, EnvironmentID: r.EnvironmentID,
		TargetKEK: r.TargetKEK, State: r.State, Cursor: r.Cursor, Done: r.Done, Total: r.Total, Error: r.Error,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, FinishedAt: r.FinishedAt}
}

// keyBytes is the SQL for the 16-byte data-key id inside a ciphertext (after the format byte).
func (s *Store) keyBytes(col string) string {
	if s.dialect == Postgres {
		return "substring(" + col + " from 2 for 16)"
	}
	return "substr(" + col + ", 2, 16)"
}

// CreateJob implements secrets.JobStore; the total is counted in the same transaction.
func (s *Store) CreateJob(ctx context.Context, j secrets.Job, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error { return s.createJob(tx, j, e) })
}

// keyJobLock serialises the creation of key jobs across replicas on Postgres (SQLite's
// immediate transactions already are), so two overlapping jobs can never both start.
const keyJobLock = 0x636f66666572 // "coffer"

// createJob refuses a job whose scope overlaps a running job of the same kind: two reseals
// of one environment would re-encrypt each other's work, two rewraps would move keys to and
// fro. The check and the insert run under one lock.
func (s *Store) createJob(tx *gorm.DB, j secrets.Job, e audit.Entry) error {
	if s.dialect == Postgres {
		if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, keyJobLock).Error; err != nil {
			return err
		}
	}
	var running []string
	if err := tx.Raw(`SELECT id FROM key_jobs WHERE state = 'running' AND kind = ? AND COALESCE(tenant_id, '') = ?
		AND (project_id = '' OR ? = '' OR project_id = ?) AND (environment_id = '' OR ? = '' OR environment_id = ?)`,
		j.Kind, j.TenantID, j.ProjectID, j.ProjectID, j.EnvironmentID, j.EnvironmentID).Scan(&running).Error; err != nil {
		return err
	}
	if len(running) > 0 {
		return coffer.Errorf(coffer.ECONFLICT, "%s job %s is still running for this scope; wait for it to finish", j.Kind, running[0])
	}
	{
		var total int64
		var err error
		switch j.Kind {
		case secrets.JobRewrap:
			q, args := rewrapScope(j)
			err = tx.Raw(`SELECT COUNT(*) FROM data_keys k WHERE `+q, args...).Scan(&total).Error
		case secrets.JobReseal:
			q, args := resealScope(j)
			err = tx.Raw(`SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
				JOIN environments e ON e.id = s.environment_id WHERE v.destroyed_at IS NULL AND `+q, args...).Scan(&total).Error
		}
		if err != nil {
			return err
		}
		row := keyJobRow{ID: j.ID, TenantID: sql.NullString{String: j.TenantID, Valid: j.TenantID != ""}, Kind: j.Kind,
			ProjectID: j.ProjectID, EnvironmentID: j.EnvironmentID, TargetKEK: j.TargetKEK, State: j.State, Total: total,
			CreatedBy: j.CreatedBy, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	}
}

// rewrapScope selects the data keys (alias k) a rewrap job moves: a tenant's keys, or every key
// under a platform KEK; in both cases those not under the target yet.
func rewrapScope(j secrets.Job) (string, []any) {
	if j.TenantID != "" {
		return `k.tenant_id = ? AND k.kek_id <> ?`, []any{j.TenantID, j.TargetKEK}
	}
	return `k.kek_id <> ? AND NOT EXISTS (SELECT 1 FROM tenant_keks tk WHERE tk.tenant_id = k.tenant_id AND tk.kek_id = k.kek_id)
		AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = k.tenant_id AND t.kek_id IS NOT NULL)`, []any{j.TargetKEK}
}

// resealScope selects the environments (alias e) of a reseal job.
func resealScope(j secrets.Job) (string, []any) {
	q, args := `e.tenant_id = ?`, []any{j.TenantID}
	if j.ProjectID != "" {
		q += ` AND e.project_id = ?`
		args = append(args, j.ProjectID)
	}
	if j.EnvironmentID != "" {
		q += ` AND e.id = ?`
		args = append(args, j.EnvironmentID)
	}
	return q, args
}

// Job implements secrets.JobStore: a tenant's job, or with tenantID "" a platform job.
func (s *Store) Job(ctx context.Context, tenantID, id string) (secrets.Job, error) {
	var rows []keyJobRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM key_jobs WHERE id = ? AND COALESCE(tenant_id, '') = ?`, id, tenantID).
		Scan(&rows).Error; err != nil {
		return secrets.Job{}, dbErr(err)
	}
	if len(rows) == 0 {
		return secrets.Job{}, notFound("key job")
	}
	return rows[0].domain(), nil
}

// RunningJob returns the oldest running job of a kind for a tenant ("" for the platform).
func (s *Store) RunningJob(ctx context.Context, tenantID, kind string) (secrets.Job, bool, error) {
	var rows []keyJobRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM key_jobs WHERE state = 'running' AND kind = ? AND COALESCE(tenant_id, '') = ?
		ORDER BY created_at LIMIT 1`, kind, tenantID).Scan(&rows).Error; err != nil {
		return secrets.Job{}, false, dbErr(err)
	}
	if len(rows) == 0 {
		return secrets.Job{}, false, nil
	}
	return rows[0].domain(), true, nil
}

// ClaimJob implements secrets.JobStore.
func (s *Store) ClaimJob(ctx context.Context, owner string, until time.Time) (secrets.Job, bool, error) {
	var job secrets.Job
	found := false
	err := s.tx(ctx, func(tx *gorm.DB) error {
		now := time.Now().UTC()
		lock := ""
		if s.dialect == Postgres {
			lock = " FOR UPDATE SKIP LOCKED"
		}
		var rows []keyJobRow
		if err := tx.Raw(`SELECT * FROM key_jobs WHERE state = 'running' AND (lease_until IS NULL OR lease_until < ?)
			ORDER BY created_at LIMIT 1`+lock, now).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		if err := tx.Exec(`UPDATE key_jobs SET lease_owner = ?, lease_until = ?, updated_at = ? WHERE id = ?`,
			owner, until.UTC(), now, rows[0].ID).Error; err != nil {
			return err
		}
		job, found = rows[0].domain(), true
		return nil
	})
	return job, found, err
}

// holdLease saves a job's progress in the caller's transaction, refusing when owner no longer
// holds the lease: a batch of a job taken over by another process rolls back.
func holdLease(tx *gorm.DB, j secrets.Job, owner string, until time.Time, cursor string, done int64) error {
	res := tx.Exec(`UPDATE key_jobs SET cursor = ?, done = done + ?, lease_until = ?, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND state = 'running'`, cursor, done, until.UTC(), time.Now().UTC(), j.ID, owner)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return coffer.Wrap(coffer.ECONFLICT, secrets.ErrLeaseLost, "another process has taken over this key job")
	}
	return nil
}

// FinishJob implements secrets.JobStore.
func (s *Store) FinishJob(ctx context.Context, j secrets.Job, owner string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		now := time.Now().UTC()
		res := tx.Exec(`UPDATE key_jobs SET state = ?, error = ?, lease_owner = '', lease_until = NULL, updated_at = ?, finished_at = ?
			WHERE id = ? AND lease_owner = ? AND state = 'running'`, j.State, j.Error, now, now, j.ID, owner)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return coffer.Wrap(coffer.ECONFLICT, secrets.ErrLeaseLost, "another process has taken over this key job")
		}
		return appendAudit(tx, e)
	})
}

// RewrapBatch implements secrets.JobStore. Keys are visited in id order after the cursor;
// keys made meanwhile under an old KEK (by a replica still configured with it) would sort
// anywhere, so once the end is reached the scan starts over once from the beginning.
func (s *Store) RewrapBatch(ctx context.Context, j secrets.Job, limit int) ([]secrets.WrappedRef, error) {
	refs, err := s.rewrapBatch(ctx, j, j.Cursor, limit)
	if err == nil && len(refs) == 0 && j.Cursor != "" {
		refs, err = s.rewrapBatch(ctx, j, "", limit)
	}
	return refs, err
}

func (s *Store) rewrapBatch(ctx context.Context, j secrets.Job, after string, limit int) ([]secrets.WrappedRef, error) {
	q, args := rewrapScope(j)
	var rows []dataKeyRow
	err := s.db.WithContext(ctx).Raw(`SELECT k.*, e.project_id, EXISTS (SELECT 1 FROM tenant_keks tk
			WHERE tk.tenant_id = k.tenant_id AND tk.kek_id = k.kek_id AND tk.retired_at IS NULL) AS tenant_kek
		FROM data_keys k JOIN environments e ON e.id = k.environment_id
		WHERE k.id > ? AND `+q+` ORDER BY k.id LIMIT ?`, append(append([]any{after}, args...), limit)...).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]secrets.WrappedRef, len(rows))
	for i, r := range rows {
		out[i] = secrets.WrappedRef{TenantID: r.TenantID, ProjectID: r.ProjectID, EnvironmentID: r.EnvironmentID,
			Key: tenant.WrappedKey{ID: r.ID, KEKID: r.KEKID, Wrapped: r.WrappedKey, CreatedAt: r.CreatedAt, TenantKEK: r.TenantKEK}}
	}
	return out, nil
}

// SaveRewrap implements secrets.JobStore.
func (s *Store) SaveRewrap(ctx context.Context, j secrets.Job, owner string, until time.Time, keys []tenant.WrappedKey, cursor string) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		for _, k := range keys {
			if err := tx.Exec(`UPDATE data_keys SET kek_id = ?, wrapped_key = ? WHERE id = ? AND kek_id = ?`,
				k.KEKID, k.Wrapped, k.ID, k.PreviousKEKID).Error; err != nil {
				return err
			}
		}
		return holdLease(tx, j, owner, until, cursor, int64(len(keys)))
	})
}

// RewrapPlatformKeys implements secrets.JobStore.
func (s *Store) RewrapPlatformKeys(ctx context.Context, target string, fn func(tenant.WrappedKey) (tenant.WrappedKey, error)) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var rows []dataKeyRow
		if err := tx.Raw(`SELECT id, kek_id, wrapped_key, created_at FROM platform_keys WHERE kek_id <> ?`, target).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			nk, err := fn(tenant.WrappedKey{ID: r.ID, KEKID: r.KEKID, Wrapped: r.WrappedKey, CreatedAt: r.CreatedAt})
			if err != nil {
				return err
			}
			if err := tx.Exec(`UPDATE platform_keys SET kek_id = ?, wrapped_key = ? WHERE id = ? AND kek_id = ?`,
				nk.KEKID, nk.Wrapped, r.ID, r.KEKID).Error; err != nil {
				return err
			}
		}
		return nil
	})
}

// RetireKEKs implements secrets.JobStore: a platform KEK's check record goes once nothing is
// wrapped under it (keep, the current KEK, always stays), and a tenant KEK that is no longer
// the tenant's and wraps nothing is marked retired, after which it is never used again.
func (s *Store) RetireKEKs(ctx context.Context, keep string) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM key_checks WHERE kek_id <> ?
			AND NOT EXISTS (SELECT 1 FROM data_keys k WHERE k.kek_id = key_checks.kek_id)
			AND NOT EXISTS (SELECT 1 FROM platform_keys p WHERE p.kek_id = key_checks.kek_id)`, keep).Error; err != nil {
			return err
		}
		return tx.Exec(`UPDATE tenant_keks SET retired_at = ? WHERE retired_at IS NULL
			AND kek_id <> COALESCE((SELECT t.kek_id FROM tenants t WHERE t.id = tenant_keks.tenant_id), '')
			AND NOT EXISTS (SELECT 1 FROM data_keys k WHERE k.tenant_id = tenant_keks.tenant_id AND k.kek_id = tenant_keks.kek_id)`,
			time.Now().UTC()).Error
	})
}

// JobEnvironments implements secrets.JobStore.
func (s *Store) JobEnvironments(ctx context.Context, j secrets.Job, afterID string, limit int) ([]secrets.EnvRef, error) {
	q, args := resealScope(j)
	sqlText := `SELECT e.id, e.tenant_id, e.project_id, t.slug || '/' || p.slug || '/' || e.slug AS path
		FROM environments e JOIN projects p ON p.id = e.project_id JOIN tenants t ON t.id = e.tenant_id
		WHERE e.id > ? AND ` + q + ` ORDER BY e.id`
	args = append([]any{afterID}, args...)
	if limit > 0 {
		sqlText += ` LIMIT ?`
		args = append(args, limit)
	}
	var out []secrets.EnvRef
	if err := s.db.WithContext(ctx).Raw(sqlText, args...).Scan(&out).Error; err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}

// AgedEnvironments implements secrets.JobStore.
func (s *Store) AgedEnvironments(ctx context.Context, before time.Time, limit int) ([]secrets.EnvRef, error) {
	var out []secrets.EnvRef
	err := s.db.WithContext(ctx).Raw(`SELECT e.id, e.tenant_id, e.project_id, t.slug || '/' || p.slug || '/' || e.slug AS path
		FROM environments e JOIN projects p ON p.id = e.project_id JOIN tenants t ON t.id = e.tenant_id
		JOIN data_keys k ON k.id = e.current_key_id
		WHERE k.created_at < ? AND NOT EXISTS (SELECT 1 FROM key_jobs j WHERE j.state = 'running' AND j.kind = 'reseal'
			AND j.tenant_id = e.tenant_id AND (j.project_id = '' OR j.project_id = e.project_id)
			AND (j.environment_id = '' OR j.environment_id = e.id))
		ORDER BY k.created_at LIMIT ?`, before.UTC(), limit).Scan(&out).Error
	return out, dbErr(err)
}

// RollForJob implements secrets.JobStore.
func (s *Store) RollForJob(ctx context.Context, j secrets.Job, owner string, until time.Time, env secrets.EnvRef, key tenant.WrappedKey, cursor string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := lockEnvironment(tx, env.TenantID, env.ID); err != nil {
			return err
		}
		if err := rollKey(tx, env.TenantID, env.ID, key); err != nil {
			return err
		}
		if err := appendAudit(tx, e); err != nil {
			return err
		}
		return holdLease(tx, j, owner, until, cursor, 0)
	})
}

// lockEnvironment takes the environment's row lock by bumping its revision, which also tells
// readers holding a cached listing to read again.
func lockEnvironment(tx *gorm.DB, tenantID, envID string) error {
	_, err := bumpRevision(tx, tenantID, envID)
	return err
}

// bumpRevision is lockEnvironment, returning the environment's new revision.
func bumpRevision(tx *gorm.DB, tenantID, envID string) (int64, error) {
	var rev []int64
	if err := tx.Raw(`UPDATE environments SET revision = revision + 1 WHERE tenant_id = ? AND id = ? RETURNING revision`,
		tenantID, envID).Scan(&rev).Error; err != nil {
		return 0, err
	}
	if len(rev) == 0 {
		return 0, notFound("environment")
	}
	return rev[0], changed(tx, tenantID)
}

// ResealBatch implements secrets.JobStore. The row comparison on (secret_id, version) lets
// both databases start the primary-key scan at the checkpoint instead of reading the whole
// environment for every batch.
func (s *Store) ResealBatch(ctx context.Context, env secrets.EnvRef, keyID uuid.UUID, afterSecret string, afterVersion, limit int) ([]secrets.SealedVersion, error) {
	var out []secrets.SealedVersion
	rows, err := s.db.WithContext(ctx).Raw(`SELECT v.secret_id, s.name, v.version, v.ciphertext, v.version = s.latest_version
		FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
		WHERE s.tenant_id = ? AND s.environment_id = ? AND s.id >= ? AND (v.secret_id, v.version) > (?, ?)
		AND v.destroyed_at IS NULL AND `+s.keyBytes("v.ciphertext")+` <> ?
		ORDER BY v.secret_id, v.version LIMIT ?`,
		env.TenantID, env.ID, afterSecret, afterSecret, afterVersion, keyID[:], limit).Rows()
	if err != nil {
		return nil, dbErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v secrets.SealedVersion
		if err := rows.Scan(&v.SecretID, &v.Name, &v.Version, &v.Ciphertext, &v.Latest); err != nil {
			return nil, dbErr(err)
		}
		out = append(out, v)
	}
	return out, dbErr(rows.Err())
}

// SaveReseal implements secrets.JobStore: one statement rewrites the batch's versions, one the
// secrets' copies of those that are latest.
func (s *Store) SaveReseal(ctx context.Context, j secrets.Job, owner string, until time.Time, env secrets.EnvRef, keyID string, batch []secrets.SealedVersion, cursor string) error {
	latest := make([]secrets.SealedVersion, 0, len(batch))
	for _, v := range batch {
		if v.Latest {
			latest = append(latest, v)
		}
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := lockEnvironment(tx, env.TenantID, env.ID); err != nil {
			return err
		}
		vq, args := s.batchUpdate(`secret_versions`, `secret_id`, `version`, batch)
		res := tx.Exec(vq, args...)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != int64(len(batch)) {
			return coffer.Errorf(coffer.ECONFLICT, "versions changed during the reseal; the batch will be retried")
		}
		if len(latest) > 0 {
			sq, args := s.batchUpdate(`secrets`, `id`, `latest_version`, latest)
			if err := tx.Exec(sq, args...).Error; err != nil {
				return err
			}
		}
		if err := mustAffect(tx.Exec(`UPDATE data_keys SET uses = uses + ? WHERE id = ? AND environment_id = ?`,
			len(batch), keyID, env.ID), "data key"); err != nil {
			return err
		}
		return holdLease(tx, j, owner, until, cursor, int64(len(batch)))
	})
}

// batchUpdate builds one statement that sets the ciphertext of table's rows matching each
// version's (id, version) pair. Postgres gets three arrays to unnest, so the plan is index
// lookups with three parameters; SQLite gets a VALUES list (it has no arrays).
func (s *Store) batchUpdate(table, idCol, versionCol string, batch []secrets.SealedVersion) (string, []any) {
	if s.dialect == Postgres {
		ids := make([]string, len(batch))
		vers := make([]int32, len(batch))
		cts := make([][]byte, len(batch))
		for i, v := range batch {
			ids[i], vers[i], cts[i] = v.SecretID, int32(v.Version), v.Ciphertext
		}
		q := `UPDATE ` + table + ` t SET ciphertext = d.ct FROM unnest(?::text[], ?::integer[], ?::bytea[]) AS d(sid, ver, ct)
			WHERE t.` + idCol + ` = d.sid AND t.` + versionCol + ` = d.ver`
		// pgtype.Array, not plain slices: gorm would expand a slice into a parameter list.
		return q, []any{pgArray(ids), pgArray(vers), pgArray(cts)}
	}
	var b strings.Builder
	args := make([]any, 0, 3*len(batch))
	for i, v := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?)")
		args = append(args, v.SecretID, v.Version, v.Ciphertext)
	}
	q := `WITH d(sid, ver, ct) AS (VALUES ` + b.String() + `) UPDATE ` + table + ` SET ciphertext = d.ct FROM d
		WHERE ` + table + `.` + idCol + ` = d.sid AND ` + table + `.` + versionCol + ` = d.ver`
	return q, args
}

func pgArray[T any](elems []T) pgtype.Array[T] {
	return pgtype.Array[T]{Elements: elems, Dims: []pgtype.ArrayDimension{{Length: int32(len(elems)), LowerBound: 1}}, Valid: true}
}

// RetireKeys implements secrets.JobStore: it deletes the environment's data keys that are
// neither current, nor keep, nor named by any stored value, under the environment's lock so
// no write can start using one meanwhile.
func (s *Store) RetireKeys(ctx context.Context, env secrets.EnvRef, keep string, entry func(retired []string) audit.Entry) ([]string, error) {
	var retired []string
	err := s.tx(ctx, func(tx *gorm.DB) error {
		retired = retired[:0]
		if err := lockEnvironment(tx, env.TenantID, env.ID); err != nil {
			return err
		}
		var keys []string
		if err := tx.Raw(`SELECT k.id FROM data_keys k JOIN environments e ON e.id = k.environment_id
			WHERE k.environment_id = ? AND k.id <> ? AND k.id <> e.current_key_id ORDER BY k.id`, env.ID, keep).Scan(&keys).Error; err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		var used [][]byte
		if err := tx.Raw(`SELECT DISTINCT `+s.keyBytes("v.ciphertext")+` FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
			WHERE s.environment_id = ? AND v.destroyed_at IS NULL`, env.ID).Scan(&used).Error; err != nil {
			return err
		}
		inUse := make(map[string]bool, len(used))
		for _, b := range used {
			if id, err := uuid.FromBytes(b); err == nil {
				inUse[id.String()] = true
			}
		}
		for _, id := range keys {
			if inUse[id] {
				continue
			}
			if err := tx.Exec(`DELETE FROM data_keys WHERE id = ? AND environment_id = ?`, id, env.ID).Error; err != nil {
				return err
			}
			retired = append(retired, id)
		}
		if len(retired) == 0 {
			return nil
		}
		return appendAudit(tx, entry(retired))
	})
	return retired, err
}
