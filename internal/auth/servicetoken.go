package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// ServiceTokenPrefix marks service tokens, so secret scanners can tell them from personal ones.
const ServiceTokenPrefix = "cfr_svc_"

var serviceTokenRE = regexp.MustCompile(`^cfr_svc_[A-Za-z0-9_-]{43}$`)

// Service token access levels, as the API names them.
const (
	AccessRead      = "read"
	AccessReadWrite = "read-write"
)

// ServiceToken is a machine credential: one project, a set of its environments, read or
// read-write, and an expiry. It acts for no user and can manage nothing.
type ServiceToken struct {
	ID            string
	TenantID      string
	ProjectID     string
	Name          string
	DisplayPrefix string
	// Environments are the slugs of the environments it reaches (as created; an environment
	// deleted since is still listed but reaches nothing).
	Environments []string
	// EnvironmentIDs are their ids, which authorization compares.
	EnvironmentIDs []string
	Access         string
	CreatedBy      string
	CreatedAt      time.Time
	ExpiresAt      time.Time
	LastUsedAt     *time.Time
}

// ServiceTokenRecord is a stored service token as looked up for authentication.
type ServiceTokenRecord struct {
	ServiceToken
	Hash      string
	RevokedAt *time.Time
}

// ServiceTokenStore persists service tokens.
type ServiceTokenStore interface {
	// ServiceTokenScope looks the token up by hash and resolves the slugs within the token's
	// own tenant and project, in one query. A missing token is ENOTFOUND with an empty record;
	// slugs naming another tenant or project, or nothing, are ENOTFOUND with the record set.
	ServiceTokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (ServiceTokenRecord, tenant.Scope, error)
	TouchServiceToken(ctx context.Context, id string, at time.Time) error
	// ProjectEnvironments returns the project's environments with the given slugs and the
	// user's override on each; ENOTFOUND naming the first slug that does not exist.
	ProjectEnvironments(ctx context.Context, projectID, userID string, slugs []string) ([]tenant.Environment, []tenant.Access, error)
	CreateServiceToken(ctx context.Context, t ServiceToken, hash string, e audit.Entry) error
	ListServiceTokens(ctx context.Context, projectID string) ([]ServiceToken, error)
	// RevokeServiceToken revokes the project's unrevoked token; ENOTFOUND otherwise.
	RevokeServiceToken(ctx context.Context, projectID, id string, at time.Time, e audit.Entry) error
	// RevokeServiceTokenInTenant is RevokeServiceToken for any project of the tenant.
	RevokeServiceTokenInTenant(ctx context.Context, tenantID, id string, at time.Time, e audit.Entry) error
}

// ErrBadServiceToken is every failure to authenticate a service token.
var ErrBadServiceToken = coffer.Errorf(coffer.EUNAUTHORIZED, "missing, invalid, expired or revoked service token")

// IsServiceToken reports whether a presented bearer token is a service token.
func IsServiceToken(tok string) bool {
	return strings.HasPrefix(tok, ServiceTokenPrefix) && serviceTokenRE.MatchString(tok)
}

// ServiceTokenRequest describes a new service token.
type ServiceTokenRequest struct {
	Name         string
	Environments []string // slugs
	Access       string
	ExpiresIn    time.Duration
}

// CreateServiceToken makes a service token for the scope's project and returns it once. Its
// creator must manage the project's tokens and may not hand out more than they hold: each
// environment must be one they can read (or write, for a read-write token).
func (s *Service) CreateServiceToken(ctx context.Context, actor audit.Actor, sc tenant.Scope, req ServiceTokenRequest) (ServiceToken, string, error) {
	if err := tenant.Authorize(sc, tenant.ManageTokens); err != nil {
		return ServiceToken{}, "", err
	}
	if err := tenant.ValidateName("name", req.Name); err != nil {
		return ServiceToken{}, "", err
	}
	want := tenant.LevelRead
	switch req.Access {
	case AccessRead:
	case AccessReadWrite:
		want = tenant.LevelWrite
	default:
		return ServiceToken{}, "", coffer.Errorf(coffer.EINVALID, "access must be read or read-write")
	}
	if req.ExpiresIn <= 0 || req.ExpiresIn > MaxTokenLifetime {
		return ServiceToken{}, "", coffer.Errorf(coffer.EINVALID, "a service token must expire: expires_in_days from 1 to %d", int(MaxTokenLifetime.Hours()/24))
	}
	if len(req.Environments) == 0 || len(req.Environments) > 100 {
		return ServiceToken{}, "", coffer.Errorf(coffer.EINVALID, "environments must name 1 to 100 environments of the project")
	}
	slugs := slices.Clone(req.Environments)
	slices.Sort(slugs)
	slugs = slices.Compact(slugs)
	for _, slug := range slugs {
		if err := tenant.ValidateSlug("environment", slug); err != nil {
			return ServiceToken{}, "", err
		}
	}
	envs, overrides, err := s.store.ProjectEnvironments(ctx, sc.Project.ID, sc.UserID, slugs)
	if err != nil {
		return ServiceToken{}, "", err
	}
	ids := make([]string, len(envs))
	for i := range envs {
		env := envs[i]
		probe := sc
		probe.Environment, probe.Override = &env, overrides[i]
		if probe.Level() < want {
			return ServiceToken{}, "", coffer.Errorf(coffer.EFORBIDDEN, "you cannot give a token %s access to %s: your own access there is lower", req.Access, env.Slug)
		}
		ids[i] = env.ID
	}
	secret, err := newServiceSecret()
	if err != nil {
		return ServiceToken{}, "", err
	}
	now := s.now()
	t := ServiceToken{ID: s.newID(), TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID, Name: req.Name,
		DisplayPrefix: DisplayPrefix(secret), Environments: slugs, EnvironmentIDs: ids, Access: req.Access,
		CreatedBy: sc.UserID, CreatedAt: now, ExpiresAt: now.Add(req.ExpiresIn)}
	e := actor.New(audit.ActionServiceTokenCreate, sc.Tenant.ID, "service_token", t.ID, sc.Path()+"/"+t.DisplayPrefix,
		map[string]any{"name": t.Name, "environments": slugs, "access": t.Access, "expires_at": t.ExpiresAt})
	if err := s.store.CreateServiceToken(ctx, t, HashToken(secret), e); err != nil {
		return ServiceToken{}, "", err
	}
	return t, secret, nil
}

func newServiceSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return ServiceTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ListServiceTokens lists the project's live service tokens.
func (s *Service) ListServiceTokens(ctx context.Context, sc tenant.Scope) ([]ServiceToken, error) {
	if err := tenant.Authorize(sc, tenant.ManageTokens); err != nil {
		return nil, err
	}
	return s.store.ListServiceTokens(ctx, sc.Project.ID)
}

// RevokeServiceToken revokes one of the project's service tokens; its next request fails.
func (s *Service) RevokeServiceToken(ctx context.Context, actor audit.Actor, sc tenant.Scope, id string) error {
	if err := tenant.Authorize(sc, tenant.ManageTokens); err != nil {
		return err
	}
	e := actor.New(audit.ActionServiceTokenRevoke, sc.Tenant.ID, "service_token", id, sc.Path(), nil)
	return s.store.RevokeServiceToken(ctx, sc.Project.ID, id, s.now(), e)
}

// serviceTokenScope is the store's ServiceTokenScope, through the scope cache when cached is
// set and the service has one.
func (s *Service) serviceTokenScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string, cached bool) (ServiceTokenRecord, tenant.Scope, error) {
	k := scopeKey{kind: 's', hash: hash, tenantSlug: tenantSlug, projectSlug: projectSlug, envSlug: envSlug}
	e, err := s.scopes.lookup(k, cached, func() (scopeEntry, bool, error) {
		rec, sc, err := s.store.ServiceTokenScope(ctx, hash, tenantSlug, projectSlug, envSlug)
		return scopeEntry{tenantID: sc.Tenant.ID, svc: rec, sc: sc}, rec.RevokedAt == nil, err
	})
	return e.svc, e.sc, err
}

// AuthorizeServiceScope authenticates a service token and resolves the scope the slugs name,
// limited by the token's grant, in one query. The principal has no user.
func (s *Service) AuthorizeServiceScope(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string) (Principal, tenant.Scope, error) {
	return s.authorizeServiceScope(ctx, tok, tenantSlug, projectSlug, envSlug, false)
}

// AuthorizeServiceScopeForRead is AuthorizeServiceScope for a request that changes nothing:
// the lookup may be answered from the scope cache (see ScopeCache).
func (s *Service) AuthorizeServiceScopeForRead(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string) (Principal, tenant.Scope, error) {
	return s.authorizeServiceScope(ctx, tok, tenantSlug, projectSlug, envSlug, true)
}

func (s *Service) authorizeServiceScope(ctx context.Context, tok, tenantSlug, projectSlug, envSlug string, cached bool) (Principal, tenant.Scope, error) {
	if !IsServiceToken(tok) {
		return Principal{}, tenant.Scope{}, ErrBadServiceToken
	}
	hash := HashToken(tok)
	rec, sc, err := s.serviceTokenScope(ctx, hash, tenantSlug, projectSlug, envSlug, cached)
	if rec.ID == "" {
		if err == nil || coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Principal{}, tenant.Scope{}, ErrBadServiceToken
		}
		return Principal{}, tenant.Scope{}, err
	}
	now := s.now()
	if !HashesEqual(rec.Hash, hash) || rec.RevokedAt != nil || !now.Before(rec.ExpiresAt) {
		return Principal{}, tenant.Scope{}, ErrBadServiceToken
	}
	if s.shouldTouch(rec.ID, now) {
		if err := s.store.TouchServiceToken(ctx, rec.ID, now); err != nil {
			return Principal{}, tenant.Scope{}, err
		}
	}
	p := Principal{Kind: KindServiceToken, TokenID: rec.ID, TokenExpiresAt: &rec.ExpiresAt}
	if err == nil {
		sc.Grant = &tenant.Grant{TokenID: rec.ID, ProjectID: rec.ProjectID, Environments: rec.EnvironmentIDs,
			Write: rec.Access == AccessReadWrite}
	}
	return scoped(p, sc, err)
}
