// Package webhook owns outgoing webhooks: a project's registered HTTPS receivers, the
// deliveries made to them from the events table, their signatures, the retry schedule, and
// the guard that keeps deliveries off private networks. Storage is declared here and
// implemented by internal/store; the HTTP API is internal/httpapi's.
package webhook

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// AllEvents subscribes a webhook to every event type, including types added later.
const AllEvents = "*"

// EventTypes are the event types a webhook may choose: the project's changes that carry an
// event. Events that name no project (tenant settings, members of the tenant) are never sent
// to a project's webhooks.
var EventTypes = []string{
	audit.ActionSecretWrite,
	audit.ActionSecretDelete,
	audit.ActionSecretRestore,
	audit.ActionSecretRollback,
	audit.ActionSecretDestroy,
	audit.ActionSecretPromote,
	audit.ActionEnvironmentCreate,
	audit.ActionEnvironmentUpdate,
	audit.ActionEnvironmentDelete,
	audit.ActionProjectUpdate,
	audit.ActionProjectMemberAdd,
	audit.ActionProjectMemberRemove,
}

// Limits.
const (
	// MaxPerProject bounds a project's webhooks: each one is a request per event.
	MaxPerProject = 20
	// maxEventTypes bounds the list a webhook is created with.
	maxEventTypes = 64
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// Webhook is a registered receiver. Its signing secret is never part of it: it is sealed in
// storage, shown once at creation and opened only to sign a delivery.
type Webhook struct {
	ID        string
	TenantID  string
	ProjectID string
	URL       string
	Events    []string // event types, or [AllEvents]
	CreatedBy string   // the user who created it; "" once that user is deleted
	CreatedAt time.Time
}

// Wants reports whether the webhook is subscribed to an event type.
func (w Webhook) Wants(eventType string) bool {
	return slices.Contains(w.Events, AllEvents) || slices.Contains(w.Events, eventType)
}

// Delivery is one event on its way to one webhook.
type Delivery struct {
	ID            string
	WebhookID     string
	EventID       int64
	EventType     string
	EventAt       time.Time
	Status        string
	Attempts      int
	NextAttemptAt *time.Time // nil once delivered or failed
	LastStatus    int        // the receiver's last HTTP status; 0 if it never answered
	LastError     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Store persists webhooks and their deliveries. Every method is scoped by tenant (and
// project, for what a project admin names by id).
type Store interface {
	// CreateWebhook stores w with its sealed secret and e in one transaction, refusing with
	// ECONFLICT past MaxPerProject. The webhook's cursor starts at the tenant's newest event,
	// so it is sent only what happens from now on.
	CreateWebhook(ctx context.Context, w Webhook, sealed []byte, e audit.Entry) error
	// Webhooks lists the project's webhooks, oldest first.
	Webhooks(ctx context.Context, tenantID, projectID string) ([]Webhook, error)
	// Webhook returns one of the project's webhooks; ENOTFOUND if the project has none by id.
	Webhook(ctx context.Context, tenantID, projectID, id string) (Webhook, error)
	// DeleteWebhook deletes one of the project's webhooks, its deliveries and attempts, with
	// e; ENOTFOUND if the project has none by id.
	DeleteWebhook(ctx context.Context, tenantID, projectID, id string, e audit.Entry) error
	// Deliveries lists a webhook's deliveries, newest event first, with event ids below
	// beforeEvent (0: from the newest).
	Deliveries(ctx context.Context, webhookID string, beforeEvent int64, limit int) ([]Delivery, error)
}

// Sealer seals the signing secrets (secrets.Fields implements it).
type Sealer interface {
	Seal(ctx context.Context, purpose, owner string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, purpose, owner string, sealed []byte) ([]byte, error)
}

// Service manages a project's webhooks for its admins.
type Service struct {
	store Store
	seal  Sealer
	guard *Guard
	// watch tells the dispatcher of a tenant's new webhook (nil: nobody to tell).
	watch func(tenantID string)
	newID func() string
	now   func() time.Time
}

// NewService returns a Service; a new webhook is announced to d (which may be nil).
func NewService(store Store, seal Sealer, guard *Guard, d *Dispatcher, newID func() string) *Service {
	s := &Service{store: store, seal: seal, guard: guard, newID: newID, now: func() time.Time { return time.Now().UTC() }}
	if d != nil {
		s.watch = d.Watch
	}
	return s
}

// CreateRequest is what a project admin registers.
type CreateRequest struct {
	URL    string
	Events []string
}

// Create registers a webhook and returns it with its signing secret, which is never shown
// again.
func (s *Service) Create(ctx context.Context, actor audit.Actor, sc tenant.Scope, req CreateRequest) (Webhook, string, error) {
	if err := tenant.Authorize(sc, tenant.ManageWebhooks); err != nil {
		return Webhook{}, "", err
	}
	events, err := validEvents(req.Events)
	if err != nil {
		return Webhook{}, "", err
	}
	u, err := s.guard.CheckURL(ctx, req.URL)
	if err != nil {
		return Webhook{}, "", err
	}
	secret, err := NewSecret()
	if err != nil {
		return Webhook{}, "", err
	}
	w := Webhook{ID: s.newID(), TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID, URL: u, Events: events,
		CreatedBy: sc.UserID, CreatedAt: s.now()}
	sealed, err := s.seal.Seal(ctx, SecretPurpose, w.ID, []byte(secret))
	if err != nil {
		return Webhook{}, "", err
	}
	// The URL is audited: it says where the project's events go. Its query string could
	// carry a receiver's token, so only scheme, host and path are kept.
	e := actor.New(audit.ActionWebhookCreate, sc.Tenant.ID, "webhook", w.ID, sc.Path(),
		map[string]any{"url": redact(u), "events": events})
	if err := s.store.CreateWebhook(ctx, w, sealed, e); err != nil {
		return Webhook{}, "", err
	}
	if s.watch != nil {
		s.watch(w.TenantID)
	}
	return w, secret, nil
}

// List lists the project's webhooks.
func (s *Service) List(ctx context.Context, sc tenant.Scope) ([]Webhook, error) {
	if err := tenant.Authorize(sc, tenant.ManageWebhooks); err != nil {
		return nil, err
	}
	return s.store.Webhooks(ctx, sc.Tenant.ID, sc.Project.ID)
}

// Delete deletes one of the project's webhooks; deliveries in flight are not recorded.
func (s *Service) Delete(ctx context.Context, actor audit.Actor, sc tenant.Scope, id string) error {
	if err := tenant.Authorize(sc, tenant.ManageWebhooks); err != nil {
		return err
	}
	w, err := s.webhook(ctx, sc, id)
	if err != nil {
		return err
	}
	e := actor.New(audit.ActionWebhookDelete, sc.Tenant.ID, "webhook", w.ID, sc.Path(),
		map[string]any{"url": redact(w.URL), "events": w.Events})
	return s.store.DeleteWebhook(ctx, sc.Tenant.ID, sc.Project.ID, w.ID, e)
}

// Deliveries lists a webhook's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, sc tenant.Scope, id string, beforeEvent int64, limit int) ([]Delivery, error) {
	if err := tenant.Authorize(sc, tenant.ManageWebhooks); err != nil {
		return nil, err
	}
	w, err := s.webhook(ctx, sc, id)
	if err != nil {
		return nil, err
	}
	return s.store.Deliveries(ctx, w.ID, beforeEvent, limit)
}

// webhook returns the scope's project's webhook by id. An id that could not be one is not
// found, like a missing one, before it reaches the database.
func (s *Service) webhook(ctx context.Context, sc tenant.Scope, id string) (Webhook, error) {
	if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool {
		return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		return Webhook{}, coffer.Errorf(coffer.ENOTFOUND, "webhook not found")
	}
	return s.store.Webhook(ctx, sc.Tenant.ID, sc.Project.ID, id)
}

// validEvents checks a requested list of event types and returns it sorted, without
// duplicates.
func validEvents(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, `events must list the event types to deliver (%s), or be ["*"] for all`, strings.Join(EventTypes, ", "))
	}
	if len(in) > maxEventTypes {
		return nil, coffer.Errorf(coffer.EINVALID, "events lists more than %d types", maxEventTypes)
	}
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, t := range out {
		switch {
		case t == AllEvents && len(out) > 1:
			return nil, coffer.Errorf(coffer.EINVALID, `events: "*" already means every type; list it alone`)
		case t == AllEvents, slices.Contains(EventTypes, t):
		default:
			return nil, coffer.Errorf(coffer.EINVALID, "events: %q is not an event type; choose from %s, or \"*\" for all",
				clip(t), strings.Join(EventTypes, ", "))
		}
	}
	return out, nil
}

// clip shortens what a caller sent before it is named back, keeping it valid UTF-8.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}

// redact keeps a URL's scheme, host and path for the audit log: a query string may carry a
// receiver's own token.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "", false
		return u.String() + "?…"
	}
	return u.String()
}
