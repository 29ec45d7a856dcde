package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

func TestSafeReturnPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "/",
		"/":                             "/",
		"/api/v1/me":                    "/api/v1/me",
		"/tenants/acme?tab=keys#x":      "/tenants/acme?tab=keys#x",
		"//evil.example.com/":           "/",
		"/\\evil.example.com":           "/",
		"https://evil.example.com/":     "/",
		"javascript:alert(1)":           "/",
		"evil.example.com":              "/",
		"/a\r\nSet-Cookie: x=y":         "/",
		"/a\x00b":                       "/",
		"/%2F%2Fevil.example.com":       "/%2F%2Fevil.example.com", // a path, percent-encoded: stays here
		"/a\tb":                         "/",
		"/" + strings.Repeat("a", 1100): "/",
	} {
		if got := SafeReturnPath(in); got != want {
			t.Errorf("SafeReturnPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckIDClaims(t *testing.T) {
	good := IDClaims{Issuer: "https://idp", Subject: "s", Audience: []string{"coffer"}, Nonce: "n"}
	if err := CheckIDClaims(good, "coffer", "n"); err != nil {
		t.Fatalf("good claims refused: %v", err)
	}
	bad := map[string]func(c *IDClaims){
		"wrong nonce":             func(c *IDClaims) { c.Nonce = "m" },
		"empty nonce":             func(c *IDClaims) { c.Nonce = "" },
		"other audience":          func(c *IDClaims) { c.Audience = []string{"other"} },
		"several audiences":       func(c *IDClaims) { c.Audience = []string{"other", "coffer"} },
		"azp of another client":   func(c *IDClaims) { c.Audience, c.AuthorizedParty = []string{"other", "coffer"}, "other" },
		"subject with a NUL byte": func(c *IDClaims) { c.Subject = "a\x00" },
		"no subject":              func(c *IDClaims) { c.Subject = "" },
	}
	for name, mutate := range bad {
		c := good
		c.Audience = append([]string(nil), good.Audience...)
		mutate(&c)
		nonce := "n"
		if name == "empty nonce" {
			nonce = ""
		}
		if err := CheckIDClaims(c, "coffer", nonce); coffer.ErrorCode(err) != coffer.EUNAUTHORIZED {
			t.Errorf("%s: err = %v, want unauthorized", name, err)
		}
	}
	c := good
	c.Audience, c.AuthorizedParty = []string{"other", "coffer"}, "coffer"
	if err := CheckIDClaims(c, "coffer", "n"); err != nil {
		t.Errorf("several audiences with azp = this client refused: %v", err)
	}
}

// fakeOIDCStore records what sign-in asked of it.
type fakeOIDCStore struct {
	linked   map[string]User
	signedUp []User
	taken    bool
	states   int
}

func (f *fakeOIDCStore) CreateLoginState(context.Context, LoginState) error { f.states++; return nil }
func (f *fakeOIDCStore) TakeLoginState(context.Context, string, time.Time) (LoginState, error) {
	f.states--
	return LoginState{}, coffer.Errorf(coffer.ENOTFOUND, "sign-in not found")
}
func (f *fakeOIDCStore) UserByIdentity(_ context.Context, iss, sub string) (User, error) {
	if u, ok := f.linked[iss+"|"+sub]; ok {
		return u, nil
	}
	return User{}, coffer.Errorf(coffer.ENOTFOUND, "identity not found")
}
func (f *fakeOIDCStore) SignUpIdentity(_ context.Context, u User, _ Identity, _ bool, _ time.Time, _ audit.Entry, _ []audit.Entry) ([]tenant.Accepted, error) {
	if f.taken {
		return nil, ErrEmailTaken
	}
	f.signedUp = append(f.signedUp, u)
	return nil, nil
}

func TestOIDCSignInRules(t *testing.T) {
	ctx := context.Background()
	disabledAt := time.Now()
	st := &fakeOIDCStore{linked: map[string]User{
		"https://idp|linked":   {ID: "u1", Email: "old@example.com"},
		"https://idp|disabled": {ID: "u2", DisabledAt: &disabledAt},
	}}
	o := NewOIDC(st, func() string { return "new-user" }, SignupOpen)
	claims := func(sub, email string, verified bool) IDClaims {
		return IDClaims{Issuer: "https://idp", Subject: sub, Email: email, EmailVerified: verified}
	}

	// A linked identity is its user, whatever the e-mail says now, verified or not.
	if u, err := o.SignIn(ctx, audit.System, claims("linked", "someone-else@example.com", false)); err != nil || u.ID != "u1" {
		t.Fatalf("linked identity: %v %v", u, err)
	}
	if _, err := o.SignIn(ctx, audit.System, claims("disabled", "d@example.com", true)); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled user: %v", err)
	}
	// A new identity needs a verified, usable address, before anything is written.
	if _, err := o.SignIn(ctx, audit.System, claims("new", "ada@example.com", false)); !errors.Is(err, ErrEmailUnverified) {
		t.Fatalf("unverified e-mail: %v", err)
	}
	if _, err := o.SignIn(ctx, audit.System, claims("new", "not an address", true)); coffer.ErrorCode(err) != coffer.EFORBIDDEN {
		t.Fatalf("unusable e-mail: %v", err)
	}
	if len(st.signedUp) != 0 {
		t.Fatalf("refused sign-ins created users: %v", st.signedUp)
	}
	u, err := o.SignIn(ctx, audit.System, claims("new", "Ada@Example.com", true))
	if err != nil || u.Email != "ada@example.com" || u.ID != "new-user" {
		t.Fatalf("sign-up: %v %v", u, err)
	}
	st.taken = true
	if _, err := o.SignIn(ctx, audit.System, claims("new2", "ada@example.com", true)); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("address of an unlinked user: %v", err)
	}
}

// TestOIDCTakeLoginNeedsCookie: a state that is not the cookie's is refused without even
// consuming the stored one.
func TestOIDCTakeLoginNeedsCookie(t *testing.T) {
	st := &fakeOIDCStore{}
	o := NewOIDC(st, func() string { return "id" }, SignupInvite)
	for _, tc := range [][2]string{{"", ""}, {"abc", ""}, {"abc", "abd"}, {"", "abc"}} {
		if _, err := o.TakeLogin(context.Background(), tc[0], tc[1]); !errors.Is(err, ErrLoginState) {
			t.Errorf("state %q, cookie %q: err = %v", tc[0], tc[1], err)
		}
	}
	if st.states != 0 {
		t.Fatal("a mismatched state reached the store")
	}
	if _, err := o.TakeLogin(context.Background(), "abc", "abc"); !errors.Is(err, ErrLoginState) {
		t.Fatalf("unknown state: %v", err)
	}
}
