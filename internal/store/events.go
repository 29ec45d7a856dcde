package store

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// eventRow is one row of the events outbox (migration 00015).
type eventRow struct {
	TenantID      string
	ID            int64
	OccurredAt    time.Time
	Type          string
	ProjectID     string
	EnvironmentID string
	Name          string
	Version       int
	ActorType     string
	ActorID       string
	TargetType    string
	TargetID      string
}

func (eventRow) TableName() string { return "events" }

func (r eventRow) event() coffer.Event {
	return coffer.Event{Type: r.Type, TenantID: r.TenantID, ProjectID: r.ProjectID, EnvironmentID: r.EnvironmentID,
		Name: r.Name, Version: r.Version, ID: r.ID, OccurredAt: r.OccurredAt.UTC(), ActorType: r.ActorType,
		ActorID: r.ActorID, TargetType: r.TargetType, TargetID: r.TargetID}
}

// accessActions are changes to who may reach what. They become events even when the change
// announces nothing to subscribers, because the stream rechecks its subscribers on them:
// a revoked token, an ended session or a removed member loses its connections at once.
var accessActions = map[string]bool{
	audit.ActionTokenRevoke:         true,
	audit.ActionServiceTokenRevoke:  true,
	audit.ActionLogout:              true,
	audit.ActionUserDisable:         true,
	audit.ActionTenantMemberRemove:  true,
	audit.ActionTenantMemberRole:    true,
	audit.ActionProjectMemberAdd:    true,
	audit.ActionProjectMemberRemove: true,
	audit.ActionEnvironmentUpdate:   true,
	audit.ActionTenantIdPSet:        true,
	audit.ActionTenantIdPDelete:     true,
}

// everyTenant are the access changes to a principal that may reach several tenants (a user,
// a personal token, a session): whichever tenant's chain records one, every tenant's cached
// scopes are dropped.
var everyTenant = map[string]bool{
	audit.ActionTokenRevoke: true,
	audit.ActionUserDisable: true,
	audit.ActionLogout:      true,
}

// eventRowOf is the event an entry stores, if any; seq and at are the entry's place in its
// chain.
func eventRowOf(e *audit.Entry, seq int64, at time.Time) (eventRow, bool) {
	ev := e.Event
	if ev == nil {
		if e.Outcome == audit.OutcomeDenied || !accessActions[e.Action] {
			return eventRow{}, false
		}
		ev = &coffer.Event{Type: e.Action}
	}
	actorType, actorID := e.Actor.Type, e.Actor.ID
	return eventRow{TenantID: e.TenantID, ID: seq, OccurredAt: at, Type: ev.Type, ProjectID: ev.ProjectID,
		EnvironmentID: ev.EnvironmentID, Name: ev.Name, Version: ev.Version, ActorType: actorType, ActorID: actorID,
		TargetType: e.TargetType, TargetID: e.TargetID}, true
}

// hasEvents reports whether any entry stores an event.
func hasEvents(entries []audit.Entry) bool {
	for i := range entries {
		if entries[i].Event != nil || accessActions[entries[i].Action] {
			return true
		}
	}
	return false
}

// insertEvents writes the events of a chained append in its transaction.
func insertEvents(tx *gorm.DB, rows []eventRow) error {
	if len(rows) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO events (tenant_id, id, occurred_at, type, project_id, environment_id, name, version,
		actor_type, actor_id, target_type, target_id) VALUES `)
	args := make([]any, 0, 12*len(rows))
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, r.TenantID, r.ID, r.OccurredAt, r.Type, r.ProjectID, r.EnvironmentID, r.Name, r.Version,
			r.ActorType, r.ActorID, r.TargetType, r.TargetID)
	}
	return tx.Exec(q.String(), args...).Error
}

// EventsAfter returns up to limit events of a tenant ("" for the instance) after the id
// afterID, in order.
func (s *Store) EventsAfter(ctx context.Context, tenantID string, afterID int64, limit int) ([]coffer.Event, error) {
	var rows []eventRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND id > ?", tenantID, afterID).
		Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]coffer.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

// EventBounds returns the ids of a tenant's oldest and newest stored events, 0 and 0 when it
// has none.
func (s *Store) EventBounds(ctx context.Context, tenantID string) (oldest, newest int64, err error) {
	var b struct {
		Oldest *int64
		Newest *int64
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT MIN(id) AS oldest, MAX(id) AS newest FROM events WHERE tenant_id = ?`, tenantID).
		Scan(&b).Error; err != nil {
		return 0, 0, dbErr(err)
	}
	if b.Oldest != nil {
		oldest = *b.Oldest
	}
	if b.Newest != nil {
		newest = *b.Newest
	}
	return oldest, newest, nil
}

// EventTenants lists the tenants ("" for the instance) that have events after the given
// time, for the stream's catch-up after its Postgres connection was lost.
func (s *Store) EventTenants(ctx context.Context, since time.Time) ([]string, error) {
	var out []string
	if err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT tenant_id FROM events WHERE occurred_at >= ?`, since.UTC()).
		Scan(&out).Error; err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}

// PruneEvents deletes events older than maxAge and, per tenant, all but the newest maxRows.
// It returns how many rows went.
func (s *Store) PruneEvents(ctx context.Context, maxAge time.Duration, maxRows int64) (int64, error) {
	db := s.db.WithContext(ctx)
	res := db.Exec(`DELETE FROM events WHERE occurred_at < ?`, time.Now().Add(-maxAge).UTC())
	if res.Error != nil {
		return 0, dbErr(res.Error)
	}
	n := res.RowsAffected
	type bound struct {
		TenantID string
		Newest   int64
		Total    int64
	}
	var over []bound
	if err := db.Raw(`SELECT tenant_id, MAX(id) AS newest, COUNT(*) AS total FROM events GROUP BY tenant_id HAVING COUNT(*) > ?`, maxRows).
		Scan(&over).Error; err != nil {
		return n, dbErr(err)
	}
	for _, b := range over {
		// The id of the maxRows-th newest row; everything before it goes.
		var keep int64
		if err := db.Raw(`SELECT id FROM events WHERE tenant_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?`, b.TenantID, maxRows-1).
			Scan(&keep).Error; err != nil {
			return n, dbErr(err)
		}
		res := db.Exec(`DELETE FROM events WHERE tenant_id = ? AND id < ?`, b.TenantID, keep)
		if res.Error != nil {
			return n, dbErr(res.Error)
		}
		n += res.RowsAffected
	}
	return n, nil
}
