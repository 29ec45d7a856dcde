package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// Local accounts: an e-mail address and a password, optionally a TOTP second factor with
// single-use recovery codes, and password reset by a one-time link an instance admin issues.

// TOTPPurpose names TOTP seeds to the field sealer; the owner is the user id, so a sealed
// seed copied to another user's row does not open.
const TOTPPurpose = "totp-seed"

const (
	// ChallengeLifetime is how long a correct password waits for its second factor.
	ChallengeLifetime = 5 * time.Minute
	// ResetLifetime is how long a password reset link works.
	ResetLifetime = 24 * time.Hour
)

// Sign-in methods recorded on sessions and in the audit log.
const (
	MethodPassword     = "password"
	MethodTOTP         = "password+totp"
	MethodRecoveryCode = "password+recovery_code"
	MethodSetup        = "setup"
)

// Credentials is a user as seen by a password login.
type Credentials struct {
	User         User
	PasswordHash string // empty: the user has no password
	TOTPEnabled  bool
}

// TOTPState is a user's stored second factor. Seed is sealed; Confirmed is false while an
// enrolment waits for its first code.
type TOTPState struct {
	Seed      []byte
	Confirmed bool
	LastStep  int64
}

// Challenge is a login whose password was right and whose second factor is still owed.
type Challenge struct {
	ID        string
	UserID    string
	ReturnTo  string
	ExpiresAt time.Time
}

// PasswordReset is a one-time link to set a user's password.
type PasswordReset struct {
	ID        string
	UserID    string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// LocalStore persists what local accounts need.
type LocalStore interface {
	// Credentials returns the user with that (normalised) e-mail; ENOTFOUND if none.
	Credentials(ctx context.Context, email string) (Credentials, error)
	// CredentialsByID is Credentials by user id.
	CredentialsByID(ctx context.Context, userID string) (Credentials, error)
	// SetPassword stores a user's password hash; ENOTFOUND if there is no such user.
	SetPassword(ctx context.Context, userID, hash string, at time.Time, e audit.Entry) error
	// UpdatePasswordHash replaces a hash with a stronger one of the same password (no audit:
	// nothing the user can see changed).
	UpdatePasswordHash(ctx context.Context, userID, oldHash, newHash string) error

	CreateChallenge(ctx context.Context, ch Challenge, hash string) error
	// Challenge returns the live challenge with that hash; ENOTFOUND if none.
	Challenge(ctx context.Context, hash string, now time.Time) (Challenge, error)
	// EndChallenge deletes a challenge; ENOTFOUND if it was already gone, so that of two
	// requests completing one login only one succeeds.
	EndChallenge(ctx context.Context, id string) error

	// TOTP returns the user's second factor; ENOTFOUND if none.
	TOTP(ctx context.Context, userID string) (TOTPState, error)
	// PutPendingTOTP stores an unconfirmed seed, replacing any other unconfirmed one;
	// ECONFLICT if the user already has a confirmed one.
	PutPendingTOTP(ctx context.Context, userID string, sealed []byte, at time.Time) error
	// ConfirmTOTP confirms the pending seed, spending step, and replaces the user's recovery
	// codes with these hashes; ENOTFOUND if no seed is pending.
	ConfirmTOTP(ctx context.Context, userID string, step int64, codeHashes []string, at time.Time, e audit.Entry) error
	// SpendTOTPStep records step as the user's last accepted step if it is later than the
	// last one, atomically; ErrCodeUsed otherwise.
	SpendTOTPStep(ctx context.Context, userID string, step int64) error
	// SpendRecoveryCode marks an unused code of the user's used and writes e (with the
	// number of codes left) atomically; ErrCodeUsed if no unused code matches.
	SpendRecoveryCode(ctx context.Context, userID, codeHash string, at time.Time, e audit.Entry) error
	// DisableTOTP spends step (as SpendTOTPStep) and deletes the user's seed and recovery
	// codes in one transaction.
	DisableTOTP(ctx context.Context, userID string, step int64, e audit.Entry) error

	// CreatePasswordReset stores a reset link, ending any earlier unused link of the user;
	// ENOTFOUND if there is no such user.
	CreatePasswordReset(ctx context.Context, r PasswordReset, codeHash string, e audit.Entry) error
	// PasswordReset returns the live, unused reset with that code hash; ENOTFOUND if none.
	PasswordReset(ctx context.Context, codeHash string, now time.Time) (PasswordReset, error)
	// UsePasswordReset spends the live reset with that code hash (a conditional update, so
	// only one request can), sets the user's password hash, ends every session and pending
	// login of the user, and writes the entry entry makes, in one transaction; ENOTFOUND if
	// the link is unknown, used or expired.
	UsePasswordReset(ctx context.Context, codeHash, passwordHash string, now time.Time, entry func(PasswordReset) audit.Entry) (PasswordReset, error)
}

// Sealer seals small platform secrets (secrets.Fields implements it).
type Sealer interface {
	Seal(ctx context.Context, purpose, owner string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, purpose, owner string, sealed []byte) ([]byte, error)
}

// Local signs users in with passwords and TOTP.
type Local struct {
	store LocalStore
	seal  Sealer
	newID func() string
	now   func() time.Time
}

// NewLocal returns a Local.
func NewLocal(store LocalStore, seal Sealer, newID func() string) *Local {
	dummyHash() // made now, so the first unknown address does not take longer than the rest
	return &Local{store: store, seal: seal, newID: newID, now: func() time.Time { return time.Now().UTC() }}
}

// SetClock replaces the clock (tests of expiry and TOTP steps).
func (l *Local) SetClock(now func() time.Time) { l.now = now }

// ErrBadLogin is every failed sign-in: unknown address, no password, wrong password, disabled
// user. One answer for all, so the answer tells nobody which addresses have accounts.
var ErrBadLogin = coffer.Errorf(coffer.EUNAUTHORIZED, "the e-mail address or password is not correct")

// ErrBadCode is every failed second factor.
var ErrBadCode = coffer.Errorf(coffer.EUNAUTHORIZED, "the code is not correct, or was already used")

// ErrCodeUsed is what a store answers when a TOTP step or recovery code was already spent.
var ErrCodeUsed = coffer.Errorf(coffer.EUNAUTHORIZED, "the code is not correct, or was already used")

// ErrNoChallenge is a missing, expired or spent second-factor step: sign in again.
var ErrNoChallenge = coffer.Errorf(coffer.EUNAUTHORIZED, "the sign-in has expired; enter your password again")

// ErrNoReset is an unknown, used or expired reset link.
var ErrNoReset = coffer.Errorf(coffer.ENOTFOUND, "this reset link is not valid: it may have been used or have expired; ask an administrator for a new one")

// LoginResult is a correct password: either the user is signed in (Challenge empty), or the
// second factor is owed and Challenge is the secret that continues the login.
type LoginResult struct {
	User      User
	Challenge string
}

// Login checks an e-mail address and password. Every failure is ErrBadLogin and costs one
// Argon2id verification, whether or not the address is known.
func (l *Local) Login(ctx context.Context, email, password, returnTo string) (LoginResult, error) {
	cred, err := l.lookup(ctx, email)
	if err != nil {
		return LoginResult{}, err
	}
	hash := cred.PasswordHash
	if hash == "" {
		hash = dummyHash()
	}
	// A password longer than the rules allow cannot be right; it is still verified (cut to
	// the limit) so that it costs what any other wrong one does.
	pw := password
	if len(pw) > MaxPasswordBytes {
		pw = pw[:MaxPasswordBytes]
	}
	ok, stale, verr := VerifyPassword(hash, pw)
	if verr != nil {
		return LoginResult{}, coffer.Wrap(coffer.EINTERNAL, verr, "internal error")
	}
	if !ok || cred.PasswordHash == "" || len(password) > MaxPasswordBytes || cred.User.DisabledAt != nil {
		return LoginResult{}, ErrBadLogin
	}
	if stale {
		// Best effort: the login succeeds on the old hash either way.
		if newHash, err := HashPassword(password); err == nil {
			_ = l.store.UpdatePasswordHash(ctx, cred.User.ID, cred.PasswordHash, newHash)
		}
	}
	if !cred.TOTPEnabled {
		return LoginResult{User: cred.User}, nil
	}
	secret, err := newSecret()
	if err != nil {
		return LoginResult{}, err
	}
	ch := Challenge{ID: l.newID(), UserID: cred.User.ID, ReturnTo: returnTo, ExpiresAt: l.now().Add(ChallengeLifetime)}
	if err := l.store.CreateChallenge(ctx, ch, HashToken(secret)); err != nil {
		return LoginResult{}, err
	}
	return LoginResult{User: cred.User, Challenge: secret}, nil
}

// lookup finds the credentials for an address; a malformed or unknown address yields empty
// credentials rather than an error, so it takes the same path as a wrong password.
func (l *Local) lookup(ctx context.Context, email string) (Credentials, error) {
	norm, err := normalizeEmail(email)
	if err != nil {
		return Credentials{}, nil
	}
	cred, err := l.store.Credentials(ctx, norm)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Credentials{}, nil
		}
		return Credentials{}, err
	}
	return cred, nil
}

// ChallengeUser returns the user a pending second-factor step belongs to, and where the login
// goes afterwards.
func (l *Local) ChallengeUser(ctx context.Context, secret string) (Challenge, Credentials, error) {
	if !validSecret(secret) {
		return Challenge{}, Credentials{}, ErrNoChallenge
	}
	ch, err := l.store.Challenge(ctx, HashToken(secret), l.now())
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Challenge{}, Credentials{}, ErrNoChallenge
		}
		return Challenge{}, Credentials{}, err
	}
	cred, err := l.store.CredentialsByID(ctx, ch.UserID)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return Challenge{}, Credentials{}, ErrNoChallenge
		}
		return Challenge{}, Credentials{}, err
	}
	if cred.User.DisabledAt != nil || !cred.TOTPEnabled {
		return Challenge{}, Credentials{}, ErrNoChallenge
	}
	return ch, cred, nil
}

// CompleteLogin finishes a login with a TOTP code or a recovery code and returns the user,
// the sign-in method and where to go. The challenge ends only on success, so a mistyped code
// can be tried again (the caller's limiter bounds how often).
func (l *Local) CompleteLogin(ctx context.Context, actor audit.Actor, secret, code string) (User, string, string, error) {
	ch, cred, err := l.ChallengeUser(ctx, secret)
	if err != nil {
		return User{}, "", "", err
	}
	u := cred.User
	method := MethodTOTP
	if code = strings.ReplaceAll(strings.TrimSpace(code), " ", ""); isTOTPCode(code) {
		err = l.checkTOTP(ctx, u.ID, code)
	} else {
		method = MethodRecoveryCode
		err = l.spendRecoveryCode(ctx, actor, u, code)
	}
	if err != nil {
		return User{}, "", "", err
	}
	if err := l.store.EndChallenge(ctx, ch.ID); err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return User{}, "", "", ErrNoChallenge
		}
		return User{}, "", "", err
	}
	return u, method, ch.ReturnTo, nil
}

// checkTOTP accepts a current code of the user's confirmed seed, once.
func (l *Local) checkTOTP(ctx context.Context, userID, code string) error {
	st, err := l.store.TOTP(ctx, userID)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return ErrBadCode
		}
		return err
	}
	if !st.Confirmed {
		return ErrBadCode
	}
	step, err := l.matchSealed(ctx, userID, st, code)
	if err != nil {
		return err
	}
	if step <= st.LastStep {
		return ErrBadCode
	}
	// The stored step is checked again by the update itself: of two requests with the same
	// code, only one moves it.
	return l.store.SpendTOTPStep(ctx, userID, step)
}

// matchSealed opens a stored seed and matches code against it; ErrBadCode if it does not.
func (l *Local) matchSealed(ctx context.Context, userID string, st TOTPState, code string) (int64, error) {
	seed, err := l.seal.Open(ctx, TOTPPurpose, userID, st.Seed)
	if err != nil {
		return 0, err
	}
	defer clear(seed)
	step, ok := MatchTOTP(string(seed), code, l.now())
	if !ok {
		return 0, ErrBadCode
	}
	return step, nil
}

func (l *Local) spendRecoveryCode(ctx context.Context, actor audit.Actor, u User, code string) error {
	if len(code) > 64 {
		return ErrBadCode
	}
	actor.Type, actor.ID = "user", u.ID
	e := actor.New(audit.ActionRecoveryCodeUse, "", "user", u.ID, u.Email, nil)
	err := l.store.SpendRecoveryCode(ctx, u.ID, HashRecoveryCode(code), l.now(), e)
	if errors.Is(err, ErrCodeUsed) {
		return ErrBadCode
	}
	return err
}

// Enrolment is what the TOTP page shows: the seed to type or scan while unconfirmed.
type Enrolment struct {
	Enabled bool
	Secret  string // base32; empty once enabled
	URI     string // otpauth://; empty once enabled
}

// TOTPEnrolment returns the user's TOTP state, making a pending seed if there is none. A
// pending seed is reused until confirmed, so reloading the page does not invalidate what the
// user already scanned.
func (l *Local) TOTPEnrolment(ctx context.Context, u User) (Enrolment, error) {
	st, err := l.store.TOTP(ctx, u.ID)
	switch {
	case err == nil && st.Confirmed:
		return Enrolment{Enabled: true}, nil
	case err == nil:
		seed, err := l.seal.Open(ctx, TOTPPurpose, u.ID, st.Seed)
		if err != nil {
			return Enrolment{}, err
		}
		uri, err := TOTPURI(u.Email, string(seed))
		if err != nil {
			return Enrolment{}, coffer.Wrap(coffer.EINTERNAL, err, "internal error")
		}
		return Enrolment{Secret: string(seed), URI: uri}, nil
	case coffer.ErrorCode(err) != coffer.ENOTFOUND:
		return Enrolment{}, err
	}
	secret, uri, err := NewTOTPKey(u.Email)
	if err != nil {
		return Enrolment{}, err
	}
	sealed, err := l.seal.Seal(ctx, TOTPPurpose, u.ID, []byte(secret))
	if err != nil {
		return Enrolment{}, err
	}
	if err := l.store.PutPendingTOTP(ctx, u.ID, sealed, l.now()); err != nil {
		return Enrolment{}, err
	}
	return Enrolment{Secret: secret, URI: uri}, nil
}

// ConfirmTOTP turns TOTP on with the first code from the user's app and returns the recovery
// codes, once; only their hashes are kept.
func (l *Local) ConfirmTOTP(ctx context.Context, actor audit.Actor, u User, code string) ([]string, error) {
	st, err := l.store.TOTP(ctx, u.ID)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return nil, coffer.Errorf(coffer.ECONFLICT, "start the set-up again: no authenticator is waiting for confirmation")
		}
		return nil, err
	}
	if st.Confirmed {
		return nil, coffer.Errorf(coffer.ECONFLICT, "two-factor sign-in is already on")
	}
	step, err := l.matchSealed(ctx, u.ID, st, code)
	if err != nil {
		return nil, err
	}
	codes, hashes, err := NewRecoveryCodes()
	if err != nil {
		return nil, err
	}
	actor.Type, actor.ID = "user", u.ID
	e := actor.New(audit.ActionTOTPEnable, "", "user", u.ID, u.Email, map[string]any{"recovery_codes": len(codes)})
	if err := l.store.ConfirmTOTP(ctx, u.ID, step, hashes, l.now(), e); err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP turns TOTP off; it takes a current code, so a borrowed session alone cannot.
func (l *Local) DisableTOTP(ctx context.Context, actor audit.Actor, u User, code string) error {
	st, err := l.store.TOTP(ctx, u.ID)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return coffer.Errorf(coffer.ECONFLICT, "two-factor sign-in is not on")
		}
		return err
	}
	if !st.Confirmed {
		return coffer.Errorf(coffer.ECONFLICT, "two-factor sign-in is not on")
	}
	step, err := l.matchSealed(ctx, u.ID, st, code)
	if err != nil {
		return err
	}
	if step <= st.LastStep {
		return ErrBadCode
	}
	actor.Type, actor.ID = "user", u.ID
	e := actor.New(audit.ActionTOTPDisable, "", "user", u.ID, u.Email, nil)
	return l.store.DisableTOTP(ctx, u.ID, step, e)
}

// SetPassword sets a user's password (the first owner at setup). The password is checked
// against the rules first.
func (l *Local) SetPassword(ctx context.Context, actor audit.Actor, u User, password string) error {
	if err := ValidatePassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	e := actor.New(audit.ActionPasswordSet, "", "user", u.ID, u.Email, nil)
	return l.store.SetPassword(ctx, u.ID, hash, l.now(), e)
}

// IssuePasswordReset makes a one-time link code for userID; instance admins only. Only a hash
// of the code is stored; any earlier unused link of the user stops working.
func (l *Local) IssuePasswordReset(ctx context.Context, actor audit.Actor, p Principal, userID string) (string, time.Time, error) {
	if !p.User.InstanceAdmin || p.Kind == KindServiceToken {
		return "", time.Time{}, coffer.Errorf(coffer.EFORBIDDEN, "only instance admins issue password reset links")
	}
	code, err := newSecret()
	if err != nil {
		return "", time.Time{}, err
	}
	now := l.now()
	r := PasswordReset{ID: l.newID(), UserID: userID, CreatedBy: p.User.ID, CreatedAt: now, ExpiresAt: now.Add(ResetLifetime)}
	e := actor.New(audit.ActionPasswordResetIssue, "", "user", userID, userID, map[string]any{"reset_id": r.ID, "expires_at": r.ExpiresAt})
	if err := l.store.CreatePasswordReset(ctx, r, HashToken(code), e); err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return "", time.Time{}, coffer.Errorf(coffer.ENOTFOUND, "user not found")
		}
		return "", time.Time{}, err
	}
	return code, r.ExpiresAt, nil
}

// CheckPasswordReset reports whether a reset code is live, for showing the form.
func (l *Local) CheckPasswordReset(ctx context.Context, code string) error {
	if !validSecret(code) {
		return ErrNoReset
	}
	_, err := l.store.PasswordReset(ctx, HashToken(code), l.now())
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		return ErrNoReset
	}
	return err
}

// ResetPassword spends a reset code and sets the new password; every session of the user
// ends, since whoever held the old password may hold one of them.
func (l *Local) ResetPassword(ctx context.Context, actor audit.Actor, code, password string) (string, error) {
	if !validSecret(code) {
		return "", ErrNoReset
	}
	if err := ValidatePassword(password); err != nil {
		return "", err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return "", err
	}
	r, err := l.store.UsePasswordReset(ctx, HashToken(code), hash, l.now(), func(r PasswordReset) audit.Entry {
		a := actor
		a.Type, a.ID = "user", r.UserID
		return a.New(audit.ActionPasswordReset, "", "user", r.UserID, r.UserID, map[string]any{"reset_id": r.ID, "issued_by": r.CreatedBy})
	})
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return "", ErrNoReset
		}
		return "", err
	}
	return r.UserID, nil
}

// newSecret returns 32 random bytes, base64url encoded: login challenges and reset codes.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// validSecret refuses anything newSecret could not have made, before a query.
func validSecret(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}
