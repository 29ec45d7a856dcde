package auth

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// TestTenantIdPSessionReach: a session started through a tenant's provider reaches only that
// tenant; a tenant requiring its provider is reached only by such sessions.
func TestTenantIdPSessionReach(t *testing.T) {
	for _, tc := range []struct {
		name    string
		session string // the principal's IdPID
		scope   tenant.Scope
		ok      bool
	}{
		{"ordinary session, tenant without provider", "", tenant.Scope{}, true},
		{"ordinary session, provider not required", "", tenant.Scope{IdPID: "a"}, true},
		{"ordinary session, provider required", "", tenant.Scope{IdPID: "a", RequiredIdP: "a"}, false},
		{"its provider, required", "a", tenant.Scope{IdPID: "a", RequiredIdP: "a"}, true},
		{"its provider, not required", "a", tenant.Scope{IdPID: "a"}, true},
		{"another tenant's provider", "b", tenant.Scope{IdPID: "a"}, false},
		{"a provider, tenant without one", "a", tenant.Scope{}, false},
		{"a deleted and recreated provider", "old", tenant.Scope{IdPID: "new", RequiredIdP: "new"}, false},
	} {
		err := sessionReaches(Principal{Kind: KindSession, IdPID: tc.session}, tc.scope)
		if (err == nil) != tc.ok || err != nil && coffer.ErrorCode(err) != coffer.EFORBIDDEN {
			t.Errorf("%s: err = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}

// TestTenantIdPSessionConfined: such a session carries no instance-admin rights and mints no
// personal token, which would reach every tenant of the user.
func TestTenantIdPSessionConfined(t *testing.T) {
	s := NewService(newMemStore(), func() string { return "id" })
	now := s.now()
	rec := SessionRecord{Session: Session{ID: "s", UserID: "u", Method: IdPSessionMethod("idp1"), LastSeenAt: now, ExpiresAt: now.Add(time.Hour)},
		Hash: "h", User: User{ID: "u", InstanceAdmin: true}}
	p, err := s.acceptSession(context.Background(), rec, "h")
	if err != nil {
		t.Fatal(err)
	}
	if p.IdPID != "idp1" || p.User.InstanceAdmin {
		t.Fatalf("principal %+v: want IdPID idp1 and no instance-admin rights", p)
	}
	if _, _, err := s.CreateToken(context.Background(), audit.System, p, "x", 0); coffer.ErrorCode(err) != coffer.EFORBIDDEN {
		t.Fatalf("CreateToken from a tenant provider's session: %v", err)
	}
	rec.Method = "oidc"
	if p, err := s.acceptSession(context.Background(), rec, "h"); err != nil || p.IdPID != "" || !p.User.InstanceAdmin {
		t.Fatalf("instance provider's session: %+v, %v", p, err)
	}
}

// TestValidateIssuerURL: https, or http on loopback or in development mode; no query, no
// fragment, no credentials.
func TestValidateIssuerURL(t *testing.T) {
	for _, tc := range []struct {
		issuer string
		dev    bool
		ok     bool
	}{
		{"https://idp.example.com", false, true},
		{"https://idp.example.com/realms/x", false, true},
		{"http://127.0.0.1:5556/dex", false, true},
		{"http://localhost:5556/dex", false, true},
		{"http://idp.example.com", false, false},
		{"http://idp.example.com", true, true},
		{"ftp://idp.example.com", true, false},
		{"https://idp.example.com?x=1", false, false},
		{"https://idp.example.com?", false, false},
		{"https://idp.example.com#f", false, false},
		{"https://user:pw@idp.example.com", false, false},
		{"https://", false, false},
		{"", false, false},
		{"https://idp.example.com/\x00", false, false},
	} {
		err := ValidateIssuerURL("issuer", tc.issuer, tc.dev)
		if (err == nil) != tc.ok || err != nil && coffer.ErrorCode(err) != coffer.EINVALID {
			t.Errorf("%q (dev %v): err = %v, want ok = %v", tc.issuer, tc.dev, err, tc.ok)
		}
	}
	for _, v := range []string{"", "a\x00b", "a\nb", string([]byte{0xff})} {
		if validClientField("client_id", v, 255) == nil {
			t.Errorf("client field %q accepted", v)
		}
	}
}
