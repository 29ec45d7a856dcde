package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"
	"unicode"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// Device authorization (RFC 8628 in spirit) signs a command-line client in through a browser:
// the client asks for a device code and a short user code; the user opens the server's page,
// signed in as usual, checks that the code is the one the client shows and approves; the
// client, polling with its device code, then receives a personal token of its own that expires.
// The token is minted when the client collects it, not at approval, so no token ever waits at
// rest, and an approval nobody collects creates nothing. Only SHA-256 hashes of the two codes
// are stored.

// Device authorization states.
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceRedeemed = "redeemed" // the client collected its token
	// DeviceExpired and DeviceSlowDown are answers to a poll, never stored.
	DeviceExpired  = "expired"
	DeviceSlowDown = "slow_down"
)

const (
	// DeviceCodeLifetime is how long a user has to approve.
	DeviceCodeLifetime = 10 * time.Minute
	// DevicePollInterval is how often a client may poll; faster polls are told to slow down.
	DevicePollInterval = 2 * time.Second
	// DeviceTokenDefaultDays and DeviceTokenMaxDays bound the token a device sign-in yields.
	DeviceTokenDefaultDays = 30
	DeviceTokenMaxDays     = 90
)

// userCodeAlphabet has no vowels (no words) and no look-alike characters.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// DeviceAuthorization is one device sign-in in progress.
type DeviceAuthorization struct {
	ID string
	// ClientName is what the client called itself ("coffer CLI on build-7"); SourceIP and
	// UserAgent are the starting request's, shown to the approver.
	ClientName, SourceIP, UserAgent string
	TokenDays                       int
	Status                          string
	// UserID is the approver (or refuser); TokenID the token the client collected.
	UserID, TokenID string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	DecidedAt       *time.Time
	LastPolledAt    *time.Time
	// User is the approver, set once the client collected its token.
	User User
}

// DeviceStore keeps device authorizations.
type DeviceStore interface {
	// CreateDeviceAuthorization stores a pending authorization (and forgets long-expired
	// ones); ECONFLICT if either code's hash is taken.
	CreateDeviceAuthorization(ctx context.Context, d DeviceAuthorization, deviceHash, userHash string) error
	// DeviceAuthorizationByUserCode finds an authorization by its user code's hash;
	// ENOTFOUND if none.
	DeviceAuthorizationByUserCode(ctx context.Context, userHash string) (DeviceAuthorization, error)
	// DecideDeviceAuthorization approves or denies a pending, unexpired authorization for
	// userID and appends e; ECONFLICT if it is no longer pending or has expired.
	DecideDeviceAuthorization(ctx context.Context, id, userID string, approve bool, at time.Time, e audit.Entry) error
	// PollDeviceAuthorization records a poll of the authorization with that device code's
	// hash and returns it, with Status DeviceSlowDown for a poll sooner than minInterval after
	// the last and DeviceExpired past its expiry. An approved one is redeemed in the same
	// transaction: mint gives the token (with its hash and audit entry) to store, and the
	// authorization becomes DeviceRedeemed with that token, unless its user is disabled, when
	// it becomes DeviceDenied. ENOTFOUND if no such code.
	PollDeviceAuthorization(ctx context.Context, deviceHash string, at time.Time, minInterval time.Duration,
		mint func(d DeviceAuthorization) (Token, string, audit.Entry)) (DeviceAuthorization, error)
}

// DeviceStart is what a client gets when it starts a device sign-in.
type DeviceStart struct {
	DeviceCode string
	UserCode   string
	ExpiresAt  time.Time
	Interval   time.Duration
}

// StartDeviceAuthorization begins a device sign-in for a client that will get a token living
// tokenDays (0: the default).
func (s *Service) StartDeviceAuthorization(ctx context.Context, clientName, sourceIP, userAgent string, tokenDays int) (DeviceStart, error) {
	if tokenDays == 0 {
		tokenDays = DeviceTokenDefaultDays
	}
	if tokenDays < 1 || tokenDays > DeviceTokenMaxDays {
		return DeviceStart{}, coffer.Errorf(coffer.EINVALID, "expires_in_days must be from 1 to %d", DeviceTokenMaxDays)
	}
	clientName = strings.TrimSpace(clientName)
	if clientName == "" || len(clientName) > 100 || strings.IndexFunc(clientName, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return DeviceStart{}, coffer.Errorf(coffer.EINVALID, "client_name must be 1 to 100 printable characters")
	}
	if len(userAgent) > 200 {
		userAgent = userAgent[:200]
	}
	now := s.now()
	for range 3 {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return DeviceStart{}, err
		}
		deviceCode := "cfr_dev_" + base64.RawURLEncoding.EncodeToString(raw[:])
		userCode, err := newUserCode()
		if err != nil {
			return DeviceStart{}, err
		}
		d := DeviceAuthorization{ID: s.newID(), ClientName: clientName, SourceIP: sourceIP, UserAgent: userAgent,
			TokenDays: tokenDays, Status: DevicePending, CreatedAt: now, ExpiresAt: now.Add(DeviceCodeLifetime)}
		err = s.store.CreateDeviceAuthorization(ctx, d, HashToken(deviceCode), HashToken(userCode))
		if coffer.ErrorCode(err) == coffer.ECONFLICT {
			continue // a user code still in the table; draw again
		}
		if err != nil {
			return DeviceStart{}, err
		}
		return DeviceStart{DeviceCode: deviceCode, UserCode: userCode, ExpiresAt: d.ExpiresAt, Interval: DevicePollInterval}, nil
	}
	return DeviceStart{}, coffer.Errorf(coffer.EUNAVAILABLE, "no free user code; try again")
}

// newUserCode draws eight letters of userCodeAlphabet, shown as XXXX-XXXX (about 34 bits:
// guessing one within its ten minutes needs a signed-in user, limited in attempts).
func newUserCode() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	out := make([]byte, 0, 9)
	for i, x := range b {
		if i == 4 {
			out = append(out, '-')
		}
		// 256 is not a multiple of 20; the bias (at most 1/256 per letter) does not matter
		// for a code that lives ten minutes.
		out = append(out, userCodeAlphabet[int(x)%len(userCodeAlphabet)])
	}
	return string(out), nil
}

// NormalizeUserCode turns what a user typed (any case, with or without the dash or spaces)
// into the XXXX-XXXX form; ok is false when it cannot be a user code.
func NormalizeUserCode(in string) (string, bool) {
	var letters []byte
	for _, r := range strings.ToUpper(in) {
		switch {
		case r == '-' || r == ' ':
		case r < 128 && strings.IndexByte(userCodeAlphabet, byte(r)) >= 0:
			letters = append(letters, byte(r))
		default:
			return "", false
		}
	}
	if len(letters) != 8 {
		return "", false
	}
	return string(letters[:4]) + "-" + string(letters[4:]), true
}

// DeviceAuthorizationByCode finds a pending, unexpired device sign-in by its user code, for
// the approval page; ENOTFOUND otherwise.
func (s *Service) DeviceAuthorizationByCode(ctx context.Context, userCode string) (DeviceAuthorization, error) {
	code, ok := NormalizeUserCode(userCode)
	if !ok {
		return DeviceAuthorization{}, coffer.Errorf(coffer.EINVALID, "a code is eight letters, like BCDF-GHJK")
	}
	d, err := s.store.DeviceAuthorizationByUserCode(ctx, HashToken(code))
	if err != nil {
		return DeviceAuthorization{}, err
	}
	if d.Status != DevicePending || !s.now().Before(d.ExpiresAt) {
		return DeviceAuthorization{}, coffer.Errorf(coffer.ENOTFOUND, "no sign-in is waiting for that code: it expired or was already answered; start again with `coffer login`")
	}
	return d, nil
}

// DecideDeviceAuthorization approves (or denies) the device sign-in with that user code on
// behalf of the signed-in principal. The token the client then collects reaches what the
// user's personal tokens reach, so a session confined to one tenant's provider cannot approve.
func (s *Service) DecideDeviceAuthorization(ctx context.Context, actor audit.Actor, p Principal, userCode string, approve bool) (DeviceAuthorization, error) {
	if p.IdPID != "" && approve {
		return DeviceAuthorization{}, coffer.Errorf(coffer.EFORBIDDEN, "a session started through a tenant's identity provider cannot approve a device sign-in; sign in another way")
	}
	d, err := s.DeviceAuthorizationByCode(ctx, userCode)
	if err != nil {
		return d, err
	}
	action, status := audit.ActionDeviceDeny, DeviceDenied
	if approve {
		action, status = audit.ActionDeviceApprove, DeviceApproved
	}
	e := actor.New(action, "", "device_authorization", d.ID, d.ClientName,
		map[string]any{"user": p.User.ID, "client": d.ClientName, "client_ip": d.SourceIP, "token_days": d.TokenDays})
	if err := s.store.DecideDeviceAuthorization(ctx, d.ID, p.User.ID, approve, s.now(), e); err != nil {
		return d, err
	}
	d.Status, d.UserID = status, p.User.ID
	return d, nil
}

// PollDeviceAuthorization is a client's poll with its device code. Until the user answers it
// is DevicePending (or DeviceSlowDown, polled too soon); once approved, the first poll gets
// the token, returned this once, and the authorization is spent.
func (s *Service) PollDeviceAuthorization(ctx context.Context, actor audit.Actor, deviceCode string) (DeviceAuthorization, Token, string, error) {
	if !strings.HasPrefix(deviceCode, "cfr_dev_") || len(deviceCode) > 100 {
		return DeviceAuthorization{}, Token{}, "", coffer.Errorf(coffer.EINVALID, "device_code is not one this server issued")
	}
	var (
		tok     Token
		secret  string
		mintErr error
	)
	now := s.now()
	d, err := s.store.PollDeviceAuthorization(ctx, HashToken(deviceCode), now, DevicePollInterval/2, func(d DeviceAuthorization) (Token, string, audit.Entry) {
		secret, mintErr = NewToken()
		exp := now.Add(time.Duration(d.TokenDays) * 24 * time.Hour)
		tok = Token{ID: s.newID(), UserID: d.UserID, Name: deviceTokenName(d.ClientName), DisplayPrefix: DisplayPrefix(secret),
			ExpiresAt: &exp, CreatedAt: now}
		a := actor
		a.Kind, a.ID = "device_code", d.UserID
		e := a.New(audit.ActionTokenCreate, "", "token", tok.ID, tok.DisplayPrefix,
			map[string]any{"name": tok.Name, "user": d.UserID, "device_authorization": d.ID})
		return tok, HashToken(secret), e
	})
	if err != nil {
		return d, Token{}, "", err
	}
	if mintErr != nil {
		return d, Token{}, "", mintErr
	}
	if d.Status != DeviceRedeemed || tok.ID == "" || d.TokenID != tok.ID {
		return d, Token{}, "", nil
	}
	return d, tok, secret, nil
}

// deviceTokenName names a device sign-in's token after its client (at most 100 printable
// characters, so within the name rules).
func deviceTokenName(client string) string { return "CLI: " + client }
