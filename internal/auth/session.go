package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
	"unicode"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Session is a signed-in browser. The cookie holds a random secret; only its hash is stored.
type Session struct {
	ID         string
	UserID     string
	Method     string // how the user signed in: "oidc", "password", "setup"
	UserAgent  string
	SourceIP   string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // the absolute timeout
}

// SessionRecord is a stored session as looked up for authentication.
type SessionRecord struct {
	Session
	Hash string
	User User
}

// SessionStore persists sessions.
type SessionStore interface {
	// CreateSession stores a session and, in the same transaction, deletes the session whose
	// hash is replaces (the one the browser presented, if any), so signing in always ends
	// with a fresh id.
	CreateSession(ctx context.Context, sess Session, hash, replaces string, e audit.Entry) error
	// SessionByHash returns the session with that hash and its user; ENOTFOUND if none.
	SessionByHash(ctx context.Context, hash string) (SessionRecord, error)
	// SessionScope is SessionByHash and the scope the slugs name for the session's user, in
	// one query, like TokenScope.
	SessionScope(ctx context.Context, hash, tenantSlug, projectSlug, envSlug string) (SessionRecord, tenant.Scope, error)
	TouchSession(ctx context.Context, id string, at time.Time) error
	ListSessions(ctx context.Context, userID string) ([]Session, error)
	// DeleteSession deletes one of the user's sessions; ENOTFOUND if it is not theirs.
	DeleteSession(ctx context.Context, userID, id string, e audit.Entry) error
}

// SessionPolicy bounds how long a session lives.
type SessionPolicy struct {
	// Idle ends a session not used for this long.
	Idle time.Duration
	// Absolute ends every session this long after sign-in, however busy.
	Absolute time.Duration
}

// DefaultSessionPolicy is an hour idle and twelve hours in all: a working day at most, and an
// unattended browser is signed out soon.
var DefaultSessionPolicy = SessionPolicy{Idle: time.Hour, Absolute: 12 * time.Hour}

// ErrBadSession is every session failure: unknown, expired, idle too long, or its user
// disabled. The browser is sent to sign in again.
var ErrBadSession = coffer.Errorf(coffer.EUNAUTHORIZED, "your session has ended; sign in again")

// Principal kinds: how the caller of a request proved who they are.
const (
	KindSession       = "session"
	KindPersonalToken = "personal_token"
	KindServiceToken  = "service_token"
	KindSystem        = "system"
)

// SetSessionPolicy replaces the default session timeouts; call it before serving.
func (s *Service) SetSessionPolicy(p SessionPolicy) { s.sessions = p }

// SessionPolicy returns the timeouts in force.
func (s *Service) SessionPolicy() SessionPolicy { return s.sessions }

// NewSessionSecret returns a fresh cookie value: 32 random bytes, base64url encoded.
func NewSessionSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// validSessionSecret reports whether a cookie value has the shape NewSessionSecret makes, so
// that junk is refused without a query.
func validSessionSecret(secret string) bool {
	b, err := base64.RawURLEncoding.DecodeString(secret)
	return err == nil && len(b) == 32
}

// CSRFToken derives the session's form token from its secret: it differs per session, needs
// no storage, and cannot be computed without the cookie, which other sites cannot read.
func CSRFToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("coffer csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRFToken compares a presented form token with the session's, in constant time.
func CheckCSRFToken(secret, presented string) bool {
	return presented != "" && hmac.Equal([]byte(CSRFToken(secret)), []byte(presented))
}

// StartSession signs u in: a new session with a fresh secret, returned once for the cookie.
// replacing is the secret of the session the browser presented, if any; it is ended in the
// same step, so that an id planted before sign-in never becomes a signed-in session.
func (s *Service) StartSession(ctx context.Context, actor audit.Actor, u User, method, userAgent, replacing string) (Session, string, error) {
	if u.DisabledAt != nil {
		return Session{}, "", ErrBadSession
	}
	secret, err := NewSessionSecret()
	if err != nil {
		return Session{}, "", err
	}
	now := s.now()
	// Shown on the account page and stored as text: valid UTF-8, no control characters.
	userAgent = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(userAgent, ""))
	if len(userAgent) > 256 {
		userAgent = strings.ToValidUTF8(userAgent[:256], "")
	}
	sess := Session{ID: s.newID(), UserID: u.ID, Method: method, UserAgent: userAgent, SourceIP: actor.SourceIP,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.sessions.Absolute)}
	var replaces string
	if replacing != "" {
		replaces = HashToken(replacing)
	}
	actor.Type, actor.ID = "user", u.ID
	e := actor.New(audit.ActionLogin, "", "session", sess.ID, u.Email, map[string]any{"method": method})
	if err := s.store.CreateSession(ctx, sess, HashToken(secret), replaces, e); err != nil {
		return Session{}, "", err
	}
	return sess, secret, nil
}

// AuthenticateSession returns the principal a session cookie belongs to.
func (s *Service) AuthenticateSession(ctx context.Context, secret string) (Principal, error) {
	if !validSessionSecret(secret) {
		return Principal{}, ErrBadSession
	}
	hash := HashToken(secret)
	rec, err := s.store.SessionByHash(ctx, hash)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Principal{}, ErrBadSession
		}
		return Principal{}, err
	}
	return s.acceptSession(ctx, rec, hash)
}

// AuthorizeSessionScope is AuthorizeScope for a session cookie.
func (s *Service) AuthorizeSessionScope(ctx context.Context, secret, tenantSlug, projectSlug, envSlug string) (Principal, tenant.Scope, error) {
	if !validSessionSecret(secret) {
		return Principal{}, tenant.Scope{}, ErrBadSession
	}
	hash := HashToken(secret)
	rec, sc, err := s.store.SessionScope(ctx, hash, tenantSlug, projectSlug, envSlug)
	if rec.ID == "" {
		if err == nil || coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Principal{}, tenant.Scope{}, ErrBadSession
		}
		return Principal{}, tenant.Scope{}, err
	}
	p, perr := s.acceptSession(ctx, rec, hash)
	if perr != nil {
		return Principal{}, tenant.Scope{}, perr
	}
	p, sc, err = scoped(p, sc, err)
	if err != nil {
		return p, sc, err
	}
	if err := sessionReaches(p, sc); err != nil {
		return p, tenant.Scope{}, err
	}
	return p, sc, nil
}

// sessionReaches applies the tenant providers' rules to a session and a scope it may see:
// a session started through a tenant's provider reaches only that tenant, and a tenant that
// requires its provider is reached only by sessions started through it. Tokens are not
// concerned: they are made deliberately, and revoked by owners and admins.
func sessionReaches(p Principal, sc tenant.Scope) error {
	if p.IdPID != "" && p.IdPID != sc.IdPID {
		return coffer.Errorf(coffer.EFORBIDDEN, "this session was started through another tenant's identity provider and reaches only that tenant; sign in again to reach this one")
	}
	if sc.RequiredIdP != "" && p.IdPID != sc.RequiredIdP {
		return coffer.Errorf(coffer.EFORBIDDEN, "this tenant requires signing in through its identity provider: sign in at /auth/oidc/login?idp=%s", sc.RequiredIdP)
	}
	return nil
}

// acceptSession checks a looked-up session against both timeouts and records its use, at
// most once a minute, which is the precision of the idle timeout.
func (s *Service) acceptSession(ctx context.Context, rec SessionRecord, hash string) (Principal, error) {
	now := s.now()
	if !HashesEqual(rec.Hash, hash) || !now.Before(rec.ExpiresAt) || !now.Before(rec.LastSeenAt.Add(s.sessions.Idle)) ||
		rec.User.DisabledAt != nil {
		return Principal{}, ErrBadSession
	}
	if now.Sub(rec.LastSeenAt) >= touchEvery {
		if err := s.store.TouchSession(ctx, rec.ID, now); err != nil {
			return Principal{}, err
		}
	}
	p := Principal{Kind: KindSession, User: rec.User, SessionID: rec.ID}
	if id, ok := strings.CutPrefix(rec.Method, IdPSessionPrefix); ok && id != "" {
		// A tenant's provider vouches for membership of that tenant, not for the instance.
		p.IdPID = id
		p.User.InstanceAdmin = false
	}
	return p, nil
}

// EndSession signs a browser out: its session row is deleted, so the cookie is dead even if
// a copy of it survives.
func (s *Service) EndSession(ctx context.Context, actor audit.Actor, p Principal) error {
	return s.RevokeSession(ctx, actor, p, p.SessionID)
}

// ListSessions lists the principal's live sessions, newest first.
func (s *Service) ListSessions(ctx context.Context, p Principal) ([]Session, error) {
	all, err := s.store.ListSessions(ctx, p.User.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	live := all[:0]
	for _, sess := range all {
		if now.Before(sess.ExpiresAt) && now.Before(sess.LastSeenAt.Add(s.sessions.Idle)) {
			live = append(live, sess)
		}
	}
	return live, nil
}

// RevokeSession ends one of the principal's sessions; it fails from the next request on.
func (s *Service) RevokeSession(ctx context.Context, actor audit.Actor, p Principal, id string) error {
	if id == "" {
		return coffer.Errorf(coffer.ENOTFOUND, "session not found")
	}
	e := actor.New(audit.ActionLogout, "", "session", id, id, map[string]any{"user": p.User.ID})
	return s.store.DeleteSession(ctx, p.User.ID, id, e)
}
