package store

import (
	"context"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

type userRow struct {
	ID            string
	Email         string
	Name          string
	InstanceAdmin bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (userRow) TableName() string { return "users" }

type tokenRow struct {
	ID            string
	UserID        string
	Name          string
	TokenHash     string
	DisplayPrefix string
	ParentID      *string // NULL for a root token
	ExpiresAt     *time.Time
	LastUsedAt    *time.Time
	RevokedAt     *time.Time
	CreatedAt     time.Time
}

func (tokenRow) TableName() string { return "api_tokens" }

func (r tokenRow) domain() auth.Token {
	t := auth.Token{ID: r.ID, UserID: r.UserID, Name: r.Name, DisplayPrefix: r.DisplayPrefix,
		ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, CreatedAt: r.CreatedAt}
	if r.ParentID != nil {
		t.ParentID = *r.ParentID
	}
	return t
}

func newTokenRow(t auth.Token, hash string) *tokenRow {
	r := &tokenRow{ID: t.ID, UserID: t.UserID, Name: t.Name, TokenHash: hash, DisplayPrefix: t.DisplayPrefix,
		ExpiresAt: t.ExpiresAt, CreatedAt: t.CreatedAt}
	if t.ParentID != "" {
		r.ParentID = &t.ParentID
	}
	return r
}

// TokenByHash implements auth.Store in one query with the token's user.
func (s *Store) TokenByHash(ctx context.Context, hash string) (auth.TokenRecord, error) {
	// Every request runs this: scan by hand, without gorm's reflection.
	rows, err := s.db.WithContext(ctx).Raw(`SELECT t.id, t.user_id, t.name, t.token_hash, t.display_prefix, t.expires_at,
		t.last_used_at, t.revoked_at, t.created_at, u.email, u.name, u.instance_admin, u.created_at, u.disabled_at
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?`, hash).Rows()
	if err != nil {
		return auth.TokenRecord{}, dbErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.TokenRecord{}, dbErr(err)
		}
		return auth.TokenRecord{}, notFound("token")
	}
	var rec auth.TokenRecord
	t, u := &rec.Token, &rec.User
	if err := rows.Scan(&t.ID, &t.UserID, &t.Name, &rec.Hash, &t.DisplayPrefix, &t.ExpiresAt, &t.LastUsedAt, &rec.RevokedAt,
		&t.CreatedAt, &u.Email, &u.Name, &u.InstanceAdmin, &u.CreatedAt, &u.DisabledAt); err != nil {
		return auth.TokenRecord{}, dbErr(err)
	}
	u.ID = t.UserID
	return rec, nil
}

// TouchToken implements auth.Store.
func (s *Store) TouchToken(ctx context.Context, tokenID string, at time.Time) error {
	return dbErr(s.db.WithContext(ctx).Exec(`UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, at, tokenID).Error)
}

// CreateToken implements auth.Store. A child is written only while its parent is live: the
// parent was checked when the request authenticated, but a revocation may have committed
// since, and a child inserted after the revocation walked the tree would outlive it. Taking
// the user's token lock first (see lockTokens) makes the check and the insert one step
// against any revocation.
func (s *Store) CreateToken(ctx context.Context, t auth.Token, hash string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if t.ParentID != "" {
			if err := s.lockTokens(tx, t.UserID); err != nil {
				return err
			}
			var parent struct {
				ExpiresAt *time.Time
				RevokedAt *time.Time
			}
			res := tx.Raw(`SELECT expires_at, revoked_at FROM api_tokens WHERE id = ? AND user_id = ?`, t.ParentID, t.UserID).Scan(&parent)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 || parent.RevokedAt != nil || (parent.ExpiresAt != nil && !t.CreatedAt.Before(*parent.ExpiresAt)) {
				return auth.ErrBadToken
			}
		}
		if err := tx.Create(newTokenRow(t, hash)).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// lockTokens serialises changes to one user's token tree. A user's tokens only ever descend
// from that user's tokens, so the user row is the lock for the whole tree. On Postgres it is
// FOR NO KEY UPDATE, which does not conflict with the key-share locks foreign-key checks take,
// so inserting rows that reference the user is not held up by it; after it, under READ
// COMMITTED, the next statement sees every token committed before the lock was granted.
// SQLite transactions already hold the database's write lock from their start. Locking one
// token row would not do: a grandchild minted under a child the walk has not reached yet
// would slip past it.
func (s *Store) lockTokens(tx *gorm.DB, userID string) error {
	if s.dialect != Postgres {
		return nil
	}
	var id string
	return tx.Raw(`SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE`, userID).Scan(&id).Error
}

// ListTokens implements auth.Store; revoked tokens are not listed.
func (s *Store) ListTokens(ctx context.Context, userID, after string, limit int) ([]auth.Token, error) {
	var rows []tokenRow
	err := s.db.WithContext(ctx).Where("user_id = ? AND revoked_at IS NULL AND id > ?", userID, after).
		Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]auth.Token, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// RevokeToken implements auth.Store. Only the owner's own, unrevoked token starts a
// revocation; the recursive walk then follows parent_id down through the user's tokens
// (already revoked ones included, so nothing below them is skipped) and revokes every live
// one in the same statement. The tree lock keeps a concurrent CreateToken from adding a
// child the walk could not see.
func (s *Store) RevokeToken(ctx context.Context, userID, tokenID string, at time.Time, entries func(descendants []string) []audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := s.lockTokens(tx, userID); err != nil {
			return err
		}
		var revoked []string
		err := tx.Raw(`WITH RECURSIVE tree (id) AS (
				SELECT id FROM api_tokens WHERE id = ? AND user_id = ? AND revoked_at IS NULL
				UNION
				SELECT c.id FROM api_tokens c JOIN tree ON c.parent_id = tree.id WHERE c.user_id = ?
			)
			UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND id IN (SELECT id FROM tree)
			RETURNING id`, tokenID, userID, userID, at).Scan(&revoked).Error
		if err != nil {
			return err
		}
		if len(revoked) == 0 {
			return notFound("token")
		}
		descendants := make([]string, 0, len(revoked)-1)
		for _, id := range revoked {
			if id != tokenID {
				descendants = append(descendants, id)
			}
		}
		slices.Sort(descendants)
		return appendAudit(tx, entries(descendants)...)
	})
}

// CreateUser implements auth.Store.
func (s *Store) CreateUser(ctx context.Context, u auth.User, t auth.Token, hash string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		return createUser(tx, u, t, hash, e)
	})
}

func createUser(tx *gorm.DB, u auth.User, t auth.Token, hash string, e audit.Entry) error {
	if err := tx.Create(&userRow{ID: u.ID, Email: u.Email, Name: u.Name, InstanceAdmin: u.InstanceAdmin, CreatedAt: u.CreatedAt, UpdatedAt: u.CreatedAt}).Error; err != nil {
		return conflictAs(err, "a user with that e-mail address already exists")
	}
	if err := tx.Create(newTokenRow(t, hash)).Error; err != nil {
		return conflictAs(err, "that token is already in use")
	}
	return appendAudit(tx, e)
}

const bootstrappedKey = "bootstrapped"

type settingRow struct {
	Key       string
	Value     string
	UpdatedAt time.Time
}

func (settingRow) TableName() string { return "instance_settings" }

// Bootstrap implements auth.Store. The settings row is the once-only guard: its primary key
// makes a second bootstrap fail even when two replicas race.
func (s *Store) Bootstrap(ctx context.Context, u auth.User, t tenant.Tenant, tok auth.Token, hash string, e audit.Entry) error {
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Raw(`SELECT COUNT(*) FROM users`).Scan(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return auth.ErrAlreadyBootstrapped
		}
		if err := tx.Create(&settingRow{Key: bootstrappedKey, Value: u.ID, UpdatedAt: u.CreatedAt}).Error; err != nil {
			return err
		}
		if err := createUser(tx, u, tok, hash, e); err != nil {
			return err
		}
		if err := tx.Create(&tenantRow{ID: t.ID, Slug: t.Slug, Name: t.Name, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}).Error; err != nil {
			return err
		}
		return tx.Create(&tenantMemberRow{TenantID: t.ID, UserID: u.ID, Role: string(tenant.RoleOwner), CreatedAt: t.CreatedAt}).Error
	})
	if coffer.ErrorCode(err) == coffer.ECONFLICT {
		return auth.ErrAlreadyBootstrapped
	}
	return err
}

// Bootstrapped implements auth.Store.
func (s *Store) Bootstrapped(ctx context.Context) (bool, error) {
	var n int64
	if err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM instance_settings WHERE key = ?`, bootstrappedKey).Scan(&n).Error; err != nil {
		return false, dbErr(err)
	}
	return n > 0, nil
}

// Interface checks: the store implements every domain seam.
var (
	_ tenant.Store   = (*Store)(nil)
	_ secrets.Store  = (*Store)(nil)
	_ auth.Store     = (*Store)(nil)
	_ audit.Appender = (*Store)(nil)
)

// SetUserDisabled implements auth.Store.
func (s *Store) SetUserDisabled(ctx context.Context, userID string, at *time.Time, e audit.Entry) error {
	return s.changeOne(ctx, "user", e, `UPDATE users SET disabled_at = ?, updated_at = ? WHERE id = ?`, at, time.Now().UTC(), userID)
}
