package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"

	"github.com/cofferhq/coffer/internal/audit"
)

type auditRow struct {
	ID         int64 `gorm:"primaryKey;autoIncrement"`
	OccurredAt time.Time
	TenantID   string
	ActorType  string
	ActorID    string
	Action     string
	TargetType string
	TargetID   string
	Target     string
	RequestID  string
	SourceIP   string `gorm:"column:source_ip"`
	Metadata   string
	// ClientRequestID is the client's own X-Request-ID, apart from the server's RequestID.
	ClientRequestID string
}

func (auditRow) TableName() string { return "audit_entries" }

func auditRows(entries []audit.Entry) ([]auditRow, error) {
	rows := make([]auditRow, len(entries))
	for i, e := range entries {
		meta := []byte("{}")
		if len(e.Metadata) > 0 {
			var err error
			if meta, err = json.Marshal(e.Metadata); err != nil {
				return nil, fmt.Errorf("encode audit metadata: %w", err)
			}
		}
		rows[i] = auditRow{
			OccurredAt: e.Time, TenantID: e.TenantID, ActorType: e.Actor.Type, ActorID: e.Actor.ID,
			Action: e.Action, TargetType: e.TargetType, TargetID: e.TargetID, Target: e.Target,
			RequestID: e.Actor.RequestID, SourceIP: e.Actor.SourceIP, Metadata: string(meta), ClientRequestID: e.Actor.ClientRequestID,
		}
	}
	return rows, nil
}

// appendAudit inserts entries in the caller's transaction: if they cannot be written, the
// change they describe rolls back with them.
func appendAudit(tx *gorm.DB, entries ...audit.Entry) error {
	rows, err := auditRows(entries)
	if err != nil {
		return err
	}
	// One multi-row INSERT written out directly: it runs for every batch of reveals, and
	// gorm's reflection-driven Create (with RETURNING of ids nobody reads) cost more.
	var q strings.Builder
	q.WriteString(`INSERT INTO audit_entries (occurred_at, tenant_id, actor_type, actor_id, action, target_type,
		target_id, target, request_id, source_ip, metadata, client_request_id) VALUES `)
	args := make([]any, 0, len(rows)*12)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, r.OccurredAt, r.TenantID, r.ActorType, r.ActorID, r.Action, r.TargetType,
			r.TargetID, r.Target, r.RequestID, r.SourceIP, r.Metadata, r.ClientRequestID)
	}
	if err := tx.Exec(q.String(), args...).Error; err != nil {
		// Fail closed, and say why: the change is refused because it could not be recorded.
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the audit log could not record this change, so it was not made")
	}
	return nil
}

// AppendAudit implements audit.Appender with one multi-row INSERT: a single statement is
// atomic on its own, so a batch of reveal entries costs one round trip and one commit.
func (s *Store) AppendAudit(ctx context.Context, entries []audit.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	return dbErr(appendAudit(s.db.WithContext(ctx), entries...))
}

// AuditEntries returns a tenant's audit entries in order, after the given id; for tests and
// the later audit API.
func (s *Store) AuditEntries(ctx context.Context, tenantID string, afterID int64, limit int) ([]audit.Entry, error) {
	var rows []auditRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND id > ?", tenantID, afterID).Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.Entry, len(rows))
	for i, r := range rows {
		var meta map[string]any
		if err := json.Unmarshal([]byte(r.Metadata), &meta); err != nil {
			return nil, fmt.Errorf("decode audit metadata of entry %d: %w", r.ID, err)
		}
		out[i] = audit.Entry{Time: r.OccurredAt, TenantID: r.TenantID,
			Actor: audit.Actor{Type: r.ActorType, ID: r.ActorID, RequestID: r.RequestID, SourceIP: r.SourceIP,
				ClientRequestID: r.ClientRequestID},
			Action: r.Action, TargetType: r.TargetType, TargetID: r.TargetID, Target: r.Target, Metadata: meta}
	}
	return out, nil
}
