package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

var errNotNeeded = errors.New("fake store: not used by these tests")

// memStore is an in-memory Store holding only what these tests need; sessions are tested
// against the real stores (internal/app).
type memStore struct {
	SessionStore      // nil: calling a session method panics
	ServiceTokenStore // nil, likewise
	TenantTokenStore
	DeviceStore // nil, likewise
	mu          sync.Mutex
	tokens      map[string]TokenRecord // by hash
	lookupFn    func(hash string) (TokenRecord, error)
	touchErr    error
	touches     []string // token ids, in order
	lookups     int

	createdTokens []storedToken
	createdUsers  []User
	userTokens    []storedToken
	bootstraps    []storedToken
	bootUsers     []User
	bootTenants   []tenant.Tenant
	entries       []audit.Entry
	bootstrapErr  error

	revokeDescendants []string // what RevokeToken reports below the revoked token
	revokeErr         error
	revoked           []string // "user/token@time" per RevokeToken call

	// scope and scopeErr are what TokenScope answers for a known token.
	scope    tenant.Scope
	scopeErr error
}

type storedToken struct {
	Token Token
	Hash  string
}

func newMemStore() *memStore { return &memStore{tokens: map[string]TokenRecord{}} }

func (m *memStore) TokenByHash(_ context.Context, hash string) (TokenRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	if m.lookupFn != nil {
		return m.lookupFn(hash)
	}
	rec, ok := m.tokens[hash]
	if !ok {
		return TokenRecord{}, coffer.Errorf(coffer.ENOTFOUND, "token not found")
	}
	return rec, nil
}

func (m *memStore) TokenScope(_ context.Context, hash, _, _, _ string) (TokenRecord, tenant.Scope, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	if m.lookupFn != nil {
		rec, err := m.lookupFn(hash)
		return rec, tenant.Scope{}, err
	}
	rec, ok := m.tokens[hash]
	if !ok {
		return TokenRecord{}, tenant.Scope{}, coffer.Errorf(coffer.ENOTFOUND, "token not found")
	}
	if m.scopeErr != nil {
		return rec, tenant.Scope{}, m.scopeErr
	}
	return rec, m.scope, nil
}

func (m *memStore) TouchToken(_ context.Context, tokenID string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.touches = append(m.touches, tokenID)
	return m.touchErr
}

func (m *memStore) CreateToken(_ context.Context, t Token, hash string, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.createdTokens = append(m.createdTokens, storedToken{t, hash})
	m.entries = append(m.entries, e)
	return nil
}

func (m *memStore) ListTokens(context.Context, string, string, int) ([]Token, error) {
	return nil, errNotNeeded
}

// RevokeToken answers as if the token had the descendants in revokeDescendants: walking the
// tree is the real store's job, tested on both databases in package app.
func (m *memStore) RevokeToken(_ context.Context, userID, tokenID string, at time.Time, entries func([]string) []audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revokeErr != nil {
		return m.revokeErr
	}
	m.revoked = append(m.revoked, userID+"/"+tokenID+"@"+at.Format(time.RFC3339))
	m.entries = append(m.entries, entries(m.revokeDescendants)...)
	return nil
}

func (m *memStore) CreateUser(_ context.Context, u User, t Token, hash string, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.createdUsers = append(m.createdUsers, u)
	m.userTokens = append(m.userTokens, storedToken{t, hash})
	m.entries = append(m.entries, e)
	return nil
}

func (m *memStore) SetUserDisabled(_ context.Context, userID string, at *time.Time, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for hash, rec := range m.tokens {
		if rec.User.ID == userID {
			rec.User.DisabledAt = at
			m.tokens[hash] = rec
		}
	}
	m.entries = append(m.entries, e)
	return nil
}

func (m *memStore) Bootstrap(_ context.Context, u User, t tenant.Tenant, tok Token, hash string, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bootstrapErr != nil {
		return m.bootstrapErr
	}
	m.bootUsers = append(m.bootUsers, u)
	m.bootTenants = append(m.bootTenants, t)
	m.bootstraps = append(m.bootstraps, storedToken{tok, hash})
	m.entries = append(m.entries, e)
	return nil
}

func (m *memStore) Bootstrapped(context.Context) (bool, error) { return false, errNotNeeded }

// add stores a token record for secret and returns it.
func (m *memStore) add(secret string, rec TokenRecord) TokenRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec.Hash = HashToken(secret)
	m.tokens[rec.Hash] = rec
	return rec
}

func (m *memStore) touchCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.touches)
}

func (m *memStore) writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.createdTokens) + len(m.createdUsers) + len(m.bootstraps) + len(m.revoked)
}

// fakeClock is a settable clock for the service.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestService returns a service over a fresh store with a fixed clock and sequential ids.
func newTestService(t *testing.T) (*Service, *memStore, *fakeClock) {
	t.Helper()
	st := newMemStore()
	var mu sync.Mutex
	n := 0
	svc := NewService(st, func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("id-%d", n)
	})
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	svc.now = clock.now
	return svc, st, clock
}

func genToken(t *testing.T) string {
	t.Helper()
	tok, err := NewToken()
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	return tok
}

// wantCode fails unless err carries code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want code %q", code)
	}
	if got := coffer.ErrorCode(err); got != code {
		t.Fatalf("error %v has code %q, want %q", err, got, code)
	}
}

func TestAuthenticate(t *testing.T) {
	alice := User{ID: "u-alice", Email: "alice@example.com"}
	tests := []struct {
		name string
		// setup stores whatever the case needs and returns the token to present.
		setup func(t *testing.T, st *memStore, now time.Time) string
		ok    bool
		// lookup reports whether the store is consulted at all.
		lookup bool
	}{
		{"valid", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1", UserID: alice.ID}, User: alice})
			return tok
		}, true, true},
		{"valid with future expiry", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			exp := now.Add(time.Second)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1", UserID: alice.ID, ExpiresAt: &exp}, User: alice})
			return tok
		}, true, true},
		{"unknown", func(t *testing.T, st *memStore, now time.Time) string {
			st.add(genToken(t), TokenRecord{Token: Token{ID: "t-other"}, User: alice})
			return genToken(t)
		}, false, true},
		{"revoked", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			at := now.Add(-time.Second)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1"}, RevokedAt: &at, User: alice})
			return tok
		}, false, true},
		{"revoked in the future still revoked", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			at := now.Add(time.Hour)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1"}, RevokedAt: &at, User: alice})
			return tok
		}, false, true},
		{"expired", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			exp := now.Add(-time.Second)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1", ExpiresAt: &exp}, User: alice})
			return tok
		}, false, true},
		{"expires right now", func(t *testing.T, st *memStore, now time.Time) string {
			tok := genToken(t)
			exp := now
			st.add(tok, TokenRecord{Token: Token{ID: "t-1", ExpiresAt: &exp}, User: alice})
			return tok
		}, false, true},
		{"store returns a record with another hash", func(t *testing.T, st *memStore, now time.Time) string {
			other := genToken(t)
			rec := st.add(other, TokenRecord{Token: Token{ID: "t-1"}, User: alice})
			st.lookupFn = func(string) (TokenRecord, error) { return rec, nil }
			return genToken(t)
		}, false, true},
		{"malformed", func(*testing.T, *memStore, time.Time) string { return "cfr_pat_short" }, false, false},
		{"other prefix", func(*testing.T, *memStore, time.Time) string { return "ghp_" + strings.Repeat("a", 40) }, false, false},
		{"empty", func(*testing.T, *memStore, time.Time) string { return "" }, false, false},
	}
	var messages []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, clock := newTestService(t)
			tok := tc.setup(t, st, clock.now())
			p, err := svc.Authenticate(context.Background(), tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("Authenticate = %v", err)
				}
				if p.User != alice || p.TokenID != "t-1" {
					t.Fatalf("principal = %+v, want alice with token t-1", p)
				}
				if st.touchCount() != 1 {
					t.Errorf("TouchToken called %d times, want 1", st.touchCount())
				}
			} else {
				wantCode(t, err, coffer.EUNAUTHORIZED)
				if p != (Principal{}) {
					t.Errorf("principal = %+v on failure, want zero", p)
				}
				if st.touchCount() != 0 {
					t.Errorf("a rejected token was touched")
				}
				if tok != "" && strings.Contains(err.Error(), tok) {
					t.Errorf("error %q echoes the token", err)
				}
				messages = append(messages, coffer.ErrorMessage(err))
			}
			if got := st.lookups > 0; got != tc.lookup {
				t.Errorf("store consulted = %v, want %v", got, tc.lookup)
			}
		})
	}
	// Every rejection looks the same, so callers learn nothing about which tokens exist.
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("rejections differ: %q vs %q", messages[0], m)
		}
	}
}

func TestAuthenticateStoreFaultsAreNotUnauthorized(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, st *memStore) string
		want  error
	}{
		{"lookup fails", func(t *testing.T, st *memStore) string {
			st.lookupFn = func(string) (TokenRecord, error) {
				return TokenRecord{}, coffer.Errorf(coffer.EUNAVAILABLE, "database down")
			}
			return genToken(t)
		}, nil},
		{"touch fails", func(t *testing.T, st *memStore) string {
			tok := genToken(t)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1"}})
			st.touchErr = coffer.Errorf(coffer.EUNAVAILABLE, "database down")
			return tok
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, _ := newTestService(t)
			tok := tc.setup(t, st)
			p, err := svc.Authenticate(context.Background(), tok)
			// A failing database must fail the request, not look like a bad token nor let it through.
			wantCode(t, err, coffer.EUNAVAILABLE)
			if p != (Principal{}) {
				t.Errorf("principal = %+v on failure, want zero", p)
			}
		})
	}
}

func TestAuthenticateTouchIsThrottled(t *testing.T) {
	tests := []struct {
		name  string
		steps []time.Duration // clock advance before each authentication
		want  int             // TouchToken calls
	}{
		{"twice at once", []time.Duration{0, 0}, 1},
		{"twice within a minute", []time.Duration{0, 59 * time.Second}, 1},
		{"many within a minute", []time.Duration{0, 10 * time.Second, 20 * time.Second, 29 * time.Second}, 1},
		{"a minute apart", []time.Duration{0, time.Minute}, 2},
		{"throttle counts from the last recorded use", []time.Duration{0, 40 * time.Second, 40 * time.Second, 40 * time.Second}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, clock := newTestService(t)
			tok := genToken(t)
			st.add(tok, TokenRecord{Token: Token{ID: "t-1"}})
			for i, d := range tc.steps {
				clock.advance(d)
				if _, err := svc.Authenticate(context.Background(), tok); err != nil {
					t.Fatalf("authentication %d: %v", i, err)
				}
			}
			if got := st.touchCount(); got != tc.want {
				t.Errorf("TouchToken called %d times, want %d", got, tc.want)
			}
		})
	}
	t.Run("tokens are throttled separately", func(t *testing.T) {
		svc, st, _ := newTestService(t)
		a, b := genToken(t), genToken(t)
		st.add(a, TokenRecord{Token: Token{ID: "t-a"}})
		st.add(b, TokenRecord{Token: Token{ID: "t-b"}})
		for _, tok := range []string{a, b, a, b} {
			if _, err := svc.Authenticate(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.Join(st.touches, ","); got != "t-a,t-b" {
			t.Errorf("touches = %s, want t-a,t-b", got)
		}
	})
}

func TestCreateToken(t *testing.T) {
	p := Principal{User: User{ID: "u-1", Email: "a@example.com"}}
	tests := []struct {
		name      string
		tokenName string
		expiresIn time.Duration
		ok        bool
	}{
		{"no expiry", "laptop", 0, true},
		{"one day", "ci", 24 * time.Hour, true},
		{"maximum lifetime", "ci", MaxTokenLifetime, true},
		{"one nanosecond", "ci", time.Nanosecond, true},
		{"past the maximum", "ci", MaxTokenLifetime + time.Nanosecond, false},
		{"ten years", "ci", 10 * 365 * 24 * time.Hour, false},
		{"negative", "ci", -time.Second, false},
		{"empty name", "", time.Hour, false},
		{"blank name", "   ", time.Hour, false},
		{"200 character name", strings.Repeat("n", 200), time.Hour, true},
		{"201 character name", strings.Repeat("n", 201), time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, clock := newTestService(t)
			tok, secret, err := svc.CreateToken(context.Background(), audit.Actor{Type: "user", ID: p.User.ID}, p, tc.tokenName, tc.expiresIn)
			if !tc.ok {
				wantCode(t, err, coffer.EINVALID)
				if secret != "" || st.writes() != 0 {
					t.Fatalf("rejected request returned a secret or reached the store")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateToken = %v", err)
			}
			if err := ValidateToken(secret); err != nil {
				t.Fatalf("returned secret is malformed: %v", err)
			}
			if tok.UserID != p.User.ID || tok.Name != tc.tokenName || tok.DisplayPrefix != DisplayPrefix(secret) {
				t.Errorf("token = %+v", tok)
			}
			switch {
			case tc.expiresIn == 0 && tok.ExpiresAt != nil:
				t.Errorf("ExpiresAt = %v, want none", tok.ExpiresAt)
			case tc.expiresIn > 0 && (tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(clock.now().Add(tc.expiresIn))):
				t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, clock.now().Add(tc.expiresIn))
			}
			if len(st.createdTokens) != 1 {
				t.Fatalf("store got %d tokens, want 1", len(st.createdTokens))
			}
			stored := st.createdTokens[0]
			if stored.Hash != HashToken(secret) {
				t.Errorf("stored hash %q is not HashToken(secret)", stored.Hash)
			}
			if stored.Token.ID != tok.ID {
				t.Errorf("stored id %q, returned %q", stored.Token.ID, tok.ID)
			}
			e := st.entries[0]
			if e.Action != audit.ActionTokenCreate {
				t.Errorf("audit action = %q", e.Action)
			}
			if s := fmt.Sprintf("%+v", e); strings.Contains(s, secret) || strings.Contains(s, stored.Hash) {
				t.Errorf("audit entry holds the token or its hash: %s", s)
			}
		})
	}
}

func TestCreateUser(t *testing.T) {
	admin := Principal{User: User{ID: "u-admin", InstanceAdmin: true}}
	plain := Principal{User: User{ID: "u-plain"}}
	tests := []struct {
		name      string
		p         Principal
		email     string
		userName  string
		code      string // "" for success
		wantEmail string
	}{
		{"admin", admin, "bob@example.com", "Bob", "", "bob@example.com"},
		{"admin, mixed case address", admin, "Bob@Example.COM", "Bob", "", "bob@example.com"},
		{"non-admin", plain, "bob@example.com", "Bob", coffer.EFORBIDDEN, ""},
		{"non-admin with bad input", plain, "not an address", "", coffer.EFORBIDDEN, ""},
		{"bad address", admin, "not an address", "Bob", coffer.EINVALID, ""},
		{"display-name address", admin, "Bob <bob@example.com>", "Bob", coffer.EINVALID, ""},
		{"empty name", admin, "bob@example.com", "", coffer.EINVALID, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, _ := newTestService(t)
			u, secret, err := svc.CreateUser(context.Background(), audit.Actor{Type: "user", ID: tc.p.User.ID}, tc.p, tc.email, tc.userName)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				if secret != "" || st.writes() != 0 {
					t.Fatal("refused request returned a secret or reached the store")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateUser = %v", err)
			}
			if u.Email != tc.wantEmail || u.InstanceAdmin {
				t.Errorf("user = %+v, want e-mail %q and no instance admin", u, tc.wantEmail)
			}
			if err := ValidateToken(secret); err != nil {
				t.Fatalf("first token malformed: %v", err)
			}
			if len(st.userTokens) != 1 || st.userTokens[0].Hash != HashToken(secret) || st.userTokens[0].Token.UserID != u.ID {
				t.Errorf("stored token = %+v, want the new user's token hashed", st.userTokens)
			}
		})
	}
}

func TestBootstrap(t *testing.T) {
	supplied := genToken(t)
	good := BootstrapRequest{Email: "Owner@Example.com", Name: "Owner", TenantSlug: "acme", TenantName: "Acme"}
	with := func(f func(*BootstrapRequest)) BootstrapRequest {
		r := good
		f(&r)
		return r
	}
	tests := []struct {
		name string
		req  BootstrapRequest
		code string // "" for success
	}{
		{"generated token", good, ""},
		{"supplied token", with(func(r *BootstrapRequest) { r.Token = supplied }), ""},
		{"bad e-mail", with(func(r *BootstrapRequest) { r.Email = "owner" }), coffer.EINVALID},
		{"empty e-mail", with(func(r *BootstrapRequest) { r.Email = "" }), coffer.EINVALID},
		{"display-name e-mail", with(func(r *BootstrapRequest) { r.Email = "Owner <owner@example.com>" }), coffer.EINVALID},
		{"empty name", with(func(r *BootstrapRequest) { r.Name = "" }), coffer.EINVALID},
		{"uppercase slug", with(func(r *BootstrapRequest) { r.TenantSlug = "Acme" }), coffer.EINVALID},
		{"slug with space", with(func(r *BootstrapRequest) { r.TenantSlug = "ac me" }), coffer.EINVALID},
		{"trailing hyphen slug", with(func(r *BootstrapRequest) { r.TenantSlug = "acme-" }), coffer.EINVALID},
		{"empty slug", with(func(r *BootstrapRequest) { r.TenantSlug = "" }), coffer.EINVALID},
		{"empty tenant name", with(func(r *BootstrapRequest) { r.TenantName = " " }), coffer.EINVALID},
		{"short token", with(func(r *BootstrapRequest) { r.Token = "cfr_pat_" + strings.Repeat("a", 31) }), coffer.EINVALID},
		{"long token", with(func(r *BootstrapRequest) { r.Token = "cfr_pat_" + strings.Repeat("a", 129) }), coffer.EINVALID},
		{"foreign token", with(func(r *BootstrapRequest) { r.Token = "ghp_" + strings.Repeat("a", 40) }), coffer.EINVALID},
		{"token with bad character", with(func(r *BootstrapRequest) { r.Token = "cfr_pat_" + strings.Repeat("a", 40) + "!" }), coffer.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, _ := newTestService(t)
			u, secret, err := svc.Bootstrap(context.Background(), tc.req)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				if secret != "" || st.writes() != 0 {
					t.Fatal("rejected bootstrap returned a secret or reached the store")
				}
				if tc.req.Token != "" && strings.Contains(err.Error(), tc.req.Token) {
					t.Errorf("error %q echoes the token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Bootstrap = %v", err)
			}
			if tc.req.Token != "" && secret != tc.req.Token {
				t.Errorf("returned token %q, want the supplied one", secret)
			}
			if err := ValidateToken(secret); err != nil {
				t.Fatalf("token malformed: %v", err)
			}
			if !u.InstanceAdmin || u.Email != "owner@example.com" {
				t.Errorf("user = %+v, want instance admin owner@example.com", u)
			}
			if len(st.bootstraps) != 1 || st.bootstraps[0].Hash != HashToken(secret) {
				t.Fatalf("store got %+v, want the token's hash", st.bootstraps)
			}
			if st.bootTenants[0].Slug != "acme" || st.bootstraps[0].Token.UserID != u.ID {
				t.Errorf("tenant %+v / token %+v not tied to the new owner", st.bootTenants[0], st.bootstraps[0].Token)
			}
		})
	}
	t.Run("already bootstrapped", func(t *testing.T) {
		svc, st, _ := newTestService(t)
		st.bootstrapErr = fmt.Errorf("store: %w", ErrAlreadyBootstrapped)
		_, secret, err := svc.Bootstrap(context.Background(), good)
		wantCode(t, err, coffer.ECONFLICT)
		if !errors.Is(err, ErrAlreadyBootstrapped) || secret != "" {
			t.Fatalf("Bootstrap = %q, %v; want ErrAlreadyBootstrapped and no token", secret, err)
		}
	})
}

func TestAuthorizeScope(t *testing.T) {
	alice := User{ID: "u-alice"}
	acme := tenant.Tenant{ID: "t-acme", Slug: "acme"}
	web := &tenant.Project{ID: "p-web", Slug: "web"}
	prod := &tenant.Environment{ID: "e-prod", Slug: "production", Protected: true}
	past := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	valid := TokenRecord{Token: Token{ID: "t-1"}, User: alice}
	revoked := TokenRecord{Token: Token{ID: "t-1"}, User: alice, RevokedAt: &past}
	expired := TokenRecord{Token: Token{ID: "t-1", ExpiresAt: &past}, User: alice}
	notFound := coffer.Errorf(coffer.ENOTFOUND, "tenant not found")
	tests := []struct {
		name     string
		rec      *TokenRecord // nil: the token is unknown
		malform  bool
		scope    tenant.Scope
		scopeErr error
		code     string // "" for success
	}{
		{"member of the project", &valid, false, tenant.Scope{Tenant: acme, Role: tenant.RoleMember, Project: web, ProjectRole: tenant.ProjectDeveloper, Environment: prod}, nil, ""},
		{"tenant owner", &valid, false, tenant.Scope{Tenant: acme, Role: tenant.RoleOwner, Project: web, Environment: prod}, nil, ""},
		{"unknown token", nil, false, tenant.Scope{}, nil, coffer.EUNAUTHORIZED},
		{"malformed token", nil, true, tenant.Scope{}, nil, coffer.EUNAUTHORIZED},
		{"revoked token", &revoked, false, tenant.Scope{Tenant: acme, Role: tenant.RoleOwner}, nil, coffer.EUNAUTHORIZED},
		{"expired token", &expired, false, tenant.Scope{Tenant: acme, Role: tenant.RoleOwner}, nil, coffer.EUNAUTHORIZED},
		// A dead token is unauthorized before anything is said about the tenant.
		{"revoked token, missing tenant", &revoked, false, tenant.Scope{}, notFound, coffer.EUNAUTHORIZED},
		{"valid token, missing tenant", &valid, false, tenant.Scope{}, notFound, coffer.ENOTFOUND},
		{"project without membership", &valid, false, tenant.Scope{Tenant: acme, Role: tenant.RoleMember, Project: web}, nil, coffer.ENOTFOUND},
		{"environment overridden to none", &valid, false, tenant.Scope{Tenant: acme, Role: tenant.RoleMember, Project: web, ProjectRole: tenant.ProjectAdmin, Environment: prod, Override: tenant.AccessNone}, nil, coffer.ENOTFOUND},
	}
	var messages []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, _ := newTestService(t)
			tok := genToken(t)
			if tc.malform {
				tok = tok[:20]
			}
			if tc.rec != nil {
				st.add(tok, *tc.rec)
			}
			st.scope, st.scopeErr = tc.scope, tc.scopeErr
			p, sc, err := svc.AuthorizeScope(context.Background(), tok, "acme", "web", "production")
			if tc.code == "" {
				if err != nil {
					t.Fatalf("AuthorizeScope = %v", err)
				}
				if p.User != alice || sc.Tenant != acme || sc.Project != web || sc.Environment != prod {
					t.Fatalf("got %+v, %+v", p, sc)
				}
				return
			}
			wantCode(t, err, tc.code)
			if sc.Tenant.ID != "" || sc.Project != nil || sc.Environment != nil {
				t.Errorf("scope %+v returned with an error", sc)
			}
			if tc.code == coffer.EUNAUTHORIZED {
				if p != (Principal{}) || st.touchCount() != 0 {
					t.Errorf("rejected token produced principal %+v or was touched", p)
				}
				messages = append(messages, coffer.ErrorMessage(err))
			}
		})
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("rejections differ: %q vs %q", messages[0], m)
		}
	}
	t.Run("store fault", func(t *testing.T) {
		svc, st, _ := newTestService(t)
		st.lookupFn = func(string) (TokenRecord, error) {
			return TokenRecord{}, coffer.Errorf(coffer.EUNAVAILABLE, "database down")
		}
		_, _, err := svc.AuthorizeScope(context.Background(), genToken(t), "acme", "", "")
		wantCode(t, err, coffer.EUNAVAILABLE)
	})
}
