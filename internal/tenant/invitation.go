package tenant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// Audit actions of invitations. They are stable identifiers stored in the log.
const (
	ActionInvitationCreate = "tenant.invitation.create"
	ActionInvitationRevoke = "tenant.invitation.revoke"
	ActionInvitationAccept = "tenant.invitation.accept"
)

// InvitationTTL is how long an invitation can be accepted.
const InvitationTTL = 7 * 24 * time.Hour

// Invitation offers a role in a tenant to whoever signs in with an e-mail address and holds
// its one-time code. Creating one never looks the address up, so the answer is the same
// whether or not a user (or a member) has it.
type Invitation struct {
	ID        string
	TenantID  string
	Email     string
	Role      Role
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Accepted is the outcome of accepting an invitation: the tenant joined and the caller's
// role in it; AlreadyMember says the caller was a member before and nothing changed.
type Accepted struct {
	Membered
	AlreadyMember bool
}

// InvitationStore persists invitations. Like Store, every change appends its audit entry in
// the same transaction.
type InvitationStore interface {
	CreateInvitation(ctx context.Context, inv Invitation, codeHash string, e audit.Entry) error
	// ListInvitations lists a tenant's pending invitations (not accepted, revoked or expired
	// at now), ordered by id.
	ListInvitations(ctx context.Context, tenantID string, now time.Time, after string, limit int) ([]Invitation, error)
	// RevokeInvitation revokes a pending invitation of the tenant; anything else is ENOTFOUND.
	RevokeInvitation(ctx context.Context, tenantID, id string, now time.Time, e audit.Entry) error
	// AcceptInvitation uses the pending invitation with codeHash addressed to email, once,
	// and makes userID a member with its role unless they already are one. Every failure is
	// the same ENOTFOUND. The entry's tenant, target and metadata are completed by the store.
	AcceptInvitation(ctx context.Context, codeHash, userID, email string, now time.Time, e audit.Entry) (Accepted, error)
}

// errNoInvitation is the one answer to every failed accept: unknown, expired, used, revoked
// or addressed to someone else are not told apart.
func errNoInvitation() error {
	return coffer.Errorf(coffer.ENOTFOUND, "invitation not found")
}

// ErrNoInvitation is errNoInvitation for the store, so that both layers give the same answer.
func ErrNoInvitation() error { return errNoInvitation() }

// HashInvitationCode is what the store keeps and looks up instead of the code.
func HashInvitationCode(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

func newInvitationCode() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("invitation code: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// CreateInvitation invites an e-mail address (already validated and normalised by the caller)
// to the tenant with a role; owners and admins only, and only owners invite owners. It
// returns the invitation and its one-time code, which is shown once and never stored.
func (s *Service) CreateInvitation(ctx context.Context, actor audit.Actor, sc Scope, email string, role Role) (Invitation, string, error) {
	if err := Authorize(sc, ManageMembers); err != nil {
		return Invitation{}, "", err
	}
	if !role.Valid() {
		return Invitation{}, "", coffer.Errorf(coffer.EINVALID, "role must be owner, admin or member")
	}
	if err := CheckGrantRole(sc.Role, role); err != nil {
		return Invitation{}, "", err
	}
	code, err := newInvitationCode()
	if err != nil {
		return Invitation{}, "", err
	}
	now := time.Now().UTC()
	inv := Invitation{ID: s.newID(), TenantID: sc.Tenant.ID, Email: strings.ToLower(email), Role: role,
		CreatedBy: sc.UserID, CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
	e := actor.New(ActionInvitationCreate, sc.Tenant.ID, "invitation", inv.ID, sc.Tenant.Slug,
		map[string]any{"email": inv.Email, "role": string(role), "expires_at": inv.ExpiresAt.Format(time.RFC3339)})
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID}
	if err := s.store.CreateInvitation(ctx, inv, HashInvitationCode(code), e); err != nil {
		return Invitation{}, "", err
	}
	s.pub.Publish(ctx, *e.Event)
	return inv, code, nil
}

// ListInvitations lists the tenant's pending invitations; owners and admins only.
func (s *Service) ListInvitations(ctx context.Context, sc Scope, after string, limit int) ([]Invitation, error) {
	if err := Authorize(sc, ManageMembers); err != nil {
		return nil, err
	}
	return s.store.ListInvitations(ctx, sc.Tenant.ID, time.Now().UTC(), after, limit)
}

// RevokeInvitation revokes a pending invitation; owners and admins only.
func (s *Service) RevokeInvitation(ctx context.Context, actor audit.Actor, sc Scope, id string) error {
	if err := Authorize(sc, ManageMembers); err != nil {
		return err
	}
	e := actor.New(ActionInvitationRevoke, sc.Tenant.ID, "invitation", id, sc.Tenant.Slug, nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID}
	if err := s.store.RevokeInvitation(ctx, sc.Tenant.ID, id, time.Now().UTC(), e); err != nil {
		return err
	}
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// AcceptInvitation makes the caller (userID, signed in with email) a member of the tenant
// that invited that address, once per code.
func (s *Service) AcceptInvitation(ctx context.Context, actor audit.Actor, userID, email, code string) (Accepted, error) {
	// A code is 43 base64url characters; anything else cannot match and is not looked up.
	if len(code) != 43 {
		return Accepted{}, errNoInvitation()
	}
	e := actor.New(ActionInvitationAccept, "", "user", userID, "", nil)
	a, err := s.store.AcceptInvitation(ctx, HashInvitationCode(code), userID, strings.ToLower(email), time.Now().UTC(), e)
	if err != nil {
		return Accepted{}, err
	}
	s.pub.Publish(ctx, coffer.Event{Type: ActionInvitationAccept, TenantID: a.ID})
	return a, nil
}
