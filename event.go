package coffer

import "context"

// Event tells subscribers that something changed. It carries identifiers and names only,
// never values, and is published only after the change has committed.
type Event struct {
	Type          string // the audit action, e.g. "secret.write"
	TenantID      string
	ProjectID     string
	EnvironmentID string
	Name          string // secret name, when the event is about a secret
	Version       int
}

// Publisher receives committed events. Implementations must not block the caller: the live
// event stream (a later issue) drops slow subscribers instead of waiting for them.
type Publisher interface {
	Publish(ctx context.Context, events ...Event)
}

// NopPublisher discards events; it is the publisher until the event stream exists.
type NopPublisher struct{}

// Publish implements Publisher.
func (NopPublisher) Publish(context.Context, ...Event) {}
