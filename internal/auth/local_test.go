package auth

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// fakeLocal is an in-memory LocalStore with the same conditions as the SQL one.
type fakeLocal struct {
	mu         sync.Mutex
	users      map[string]User // by id
	passwords  map[string]string
	totp       map[string]*TOTPState
	recovery   map[string]map[string]bool // user > hash > used
	challenges map[string]Challenge       // by hash
	resets     map[string]*fakeReset      // by code hash
	audit      []audit.Entry
}

type fakeReset struct {
	PasswordReset
	used bool
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{users: map[string]User{}, passwords: map[string]string{}, totp: map[string]*TOTPState{},
		recovery: map[string]map[string]bool{}, challenges: map[string]Challenge{}, resets: map[string]*fakeReset{}}
}

func (f *fakeLocal) cred(u User) Credentials {
	st := f.totp[u.ID]
	return Credentials{User: u, PasswordHash: f.passwords[u.ID], TOTPEnabled: st != nil && st.Confirmed}
}

func (f *fakeLocal) Credentials(_ context.Context, email string) (Credentials, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if u.Email == email {
			return f.cred(u), nil
		}
	}
	return Credentials{}, coffer.Errorf(coffer.ENOTFOUND, "user not found")
}

func (f *fakeLocal) CredentialsByID(_ context.Context, id string) (Credentials, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return Credentials{}, coffer.Errorf(coffer.ENOTFOUND, "user not found")
	}
	return f.cred(u), nil
}

func (f *fakeLocal) SetPassword(_ context.Context, id, hash string, _ time.Time, e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwords[id] = hash
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeLocal) UpdatePasswordHash(_ context.Context, id, oldHash, newHash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.passwords[id] == oldHash {
		f.passwords[id] = newHash
	}
	return nil
}

func (f *fakeLocal) CreateChallenge(_ context.Context, ch Challenge, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.challenges[hash] = ch
	return nil
}

func (f *fakeLocal) Challenge(_ context.Context, hash string, now time.Time) (Challenge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.challenges[hash]
	if !ok || !ch.ExpiresAt.After(now) {
		return Challenge{}, coffer.Errorf(coffer.ENOTFOUND, "sign-in not found")
	}
	return ch, nil
}

func (f *fakeLocal) EndChallenge(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, ch := range f.challenges {
		if ch.ID == id {
			delete(f.challenges, h)
			return nil
		}
	}
	return coffer.Errorf(coffer.ENOTFOUND, "sign-in not found")
}

func (f *fakeLocal) TOTP(_ context.Context, id string) (TOTPState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.totp[id]
	if !ok {
		return TOTPState{}, coffer.Errorf(coffer.ENOTFOUND, "authenticator not found")
	}
	return *st, nil
}

func (f *fakeLocal) PutPendingTOTP(_ context.Context, id string, sealed []byte, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.totp[id]; ok && st.Confirmed {
		return coffer.Errorf(coffer.ECONFLICT, "already on")
	}
	f.totp[id] = &TOTPState{Seed: sealed}
	return nil
}

func (f *fakeLocal) ConfirmTOTP(_ context.Context, id string, step int64, hashes []string, _ time.Time, e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.totp[id]
	if !ok || st.Confirmed {
		return coffer.Errorf(coffer.ENOTFOUND, "pending authenticator not found")
	}
	st.Confirmed, st.LastStep = true, step
	f.recovery[id] = map[string]bool{}
	for _, h := range hashes {
		f.recovery[id][h] = false
	}
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeLocal) spend(id string, step int64) error {
	st, ok := f.totp[id]
	if !ok || !st.Confirmed || st.LastStep >= step {
		return ErrCodeUsed
	}
	st.LastStep = step
	return nil
}

func (f *fakeLocal) SpendTOTPStep(_ context.Context, id string, step int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.spend(id, step)
}

func (f *fakeLocal) SpendRecoveryCode(_ context.Context, id, hash string, _ time.Time, e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	used, ok := f.recovery[id][hash]
	if !ok || used {
		return ErrCodeUsed
	}
	f.recovery[id][hash] = true
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeLocal) DisableTOTP(_ context.Context, id string, step int64, e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.spend(id, step); err != nil {
		return err
	}
	delete(f.totp, id)
	delete(f.recovery, id)
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeLocal) CreatePasswordReset(_ context.Context, r PasswordReset, hash string, e audit.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[r.UserID]; !ok {
		return coffer.Errorf(coffer.ENOTFOUND, "user not found")
	}
	for h, old := range f.resets {
		if old.UserID == r.UserID && !old.used {
			delete(f.resets, h)
		}
	}
	f.resets[hash] = &fakeReset{PasswordReset: r}
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeLocal) PasswordReset(_ context.Context, hash string, now time.Time) (PasswordReset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.resets[hash]
	if !ok || r.used || !r.ExpiresAt.After(now) {
		return PasswordReset{}, coffer.Errorf(coffer.ENOTFOUND, "reset link not found")
	}
	return r.PasswordReset, nil
}

func (f *fakeLocal) UsePasswordReset(_ context.Context, hash, pwHash string, now time.Time, entry func(PasswordReset) audit.Entry) (PasswordReset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.resets[hash]
	if !ok || r.used || !r.ExpiresAt.After(now) {
		return PasswordReset{}, coffer.Errorf(coffer.ENOTFOUND, "reset link not found")
	}
	r.used = true
	f.passwords[r.UserID] = pwHash
	f.audit = append(f.audit, entry(r.PasswordReset))
	return r.PasswordReset, nil
}

// plainSealer "seals" by prefixing purpose and owner, enough to check they are passed.
type plainSealer struct{}

func (plainSealer) Seal(_ context.Context, purpose, owner string, p []byte) ([]byte, error) {
	return append([]byte(purpose+"|"+owner+"|"), p...), nil
}

func (plainSealer) Open(_ context.Context, purpose, owner string, s []byte) ([]byte, error) {
	prefix := []byte(purpose + "|" + owner + "|")
	if !bytes.HasPrefix(s, prefix) {
		return nil, errors.New("wrong purpose or owner")
	}
	return bytes.Clone(s[len(prefix):]), nil
}

// localFixture is a Local on a fake store with a settable clock, and a user with a password.
type localFixture struct {
	l    *Local
	st   *fakeLocal
	now  time.Time
	user User
}

func newLocalFixture(t *testing.T) *localFixture {
	t.Helper()
	st := newFakeLocal()
	n := 0
	f := &localFixture{st: st, now: time.Date(2026, 5, 1, 12, 0, 5, 0, time.UTC)}
	f.l = NewLocal(st, plainSealer{}, func() string { n++; return "id-" + strconv.Itoa(n) })
	f.l.SetClock(func() time.Time { return f.now })
	f.user = User{ID: "u1", Email: "ada@example.com", Name: "Ada"}
	st.users[f.user.ID] = f.user
	st.users["u2"] = User{ID: "u2", Email: "nopw@example.com"}
	if err := f.l.SetPassword(context.Background(), audit.System, f.user, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLocalLoginOutcomes(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	res, err := f.l.Login(ctx, " Ada@Example.com ", "correct horse battery", "/x")
	if err != nil || res.User.ID != "u1" || res.Challenge != "" {
		t.Fatalf("Login(right) = %+v, %v", res, err)
	}
	for name, tc := range map[string][2]string{
		"wrong password": {"ada@example.com", "correct horse battery!"},
		"unknown":        {"bob@example.com", "correct horse battery"},
		"no password":    {"nopw@example.com", ""},
		"malformed":      {"ada at example", "correct horse battery"},
		"too long":       {"ada@example.com", "correct horse battery" + string(make([]byte, 300))},
	} {
		if _, err := f.l.Login(ctx, tc[0], tc[1], "/"); !errors.Is(err, ErrBadLogin) {
			t.Errorf("%s: err = %v, want ErrBadLogin", name, err)
		}
	}
	now := f.now
	u := f.st.users["u1"]
	u.DisabledAt = &now
	f.st.users["u1"] = u
	if _, err := f.l.Login(ctx, "ada@example.com", "correct horse battery", "/"); !errors.Is(err, ErrBadLogin) {
		t.Errorf("disabled: err = %v, want ErrBadLogin", err)
	}
}

func TestLocalTOTPSteps(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	en, err := f.l.TOTPEnrolment(ctx, f.user)
	if err != nil || en.Enabled || en.Secret == "" {
		t.Fatalf("TOTPEnrolment = %+v, %v", en, err)
	}
	codeAt := func(t0 time.Time) string {
		c, err := totp.GenerateCode(en.Secret, t0)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	codes, err := f.l.ConfirmTOTP(ctx, audit.System, f.user, codeAt(f.now))
	if err != nil || len(codes) != RecoveryCodeCount {
		t.Fatalf("ConfirmTOTP = %d codes, %v", len(codes), err)
	}
	login := func() string {
		t.Helper()
		res, err := f.l.Login(ctx, "ada@example.com", "correct horse battery", "/after")
		if err != nil || res.Challenge == "" {
			t.Fatalf("Login = %+v, %v; want a challenge", res, err)
		}
		return res.Challenge
	}
	ch := login()
	// The confirming code's step is spent.
	if _, _, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codeAt(f.now)); !errors.Is(err, ErrBadCode) {
		t.Fatalf("the confirming code: %v, want ErrBadCode", err)
	}
	// Half a minute on, the next step's code works, once.
	f.now = f.now.Add(30 * time.Second)
	u, method, to, err := f.l.CompleteLogin(ctx, audit.System, ch, codeAt(f.now))
	if err != nil || u.ID != "u1" || method != MethodTOTP || to != "/after" {
		t.Fatalf("CompleteLogin = %v %q %q %v", u.ID, method, to, err)
	}
	// The challenge is spent with it.
	if _, _, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codeAt(f.now.Add(30*time.Second))); !errors.Is(err, ErrNoChallenge) {
		t.Fatalf("a spent challenge: %v, want ErrNoChallenge", err)
	}
	// A code from an earlier step than the last accepted one is refused too.
	ch = login()
	if _, _, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codeAt(f.now.Add(-30*time.Second))); !errors.Is(err, ErrBadCode) {
		t.Fatalf("an older step: %v, want ErrBadCode", err)
	}
	// A recovery code, once.
	if _, method, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codes[0]); err != nil || method != MethodRecoveryCode {
		t.Fatalf("recovery code: %q %v", method, err)
	}
	ch = login()
	if _, _, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codes[0]); !errors.Is(err, ErrBadCode) {
		t.Fatalf("a used recovery code: %v, want ErrBadCode", err)
	}
	// A challenge lives five minutes.
	f.now = f.now.Add(ChallengeLifetime)
	if _, _, _, err := f.l.CompleteLogin(ctx, audit.System, ch, codeAt(f.now)); !errors.Is(err, ErrNoChallenge) {
		t.Fatalf("an expired challenge: %v, want ErrNoChallenge", err)
	}
	// Turning it off takes a fresh code.
	if err := f.l.DisableTOTP(ctx, audit.System, f.user, "000000"); !errors.Is(err, ErrBadCode) {
		t.Fatalf("disable with a wrong code: %v", err)
	}
	if err := f.l.DisableTOTP(ctx, audit.System, f.user, codeAt(f.now)); err != nil {
		t.Fatalf("disable: %v", err)
	}
	if res, err := f.l.Login(ctx, "ada@example.com", "correct horse battery", "/"); err != nil || res.Challenge != "" {
		t.Fatalf("login after disabling = %+v, %v; want signed in", res, err)
	}
}

func TestLocalPasswordReset(t *testing.T) {
	f := newLocalFixture(t)
	ctx := context.Background()
	admin := Principal{Kind: KindPersonalToken, User: User{ID: "admin", InstanceAdmin: true}}
	if _, _, err := f.l.IssuePasswordReset(ctx, audit.System, Principal{User: f.user}, "u1"); coffer.ErrorCode(err) != coffer.EFORBIDDEN {
		t.Fatalf("a non-admin: %v, want forbidden", err)
	}
	svc := admin
	svc.Kind = KindServiceToken
	if _, _, err := f.l.IssuePasswordReset(ctx, audit.System, svc, "u1"); coffer.ErrorCode(err) != coffer.EFORBIDDEN {
		t.Fatalf("a service token: %v, want forbidden", err)
	}
	if _, _, err := f.l.IssuePasswordReset(ctx, audit.System, admin, "nobody"); coffer.ErrorCode(err) != coffer.ENOTFOUND {
		t.Fatalf("an unknown user: %v, want not found", err)
	}
	code, exp, err := f.l.IssuePasswordReset(ctx, audit.System, admin, "u1")
	if err != nil || !exp.Equal(f.now.Add(ResetLifetime)) {
		t.Fatalf("IssuePasswordReset = %v, %v", exp, err)
	}
	if _, err := f.l.ResetPassword(ctx, audit.System, code, "short"); coffer.ErrorCode(err) != coffer.EINVALID {
		t.Fatalf("a short password: %v, want validation_failed", err)
	}
	if _, err := f.l.ResetPassword(ctx, audit.System, code, "a new passphrase"); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if _, err := f.l.ResetPassword(ctx, audit.System, code, "a newer passphrase"); !errors.Is(err, ErrNoReset) {
		t.Fatalf("the link again: %v, want ErrNoReset", err)
	}
	if _, err := f.l.Login(ctx, "ada@example.com", "a new passphrase", "/"); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	// Links expire after a day.
	code, _, err = f.l.IssuePasswordReset(ctx, audit.System, admin, "u1")
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(ResetLifetime)
	if err := f.l.CheckPasswordReset(ctx, code); !errors.Is(err, ErrNoReset) {
		t.Fatalf("an expired link: %v, want ErrNoReset", err)
	}
	if _, err := f.l.ResetPassword(ctx, audit.System, code, "an expired passphrase"); !errors.Is(err, ErrNoReset) {
		t.Fatalf("an expired link: %v, want ErrNoReset", err)
	}
	for _, bad := range []string{"", "x", code + "x"} {
		if err := f.l.CheckPasswordReset(ctx, bad); !errors.Is(err, ErrNoReset) {
			t.Errorf("CheckPasswordReset(%q) = %v, want ErrNoReset", bad, err)
		}
	}
}
