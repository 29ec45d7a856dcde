package store

import (
	"context"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

type secretRow struct {
	Name             string
	Version          int
	Note             string
	CreatedBy        string
	CreatedAt        time.Time
	VersionCreatedAt time.Time
	DeletedAt        *time.Time
	Ciphertext       []byte
	DestroyedAt      *time.Time
}

func (r *secretRow) record() secrets.Record {
	return secrets.Record{
		Secret: secrets.Secret{Name: r.Name, Version: r.Version, Note: r.Note, CreatedBy: r.CreatedBy,
			CreatedAt: r.CreatedAt, UpdatedAt: r.VersionCreatedAt, DeletedAt: r.DeletedAt},
		Ciphertext: r.Ciphertext,
		Destroyed:  r.DestroyedAt != nil,
	}
}

const secretCols = `s.name, v.version, v.note, v.created_by, s.created_at, v.created_at AS version_created_at, s.deleted_at`

// List implements secrets.Store: one index range scan over the secret rows, which carry
// their latest version, joined to the environment's row for the revision they are at (one
// statement sees one snapshot, so the two agree).
func (s *Store) List(ctx context.Context, tenantID, envID string, opts secrets.ListOptions) ([]secrets.Record, int64, error) {
	cols := `e.revision, s.name, s.latest_version, s.note, s.updated_by, s.created_at, s.updated_at, s.deleted_at`
	if opts.WithValues {
		cols += ", s.ciphertext"
	}
	q := `SELECT ` + cols + ` FROM secrets s JOIN environments e ON e.id = s.environment_id
		WHERE s.tenant_id = ? AND s.environment_id = ? AND s.name > ?`
	if !opts.IncludeDeleted {
		q += ` AND s.deleted_at IS NULL`
	}
	q += ` ORDER BY s.name LIMIT ?`
	// This is the hot read path: rows are scanned by hand rather than through gorm's
	// reflection, which costs more than the query itself for a hundred rows.
	rows, err := s.db.WithContext(ctx).Raw(q, tenantID, envID, opts.After, opts.Limit).Rows()
	if err != nil {
		return nil, 0, dbErr(err)
	}
	defer rows.Close()
	out := make([]secrets.Record, 0, min(opts.Limit, 128))
	var rev int64
	for rows.Next() {
		var r secretRow
		dst := []any{&rev, &r.Name, &r.Version, &r.Note, &r.CreatedBy, &r.CreatedAt, &r.VersionCreatedAt, &r.DeletedAt}
		if opts.WithValues {
			dst = append(dst, &r.Ciphertext)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, 0, dbErr(err)
		}
		out = append(out, r.record())
	}
	if err := rows.Err(); err != nil {
		return nil, 0, dbErr(err)
	}
	// Listings are cached: a page of 10 must not keep room for 128.
	if cap(out)-len(out) > 8 {
		out = slices.Clone(out)
	}
	return out, rev, nil
}

// Get implements secrets.Store.
func (s *Store) Get(ctx context.Context, tenantID, envID, name string, version int) (secrets.Record, error) {
	var rows []secretRow
	err := s.db.WithContext(ctx).Raw(`SELECT `+secretCols+`, v.ciphertext, v.destroyed_at FROM secrets s
		JOIN secret_versions v ON v.secret_id = s.id AND v.version = (CASE WHEN ? = 0 THEN s.latest_version ELSE ? END)
		WHERE s.tenant_id = ? AND s.environment_id = ? AND s.name = ?`,
		version, version, tenantID, envID, name).Scan(&rows).Error
	if err != nil {
		return secrets.Record{}, dbErr(err)
	}
	if len(rows) == 0 {
		if version != 0 {
			return secrets.Record{}, coffer.Errorf(coffer.ENOTFOUND, "secret %s has no version %d", name, version)
		}
		return secrets.Record{}, coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", name)
	}
	return rows[0].record(), nil
}

// Versions implements secrets.Store.
func (s *Store) Versions(ctx context.Context, tenantID, envID, name string, before, limit int) ([]secrets.Version, error) {
	db := s.db.WithContext(ctx)
	var ids []string
	if err := db.Raw(`SELECT id FROM secrets WHERE tenant_id = ? AND environment_id = ? AND name = ?`, tenantID, envID, name).Scan(&ids).Error; err != nil {
		return nil, dbErr(err)
	}
	if len(ids) == 0 {
		return nil, coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", name)
	}
	if before <= 0 {
		before = int(^uint32(0) >> 1)
	}
	var rows []struct {
		Version     int
		Note        string
		CreatedBy   string
		CreatedAt   time.Time
		DestroyedAt *time.Time
		DestroyedBy *string
	}
	err := db.Raw(`SELECT version, note, created_by, created_at, destroyed_at, destroyed_by FROM secret_versions
		WHERE secret_id = ? AND version < ? ORDER BY version DESC LIMIT ?`, ids[0], before, limit).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]secrets.Version, len(rows))
	for i, r := range rows {
		out[i] = secrets.Version{Version: r.Version, Note: r.Note, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, DestroyedAt: r.DestroyedAt}
		if r.DestroyedBy != nil {
			out[i].DestroyedBy = *r.DestroyedBy
		}
	}
	return out, nil
}

// Destroy implements secrets.Store. The secret row is locked first, so a write cannot make a
// version current while it is being destroyed. The ciphertext is overwritten in place with
// nothing; SQLite's secure_delete zeroes the bytes it held (see README on deleted data).
func (s *Store) Destroy(ctx context.Context, tenantID, envID, name string, versions []int, by string, at time.Time, e func(destroyed []int) audit.Entry) ([]int, error) {
	var destroyed []int
	err := s.tx(ctx, func(tx *gorm.DB) error {
		destroyed = destroyed[:0]
		var cur []secretStateRow
		if err := tx.Raw(`SELECT id, latest_version, deleted_at FROM secrets WHERE tenant_id = ? AND environment_id = ? AND name = ?`+s.forUpdate(),
			tenantID, envID, name).Scan(&cur).Error; err != nil {
			return err
		}
		if len(cur) == 0 {
			return coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", name)
		}
		if last := versions[len(versions)-1]; last > cur[0].LatestVersion {
			return coffer.Errorf(coffer.ENOTFOUND, "secret %s has no version %d", name, last)
		}
		if slices.Contains(versions, cur[0].LatestVersion) {
			return coffer.Errorf(coffer.ECONFLICT, "version %d is the current value of %s: write a new version first, then destroy this one", cur[0].LatestVersion, name)
		}
		if err := tx.Raw(`UPDATE secret_versions SET ciphertext = ?, destroyed_at = ?, destroyed_by = ?
			WHERE secret_id = ? AND version IN ? AND destroyed_at IS NULL RETURNING version`,
			[]byte{}, at, by, cur[0].ID, versions).Scan(&destroyed).Error; err != nil {
			return err
		}
		slices.Sort(destroyed)
		return appendAudit(tx, e(destroyed))
	})
	if err != nil {
		return nil, err
	}
	if destroyed == nil {
		destroyed = []int{}
	}
	return destroyed, nil
}

// endDeletion records that a deleted secret exists again from at, the environment's revision
// rev.
func endDeletion(tx *gorm.DB, secretID string, at time.Time, rev int64) error {
	return tx.Exec(`UPDATE secret_deletions SET restored_at = ?, restored_revision = ? WHERE secret_id = ? AND restored_at IS NULL`,
		at, rev, secretID).Error
}

// StateAt implements secrets.Store: each secret of the environment that existed at at (not
// deleted then), at the version that was current then, with its ciphertext.
func (s *Store) StateAt(ctx context.Context, tenantID, envID string, at time.Time) ([]secrets.Record, error) {
	var rows []secretRow
	err := s.db.WithContext(ctx).Raw(`SELECT s.name, v.version, v.note, v.created_by, s.created_at, v.created_at AS version_created_at,
		v.ciphertext, v.destroyed_at
		FROM secrets s
		JOIN secret_versions v ON v.secret_id = s.id
			AND v.version = (SELECT MAX(w.version) FROM secret_versions w WHERE w.secret_id = s.id AND w.created_at <= ?)
		WHERE s.tenant_id = ? AND s.environment_id = ?
		AND NOT EXISTS (SELECT 1 FROM secret_deletions d WHERE d.secret_id = s.id AND d.deleted_at <= ?
			AND (d.restored_at IS NULL OR d.restored_at > ?))
		ORDER BY s.name`, at, tenantID, envID, at, at).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]secrets.Record, len(rows))
	for i := range rows {
		out[i] = rows[i].record()
	}
	return out, nil
}

type secretStateRow struct {
	ID            string
	LatestVersion int
	DeletedAt     *time.Time
}

// Apply implements secrets.Store: every change, its sealed value and its audit entry commit
// together or not at all.
func (s *Store) Apply(ctx context.Context, w secrets.Write) ([]secrets.Result, error) {
	results := make([]secrets.Result, 0, len(w.Changes))
	err := s.tx(ctx, func(tx *gorm.DB) error {
		results = results[:0]
		now := time.Now().UTC()
		// Bumping the revision first takes the environment's row lock, so concurrent writes
		// to one environment queue here instead of deadlocking on each other's secret rows;
		// readers holding a cached listing see the new revision and read again.
		rev, err := bumpRevision(tx, w.TenantID, w.EnvID)
		if err != nil {
			return err
		}
		keyID, err := s.sealingKey(tx, w)
		if err != nil {
			return err
		}
		puts := 0
		for _, c := range w.Changes {
			var rows []secretStateRow
			if err := tx.Raw(`SELECT id, latest_version, deleted_at FROM secrets
				WHERE tenant_id = ? AND environment_id = ? AND name = ?`+s.forUpdate(), w.TenantID, w.EnvID, c.Name).Scan(&rows).Error; err != nil {
				return err
			}
			var cur *secretStateRow
			if len(rows) > 0 {
				cur = &rows[0]
			}
			if c.Expect != nil {
				current := 0
				if cur != nil && cur.DeletedAt == nil {
					current = cur.LatestVersion
				}
				if current != *c.Expect {
					return secrets.VersionMismatch(c.Name, current)
				}
			}
			r := secrets.Result{Op: c.Op, Name: c.Name}
			switch c.Op {
			case secrets.OpPut:
				r.Version, r.Created = 1, cur == nil
				if cur != nil {
					r.Version = cur.LatestVersion + 1
				}
				ct, err := w.Seal(keyID, c.Name, r.Version, c.Value)
				if err != nil {
					if coffer.ErrorCode(err) != coffer.EINTERNAL {
						return err
					}
					return coffer.Wrap(coffer.EINTERNAL, err, "could not seal the value")
				}
				id := NewID()
				if cur == nil {
					if err := tx.Exec(`INSERT INTO secrets (id, tenant_id, environment_id, name, latest_version, ciphertext, note, updated_by, created_at, updated_at)
						VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)`, id, w.TenantID, w.EnvID, c.Name, ct, c.Note, w.Author, now, now).Error; err != nil {
						return conflictAs(err, "secret %s was created concurrently; retry", c.Name)
					}
				} else {
					id = cur.ID
					if err := tx.Exec(`UPDATE secrets SET latest_version = ?, ciphertext = ?, note = ?, updated_by = ?, deleted_at = NULL, updated_at = ?
						WHERE id = ?`, r.Version, ct, c.Note, w.Author, now, id).Error; err != nil {
						return err
					}
					if cur.DeletedAt != nil { // writing a deleted secret brings it back
						if err := endDeletion(tx, id, now, rev); err != nil {
							return err
						}
					}
				}
				if err := tx.Exec(`INSERT INTO secret_versions (secret_id, version, ciphertext, note, created_by, created_at, revision)
					VALUES (?, ?, ?, ?, ?, ?, ?)`, id, r.Version, ct, c.Note, w.Author, now, rev).Error; err != nil {
					return conflictAs(err, "secret %s was changed concurrently; retry", c.Name)
				}
				puts++
			case secrets.OpDelete:
				if cur == nil || cur.DeletedAt != nil {
					return coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", c.Name)
				}
				r.Version = cur.LatestVersion
				if err := tx.Exec(`UPDATE secrets SET deleted_at = ? WHERE id = ?`, now, cur.ID).Error; err != nil {
					return err
				}
				if err := tx.Exec(`INSERT INTO secret_deletions (secret_id, deleted_at, deleted_revision) VALUES (?, ?, ?)`, cur.ID, now, rev).Error; err != nil {
					return err
				}
			case secrets.OpRestore:
				if cur == nil {
					return coffer.Errorf(coffer.ENOTFOUND, "secret %s not found", c.Name)
				}
				if cur.DeletedAt == nil {
					return coffer.Errorf(coffer.ECONFLICT, "secret %s is not deleted", c.Name)
				}
				r.Version = cur.LatestVersion
				if err := tx.Exec(`UPDATE secrets SET deleted_at = NULL WHERE id = ?`, cur.ID).Error; err != nil {
					return err
				}
				if err := endDeletion(tx, cur.ID, now, rev); err != nil {
					return err
				}
			}
			results = append(results, r)
		}
		if puts > 0 {
			// Count seals per data key in the database, so the bound holds across replicas.
			if err := mustAffect(tx.Exec(`UPDATE data_keys SET uses = uses + ? WHERE id = ? AND environment_id = ?`,
				puts, keyID, w.EnvID), "data key"); err != nil {
				return err
			}
		}
		entries := make([]audit.Entry, len(results))
		for i, r := range results {
			entries[i] = w.Audit(r)
		}
		return appendAudit(tx, entries...)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// sealingKey returns the data key a write seals under, read while the transaction holds the
// environment's lock: the current key, or w.Roll made current here when the current key may
// not seal the write's values. Concurrent writers thus roll once, not once each.
func (s *Store) sealingKey(tx *gorm.DB, w secrets.Write) (string, error) {
	var seals int64
	for _, c := range w.Changes {
		if c.Op == secrets.OpPut {
			seals++
		}
	}
	if seals == 0 {
		return "", nil
	}
	var rows []struct {
		ID        string
		Uses      int64
		CreatedAt time.Time
	}
	if err := tx.Raw(`SELECT k.id, k.uses, k.created_at FROM environments e JOIN data_keys k ON k.id = e.current_key_id
		WHERE e.tenant_id = ? AND e.id = ?`, w.TenantID, w.EnvID).Scan(&rows).Error; err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", notFound("environment")
	}
	cur := tenant.KeyInfo{ID: rows[0].ID, Uses: rows[0].Uses, CreatedAt: rows[0].CreatedAt}
	if w.RollNeeded == nil || !w.RollNeeded(cur, seals) {
		return cur.ID, nil
	}
	if w.Roll == nil {
		return "", secrets.ErrRollNeeded
	}
	if err := rollKey(tx, w.TenantID, w.EnvID, *w.Roll); err != nil {
		return "", err
	}
	if err := appendAudit(tx, w.RollAudit(cur, *w.Roll)); err != nil {
		return "", err
	}
	return w.Roll.ID, nil
}

// rollKey stores a new data key and makes it the environment's current one.
func rollKey(tx *gorm.DB, tenantID, envID string, key tenant.WrappedKey) error {
	if err := tx.Create(&dataKeyRow{ID: key.ID, TenantID: tenantID, EnvironmentID: envID, KEKID: key.KEKID,
		WrappedKey: key.Wrapped, CreatedAt: key.CreatedAt}).Error; err != nil {
		return err
	}
	res := tx.Exec(`UPDATE environments SET current_key_id = ? WHERE tenant_id = ? AND id = ?`, key.ID, tenantID, envID)
	return mustAffect(res, "environment")
}

// RevealedAt lists what a reveal of a page of an environment returned (audit.RevealedPage):
// the first count secrets named after after that existed at the environment's revision rev,
// each at its newest version written by then. Rows written before versions recorded their
// revision (migration 00018) count as revision 0.
func (s *Store) RevealedAt(ctx context.Context, tenantID, envID string, rev int64, after string, count int) (audit.RevealedSet, error) {
	var rows []struct {
		Name    string
		Version int
	}
	err := s.db.WithContext(ctx).Raw(`SELECT s.name, v.version FROM secrets s
		JOIN secret_versions v ON v.secret_id = s.id AND v.version =
			(SELECT MAX(w.version) FROM secret_versions w WHERE w.secret_id = s.id AND COALESCE(w.revision, 0) <= ?)
		WHERE s.tenant_id = ? AND s.environment_id = ? AND s.name > ?
		AND NOT EXISTS (SELECT 1 FROM secret_deletions d WHERE d.secret_id = s.id AND COALESCE(d.deleted_revision, 0) <= ?
			AND (d.restored_at IS NULL OR COALESCE(d.restored_revision, 0) > ?))
		ORDER BY s.name LIMIT ?`, rev, tenantID, envID, after, rev, rev, count).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make(audit.RevealedSet, len(rows))
	for i, r := range rows {
		out[i] = audit.Revealed{Name: r.Name, Version: r.Version}
	}
	return out, nil
}
