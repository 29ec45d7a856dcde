package store

import (
	"context"
	"errors"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

type loginStateRow struct {
	StateHash  string `gorm:"primaryKey"`
	Nonce      string
	Verifier   string
	ReturnTo   string
	IdPID      *string `gorm:"column:idp_id"`
	LinkUserID *string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// nullable stores "" as NULL, for optional references.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (loginStateRow) TableName() string { return "oidc_login_states" }

type identityRow struct {
	Issuer    string `gorm:"primaryKey"`
	Subject   string `gorm:"primaryKey"`
	UserID    string
	Email     string
	CreatedAt time.Time
}

func (identityRow) TableName() string { return "user_identities" }

var _ auth.OIDCStore = (*Store)(nil)

// CreateLoginState implements auth.OIDCStore. Starting a sign-in needs no credential, so each
// start also sweeps the expired rows: abandoned sign-ins cannot pile up.
func (s *Store) CreateLoginState(ctx context.Context, st auth.LoginState) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM oidc_login_states WHERE expires_at <= ?`, st.CreatedAt).Error; err != nil {
			return err
		}
		return tx.Create(&loginStateRow{StateHash: st.StateHash, Nonce: st.Nonce, Verifier: st.Verifier, ReturnTo: st.ReturnTo,
			IdPID: nullable(st.IdPID), LinkUserID: nullable(st.LinkUserID), CreatedAt: st.CreatedAt, ExpiresAt: st.ExpiresAt}).Error
	})
}

// TakeLoginState implements auth.OIDCStore. The DELETE ... RETURNING is the check and the
// consumption in one statement: of two callbacks with the same state, one gets the row.
func (s *Store) TakeLoginState(ctx context.Context, stateHash string, now time.Time) (auth.LoginState, error) {
	var rows []loginStateRow
	err := s.db.WithContext(ctx).Raw(`DELETE FROM oidc_login_states WHERE state_hash = ?
		RETURNING state_hash, nonce, verifier, return_to, idp_id, link_user_id, created_at, expires_at`, stateHash).Scan(&rows).Error
	if err != nil {
		return auth.LoginState{}, dbErr(err)
	}
	if len(rows) == 0 || !now.Before(rows[0].ExpiresAt) {
		return auth.LoginState{}, notFound("sign-in")
	}
	r := rows[0]
	return auth.LoginState{StateHash: r.StateHash, Nonce: r.Nonce, Verifier: r.Verifier, ReturnTo: r.ReturnTo,
		IdPID: deref(r.IdPID), LinkUserID: deref(r.LinkUserID), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil
}

// UserByIdentity implements auth.OIDCStore.
func (s *Store) UserByIdentity(ctx context.Context, issuer, subject string) (auth.User, error) {
	return s.identityUser(ctx, ``, issuer, subject)
}

// identityUser is the user an identity is linked to, through user_identities i joined to the
// user u and whatever join adds (a membership the link must have); ENOTFOUND if none.
func (s *Store) identityUser(ctx context.Context, join string, args ...any) (auth.User, error) {
	var rows []struct {
		ID            string
		Email         string
		Name          string
		InstanceAdmin bool
		CreatedAt     time.Time
		DisabledAt    *time.Time
	}
	err := s.db.WithContext(ctx).Raw(`SELECT u.id, u.email, u.name, u.instance_admin, u.created_at, u.disabled_at
		FROM user_identities i JOIN users u ON u.id = i.user_id `+join+`
		WHERE i.issuer = ? AND i.subject = ?`, args...).Scan(&rows).Error
	if err != nil {
		return auth.User{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.User{}, notFound("identity")
	}
	r := rows[0]
	return auth.User{ID: r.ID, Email: r.Email, Name: r.Name, InstanceAdmin: r.InstanceAdmin, CreatedAt: r.CreatedAt, DisabledAt: r.DisabledAt}, nil
}

// SignUpIdentity implements auth.OIDCStore. The pending invitations are locked before the user
// is created, so an invitation revoked concurrently is either accepted here or not at all;
// the unique e-mail of users and the (issuer, subject) key make concurrent sign-ups of the
// same address or identity fail instead of doubling up.
func (s *Store) SignUpIdentity(ctx context.Context, u auth.User, id auth.Identity, open bool, now time.Time, accept audit.Entry, entries []audit.Entry) ([]tenant.Accepted, error) {
	var out []tenant.Accepted
	err := s.tx(ctx, func(tx *gorm.DB) error {
		all := slices.Clone(entries)
		var taken int64
		if err := tx.Raw(`SELECT COUNT(*) FROM users WHERE email = ?`, u.Email).Scan(&taken).Error; err != nil {
			return err
		}
		if taken > 0 {
			return auth.ErrEmailTaken
		}
		var invs []invitationRow
		err := tx.Raw(`SELECT * FROM invitations WHERE email = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?
			ORDER BY id`+s.forUpdate(), u.Email, now).Scan(&invs).Error
		if err != nil {
			return err
		}
		if len(invs) == 0 && !open {
			return auth.ErrSignupClosed
		}
		if err := tx.Create(&userRow{ID: u.ID, Email: u.Email, Name: u.Name, CreatedAt: u.CreatedAt, UpdatedAt: u.CreatedAt}).Error; err != nil {
			return err // a conflict: the same address signed up concurrently
		}
		if err := tx.Create(&identityRow{Issuer: id.Issuer, Subject: id.Subject, UserID: id.UserID, Email: id.Email, CreatedAt: id.CreatedAt}).Error; err != nil {
			return err
		}
		joined := map[string]tenant.Role{}
		for _, inv := range invs {
			res := tx.Exec(`UPDATE invitations SET accepted_at = ?, accepted_by = ?
				WHERE id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, now, u.ID, inv.ID, now)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				continue
			}
			var t tenantRow
			if err := tx.Raw(`SELECT * FROM tenants WHERE id = ?`, inv.TenantID).Scan(&t).Error; err != nil {
				return err
			}
			// Two invitations to one tenant: the first decides the role, the second is used
			// up like an accept by a member.
			role, already := joined[inv.TenantID]
			if !already {
				role = tenant.Role(inv.Role)
				if err := tx.Create(&tenantMemberRow{TenantID: inv.TenantID, UserID: u.ID, Role: inv.Role, CreatedAt: now}).Error; err != nil {
					return err
				}
				joined[inv.TenantID] = role
			}
			out = append(out, tenant.Accepted{Membered: tenant.Membered{Tenant: t.domain(), Role: role}, AlreadyMember: already})
			e := accept
			e.TenantID, e.Target = inv.TenantID, t.Slug
			e.Metadata = map[string]any{"invitation_id": inv.ID, "role": string(role), "already_member": already, "method": "oidc"}
			all = append(all, e)
		}
		return appendAudit(tx, all...)
	})
	if coffer.ErrorCode(err) == coffer.ECONFLICT && !errors.Is(err, auth.ErrEmailTaken) {
		return nil, coffer.Wrap(coffer.ECONFLICT, err, "this identity or address signed up at the same moment")
	}
	return out, err
}
