package coffer

import (
	"context"
	"time"
)

// Event tells subscribers that something changed. It carries identifiers and names only,
// never values. A service attaches it to the audit entry of the change; the audit writer
// stores it in the events table in the same transaction, numbered with the entry's chain
// sequence, and the publisher announces it only after the change has committed.
type Event struct {
	Type          string // the audit action, e.g. "secret.write"
	TenantID      string
	ProjectID     string
	EnvironmentID string
	Name          string // secret name, when the event is about a secret
	Version       int

	// Set by the writer.
	ID         int64 // per tenant, increasing; the audit chain sequence of the change
	OccurredAt time.Time
	ActorType  string
	ActorID    string
	TargetType string
	TargetID   string
}

// Publisher is told that events have committed. Implementations must not block the caller:
// the live event stream reads the events from the table and drops slow subscribers instead
// of waiting for them.
type Publisher interface {
	Publish(ctx context.Context, events ...Event)
}

// NopPublisher discards announcements.
type NopPublisher struct{}

// Publish implements Publisher.
func (NopPublisher) Publish(context.Context, ...Event) {}
