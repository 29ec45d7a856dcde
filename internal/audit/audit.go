// Package audit owns the record of who did what: entries, their actions, and the group-commit
// batcher that makes reveal entries durable before a response is sent. Every mutation and every
// plaintext read produces an entry; if the entry cannot be written the request fails.
//
// Entries carry names, versions and roles, never secret values nor hashes of values.
package audit

import (
	"context"
	"time"
)

// Actions. They are stable identifiers stored in the log.
const (
	ActionTenantCreate        = "tenant.create"
	ActionTenantUpdate        = "tenant.update"
	ActionTenantDelete        = "tenant.delete"
	ActionTenantMemberAdd     = "tenant.member.add"
	ActionTenantMemberRemove  = "tenant.member.remove"
	ActionProjectCreate       = "project.create"
	ActionProjectUpdate       = "project.update"
	ActionProjectDelete       = "project.delete"
	ActionProjectMemberAdd    = "project.member.add"
	ActionProjectMemberRemove = "project.member.remove"
	ActionEnvironmentCreate   = "environment.create"
	ActionEnvironmentUpdate   = "environment.update"
	ActionEnvironmentDelete   = "environment.delete"
	ActionKeyRoll             = "environment.key.roll"
	ActionSecretWrite         = "secret.write"
	ActionSecretDelete        = "secret.delete"
	ActionSecretRestore       = "secret.restore"
	ActionSecretRollback      = "secret.rollback"
	ActionSecretReveal        = "secret.reveal"
	ActionUserCreate          = "user.create"
	ActionTokenCreate         = "token.create"
	ActionTokenRevoke         = "token.revoke"
	ActionBootstrap           = "instance.bootstrap"
)

// Actor is who is acting and from where, taken from the authenticated request.
type Actor struct {
	Type      string // "user" or "system"
	ID        string
	RequestID string
	SourceIP  string
}

// System is the actor for changes the server makes on its own (bootstrap).
var System = Actor{Type: "system", ID: "coffer"}

// Entry is one line of the audit log.
type Entry struct {
	Time       time.Time
	TenantID   string // empty for instance-level actions
	Actor      Actor
	Action     string
	TargetType string // tenant, project, environment, secret, user, token
	TargetID   string
	Target     string // human-readable path, e.g. acme/web/production/DB_URL
	// Metadata holds before/after facts: names, versions, roles. Never values.
	Metadata map[string]any
}

// New builds an entry stamped with the current time.
func (a Actor) New(action, tenantID, targetType, targetID, target string, meta map[string]any) Entry {
	return Entry{
		Time:       time.Now().UTC(),
		TenantID:   tenantID,
		Actor:      a,
		Action:     action,
		TargetType: targetType,
		TargetID:   targetID,
		Target:     target,
		Metadata:   meta,
	}
}

// Revealed names one secret version whose value a reveal returned; reveal entries list them
// in the order they were returned.
type Revealed struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// Appender durably appends entries, all or none. The store implements it.
type Appender interface {
	AppendAudit(ctx context.Context, entries []Entry) error
}
