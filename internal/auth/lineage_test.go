package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

func TestChildExpiry(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	day := 24 * time.Hour
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	tests := []struct {
		name      string
		parent    *time.Time // nil: the parent never expires
		expiresIn time.Duration
		want      *time.Time // when ok
		// msg holds what the refusal must say; empty when ok.
		msg []string
	}{
		{"no parent expiry, no expiry", nil, 0, nil, nil},
		{"no parent expiry, a year", nil, MaxTokenLifetime, at(MaxTokenLifetime), nil},
		{"7-day parent, one day", at(7 * day), day, at(day), nil},
		{"7-day parent, six days", at(7 * day), 6 * day, at(6 * day), nil},
		{"7-day parent, exactly seven days", at(7 * day), 7 * day, at(7 * day), nil},
		{"7-day parent, seven days and a nanosecond", at(7 * day), 7*day + 1, nil,
			[]string{"outlives", "2030-01-09T03:04:05Z", "at most 7 days"}},
		{"7-day parent, thirty days", at(7 * day), 30 * day, nil,
			[]string{"outlives", "2030-01-09T03:04:05Z", "at most 7 days"}},
		{"7-day parent, no expiry", at(7 * day), 0, nil,
			[]string{"outlives", "2030-01-09T03:04:05Z", "at most 7 days"}},
		// A minute into a 7-day token's life, only six whole days are left.
		{"7-day parent a minute old, seven days", at(7*day - time.Minute), 7 * day, nil,
			[]string{"2030-01-09T03:03:05Z", "at most 6 days"}},
		{"parent with hours left, one day", at(5 * time.Hour), day, nil,
			[]string{"2030-01-02T08:04:05Z", "less than a day"}},
		{"parent with hours left, an hour", at(5 * time.Hour), time.Hour, at(time.Hour), nil},
		{"parent in another zone", func() *time.Time {
			x := now.Add(2 * day).In(time.FixedZone("X", 5*3600))
			return &x
		}(), 3 * day, nil, []string{"2030-01-04T03:04:05Z", "at most 2 days"}},
		// The lifetime bounds hold whatever the parent.
		{"no parent expiry, past the maximum", nil, MaxTokenLifetime + 1, nil, []string{"366 days"}},
		{"no parent expiry, negative", nil, -time.Second, nil, []string{"366 days"}},
		{"7-day parent, negative", at(7 * day), -day, nil, []string{"366 days"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := childExpiry(tc.parent, now, tc.expiresIn)
			if tc.msg != nil {
				wantCode(t, err, coffer.EINVALID)
				if got != nil {
					t.Errorf("expiry %v returned with a refusal", got)
				}
				for _, m := range tc.msg {
					if !strings.Contains(coffer.ErrorMessage(err), m) {
						t.Errorf("message %q does not say %q", coffer.ErrorMessage(err), m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("childExpiry = %v", err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(*tc.want)) {
				t.Fatalf("childExpiry = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCreateTokenUnderItsParent(t *testing.T) {
	user := User{ID: "u-1"}
	actor := audit.Actor{Type: "user", ID: user.ID}
	day := 24 * time.Hour
	t.Run("expiring parent refuses longer and never", func(t *testing.T) {
		for _, in := range []time.Duration{30 * day, 0} {
			svc, st, clock := newTestService(t)
			exp := clock.now().Add(7 * day)
			p := Principal{User: user, TokenID: "t-parent", TokenExpiresAt: &exp}
			_, secret, err := svc.CreateToken(context.Background(), actor, p, "ci", in)
			wantCode(t, err, coffer.EINVALID)
			if secret != "" || st.writes() != 0 || len(st.entries) != 0 {
				t.Fatalf("refused request (%v) returned a secret or reached the store", in)
			}
			if !strings.Contains(coffer.ErrorMessage(err), exp.Format(time.RFC3339)) {
				t.Errorf("message %q does not name the latest expiry allowed", coffer.ErrorMessage(err))
			}
		}
	})
	t.Run("expiring parent allows shorter, recorded as parent", func(t *testing.T) {
		svc, st, clock := newTestService(t)
		exp := clock.now().Add(7 * day)
		p := Principal{User: user, TokenID: "t-parent", TokenExpiresAt: &exp}
		tok, _, err := svc.CreateToken(context.Background(), actor, p, "ci", day)
		if err != nil {
			t.Fatalf("CreateToken = %v", err)
		}
		if tok.ParentID != "t-parent" || tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(clock.now().Add(day)) {
			t.Fatalf("token = %+v, want parent t-parent and a one-day expiry", tok)
		}
		if got := st.createdTokens[0].Token; got.ParentID != "t-parent" {
			t.Errorf("stored parent %q, want t-parent", got.ParentID)
		}
		if e := st.entries[0]; e.Metadata["parent"] != "t-parent" {
			t.Errorf("audit metadata = %v, want the parent named", e.Metadata)
		}
	})
	t.Run("parent without expiry allows never", func(t *testing.T) {
		svc, st, _ := newTestService(t)
		p := Principal{User: user, TokenID: "t-parent"}
		tok, _, err := svc.CreateToken(context.Background(), actor, p, "laptop", 0)
		if err != nil {
			t.Fatalf("CreateToken = %v", err)
		}
		if tok.ExpiresAt != nil || tok.ParentID != "t-parent" || st.createdTokens[0].Token.ParentID != "t-parent" {
			t.Fatalf("token = %+v, want no expiry and parent t-parent", tok)
		}
	})
}

func TestAuthenticateCarriesTokenExpiry(t *testing.T) {
	svc, st, clock := newTestService(t)
	exp := clock.now().Add(time.Hour)
	never, expiring := genToken(t), genToken(t)
	st.add(never, TokenRecord{Token: Token{ID: "t-never"}})
	st.add(expiring, TokenRecord{Token: Token{ID: "t-exp", ExpiresAt: &exp}})
	p, err := svc.Authenticate(context.Background(), never)
	if err != nil || p.TokenExpiresAt != nil {
		t.Fatalf("Authenticate(never) = %+v, %v; want no expiry", p, err)
	}
	p, err = svc.Authenticate(context.Background(), expiring)
	if err != nil || p.TokenExpiresAt == nil || !p.TokenExpiresAt.Equal(exp) {
		t.Fatalf("Authenticate(expiring) = %+v, %v; want expiry %v", p, err, exp)
	}
}

func TestRevokeTokenAuditsEveryRevokedToken(t *testing.T) {
	svc, st, _ := newTestService(t)
	st.revokeDescendants = []string{"t-child", "t-grandchild"}
	p := Principal{User: User{ID: "u-1"}, TokenID: "t-other"}
	if err := svc.RevokeToken(context.Background(), audit.Actor{Type: "user", ID: "u-1"}, p, "t-root"); err != nil {
		t.Fatalf("RevokeToken = %v", err)
	}
	if len(st.revoked) != 1 || !strings.HasPrefix(st.revoked[0], "u-1/t-root@") {
		t.Fatalf("store revocations = %v, want u-1/t-root", st.revoked)
	}
	want := []struct {
		target string
		meta   map[string]any
	}{
		{"t-root", map[string]any{"user": "u-1", "descendants": 2}},
		{"t-child", map[string]any{"user": "u-1", "revoked_with": "t-root"}},
		{"t-grandchild", map[string]any{"user": "u-1", "revoked_with": "t-root"}},
	}
	if len(st.entries) != len(want) {
		t.Fatalf("%d audit entries, want %d: %+v", len(st.entries), len(want), st.entries)
	}
	for i, w := range want {
		e := st.entries[i]
		if e.Action != audit.ActionTokenRevoke || e.TargetType != "token" || e.TargetID != w.target || fmt.Sprint(e.Metadata) != fmt.Sprint(w.meta) {
			t.Errorf("entry %d = %+v, want token.revoke of %s with %v", i, e, w.target, w.meta)
		}
	}

	t.Run("store refusal passes through", func(t *testing.T) {
		svc, st, _ := newTestService(t)
		st.revokeErr = coffer.Errorf(coffer.ENOTFOUND, "token not found")
		err := svc.RevokeToken(context.Background(), audit.Actor{}, p, "t-missing")
		wantCode(t, err, coffer.ENOTFOUND)
		if len(st.entries) != 0 {
			t.Errorf("audit entries %+v for a refused revocation", st.entries)
		}
	})
}

// A user's first token and the bootstrap token are roots: not children of whoever created the
// user, whose own revocation must not reach into another user's credentials.
func TestFirstTokensAreRoots(t *testing.T) {
	svc, st, clock := newTestService(t)
	exp := clock.now().Add(time.Hour)
	admin := Principal{User: User{ID: "u-admin", InstanceAdmin: true}, TokenID: "t-admin", TokenExpiresAt: &exp}
	if _, _, err := svc.CreateUser(context.Background(), audit.Actor{Type: "user", ID: "u-admin"}, admin, "bob@example.com", "Bob"); err != nil {
		t.Fatalf("CreateUser = %v", err)
	}
	if tok := st.userTokens[0].Token; tok.ParentID != "" || tok.ExpiresAt != nil {
		t.Errorf("first token = %+v, want a root without expiry", tok)
	}
	if _, _, err := svc.Bootstrap(context.Background(), BootstrapRequest{Email: "o@example.com", Name: "O", TenantSlug: "acme", TenantName: "Acme"}); err != nil {
		t.Fatalf("Bootstrap = %v", err)
	}
	if tok := st.bootstraps[0].Token; tok.ParentID != "" {
		t.Errorf("bootstrap token = %+v, want a root", tok)
	}
}
