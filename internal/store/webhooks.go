package store

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/webhook"
)

var (
	_ webhook.Store = (*Store)(nil)
	_ webhook.Queue = (*Store)(nil)
)

type webhookRow struct {
	ID          string
	TenantID    string
	ProjectID   string
	URL         string `gorm:"column:url"`
	EventTypes  string
	Secret      []byte
	CreatedBy   *string
	CreatedAt   time.Time
	EventCursor int64
}

func (webhookRow) TableName() string { return "webhooks" }

func (r webhookRow) domain() webhook.Webhook {
	w := webhook.Webhook{ID: r.ID, TenantID: r.TenantID, ProjectID: r.ProjectID, URL: r.URL,
		Events: strings.Fields(r.EventTypes), CreatedAt: r.CreatedAt.UTC()}
	if r.CreatedBy != nil {
		w.CreatedBy = *r.CreatedBy
	}
	return w
}

type deliveryRow struct {
	ID            string
	WebhookID     string
	EventID       int64
	EventType     string
	EventAt       time.Time
	Payload       string
	Status        string
	Attempts      int
	NextAttemptAt *time.Time
	Claim         string
	LastStatus    int
	LastError     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (deliveryRow) TableName() string { return "webhook_deliveries" }

func (r deliveryRow) domain() webhook.Delivery {
	d := webhook.Delivery{ID: r.ID, WebhookID: r.WebhookID, EventID: r.EventID, EventType: r.EventType, EventAt: r.EventAt.UTC(),
		Status: r.Status, Attempts: r.Attempts, LastStatus: r.LastStatus, LastError: r.LastError,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.NextAttemptAt != nil {
		t := r.NextAttemptAt.UTC()
		d.NextAttemptAt = &t
	}
	return d
}

// CreateWebhook implements webhook.Store. The project's row is locked first, so that the
// count against the limit and the insert are one step. The cursor is read after the audit
// entry is appended: the writer then holds the tenant's chain head, so every event before
// it has committed and none is numbered between the read and the webhook's existence.
func (s *Store) CreateWebhook(ctx context.Context, w webhook.Webhook, sealed []byte, e audit.Entry) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		var projects []string
		if err := tx.Raw(`SELECT id FROM projects WHERE id = ? AND tenant_id = ?`+s.forUpdate(), w.ProjectID, w.TenantID).
			Scan(&projects).Error; err != nil {
			return err
		}
		if len(projects) == 0 {
			return notFound("project")
		}
		var n int64
		if err := tx.Raw(`SELECT COUNT(*) FROM webhooks WHERE project_id = ?`, w.ProjectID).Scan(&n).Error; err != nil {
			return err
		}
		if n >= webhook.MaxPerProject {
			return coffer.Errorf(coffer.ECONFLICT, "a project has at most %d webhooks: delete one first", webhook.MaxPerProject)
		}
		row := webhookRow{ID: w.ID, TenantID: w.TenantID, ProjectID: w.ProjectID, URL: w.URL,
			EventTypes: strings.Join(w.Events, " "), Secret: sealed, CreatedAt: w.CreatedAt}
		if w.CreatedBy != "" {
			row.CreatedBy = &w.CreatedBy
		}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if err := appendAudit(tx, e); err != nil {
			return err
		}
		return tx.Exec(`UPDATE webhooks SET event_cursor = (SELECT COALESCE(MAX(id), 0) FROM events WHERE tenant_id = ?) WHERE id = ?`,
			w.TenantID, w.ID).Error
	})
}

// Webhooks implements webhook.Store.
func (s *Store) Webhooks(ctx context.Context, tenantID, projectID string) ([]webhook.Webhook, error) {
	var rows []webhookRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND project_id = ?", tenantID, projectID).
		Order("created_at, id").Limit(webhook.MaxPerProject * 2).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]webhook.Webhook, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// Webhook implements webhook.Store.
func (s *Store) Webhook(ctx context.Context, tenantID, projectID, id string) (webhook.Webhook, error) {
	var rows []webhookRow
	if err := s.db.WithContext(ctx).Where("id = ? AND tenant_id = ? AND project_id = ?", id, tenantID, projectID).
		Limit(1).Find(&rows).Error; err != nil {
		return webhook.Webhook{}, dbErr(err)
	}
	if len(rows) == 0 {
		return webhook.Webhook{}, notFound("webhook")
	}
	return rows[0].domain(), nil
}

// DeleteWebhook implements webhook.Store; deliveries and attempts go with it (ON DELETE
// CASCADE).
func (s *Store) DeleteWebhook(ctx context.Context, tenantID, projectID, id string, e audit.Entry) error {
	return s.changeOne(ctx, "webhook", e, `DELETE FROM webhooks WHERE id = ? AND tenant_id = ? AND project_id = ?`, id, tenantID, projectID)
}

// Deliveries implements webhook.Store.
func (s *Store) Deliveries(ctx context.Context, webhookID string, beforeEvent int64, limit int) ([]webhook.Delivery, error) {
	q := s.db.WithContext(ctx).Where("webhook_id = ?", webhookID)
	if beforeEvent > 0 {
		q = q.Where("event_id < ?", beforeEvent)
	}
	var rows []deliveryRow
	if err := q.Order("event_id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]webhook.Delivery, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// WebhookTenants implements webhook.Queue.
func (s *Store) WebhookTenants(ctx context.Context) ([]string, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT tenant_id FROM webhooks`).Scan(&ids).Error; err != nil {
		return nil, dbErr(err)
	}
	return ids, nil
}

// WebhooksBehind implements webhook.Queue: one query, each webhook probing the events
// primary key just past its cursor.
func (s *Store) WebhooksBehind(ctx context.Context) ([]string, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Raw(`SELECT w.id FROM webhooks w
		WHERE EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = w.tenant_id AND e.id > w.event_cursor)`).
		Scan(&ids).Error; err != nil {
		return nil, dbErr(err)
	}
	return ids, nil
}

// skipLocked skips rows another transaction holds, where the dialect has row locks; SQLite
// transactions already hold the database's write lock from their start.
func (s *Store) skipLocked(of string) string {
	if s.dialect == Postgres {
		if of != "" {
			return " FOR UPDATE OF " + of + " SKIP LOCKED"
		}
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// webhookEventRow is an event with the slugs of what it names.
type webhookEventRow struct {
	TenantID        string
	ID              int64
	OccurredAt      time.Time
	Type            string
	ProjectID       string
	EnvironmentID   string
	Name            string
	Version         int
	ActorType       string
	ActorID         string
	TargetType      string
	TargetID        string
	TenantSlug      *string
	ProjectSlug     *string
	EnvironmentSlug *string
}

// DispatchWebhook implements webhook.Queue. The webhook's row is the lock: two replicas
// never dispatch one webhook at once, and the second finds the cursor moved.
func (s *Store) DispatchWebhook(ctx context.Context, id string, limit int, now time.Time,
	body func(webhook.Webhook, webhook.Event) ([]byte, error)) (int, error) {
	var read int
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var ws []webhookRow
		if err := tx.Raw(`SELECT * FROM webhooks WHERE id = ?`+s.skipLocked(""), id).Scan(&ws).Error; err != nil {
			return err
		}
		if len(ws) == 0 {
			return nil // deleted, or another replica is on it
		}
		w := ws[0].domain()
		var evs []webhookEventRow
		if err := tx.Raw(`SELECT e.tenant_id, e.id, e.occurred_at, e.type, e.project_id, e.environment_id, e.name, e.version,
			e.actor_type, e.actor_id, e.target_type, e.target_id, t.slug AS tenant_slug, p.slug AS project_slug, v.slug AS environment_slug
			FROM events e
			LEFT JOIN tenants t ON t.id = e.tenant_id
			LEFT JOIN projects p ON p.id = e.project_id AND p.tenant_id = e.tenant_id
			LEFT JOIN environments v ON v.id = e.environment_id AND v.tenant_id = e.tenant_id
			WHERE e.tenant_id = ? AND e.id > ? ORDER BY e.id LIMIT ?`, w.TenantID, ws[0].EventCursor, limit).Scan(&evs).Error; err != nil {
			return err
		}
		read = len(evs)
		if read == 0 {
			return nil
		}
		var rows []deliveryRow
		for _, r := range evs {
			if r.ProjectID != w.ProjectID || !w.Wants(r.Type) {
				continue
			}
			ev := webhook.Event{Event: coffer.Event{Type: r.Type, TenantID: r.TenantID, ProjectID: r.ProjectID, EnvironmentID: r.EnvironmentID,
				Name: r.Name, Version: r.Version, ID: r.ID, OccurredAt: r.OccurredAt.UTC(), ActorType: r.ActorType, ActorID: r.ActorID,
				TargetType: r.TargetType, TargetID: r.TargetID},
				TenantSlug: deref(r.TenantSlug), ProjectSlug: deref(r.ProjectSlug), EnvironmentSlug: deref(r.EnvironmentSlug)}
			payload, err := body(w, ev)
			if err != nil {
				return err
			}
			due := now
			rows = append(rows, deliveryRow{ID: NewID(), WebhookID: w.ID, EventID: r.ID, EventType: r.Type, EventAt: r.OccurredAt.UTC(),
				Payload: string(payload), Status: webhook.StatusPending, NextAttemptAt: &due, CreatedAt: now, UpdatedAt: now})
		}
		if err := insertDeliveries(tx, rows); err != nil {
			return err
		}
		return tx.Exec(`UPDATE webhooks SET event_cursor = ? WHERE id = ?`, evs[len(evs)-1].ID, w.ID).Error
	})
	return read, err
}

// insertDeliveries inserts deliveries, leaving any that exist (the cursor guarantees none
// do; the unique key makes it so whatever happens).
func insertDeliveries(tx *gorm.DB, rows []deliveryRow) error {
	for len(rows) > 0 {
		n := min(len(rows), 100)
		var q strings.Builder
		q.WriteString(`INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, event_at, payload, status, attempts,
			next_attempt_at, claim, last_status, last_error, created_at, updated_at) VALUES `)
		args := make([]any, 0, 10*n)
		for i, r := range rows[:n] {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(`(?,?,?,?,?,?,?,0,?,'',0,'',?,?)`)
			args = append(args, r.ID, r.WebhookID, r.EventID, r.EventType, r.EventAt, r.Payload, r.Status, r.NextAttemptAt, r.CreatedAt, r.UpdatedAt)
		}
		q.WriteString(` ON CONFLICT (webhook_id, event_id) DO NOTHING`)
		if err := tx.Exec(q.String(), args...).Error; err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// claimRow is a due delivery with its webhook's URL and sealed secret.
type claimRow struct {
	ID            string
	WebhookID     string
	EventID       int64
	EventType     string
	EventAt       time.Time
	Payload       string
	Status        string
	Attempts      int
	NextAttemptAt *time.Time
	Claim         string
	LastStatus    int
	LastError     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	TenantID      string
	URL           string `gorm:"column:url"`
	Secret        []byte
}

func (r claimRow) delivery() deliveryRow {
	return deliveryRow{ID: r.ID, WebhookID: r.WebhookID, EventID: r.EventID, EventType: r.EventType, EventAt: r.EventAt,
		Payload: r.Payload, Status: r.Status, Attempts: r.Attempts, NextAttemptAt: r.NextAttemptAt, Claim: r.Claim,
		LastStatus: r.LastStatus, LastError: r.LastError, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// ClaimDeliveries implements webhook.Queue.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int, exclude []string) ([]webhook.Claim, error) {
	// Nothing due is the usual answer: find out without a transaction, which on SQLite
	// would take the database's write lock.
	var due []int
	if err := s.db.WithContext(ctx).Raw(`SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1`, now).
		Scan(&due).Error; err != nil {
		return nil, dbErr(err)
	}
	if len(due) == 0 {
		return nil, nil
	}
	var out []webhook.Claim
	err := s.tx(ctx, func(tx *gorm.DB) error {
		q := `SELECT d.id, d.webhook_id, d.event_id, d.event_type, d.event_at, d.payload, d.status, d.attempts, d.next_attempt_at,
			d.claim, d.last_status, d.last_error, d.created_at, d.updated_at, w.tenant_id, w.url, w.secret
			FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
			WHERE d.status = 'pending' AND d.next_attempt_at <= ?`
		args := []any{now}
		if len(exclude) > 0 {
			q += ` AND d.webhook_id NOT IN ?`
			args = append(args, exclude)
		}
		q += ` ORDER BY d.next_attempt_at, d.event_id LIMIT ?` + s.skipLocked("d")
		args = append(args, limit)
		var rows []claimRow
		if err := tx.Raw(q, args...).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		token := NewID()
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		if err := tx.Exec(`UPDATE webhook_deliveries SET next_attempt_at = ?, claim = ? WHERE id IN ?`, now.Add(lease), token, ids).Error; err != nil {
			return err
		}
		out = make([]webhook.Claim, len(rows))
		for i, r := range rows {
			out[i] = webhook.Claim{Delivery: r.delivery().domain(), Token: token, TenantID: r.TenantID, URL: r.URL, Sealed: r.Secret, Payload: []byte(r.Payload)}
		}
		return nil
	})
	return out, err
}

// maxRecordedError bounds what an attempt records of an error.
const maxRecordedError = 500

// RecordAttempt implements webhook.Queue.
func (s *Store) RecordAttempt(ctx context.Context, c webhook.Claim, a webhook.Attempt, status string, next *time.Time) error {
	msg := strings.ToValidUTF8(strings.ReplaceAll(a.Error, "\x00", ""), "")
	if len(msg) > maxRecordedError {
		msg = strings.ToValidUTF8(msg[:maxRecordedError], "")
	}
	return s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, claim = '',
			last_status = ?, last_error = ?, updated_at = ? WHERE id = ? AND claim = ?`,
			status, next, a.StatusCode, msg, time.Now().UTC(), c.ID, c.Token)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return nil // the claim was lost: its webhook deleted, or its lease over
		}
		return tx.Exec(`INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)`,
			c.ID, c.Attempts+1, a.At.UTC(), a.StatusCode, msg, a.Duration.Milliseconds()).Error
	})
}

// ReleaseClaim implements webhook.Queue.
func (s *Store) ReleaseClaim(ctx context.Context, c webhook.Claim) error {
	return dbErr(s.db.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET next_attempt_at = ?, claim = '' WHERE id = ? AND claim = ?`,
		time.Now().UTC(), c.ID, c.Token).Error)
}

// PruneDeliveries implements webhook.Queue.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < ?`, before.UTC())
	return res.RowsAffected, dbErr(res.Error)
}
