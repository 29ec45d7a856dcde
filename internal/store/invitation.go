package store

import (
	"context"
	"database/sql"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

type invitationRow struct {
	ID         string
	TenantID   string
	Email      string
	Role       string
	CodeHash   string
	CreatedBy  sql.NullString
	CreatedAt  time.Time
	ExpiresAt  time.Time
	AcceptedAt *time.Time
	AcceptedBy sql.NullString
	RevokedAt  *time.Time
}

func (invitationRow) TableName() string { return "invitations" }

func (r invitationRow) domain() tenant.Invitation {
	return tenant.Invitation{ID: r.ID, TenantID: r.TenantID, Email: r.Email, Role: tenant.Role(r.Role),
		CreatedBy: r.CreatedBy.String, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
}

// CreateInvitation implements tenant.InvitationStore.
func (s *Store) CreateInvitation(ctx context.Context, inv tenant.Invitation, codeHash string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		row := invitationRow{ID: inv.ID, TenantID: inv.TenantID, Email: inv.Email, Role: string(inv.Role), CodeHash: codeHash,
			CreatedBy: sql.NullString{String: inv.CreatedBy, Valid: inv.CreatedBy != ""}, CreatedAt: inv.CreatedAt, ExpiresAt: inv.ExpiresAt}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// ListInvitations implements tenant.InvitationStore.
func (s *Store) ListInvitations(ctx context.Context, tenantID string, now time.Time, after string, limit int) ([]tenant.Invitation, error) {
	var rows []invitationRow
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM invitations
		WHERE tenant_id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ? AND id > ?
		ORDER BY id LIMIT ?`, tenantID, now, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]tenant.Invitation, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// RevokeInvitation implements tenant.InvitationStore.
func (s *Store) RevokeInvitation(ctx context.Context, tenantID, id string, now time.Time, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var rows []invitationRow
		if err := tx.Raw(`SELECT * FROM invitations WHERE tenant_id = ? AND id = ?`+s.forUpdate(), tenantID, id).Scan(&rows).Error; err != nil {
			return err
		}
		// Only a pending invitation is revoked; the conditional UPDATE makes the check and
		// the change one step.
		res := tx.Exec(`UPDATE invitations SET revoked_at = ?
			WHERE tenant_id = ? AND id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?`, now, tenantID, id, now)
		if err := mustAffect(res, "invitation"); err != nil {
			return err
		}
		e.Metadata = map[string]any{"email": rows[0].Email, "role": rows[0].Role}
		return appendAudit(tx, e)
	})
}

// AcceptInvitation implements tenant.InvitationStore.
func (s *Store) AcceptInvitation(ctx context.Context, codeHash, userID, email string, now time.Time, e audit.Entry) (tenant.Accepted, error) {
	var out tenant.Accepted
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var rows []invitationRow
		if err := tx.Raw(`SELECT * FROM invitations WHERE code_hash = ?`+s.forUpdate(), codeHash).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 || rows[0].Email != email {
			return tenant.ErrNoInvitation()
		}
		inv := rows[0]
		// The same conditions again in the UPDATE: of two concurrent accepts, one changes
		// the row and the other affects none.
		res := tx.Exec(`UPDATE invitations SET accepted_at = ?, accepted_by = ?
			WHERE id = ? AND email = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
			now, userID, inv.ID, email, now)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return tenant.ErrNoInvitation()
		}
		var t tenantRow
		if err := tx.Raw(`SELECT * FROM tenants WHERE id = ?`, inv.TenantID).Scan(&t).Error; err != nil {
			return err
		}
		current, err := s.memberRole(tx, inv.TenantID, userID)
		if err != nil {
			return err
		}
		role := tenant.Role(inv.Role)
		if current != "" {
			// Already a member: the code is used up, the role stays as it is.
			role = current
		} else if err := tx.Create(&tenantMemberRow{TenantID: inv.TenantID, UserID: userID, Role: inv.Role, CreatedAt: now}).Error; err != nil {
			return err
		}
		out = tenant.Accepted{Membered: tenant.Membered{Tenant: t.domain(), Role: role}, AlreadyMember: current != ""}
		e.TenantID, e.Target = inv.TenantID, t.Slug
		e.Metadata = map[string]any{"invitation_id": inv.ID, "role": string(role), "already_member": current != ""}
		e.Event = &coffer.Event{Type: e.Action, TenantID: inv.TenantID}
		return appendAudit(tx, e)
	})
	return out, err
}
