package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// This file is the provider-independent half of OpenID Connect sign-in: the login state that
// binds a callback to the browser that started it, the checks on an ID token's claims that
// go-oidc leaves to its caller, and the rule deciding which user an identity signs in as. The
// protocol itself (discovery, code exchange, signature checks) is HTTP and lives in httpapi.

// LoginStateTTL is how long a started sign-in can be finished.
const LoginStateTTL = 10 * time.Minute

// SignupPolicy says who may become a user by signing in with an identity no user has yet.
type SignupPolicy string

const (
	// SignupInvite lets a new identity in only with a pending invitation for its verified
	// e-mail address: the default, so that an instance is not open to everyone at its IdP.
	SignupInvite SignupPolicy = "invite"
	// SignupOpen lets anyone the IdP vouches for (with a verified e-mail) become a user.
	SignupOpen SignupPolicy = "open"
)

// LoginState is a sign-in in progress, kept on the server between the redirect to the
// provider and the callback. Only a SHA-256 of the state is stored: the state itself is in
// the browser's pre-login cookie and the callback URL.
type LoginState struct {
	StateHash string
	Nonce     string
	Verifier  string // PKCE code verifier
	ReturnTo  string // a same-site path
	// IdPID names the tenant provider of the sign-in; "" for the instance's.
	IdPID string
	// LinkUserID is the signed-in user who asked to link the identity, for a link; "" for
	// a sign-in.
	LinkUserID string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// Login is what starting a sign-in hands to the transport: the state for the cookie and the
// authorization URL, the nonce for the URL.
type Login struct {
	State string
	Nonce string
}

// Identity links an account at an OpenID provider, (issuer, subject), to a user. Email is the
// address the provider gave when the link was made, kept for admins; it is never matched on.
type Identity struct {
	Issuer    string
	Subject   string
	UserID    string
	Email     string
	CreatedAt time.Time
}

// IDClaims are the claims of an ID token whose signature, issuer, audience and expiry have
// been verified; the rest is checked here.
type IDClaims struct {
	Issuer          string
	Subject         string
	Audience        []string
	AuthorizedParty string // azp
	Nonce           string
	Email           string
	EmailVerified   bool
	Name            string
}

// OIDCStore persists sign-in state and identities.
type OIDCStore interface {
	// CreateLoginState stores a login state and drops expired ones.
	CreateLoginState(ctx context.Context, st LoginState) error
	// TakeLoginState deletes the login state with that hash and returns it if it had not
	// expired at now; ENOTFOUND otherwise. Of two concurrent takes, one gets it.
	TakeLoginState(ctx context.Context, stateHash string, now time.Time) (LoginState, error)
	// UserByIdentity returns the user linked to (issuer, subject); ENOTFOUND if none.
	UserByIdentity(ctx context.Context, issuer, subject string) (User, error)
	// SignUpIdentity creates u, links id to it and accepts every pending invitation for
	// u.Email (each audited with a copy of accept completed by the store), in one
	// transaction. It refuses with ErrEmailTaken when a user already has u.Email, with
	// ErrSignupClosed when open is false and no invitation is pending, and with ECONFLICT
	// when the identity was linked concurrently. entries are appended with the change.
	SignUpIdentity(ctx context.Context, u User, id Identity, open bool, now time.Time, accept audit.Entry, entries []audit.Entry) ([]tenant.Accepted, error)
}

// Sign-in refusals. Each says what happened and what to do, since the person reading it has
// just proved who they are at their provider.
var (
	ErrLoginState = coffer.Errorf(coffer.EBADREQUEST,
		"this sign-in is unknown, has expired or was already used; start the sign-in again")
	ErrIDToken = coffer.Errorf(coffer.EUNAUTHORIZED,
		"the identity provider's answer could not be verified; start the sign-in again")
	ErrEmailUnverified = coffer.Errorf(coffer.EFORBIDDEN,
		"your identity provider has not verified your e-mail address, so it cannot be used to create an account here; verify it there and try again")
	ErrSignupClosed = coffer.Errorf(coffer.EFORBIDDEN,
		"there is no account for you here and sign-up is by invitation only: ask a tenant admin to invite your e-mail address")
	ErrEmailTaken = coffer.Errorf(coffer.EFORBIDDEN,
		"an account with your e-mail address already exists but is not linked to this identity provider account; ask an instance admin to link them")
	ErrUserDisabled = coffer.Errorf(coffer.EFORBIDDEN, "this account is disabled; ask an instance admin")
)

// OIDC runs sign-in with OpenID Connect identities.
type OIDC struct {
	store  OIDCStore
	newID  func() string
	now    func() time.Time
	signup SignupPolicy
}

// NewOIDC returns an OIDC.
func NewOIDC(store OIDCStore, newID func() string, signup SignupPolicy) *OIDC {
	return &OIDC{store: store, newID: newID, now: func() time.Time { return time.Now().UTC() }, signup: signup}
}

// verifierRE is RFC 7636's code verifier: 43 to 128 unreserved characters.
var verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// StartLogin records a new sign-in with its PKCE verifier and the path to return to, and
// returns the fresh state and nonce.
func (o *OIDC) StartLogin(ctx context.Context, verifier, returnTo string) (Login, error) {
	return o.StartLoginFor(ctx, verifier, returnTo, "", "")
}

// StartLoginFor is StartLogin through the tenant provider idpID, linking the identity to
// linkUserID when that is set.
func (o *OIDC) StartLoginFor(ctx context.Context, verifier, returnTo, idpID, linkUserID string) (Login, error) {
	if !verifierRE.MatchString(verifier) {
		return Login{}, coffer.Errorf(coffer.EINTERNAL, "malformed PKCE verifier")
	}
	state, err := randomString()
	if err != nil {
		return Login{}, err
	}
	nonce, err := randomString()
	if err != nil {
		return Login{}, err
	}
	now := o.now()
	st := LoginState{StateHash: hashState(state), Nonce: nonce, Verifier: verifier, ReturnTo: SafeReturnPath(returnTo),
		IdPID: idpID, LinkUserID: linkUserID, CreatedAt: now, ExpiresAt: now.Add(LoginStateTTL)}
	if err := o.store.CreateLoginState(ctx, st); err != nil {
		return Login{}, err
	}
	return Login{State: state, Nonce: nonce}, nil
}

// TakeLogin consumes the sign-in a callback names. The state in the query must equal the one
// in the browser's pre-login cookie (so a callback URL replayed into another browser fails)
// and must name a live login state, which is deleted here whatever happens next (so a
// callback replayed into the same browser fails too).
func (o *OIDC) TakeLogin(ctx context.Context, queryState, cookieState string) (LoginState, error) {
	if queryState == "" || len(queryState) > 256 || subtle.ConstantTimeCompare([]byte(queryState), []byte(cookieState)) != 1 {
		return LoginState{}, ErrLoginState
	}
	st, err := o.store.TakeLoginState(ctx, hashState(queryState), o.now())
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return LoginState{}, ErrLoginState
	}
	return st, err
}

// CheckIDClaims checks what go-oidc's verifier leaves to its caller: the nonce this sign-in
// sent, and, when the token names several audiences, that it was issued to this client (azp).
func CheckIDClaims(c IDClaims, clientID, nonce string) error {
	if nonce == "" || subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(nonce)) != 1 {
		return coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("nonce mismatch"), ErrIDToken.Message)
	}
	if len(c.Audience) > 1 && c.AuthorizedParty != clientID {
		return coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("azp is not this client"), ErrIDToken.Message)
	}
	if !slices.Contains(c.Audience, clientID) {
		return coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("audience is not this client"), ErrIDToken.Message)
	}
	// The subject keys the identity: hold it to what OpenID Connect allows and the database
	// can store.
	if c.Subject == "" || len(c.Subject) > 255 || !utf8.ValidString(c.Subject) || strings.ContainsRune(c.Subject, 0) {
		return coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("malformed subject"), ErrIDToken.Message)
	}
	return nil
}

// SignIn signs a verified identity in, creating its user when the rule allows:
//
//   - An identity already linked, by (issuer, subject), signs in as its user, whatever its
//     e-mail says today.
//   - Otherwise its e-mail must be verified by the provider: that is the only fact tying the
//     identity to an address.
//   - An identity is never linked to an existing user because the addresses match: whoever
//     controls an account at some provider with that address would take the user over. The
//     person is told to ask an admin, and nothing is written.
//   - A new user is created, with the identity linked, only when sign-up is open or a pending
//     invitation exists for the verified address; every such invitation is accepted with it.
//     A verified address proves control of the mailbox, which is what the invitation's
//     e-mailed code proves too.
//
// Telling "an account has your address" apart from "no invitation" reveals nothing to an
// outsider: only someone holding a verified identity for that address gets either answer.
func (o *OIDC) SignIn(ctx context.Context, actor audit.Actor, c IDClaims) (User, error) {
	if err := checkIssuer(c.Issuer); err != nil {
		return User{}, err
	}
	u, err := o.linkedUser(ctx, c)
	if coffer.ErrorCode(err) != coffer.ENOTFOUND {
		return u, err
	}
	if !c.EmailVerified {
		return User{}, ErrEmailUnverified
	}
	email, err := normalizeEmail(c.Email)
	if err != nil {
		return User{}, coffer.Errorf(coffer.EFORBIDDEN, "your identity provider gave no usable e-mail address, so no account can be created for you")
	}
	now := o.now()
	u = User{ID: o.newID(), Email: email, Name: displayName(c.Name, email), CreatedAt: now}
	id := Identity{Issuer: c.Issuer, Subject: c.Subject, UserID: u.ID, Email: email, CreatedAt: now}
	// The new user is the actor of their own sign-up.
	self := actor
	self.Type, self.ID = "user", u.ID
	entries := []audit.Entry{
		self.New(audit.ActionUserCreate, "", "user", u.ID, email, map[string]any{"name": u.Name, "method": "oidc", "issuer": c.Issuer}),
		self.New(audit.ActionUserLink, "", "user", u.ID, email, map[string]any{"issuer": c.Issuer, "subject": c.Subject}),
	}
	accept := self.New(tenant.ActionInvitationAccept, "", "user", u.ID, "", nil)
	if _, err := o.store.SignUpIdentity(ctx, u, id, o.signup == SignupOpen, now, accept, entries); err != nil {
		if coffer.ErrorCode(err) == coffer.ECONFLICT && !errors.Is(err, ErrEmailTaken) {
			// The same identity signed in twice at once and the other request linked it:
			// sign in as that user. If nothing is linked, another identity with the same
			// address won the race for it.
			u, err := o.linkedUser(ctx, c)
			if coffer.ErrorCode(err) == coffer.ENOTFOUND {
				return User{}, ErrEmailTaken
			}
			return u, err
		}
		return User{}, err
	}
	return u, nil
}

// linkedUser is the user the identity is linked to, refused when disabled. The sign-in itself
// is audited when its session starts.
func (o *OIDC) linkedUser(ctx context.Context, c IDClaims) (User, error) {
	u, err := o.store.UserByIdentity(ctx, c.Issuer, c.Subject)
	if err != nil {
		return User{}, err
	}
	if u.DisabledAt != nil {
		return User{}, ErrUserDisabled
	}
	return u, nil
}

// checkIssuer holds the issuer, half of an identity's key, to what the database can store.
func checkIssuer(iss string) error {
	if iss == "" || len(iss) > 1024 || !utf8.ValidString(iss) || strings.ContainsRune(iss, 0) {
		return coffer.Wrap(coffer.EUNAUTHORIZED, errors.New("malformed issuer"), ErrIDToken.Message)
	}
	return nil
}

// displayName is the provider's name for the person when it is one Coffer can store, else
// their address.
func displayName(name, email string) string {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) || strings.ContainsRune(name, 0) || tenant.ValidateName("name", name) != nil {
		return email
	}
	return name
}

// SafeReturnPath returns p if it is a path on this site, else "/". Anything that a browser
// could resolve to another origin (scheme, host, "//", backslashes) is refused, so a sign-in
// link cannot be made to land the user on someone else's page.
func SafeReturnPath(p string) string {
	if p == "" || len(p) > 1024 || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\x00\r\n\t") {
		return "/"
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return p
}

func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}

// randomString is 32 random bytes, base64url: a state or nonce nobody can guess.
func randomString() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
