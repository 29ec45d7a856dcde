package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/auth"
)

type sessionRow struct {
	ID         string
	UserID     string
	TokenHash  string
	Method     string
	UserAgent  string
	SourceIP   string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

func (sessionRow) TableName() string { return "sessions" }

func (r sessionRow) domain() auth.Session {
	return auth.Session{ID: r.ID, UserID: r.UserID, Method: r.Method, UserAgent: r.UserAgent, SourceIP: r.SourceIP,
		CreatedAt: r.CreatedAt, LastSeenAt: r.LastSeenAt, ExpiresAt: r.ExpiresAt}
}

// CreateSession implements auth.Store.
func (s *Store) CreateSession(ctx context.Context, sess auth.Session, hash, replaces string, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if replaces != "" {
			if err := tx.Exec(`DELETE FROM sessions WHERE token_hash = ?`, replaces).Error; err != nil {
				return err
			}
		}
		row := sessionRow{ID: sess.ID, UserID: sess.UserID, TokenHash: hash, Method: sess.Method, UserAgent: sess.UserAgent,
			SourceIP: sess.SourceIP, CreatedAt: sess.CreatedAt, LastSeenAt: sess.LastSeenAt, ExpiresAt: sess.ExpiresAt}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		return appendAudit(tx, e)
	})
}

// SessionByHash implements auth.Store in one query with the session's user.
func (s *Store) SessionByHash(ctx context.Context, hash string) (auth.SessionRecord, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT x.id, x.user_id, x.method, x.token_hash, x.user_agent, x.source_ip,
		x.created_at, x.last_seen_at, x.expires_at, u.email, u.name, u.instance_admin, u.created_at, u.disabled_at
		FROM sessions x JOIN users u ON u.id = x.user_id WHERE x.token_hash = ?`, hash).Rows()
	if err != nil {
		return auth.SessionRecord{}, dbErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return auth.SessionRecord{}, dbErr(err)
		}
		return auth.SessionRecord{}, notFound("session")
	}
	var rec auth.SessionRecord
	x, u := &rec.Session, &rec.User
	if err := rows.Scan(&x.ID, &x.UserID, &x.Method, &rec.Hash, &x.UserAgent, &x.SourceIP, &x.CreatedAt, &x.LastSeenAt,
		&x.ExpiresAt, &u.Email, &u.Name, &u.InstanceAdmin, &u.CreatedAt, &u.DisabledAt); err != nil {
		return auth.SessionRecord{}, dbErr(err)
	}
	u.ID = x.UserID
	return rec, nil
}

// TouchSession implements auth.Store.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	return dbErr(s.db.WithContext(ctx).Exec(`UPDATE sessions SET last_seen_at = ? WHERE id = ?`, at, id).Error)
}

// ListSessions implements auth.Store, newest first. A user has a handful of sessions, so the
// list is not paged.
func (s *Store) ListSessions(ctx context.Context, userID string) ([]auth.Session, error) {
	var rows []sessionRow
	if err := s.db.WithContext(ctx).Where("user_id = ?", userID).Order("created_at DESC, id DESC").Limit(1000).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]auth.Session, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// DeleteSession implements auth.Store.
func (s *Store) DeleteSession(ctx context.Context, userID, id string, e audit.Entry) error {
	return s.changeOne(ctx, "session", e, `DELETE FROM sessions WHERE id = ? AND user_id = ?`, id, userID)
}
