package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

type deviceRow struct {
	ID             string
	DeviceCodeHash string
	UserCodeHash   string
	ClientName     string
	SourceIP       string
	UserAgent      string
	TokenDays      int
	Status         string
	UserID         *string
	TokenID        *string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	DecidedAt      *time.Time
	LastPolledAt   *time.Time
}

func (deviceRow) TableName() string { return "device_authorizations" }

func (r deviceRow) domain() auth.DeviceAuthorization {
	d := auth.DeviceAuthorization{ID: r.ID, ClientName: r.ClientName, SourceIP: r.SourceIP, UserAgent: r.UserAgent,
		TokenDays: r.TokenDays, Status: r.Status, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		DecidedAt: r.DecidedAt, LastPolledAt: r.LastPolledAt}
	if r.UserID != nil {
		d.UserID = *r.UserID
	}
	if r.TokenID != nil {
		d.TokenID = *r.TokenID
	}
	return d
}

// deviceForgetAfter is how long after expiry a device authorization is kept (to answer a
// late poll "expired" rather than "unknown").
const deviceForgetAfter = 24 * time.Hour

// CreateDeviceAuthorization implements auth.DeviceStore.
func (s *Store) CreateDeviceAuthorization(ctx context.Context, d auth.DeviceAuthorization, deviceHash, userHash string) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM device_authorizations WHERE expires_at < ?`, d.CreatedAt.Add(-deviceForgetAfter)).Error; err != nil {
			return err
		}
		return tx.Create(&deviceRow{ID: d.ID, DeviceCodeHash: deviceHash, UserCodeHash: userHash, ClientName: d.ClientName,
			SourceIP: d.SourceIP, UserAgent: d.UserAgent, TokenDays: d.TokenDays, Status: auth.DevicePending,
			CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt}).Error
	})
}

// DeviceAuthorizationByUserCode implements auth.DeviceStore.
func (s *Store) DeviceAuthorizationByUserCode(ctx context.Context, userHash string) (auth.DeviceAuthorization, error) {
	var rows []deviceRow
	if err := s.db.WithContext(ctx).Raw(`SELECT * FROM device_authorizations WHERE user_code_hash = ?`, userHash).Scan(&rows).Error; err != nil {
		return auth.DeviceAuthorization{}, dbErr(err)
	}
	if len(rows) == 0 {
		return auth.DeviceAuthorization{}, coffer.Errorf(coffer.ENOTFOUND, "no sign-in is waiting for that code: check it, or start again with `coffer login`")
	}
	return rows[0].domain(), nil
}

// DecideDeviceAuthorization implements auth.DeviceStore: the update itself checks that the
// authorization is still pending and unexpired, so two answers cannot both win.
func (s *Store) DecideDeviceAuthorization(ctx context.Context, id, userID string, approve bool, at time.Time, e audit.Entry) error {
	status := auth.DeviceDenied
	if approve {
		status = auth.DeviceApproved
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE device_authorizations SET status = ?, user_id = ?, decided_at = ?
			WHERE id = ? AND status = ? AND expires_at > ?`, status, userID, at, id, auth.DevicePending, at)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return coffer.Errorf(coffer.ECONFLICT, "this sign-in was already answered, or it expired")
		}
		return appendAudit(tx, e)
	})
}

// PollDeviceAuthorization implements auth.DeviceStore.
func (s *Store) PollDeviceAuthorization(ctx context.Context, deviceHash string, at time.Time, minInterval time.Duration,
	mint func(d auth.DeviceAuthorization) (auth.Token, string, audit.Entry)) (auth.DeviceAuthorization, error) {
	var out auth.DeviceAuthorization
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var rows []deviceRow
		if err := tx.Raw(`SELECT * FROM device_authorizations WHERE device_code_hash = ?`+s.forUpdate(), deviceHash).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return coffer.Errorf(coffer.ENOTFOUND, "unknown device code: start again with `coffer login`")
		}
		r := rows[0]
		out = r.domain()
		if r.Status == auth.DeviceRedeemed || r.Status == auth.DeviceDenied {
			return nil
		}
		if !at.Before(r.ExpiresAt) {
			out.Status = auth.DeviceExpired
			return nil
		}
		if r.LastPolledAt != nil && at.Sub(*r.LastPolledAt) < minInterval {
			out.Status = auth.DeviceSlowDown
			return nil
		}
		if err := tx.Exec(`UPDATE device_authorizations SET last_polled_at = ? WHERE id = ?`, at, r.ID).Error; err != nil {
			return err
		}
		if r.Status != auth.DeviceApproved {
			return nil
		}
		var users []auth.User
		if err := tx.Raw(`SELECT id, email, name, instance_admin, created_at, disabled_at FROM users WHERE id = ?`, *r.UserID).Scan(&users).Error; err != nil {
			return err
		}
		if len(users) == 0 || users[0].DisabledAt != nil {
			out.Status = auth.DeviceDenied
			return tx.Exec(`UPDATE device_authorizations SET status = ? WHERE id = ?`, auth.DeviceDenied, r.ID).Error
		}
		t, hash, e := mint(out)
		if err := tx.Create(newTokenRow(t, hash)).Error; err != nil {
			return err
		}
		if err := tx.Exec(`UPDATE device_authorizations SET status = ?, token_id = ? WHERE id = ?`, auth.DeviceRedeemed, t.ID, r.ID).Error; err != nil {
			return err
		}
		out.Status, out.TokenID, out.User = auth.DeviceRedeemed, t.ID, users[0]
		return appendAudit(tx, e)
	})
	return out, err
}
