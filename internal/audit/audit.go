// Package audit owns the record of who did what: entries, their actions, and the group-commit
// batcher that makes reveal entries durable before a response is sent. Every mutation and every
// plaintext read produces an entry; if the entry cannot be written the request fails.
//
// Entries carry names, versions and roles, never secret values nor hashes of values.
package audit

import (
	"context"
	"encoding/json"
	"strconv"
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
	ActionKeyRetire           = "environment.key.retire"
	ActionKeyJobStart         = "key.job.start"
	ActionKeyJobFinish        = "key.job.finish"
	ActionTenantKEKSet        = "tenant.kek.set"
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

// Revealed names one secret version whose value a reveal returned.
type Revealed struct {
	Name    string
	Version int
}

// RevealedSet is what one reveal returned, in order. It is encoded as a JSON object from name
// to version, {"DB_URL":3,"API_KEY":1}, keeping the order: compact, since a listing of an
// environment names every secret in it.
type RevealedSet []Revealed

// MarshalJSON implements json.Marshaler.
func (rs RevealedSet) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(rs)*24)
	b = append(b, '{')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		if plainName(r.Name) {
			b = append(b, '"')
			b = append(b, r.Name...)
			b = append(b, '"')
		} else {
			q, err := json.Marshal(r.Name)
			if err != nil {
				return nil, err
			}
			b = append(b, q...)
		}
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.Version), 10)
	}
	return append(b, '}'), nil
}

// plainName reports whether name needs no JSON escaping; secret names always qualify, but
// the encoder must be correct for any string.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Appender durably appends entries, all or none. The store implements it.
type Appender interface {
	AppendAudit(ctx context.Context, entries []Entry) error
}
