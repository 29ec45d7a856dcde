package store

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

var _ auth.LocalStore = (*Store)(nil)

// credentialsQuery reads a user with what a password login needs, in one query.
const credentialsQuery = `SELECT u.id, u.email, u.name, u.instance_admin, u.created_at, u.disabled_at,
	p.password_hash, t.confirmed_at
	FROM users u LEFT JOIN user_passwords p ON p.user_id = u.id LEFT JOIN user_totp t ON t.user_id = u.id
	WHERE `

// Credentials implements auth.LocalStore.
func (s *Store) Credentials(ctx context.Context, email string) (auth.Credentials, error) {
	return s.credentials(ctx, "u.email = ?", email)
}

// CredentialsByID implements auth.LocalStore.
func (s *Store) CredentialsByID(ctx context.Context, userID string) (auth.Credentials, error) {
	return s.credentials(ctx, "u.id = ?", userID)
}

func (s *Store) credentials(ctx context.Context, where string, arg string) (auth.Credentials, error) {
	rows, err := s.db.WithContext(ctx).Raw(credentialsQuery+where, arg).Rows()
	if err != nil {
		return auth.Credentials{}, dbErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.Credentials{}, dbErr(err)
		}
		return auth.Credentials{}, notFound("user")
	}
	var (
		c         auth.Credentials
		hash      sql.NullString
		confirmed *time.Time
	)
	u := &c.User
	if err := rows.Scan(&u.ID, &u.Email, &u.Name, &u.InstanceAdmin, &u.CreatedAt, &u.DisabledAt, &hash, &confirmed); err != nil {
		return auth.Credentials{}, dbErr(err)
	}
	c.PasswordHash, c.TOTPEnabled = hash.String, confirmed != nil
	return c, nil
}

// userEmail returns a user's address inside a transaction; ENOTFOUND if there is no such user.
func userEmail(tx *gorm.DB, userID string) (string, error) {
	var emails []string
	if err := tx.Raw(`SELECT email FROM users WHERE id = ?`, userID).Scan(&emails).Error; err != nil {
		return "", err
	}
	if len(emails) == 0 {
		return "", notFound("user")
	}
	return emails[0], nil
}

// putPassword stores a password hash, replacing any earlier one.
func putPassword(tx *gorm.DB, userID, hash string, at time.Time) error {
	return tx.Exec(`INSERT INTO user_passwords (user_id, password_hash, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at`,
		userID, hash, at).Error
}

// SetPassword implements auth.LocalStore.
func (s *Store) SetPassword(ctx context.Context, userID, hash string, at time.Time, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if _, err := userEmail(tx, userID); err != nil {
			return err
		}
		if err := putPassword(tx, userID, hash, at); err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// UpdatePasswordHash implements auth.LocalStore. It changes nothing if the password changed
// in the meantime.
func (s *Store) UpdatePasswordHash(ctx context.Context, userID, oldHash, newHash string) error {
	return dbErr(s.db.WithContext(ctx).Exec(`UPDATE user_passwords SET password_hash = ? WHERE user_id = ? AND password_hash = ?`,
		newHash, userID, oldHash).Error)
}

// CreateChallenge implements auth.LocalStore. Expired challenges are swept on the way: they
// are few and short-lived, and nothing else needs to run for them.
func (s *Store) CreateChallenge(ctx context.Context, ch auth.Challenge, hash string) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		now := time.Now().UTC()
		if err := tx.Exec(`DELETE FROM login_challenges WHERE expires_at <= ?`, now).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO login_challenges (id, user_id, token_hash, return_to, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			ch.ID, ch.UserID, hash, ch.ReturnTo, now, ch.ExpiresAt).Error
	})
}

// Challenge implements auth.LocalStore.
func (s *Store) Challenge(ctx context.Context, hash string, now time.Time) (auth.Challenge, error) {
	var rows []struct {
		ID        string
		UserID    string
		ReturnTo  string
		ExpiresAt time.Time
	}
	err := s.db.WithContext(ctx).Raw(`SELECT id, user_id, return_to, expires_at FROM login_challenges WHERE token_hash = ? AND expires_at > ?`,
		hash, now).Scan(&rows).Error
	if err != nil {
		return auth.Challenge{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.Challenge{}, notFound("sign-in")
	}
	r := rows[0]
	return auth.Challenge{ID: r.ID, UserID: r.UserID, ReturnTo: r.ReturnTo, ExpiresAt: r.ExpiresAt}, nil
}

// EndChallenge implements auth.LocalStore.
func (s *Store) EndChallenge(ctx context.Context, id string) error {
	return dbErr(mustAffect(s.db.WithContext(ctx).Exec(`DELETE FROM login_challenges WHERE id = ?`, id), "sign-in"))
}

// TOTP implements auth.LocalStore.
func (s *Store) TOTP(ctx context.Context, userID string) (auth.TOTPState, error) {
	var rows []struct {
		SealedSeed  []byte
		ConfirmedAt *time.Time
		LastStep    int64
	}
	err := s.db.WithContext(ctx).Raw(`SELECT sealed_seed, confirmed_at, last_step FROM user_totp WHERE user_id = ?`, userID).Scan(&rows).Error
	if err != nil {
		return auth.TOTPState{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.TOTPState{}, notFound("authenticator")
	}
	r := rows[0]
	return auth.TOTPState{Seed: r.SealedSeed, Confirmed: r.ConfirmedAt != nil, LastStep: r.LastStep}, nil
}

// PutPendingTOTP implements auth.LocalStore. The upsert's condition leaves a confirmed seed
// alone in the same statement that would replace it.
func (s *Store) PutPendingTOTP(ctx context.Context, userID string, sealed []byte, at time.Time) error {
	res := s.db.WithContext(ctx).Exec(`INSERT INTO user_totp (user_id, sealed_seed, confirmed_at, last_step, created_at) VALUES (?, ?, NULL, 0, ?)
		ON CONFLICT (user_id) DO UPDATE SET sealed_seed = excluded.sealed_seed, created_at = excluded.created_at
		WHERE user_totp.confirmed_at IS NULL`, userID, sealed, at)
	if res.Error != nil {
		return dbErr(res.Error)
	}
	if res.RowsAffected == 0 {
		return coffer.Errorf(coffer.ECONFLICT, "two-factor sign-in is already on")
	}
	return nil
}

// ConfirmTOTP implements auth.LocalStore.
func (s *Store) ConfirmTOTP(ctx context.Context, userID string, step int64, codeHashes []string, at time.Time, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE user_totp SET confirmed_at = ?, last_step = ? WHERE user_id = ? AND confirmed_at IS NULL`, at, step, userID)
		if err := mustAffect(res, "pending authenticator"); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM totp_recovery_codes WHERE user_id = ?`, userID).Error; err != nil {
			return err
		}
		for _, h := range codeHashes {
			if err := tx.Exec(`INSERT INTO totp_recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)`, userID, h, at).Error; err != nil {
				return err
			}
		}
		return appendAudit(tx, e)
	})
}

// spendStep moves a user's last accepted TOTP step forward to step, only if it is later: the
// condition and the change are one statement, so of two requests with the same code only one
// moves it.
func spendStep(tx *gorm.DB, userID string, step int64) error {
	res := tx.Exec(`UPDATE user_totp SET last_step = ? WHERE user_id = ? AND confirmed_at IS NOT NULL AND last_step < ?`, step, userID, step)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return auth.ErrCodeUsed
	}
	return nil
}

// SpendTOTPStep implements auth.LocalStore.
func (s *Store) SpendTOTPStep(ctx context.Context, userID string, step int64) error {
	return dbErr(spendStep(s.db.WithContext(ctx), userID, step))
}

// SpendRecoveryCode implements auth.LocalStore.
func (s *Store) SpendRecoveryCode(ctx context.Context, userID, codeHash string, at time.Time, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE totp_recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL`, at, userID, codeHash)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return auth.ErrCodeUsed
		}
		var left int64
		if err := tx.Raw(`SELECT COUNT(*) FROM totp_recovery_codes WHERE user_id = ? AND used_at IS NULL`, userID).Scan(&left).Error; err != nil {
			return err
		}
		e.Metadata = map[string]any{"remaining": left}
		return appendAudit(tx, e)
	})
}

// DisableTOTP implements auth.LocalStore.
func (s *Store) DisableTOTP(ctx context.Context, userID string, step int64, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := spendStep(tx, userID, step); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM totp_recovery_codes WHERE user_id = ?`, userID).Error; err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM user_totp WHERE user_id = ?`, userID).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// CreatePasswordReset implements auth.LocalStore.
func (s *Store) CreatePasswordReset(ctx context.Context, r auth.PasswordReset, codeHash string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		email, err := userEmail(tx, r.UserID)
		if err != nil {
			return err
		}
		// One live link per user: a new one ends the others, used ones stay as a record.
		if err := tx.Exec(`DELETE FROM password_resets WHERE user_id = ? AND used_at IS NULL`, r.UserID).Error; err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO password_resets (id, user_id, code_hash, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ID, r.UserID, codeHash, sql.NullString{String: r.CreatedBy, Valid: r.CreatedBy != ""}, r.CreatedAt, r.ExpiresAt).Error; err != nil {
			return err
		}
		e.Target = email
		return appendAudit(tx, e)
	})
}

type resetRow struct {
	ID        string
	UserID    string
	CreatedBy sql.NullString
	CreatedAt time.Time
	ExpiresAt time.Time
}

func (r resetRow) domain() auth.PasswordReset {
	return auth.PasswordReset{ID: r.ID, UserID: r.UserID, CreatedBy: r.CreatedBy.String, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
}

// PasswordReset implements auth.LocalStore.
func (s *Store) PasswordReset(ctx context.Context, codeHash string, now time.Time) (auth.PasswordReset, error) {
	var rows []resetRow
	err := s.db.WithContext(ctx).Raw(`SELECT id, user_id, created_by, created_at, expires_at FROM password_resets
		WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?`, codeHash, now).Scan(&rows).Error
	if err != nil {
		return auth.PasswordReset{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.PasswordReset{}, notFound("reset link")
	}
	return rows[0].domain(), nil
}

// UsePasswordReset implements auth.LocalStore. The conditional UPDATE is the once-only guard:
// of two requests with the same link, one changes the row and the other finds none.
func (s *Store) UsePasswordReset(ctx context.Context, codeHash, passwordHash string, now time.Time, entry func(auth.PasswordReset) audit.Entry) (auth.PasswordReset, error) {
	var out auth.PasswordReset
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var rows []resetRow
		err := tx.Raw(`UPDATE password_resets SET used_at = ? WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING id, user_id, created_by, created_at, expires_at`, now, codeHash, now).Scan(&rows).Error
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return notFound("reset link")
		}
		out = rows[0].domain()
		email, err := userEmail(tx, out.UserID)
		if err != nil {
			return err
		}
		if err := putPassword(tx, out.UserID, passwordHash, now); err != nil {
			return err
		}
		// Whoever knew the old password may be signed in: every session and half-done login
		// of the user ends with it.
		if err := tx.Exec(`DELETE FROM sessions WHERE user_id = ?`, out.UserID).Error; err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM login_challenges WHERE user_id = ?`, out.UserID).Error; err != nil {
			return err
		}
		e := entry(out)
		e.Target = email
		return appendAudit(tx, e)
	})
	return out, err
}
