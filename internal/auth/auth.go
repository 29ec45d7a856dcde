package auth

import (
	"context"
	"net/mail"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// User is a person (or automation account) known to the instance.
type User struct {
	ID            string
	Email         string
	Name          string
	InstanceAdmin bool // manages users and settings; sees no tenant's data without membership
	CreatedAt     time.Time
	// DisabledAt is set while an instance admin has disabled the user: none of their
	// credentials is accepted.
	DisabledAt *time.Time
}

// Principal is the authenticated caller of a request.
type Principal struct {
	// Kind is how the caller proved who they are: KindSession, KindPersonalToken, ...
	Kind    string
	User    User
	TokenID string
	// SessionID is the browser session of a KindSession principal.
	SessionID string
	// IdPID is the tenant provider a KindSession principal signed in through, "" for any
	// other sign-in. Such a session reaches only that tenant: the provider's owner could
	// otherwise sign in as any member who linked an account there and reach their other
	// tenants, or their instance-admin rights.
	IdPID string
	// TokenExpiresAt is when the presenting token expires (nil: never). A credential created
	// with this principal may not outlive it.
	TokenExpiresAt *time.Time
}

// Token is a personal access token's metadata; the token itself is only ever returned once.
type Token struct {
	ID            string
	UserID        string
	Name          string
	DisplayPrefix string
	// ParentID is the token that minted this one; empty for a root token (bootstrap, a
	// user's first token). Revoking a token revokes its children, transitively.
	ParentID   string
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	CreatedAt  time.Time
}

// TokenRecord is a stored token as looked up for authentication.
type TokenRecord struct {
	Token
	Hash      string
	RevokedAt *time.Time
	User      User
}

// Store persists users, tokens and sessions.
type Store interface {
	SessionStore
	ServiceTokenStore
	TenantTokenStore
	DeviceStore
	// TokenByHash returns the token with that hash and its user; ENOTFOUND if none.
	TokenByHash(ctx context.Context, hash string) (TokenRecord, error)
	// TokenScope is TokenByHash and the scope the slugs name for the token's user, in one
	// query. A missing token is ENOTFOUND with an empty record; a missing (or invisible
	// because not a member) tenant, project or environment is ENOTFOUND with the record set.
	TokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (TokenRecord, tenant.Scope, error)
	// TouchToken records a use; callers throttle it.
	TouchToken(ctx context.Context, tokenID string, at time.Time) error
	// CreateToken stores a token. A token with a parent is stored only if the parent is the
	// same user's and still live (not revoked, not expired at t.CreatedAt) when the write
	// commits; otherwise ErrBadToken, since the parent is the credential of the request.
	CreateToken(ctx context.Context, t Token, hash string, e audit.Entry) error
	ListTokens(ctx context.Context, userID, after string, limit int) ([]Token, error)
	// RevokeToken revokes the user's unrevoked token and, in the same transaction, every
	// token it minted, transitively; entries is given the ids of those descendants that were
	// still live and returns the audit entries to append. A token that is not the user's, or
	// is already revoked, is ENOTFOUND.
	RevokeToken(ctx context.Context, userID, tokenID string, at time.Time, entries func(descendants []string) []audit.Entry) error
	CreateUser(ctx context.Context, u User, t Token, hash string, e audit.Entry) error
	// SetUserDisabled disables (at != nil) or enables (nil) a user; ENOTFOUND if none.
	SetUserDisabled(ctx context.Context, userID string, at *time.Time, e audit.Entry) error
	// Bootstrap creates the first user as owner of the first tenant, with a token, only if
	// the instance was never bootstrapped; otherwise ECONFLICT.
	Bootstrap(ctx context.Context, u User, t tenant.Tenant, tok Token, hash string, e audit.Entry) error
	Bootstrapped(ctx context.Context) (bool, error)
}

// normalizeEmail validates an address and lowercases it, so that one mailbox is one user.
func normalizeEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || len(email) > 254 {
		return "", coffer.Errorf(coffer.EINVALID, "email must be a plain e-mail address")
	}
	return strings.ToLower(email), nil
}

// NormalizeEmail is normalizeEmail for other packages that look users up by address.
func NormalizeEmail(email string) (string, error) { return normalizeEmail(email) }
