package store

import (
	"context"
	"maps"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

type tenantIdPRow struct {
	TenantID     string `gorm:"primaryKey"`
	ID           string `gorm:"column:id"`
	Issuer       string
	ClientID     string
	ClientSecret []byte
	Required     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func (tenantIdPRow) TableName() string { return "tenant_idps" }

func (r tenantIdPRow) domain() auth.IdP {
	return auth.IdP{ID: r.ID, TenantID: r.TenantID, Issuer: r.Issuer, ClientID: r.ClientID, Required: r.Required,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

var _ auth.IdPStore = (*Store)(nil)

// PutIdP implements auth.IdPStore. The tenant's row is locked first, so that two owners
// configuring at once are one after the other instead of a lost update or a failed insert.
func (s *Store) PutIdP(ctx context.Context, idp auth.IdP, sealed []byte, e audit.Entry) (auth.IdP, bool, error) {
	var (
		out     auth.IdP
		created bool
	)
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var tenants []string
		if err := tx.Raw(`SELECT id FROM tenants WHERE id = ?`+s.forUpdate(), idp.TenantID).Scan(&tenants).Error; err != nil {
			return err
		}
		if len(tenants) == 0 {
			return notFound("tenant")
		}
		var cur []tenantIdPRow
		if err := tx.Raw(`SELECT * FROM tenant_idps WHERE tenant_id = ?`, idp.TenantID).Scan(&cur).Error; err != nil {
			return err
		}
		if len(cur) == 0 {
			if sealed == nil {
				return auth.ErrIdPSecretRequired
			}
			row := tenantIdPRow{TenantID: idp.TenantID, ID: idp.ID, Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecret: sealed,
				Required: idp.Required, CreatedAt: idp.CreatedAt, UpdatedAt: idp.UpdatedAt}
			if err := tx.Create(&row).Error; err != nil {
				return err
			}
			out, created = row.domain(), true
			return appendAudit(tx, withIdP(e, row.ID))
		}
		row := cur[0]
		row.Issuer, row.ClientID, row.Required, row.UpdatedAt = idp.Issuer, idp.ClientID, idp.Required, idp.UpdatedAt
		if sealed != nil {
			row.ClientSecret = sealed
		}
		if err := tx.Exec(`UPDATE tenant_idps SET issuer = ?, client_id = ?, client_secret = ?, required = ?, updated_at = ? WHERE tenant_id = ?`,
			row.Issuer, row.ClientID, row.ClientSecret, row.Required, row.UpdatedAt, row.TenantID).Error; err != nil {
			return err
		}
		out = row.domain()
		return appendAudit(tx, withIdP(e, row.ID))
	})
	return out, created, err
}

// withIdP names the provider's id in an entry's metadata, which only the store knows on a
// replace; the caller's map is left as it was.
func withIdP(e audit.Entry, id string) audit.Entry {
	meta := maps.Clone(e.Metadata)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["idp"] = id
	e.Metadata = meta
	return e
}

// IdP implements auth.IdPStore.
func (s *Store) IdP(ctx context.Context, tenantID string) (auth.IdP, error) {
	var rows []tenantIdPRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM tenant_idps WHERE tenant_id = ?`, tenantID).Scan(&rows).Error; err != nil {
		return auth.IdP{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.IdP{}, notFound("identity provider")
	}
	return rows[0].domain(), nil
}

// DeleteIdP implements auth.IdPStore. Sign-ins in progress through it go with it (the login
// states reference it ON DELETE CASCADE).
func (s *Store) DeleteIdP(ctx context.Context, tenantID string, e audit.Entry) error {
	return s.changeOne(ctx, "identity provider", e, `DELETE FROM tenant_idps WHERE tenant_id = ?`, tenantID)
}

// IdPByID implements auth.IdPStore.
func (s *Store) IdPByID(ctx context.Context, id string) (auth.IdP, []byte, error) {
	var rows []tenantIdPRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM tenant_idps WHERE id = ?`, id).Scan(&rows).Error; err != nil {
		return auth.IdP{}, nil, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.IdP{}, nil, notFound("identity provider")
	}
	return rows[0].domain(), rows[0].ClientSecret, nil
}

// MemberByIdentity implements auth.IdPStore: the identity, its user and the membership in one
// query, so a user removed from the tenant is refused like an unlinked identity.
func (s *Store) MemberByIdentity(ctx context.Context, issuer, subject, tenantID string) (auth.User, error) {
	return s.identityUser(ctx, `JOIN tenant_members m ON m.user_id = u.id AND m.tenant_id = ?`, tenantID, issuer, subject)
}

// LinkIdentity implements auth.IdPStore. The membership row is locked, so a member removed at
// the same moment is either linked before or refused; the (issuer, subject) key makes two
// concurrent links of one identity fail instead of both winning.
func (s *Store) LinkIdentity(ctx context.Context, id auth.Identity, tenantID string, e audit.Entry) (bool, error) {
	linked := false
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var members []string
		if err := tx.Raw(`SELECT user_id FROM tenant_members WHERE tenant_id = ? AND user_id = ?`+s.forUpdate(), tenantID, id.UserID).Scan(&members).Error; err != nil {
			return err
		}
		var active int64
		if err := tx.Raw(`SELECT COUNT(*) FROM users WHERE id = ? AND disabled_at IS NULL`, id.UserID).Scan(&active).Error; err != nil {
			return err
		}
		if len(members) == 0 || active == 0 {
			return notFound("membership")
		}
		var owners []string
		if err := tx.Raw(`SELECT user_id FROM user_identities WHERE issuer = ? AND subject = ?`, id.Issuer, id.Subject).Scan(&owners).Error; err != nil {
			return err
		}
		if len(owners) > 0 {
			if owners[0] != id.UserID {
				return auth.ErrIdentityTaken
			}
			return nil
		}
		if err := tx.Create(&identityRow{Issuer: id.Issuer, Subject: id.Subject, UserID: id.UserID, Email: id.Email, CreatedAt: id.CreatedAt}).Error; err != nil {
			return err
		}
		linked = true
		return appendAudit(tx, e)
	})
	if coffer.ErrorCode(err) == coffer.ECONFLICT {
		return false, coffer.Wrap(coffer.ECONFLICT, err, "this identity was linked at the same moment; try again")
	}
	return linked, err
}

// IdPLinks implements auth.IdPStore.
func (s *Store) IdPLinks(ctx context.Context, userID string) ([]auth.TenantIdPLink, error) {
	var rows []struct {
		Slug     string
		Name     string
		IdPID    string `gorm:"column:idp_id"`
		Required bool
		Linked   bool
	}
	err := s.db.WithContext(ctx).Raw(`SELECT t.slug, t.name, ti.id AS idp_id, ti.required,
		EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = m.user_id AND i.issuer = ti.issuer) AS linked
		FROM tenant_members m JOIN tenants t ON t.id = m.tenant_id JOIN tenant_idps ti ON ti.tenant_id = t.id
		WHERE m.user_id = ? ORDER BY t.slug LIMIT 200`, userID).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]auth.TenantIdPLink, len(rows))
	for i, r := range rows {
		out[i] = auth.TenantIdPLink{TenantSlug: r.Slug, TenantName: r.Name, IdPID: r.IdPID, Required: r.Required, Linked: r.Linked}
	}
	return out, nil
}
