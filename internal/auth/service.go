package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// touchEvery throttles last-used updates so that authentication does not write on every
// request; last-used is accurate to this interval.
const touchEvery = time.Minute

// MaxTokenLifetime bounds requested expiries.
const MaxTokenLifetime = 366 * 24 * time.Hour

// Service authenticates callers and manages users and tokens.
type Service struct {
	store Store
	newID func() string
	now   func() time.Time

	sessions SessionPolicy
	scopes   *ScopeCache // nil: every lookup queries the store

	mu      sync.Mutex
	touched map[string]time.Time // token id > last recorded use, to throttle writes
}

// NewService returns a Service.
func NewService(store Store, newID func() string) *Service {
	return &Service{store: store, newID: newID, now: func() time.Time { return time.Now().UTC() }, touched: map[string]time.Time{},
		sessions: DefaultSessionPolicy}
}

// ErrBadToken is every authentication failure, and what a store answers when the token
// minting a credential was revoked or expired while the request ran.
var ErrBadToken = coffer.Errorf(coffer.EUNAUTHORIZED, "missing, invalid, expired or revoked token")

// Authenticate returns the principal a token belongs to. Every failure is the same error so
// that callers learn nothing about which tokens exist.
func (s *Service) Authenticate(ctx context.Context, tok string) (Principal, error) {
	if ValidateToken(tok) != nil {
		return Principal{}, ErrBadToken
	}
	hash := HashToken(tok)
	rec, err := s.store.TokenByHash(ctx, hash)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Principal{}, ErrBadToken
		}
		return Principal{}, err
	}
	return s.accept(ctx, rec, hash)
}

// AuthorizeScope authenticates a token and resolves the tenant, project and environment the
// slugs name for its user in the same query, the path every tenant route takes. The scope
// is returned only if the caller may see it; anything else is not found.
func (s *Service) AuthorizeScope(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string) (Principal, tenant.Scope, error) {
	return s.authorizeScope(ctx, tok, tenantSlug, projectSlug, envSlug, false)
}

// AuthorizeScopeForRead is AuthorizeScope for a request that changes nothing: the lookup may
// be answered from the scope cache (see ScopeCache). Writes always ask the database.
func (s *Service) AuthorizeScopeForRead(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string) (Principal, tenant.Scope, error) {
	return s.authorizeScope(ctx, tok, tenantSlug, projectSlug, envSlug, true)
}

// SetScopeCache makes reads use c (see AuthorizeScopeForRead).
func (s *Service) SetScopeCache(c *ScopeCache) { s.scopes = c }

func (s *Service) authorizeScope(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string, cached bool) (Principal, tenant.Scope, error) {
	if ValidateToken(tok) != nil {
		return Principal{}, tenant.Scope{}, ErrBadToken
	}
	hash := HashToken(tok)
	rec, sc, err := s.tokenScope(ctx, hash, tenantSlug, projectSlug, envSlug, cached)
	if rec.ID == "" {
		if err == nil || coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Principal{}, tenant.Scope{}, ErrBadToken
		}
		return Principal{}, tenant.Scope{}, err
	}
	p, perr := s.accept(ctx, rec, hash)
	if perr != nil {
		return Principal{}, tenant.Scope{}, perr
	}
	return scoped(p, sc, err)
}

// tokenScope is the store's TokenScope, through the scope cache when cached is set and the
// service has one.
func (s *Service) tokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string, cached bool) (TokenRecord, tenant.Scope, error) {
	k := scopeKey{kind: 't', hash: hash, tenantSlug: tenantSlug, projectSlug: projectSlug, envSlug: envSlug}
	e, err := s.scopes.lookup(k, cached, func() (scopeEntry, bool, error) {
		rec, sc, err := s.store.TokenScope(ctx, hash, tenantSlug, projectSlug, envSlug)
		keep := rec.RevokedAt == nil && rec.User.DisabledAt == nil && tenant.Visible(sc) == nil
		return scopeEntry{tenantID: sc.Tenant.ID, tok: rec, sc: sc}, keep, err
	})
	return e.tok, e.sc, err
}

// scoped finishes a scope lookup for an accepted principal: what the store did not find, or
// the principal may not see, is not found.
func scoped(p Principal, sc tenant.Scope, lookupErr error) (Principal, tenant.Scope, error) {
	if lookupErr != nil {
		return p, tenant.Scope{}, lookupErr
	}
	if err := tenant.Visible(sc); err != nil {
		return p, tenant.Scope{}, err
	}
	return p, sc, nil
}

// accept checks a looked-up token and records its use.
func (s *Service) accept(ctx context.Context, rec TokenRecord, hash string) (Principal, error) {
	now := s.now()
	if !HashesEqual(rec.Hash, hash) || rec.RevokedAt != nil || (rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt)) ||
		rec.User.DisabledAt != nil {
		return Principal{}, ErrBadToken
	}
	if s.shouldTouch(rec.ID, now) {
		// A database that cannot record the use is failing; fail closed like any other
		// storage fault rather than serve on a half-working store.
		if err := s.store.TouchToken(ctx, rec.ID, now); err != nil {
			return Principal{}, err
		}
	}
	return Principal{Kind: KindPersonalToken, User: rec.User, TokenID: rec.ID, TokenExpiresAt: rec.ExpiresAt}, nil
}

func (s *Service) shouldTouch(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.touched[id]; ok && now.Sub(last) < touchEvery {
		return false
	}
	if len(s.touched) > 100_000 {
		clear(s.touched)
	}
	s.touched[id] = now
	return true
}

// CreateToken makes a new personal token for the principal and returns it once. The new
// token is a child of the token the principal presented: it may not expire later than that
// token (see childExpiry) and is revoked with it.
func (s *Service) CreateToken(ctx context.Context, actor audit.Actor, p Principal, name string, expiresIn time.Duration) (Token, string, error) {
	if p.IdPID != "" {
		// A personal token reaches every tenant of its user: more than the session does.
		return Token{}, "", coffer.Errorf(coffer.EFORBIDDEN, "a session started through a tenant's identity provider cannot create personal tokens; sign in another way")
	}
	if err := tenant.ValidateName("name", name); err != nil {
		return Token{}, "", err
	}
	now := s.now()
	expiresAt, err := childExpiry(p.TokenExpiresAt, now, expiresIn)
	if err != nil {
		return Token{}, "", err
	}
	secret, err := NewToken()
	if err != nil {
		return Token{}, "", err
	}
	t := Token{ID: s.newID(), UserID: p.User.ID, Name: name, DisplayPrefix: DisplayPrefix(secret),
		ParentID: p.TokenID, ExpiresAt: expiresAt, CreatedAt: now}
	meta := map[string]any{"name": name, "user": p.User.ID}
	if t.ParentID != "" {
		meta["parent"] = t.ParentID
	}
	e := actor.New(audit.ActionTokenCreate, "", "token", t.ID, t.DisplayPrefix, meta)
	if err := s.store.CreateToken(ctx, t, HashToken(secret), e); err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// childExpiry is when a token asked to live expiresIn (0: forever) from now expires, given
// the expiry of the token creating it (nil: never). A credential never outlives the one that
// created it, so a request for longer, or for no expiry, under an expiring parent is refused
// with the latest expiry allowed, rather than quietly shortened: the caller asked for
// something it may not have, and should know what it got.
func childExpiry(parent *time.Time, now time.Time, expiresIn time.Duration) (*time.Time, error) {
	if expiresIn < 0 || expiresIn > MaxTokenLifetime {
		return nil, coffer.Errorf(coffer.EINVALID, "expiry must be between now and %d days", int(MaxTokenLifetime.Hours()/24))
	}
	var exp *time.Time
	if expiresIn > 0 {
		e := now.Add(expiresIn)
		exp = &e
	}
	if parent == nil || (exp != nil && !exp.After(*parent)) {
		return exp, nil
	}
	latest := parent.UTC().Format(time.RFC3339)
	if days := int(parent.Sub(now) / (24 * time.Hour)); days >= 1 {
		return nil, coffer.Errorf(coffer.EINVALID,
			"a token cannot create a token that outlives it: this token expires at %s, so ask for an expiry of at most %d days", latest, days)
	}
	return nil, coffer.Errorf(coffer.EINVALID,
		"a token cannot create a token that outlives it: this token expires at %s, less than a day from now", latest)
}

// rootToken makes a token with no parent: the first token of a user, whoever created them.
func (s *Service) rootToken(userID, name, secret string) Token {
	return Token{ID: s.newID(), UserID: userID, Name: name, DisplayPrefix: DisplayPrefix(secret), CreatedAt: s.now()}
}

// ListTokens lists the principal's own tokens.
func (s *Service) ListTokens(ctx context.Context, p Principal, after string, limit int) ([]Token, error) {
	return s.store.ListTokens(ctx, p.User.ID, after, limit)
}

// RevokeToken revokes one of the principal's tokens at once, and with it every token that
// token minted, their children and so on: what a credential created dies with it. Each
// revoked token gets its own audit entry (ids only, never hashes), so "when and why was this
// token revoked" is one lookup by target whichever token the revocation started from.
func (s *Service) RevokeToken(ctx context.Context, actor audit.Actor, p Principal, tokenID string) error {
	return s.revokeToken(ctx, actor, p, tokenID, "")
}

// revokeToken revokes p's token and its descendants; tenantID names the tenant whose admin
// did it, if it was not the user.
func (s *Service) revokeToken(ctx context.Context, actor audit.Actor, p Principal, tokenID, tenantID string) error {
	return s.store.RevokeToken(ctx, p.User.ID, tokenID, s.now(), func(descendants []string) []audit.Entry {
		out := make([]audit.Entry, 0, 1+len(descendants))
		out = append(out, actor.New(audit.ActionTokenRevoke, tenantID, "token", tokenID, tokenID,
			map[string]any{"user": p.User.ID, "descendants": len(descendants)}))
		for _, id := range descendants {
			out = append(out, actor.New(audit.ActionTokenRevoke, tenantID, "token", id, id,
				map[string]any{"user": p.User.ID, "revoked_with": tokenID}))
		}
		return out
	})
}

// CreateUser provisions a user and returns their first token once; instance admins only.
func (s *Service) CreateUser(ctx context.Context, actor audit.Actor, p Principal, email, name string) (User, string, error) {
	if !p.User.InstanceAdmin {
		return User{}, "", coffer.Errorf(coffer.EFORBIDDEN, "only instance admins create users")
	}
	email, err := normalizeEmail(email)
	if err != nil {
		return User{}, "", err
	}
	if err := tenant.ValidateName("name", name); err != nil {
		return User{}, "", err
	}
	u := User{ID: s.newID(), Email: email, Name: name, CreatedAt: s.now()}
	secret, err := NewToken()
	if err != nil {
		return User{}, "", err
	}
	// The first token is the new user's root, not a child of the admin's token: it belongs
	// to another user, whose tokens the admin cannot list or revoke, and it must not die when
	// the admin rotates their own credentials. It does not expire, like the bootstrap token;
	// the user replaces it with tokens of their own choosing.
	t := s.rootToken(u.ID, "first token", secret)
	e := actor.New(audit.ActionUserCreate, "", "user", u.ID, email, map[string]any{"name": name})
	if err := s.store.CreateUser(ctx, u, t, HashToken(secret), e); err != nil {
		return User{}, "", err
	}
	return u, secret, nil
}

// SetUserDisabled disables or enables a user; instance admins only, and never themselves (an
// instance must not lose its last way in by a slip). A disabled user's tokens fail on the very
// next request; enabling them again restores them.
func (s *Service) SetUserDisabled(ctx context.Context, actor audit.Actor, p Principal, userID string, disabled bool) error {
	if !p.User.InstanceAdmin {
		return coffer.Errorf(coffer.EFORBIDDEN, "only instance admins disable or enable users")
	}
	if userID == p.User.ID {
		return coffer.Errorf(coffer.ECONFLICT, "you cannot disable or enable yourself")
	}
	var at *time.Time
	action := audit.ActionUserEnable
	if disabled {
		now := s.now()
		at, action = &now, audit.ActionUserDisable
	}
	return s.store.SetUserDisabled(ctx, userID, at, actor.New(action, "", "user", userID, userID, nil))
}

// BootstrapRequest describes the first owner and tenant.
type BootstrapRequest struct {
	Email      string
	Name       string
	TenantSlug string
	TenantName string
	// Token, when set, becomes the owner's token (automation); otherwise one is generated.
	Token string
}

// ErrAlreadyBootstrapped is returned once the instance has its first owner.
var ErrAlreadyBootstrapped = coffer.Errorf(coffer.ECONFLICT, "this instance is already set up")

// Bootstrap creates the first user as instance admin and owner of the first tenant, and
// returns the user's token. It succeeds at most once per instance, across replicas.
func (s *Service) Bootstrap(ctx context.Context, req BootstrapRequest) (User, string, error) {
	email, err := normalizeEmail(req.Email)
	if err != nil {
		return User{}, "", err
	}
	if err := tenant.ValidateName("name", req.Name); err != nil {
		return User{}, "", err
	}
	if err := tenant.ValidateSlug("tenant slug", req.TenantSlug); err != nil {
		return User{}, "", err
	}
	if err := tenant.ValidateName("tenant name", req.TenantName); err != nil {
		return User{}, "", err
	}
	secret := req.Token
	if secret == "" {
		if secret, err = NewToken(); err != nil {
			return User{}, "", err
		}
	} else if err := ValidateToken(secret); err != nil {
		return User{}, "", err
	}
	now := s.now()
	u := User{ID: s.newID(), Email: email, Name: req.Name, InstanceAdmin: true, CreatedAt: now}
	t := tenant.Tenant{ID: s.newID(), Slug: req.TenantSlug, Name: req.TenantName, CreatedAt: now, UpdatedAt: now}
	tok := s.rootToken(u.ID, "bootstrap", secret) // the first credential: a root
	e := audit.System.New(audit.ActionBootstrap, t.ID, "user", u.ID, email, map[string]any{"tenant": t.Slug})
	if err := s.store.Bootstrap(ctx, u, t, tok, HashToken(secret), e); err != nil {
		if errors.Is(err, ErrAlreadyBootstrapped) {
			return User{}, "", ErrAlreadyBootstrapped
		}
		return User{}, "", err
	}
	return u, secret, nil
}

// Bootstrapped reports whether the instance has its first owner.
func (s *Service) Bootstrapped(ctx context.Context) (bool, error) { return s.store.Bootstrapped(ctx) }
