package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// This file is a tenant's own OpenID provider: the owner configures it, members link an
// account there to their user while signed in, then sign in through it. Identities are only
// ever linked by a signed-in user, never matched by e-mail, and signing in through a tenant's
// provider never creates a user nor accepts an invitation: a tenant owner controls that
// provider, and must not be able to mint accounts or take over someone else's.

// ClientSecretPurpose seals a tenant provider's client secret (secrets.Fields); the owner is
// the tenant id, so a sealed secret copied to another tenant's row fails to open.
const ClientSecretPurpose = "oidc-client-secret"

// IdPSessionPrefix starts the method of a session begun through a tenant's provider; the
// provider's id follows.
const IdPSessionPrefix = "oidc:"

// IdPSessionMethod is the session method of a sign-in through the provider with that id.
func IdPSessionMethod(idpID string) string { return IdPSessionPrefix + idpID }

// IdP is a tenant's OpenID provider. The client secret is never part of it: it is sealed in
// storage and opened only for a sign-in.
type IdP struct {
	ID       string // public, random: sign-in URLs name it instead of the tenant
	TenantID string
	Issuer   string
	ClientID string
	// Required makes the tenant's routes refuse browser sessions not started through it.
	Required  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// IdPSettings are what an owner sets. An empty ClientSecret keeps the stored one.
type IdPSettings struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Required     bool
}

// TenantIdPLink is, on the account page, a tenant of the user with its own provider and
// whether the user has an account there linked.
type TenantIdPLink struct {
	TenantSlug string
	TenantName string
	IdPID      string
	Required   bool
	Linked     bool
}

// IdPStore persists tenants' providers and the identities linked through them.
type IdPStore interface {
	// PutIdP creates the tenant's provider (with idp.ID) or replaces its settings (keeping
	// its id), with e, in one transaction. A nil sealed keeps the stored secret; with no
	// provider stored it is refused with ErrIdPSecretRequired. It returns what is stored and
	// whether it was created.
	PutIdP(ctx context.Context, idp IdP, sealed []byte, e audit.Entry) (IdP, bool, error)
	// IdP returns the tenant's provider; ENOTFOUND if none.
	IdP(ctx context.Context, tenantID string) (IdP, error)
	// DeleteIdP deletes the tenant's provider with e; ENOTFOUND if none.
	DeleteIdP(ctx context.Context, tenantID string, e audit.Entry) error
	// IdPByID returns a provider by its public id with its sealed client secret; ENOTFOUND
	// if none.
	IdPByID(ctx context.Context, id string) (IdP, []byte, error)
	// MemberByIdentity returns the user linked to (issuer, subject) if that user is a member
	// of tenantID; ENOTFOUND otherwise.
	MemberByIdentity(ctx context.Context, issuer, subject, tenantID string) (User, error)
	// LinkIdentity links id to id.UserID, with e, if that user is a member of tenantID and
	// not disabled (ENOTFOUND otherwise). An identity already linked to that user is left
	// as it is (false, nil, nothing written); one linked to another user is refused with
	// ErrIdentityTaken.
	LinkIdentity(ctx context.Context, id Identity, tenantID string, e audit.Entry) (bool, error)
	// IdPLinks lists the user's tenants that have a provider, by slug.
	IdPLinks(ctx context.Context, userID string) ([]TenantIdPLink, error)
}

// Refusals of tenant providers.
var (
	ErrIdPSecretRequired = coffer.Errorf(coffer.EINVALID, "client_secret is required when the identity provider is first configured")
	ErrIdPNotFound       = coffer.Errorf(coffer.ENOTFOUND, "this sign-in link is unknown: ask your tenant's owner for the right one")
	ErrNotLinked         = coffer.Errorf(coffer.EFORBIDDEN,
		"this account at the identity provider is not linked to a Coffer user who is a member of the tenant: link this account first from your account page while signed in")
	ErrIdentityTaken = coffer.Errorf(coffer.EFORBIDDEN,
		"this account at the identity provider is already linked to another Coffer user; sign in as that user, or ask an instance admin")
	ErrLinkNotMember = coffer.Errorf(coffer.EFORBIDDEN,
		"you can link an account at this identity provider only while signed in as a member of its tenant")
)

// IdPs runs tenants' own OpenID providers.
type IdPs struct {
	store IdPStore
	seal  Sealer
	now   func() time.Time
	// dev allows plain-HTTP issuers anywhere, like COFFER_DEV does for the instance's.
	dev bool
}

// NewIdPs returns an IdPs.
func NewIdPs(store IdPStore, seal Sealer, dev bool) *IdPs {
	return &IdPs{store: store, seal: seal, now: func() time.Time { return time.Now().UTC() }, dev: dev}
}

// newIdPID is a provider's public id: 16 random bytes, so that it says nothing about the
// tenant or when it was made.
func newIdPID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// idpIDRE is the shape of the ids newID makes, checked before any query so that junk in a
// sign-in URL costs nothing and answers like an unknown id.
var idpIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validClientField holds a client id or secret to what a provider can mean and the database
// can store.
func validClientField(field, v string, max int) error {
	if v == "" || len(v) > max || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return coffer.Errorf(coffer.EINVALID, "%s must be 1 to %d printable characters", field, max)
	}
	return nil
}

// Put creates or replaces the scope's tenant's provider. Owners only.
func (x *IdPs) Put(ctx context.Context, actor audit.Actor, sc tenant.Scope, in IdPSettings) (IdP, bool, error) {
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		return IdP{}, false, err
	}
	if err := ValidateIssuerURL("issuer", in.Issuer, x.dev); err != nil {
		return IdP{}, false, err
	}
	// The instance's rule lets plain http through on loopback; a tenant's provider is never
	// reached there outside development mode (see httpapi's provider client), so say so now.
	if u, _ := url.Parse(in.Issuer); !x.dev && LoopbackHost(u.Hostname()) {
		return IdP{}, false, coffer.Errorf(coffer.EINVALID, "issuer must be on a public address")
	}
	if err := validClientField("client_id", in.ClientID, 255); err != nil {
		return IdP{}, false, err
	}
	var sealed []byte
	if in.ClientSecret != "" {
		if err := validClientField("client_secret", in.ClientSecret, 1024); err != nil {
			return IdP{}, false, err
		}
		var err error
		if sealed, err = x.seal.Seal(ctx, ClientSecretPurpose, sc.Tenant.ID, []byte(in.ClientSecret)); err != nil {
			return IdP{}, false, err
		}
	}
	id, err := newIdPID()
	if err != nil {
		return IdP{}, false, err
	}
	now := x.now()
	idp := IdP{ID: id, TenantID: sc.Tenant.ID, Issuer: in.Issuer, ClientID: in.ClientID, Required: in.Required, CreatedAt: now, UpdatedAt: now}
	e := actor.New(audit.ActionTenantIdPSet, sc.Tenant.ID, "tenant", sc.Tenant.ID, sc.Tenant.Slug,
		map[string]any{"issuer": in.Issuer, "client_id": in.ClientID, "required": in.Required, "secret_changed": sealed != nil})
	return x.store.PutIdP(ctx, idp, sealed, e)
}

// Get returns the scope's tenant's provider. Owners only.
func (x *IdPs) Get(ctx context.Context, sc tenant.Scope) (IdP, error) {
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		return IdP{}, err
	}
	return x.store.IdP(ctx, sc.Tenant.ID)
}

// Delete removes the scope's tenant's provider. Identities linked through it stay (they are
// the user's, keyed by issuer and subject), but nobody signs in through it any more, and
// sign-ins in progress end.
func (x *IdPs) Delete(ctx context.Context, actor audit.Actor, sc tenant.Scope) error {
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		return err
	}
	e := actor.New(audit.ActionTenantIdPDelete, sc.Tenant.ID, "tenant", sc.Tenant.ID, sc.Tenant.Slug, nil)
	return x.store.DeleteIdP(ctx, sc.Tenant.ID, e)
}

// ByID returns the provider a sign-in URL names. Malformed, unknown and deleted ids all
// answer ErrIdPNotFound.
func (x *IdPs) ByID(ctx context.Context, id string) (IdP, error) {
	idp, _, err := x.byID(ctx, id)
	return idp, err
}

func (x *IdPs) byID(ctx context.Context, id string) (IdP, []byte, error) {
	if !idpIDRE.MatchString(id) {
		return IdP{}, nil, ErrIdPNotFound
	}
	idp, sealed, err := x.store.IdPByID(ctx, id)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return IdP{}, nil, ErrIdPNotFound
	}
	return idp, sealed, err
}

// ForLogin is ByID with the client secret, opened only to exchange a code.
func (x *IdPs) ForLogin(ctx context.Context, id string) (IdP, string, error) {
	idp, sealed, err := x.byID(ctx, id)
	if err != nil {
		return IdP{}, "", err
	}
	secret, err := x.seal.Open(ctx, ClientSecretPurpose, idp.TenantID, sealed)
	if err != nil {
		return IdP{}, "", err
	}
	return idp, string(secret), nil
}

// SignIn signs in a verified identity from the tenant's provider: only one a member of the
// tenant linked to their user beforehand, and only while that user is still a member and not
// disabled. Anything else is refused and nothing is written: no user is created, no
// invitation accepted, no e-mail matched.
func (x *IdPs) SignIn(ctx context.Context, idp IdP, c IDClaims) (User, error) {
	if err := checkIssuer(c.Issuer); err != nil {
		return User{}, err
	}
	u, err := x.store.MemberByIdentity(ctx, c.Issuer, c.Subject, idp.TenantID)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return User{}, ErrNotLinked
	}
	if err != nil {
		return User{}, err
	}
	if u.DisabledAt != nil {
		return User{}, ErrUserDisabled
	}
	return u, nil
}

// Link links a verified identity from the tenant's provider to the signed-in user who started
// the link, who must be a member of the tenant.
func (x *IdPs) Link(ctx context.Context, actor audit.Actor, idp IdP, userID string, c IDClaims) error {
	if err := checkIssuer(c.Issuer); err != nil {
		return err
	}
	now := x.now()
	actor.Type, actor.ID = "user", userID
	id := Identity{Issuer: c.Issuer, Subject: c.Subject, UserID: userID, Email: linkEmail(c), CreatedAt: now}
	e := actor.New(audit.ActionUserLink, idp.TenantID, "user", userID, id.Email,
		map[string]any{"issuer": c.Issuer, "subject": c.Subject, "idp": idp.ID})
	_, err := x.store.LinkIdentity(ctx, id, idp.TenantID, e)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return ErrLinkNotMember
	}
	return err
}

// Links lists the user's tenants with a provider, for the account page.
func (x *IdPs) Links(ctx context.Context, userID string) ([]TenantIdPLink, error) {
	return x.store.IdPLinks(ctx, userID)
}

// linkEmail is the address the provider gave, kept for admins only; never matched on, so an
// unusable one is simply not kept.
func linkEmail(c IDClaims) string {
	if e, err := normalizeEmail(c.Email); err == nil {
		return e
	}
	return ""
}
