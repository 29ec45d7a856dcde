package app_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestCredentialEndpointsAreRateLimited(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		limited := false
		for i := range 30 {
			r := s.call("POST", "/api/v1/tokens", s.owner, map[string]string{"name": "t" + itoa(i)})
			if r.status == http.StatusTooManyRequests {
				if r.errCode() != "rate_limited" || i < 20 {
					t.Fatalf("token %d: %d %s", i, r.status, r.raw)
				}
				limited = true
				break
			}
			if r.status != http.StatusCreated {
				t.Fatalf("token %d: %d %s", i, r.status, r.raw)
			}
		}
		if !limited {
			t.Fatal("30 token creations in a row were never rate-limited")
		}
		// Reading is not throttled by minting.
		s.must(200, "GET", "/api/v1/tokens", s.owner, nil)

		// Failed authentications from one address are throttled too, before the database.
		bad := "cfr_pat_" + "unknownunknownunknownunknownunknownunkno"
		throttled := false
		for range 40 {
			if r := s.call("GET", "/api/v1/me", bad, nil); r.status == http.StatusTooManyRequests {
				throttled = true
				break
			}
		}
		if !throttled {
			t.Fatal("40 failed authentications in a row were never throttled")
		}
	})
}

// TestFailedAuthenticationNeverLocksOutAValidToken: behind a shared address (a proxy, a NAT),
// bad tokens retried from it are throttled, but a valid token from the same address is never
// refused for others' failures.
func TestFailedAuthenticationNeverLocksOutAValidToken(t *testing.T) {
	s := start(t, "sqlite", nil)
	bad := "cfr_pat_" + "unknownunknownunknownunknownunknownunkno"
	throttled := false
	for range 40 {
		if r := s.call("GET", "/api/v1/me", bad, nil); r.status == http.StatusTooManyRequests {
			if r.header.Get("Retry-After") == "" && r.errCode() != "rate_limited" {
				t.Fatalf("429 without its error code: %s", r.raw)
			}
			throttled = true
			break
		}
	}
	if !throttled {
		t.Fatal("40 failed authentications with one token were never throttled")
	}
	for range 5 {
		s.must(http.StatusOK, "GET", "/api/v1/me", s.owner, nil)
	}
}

// TestClientAddressAndRequestIDInAudit: behind a trusted proxy the audit entry names the real
// client from X-Forwarded-For, while from an untrusted peer the header is ignored; the request
// id is always the server's, and a client's X-Request-ID is kept only as client_request_id.
func TestClientAddressAndRequestIDInAudit(t *testing.T) {
	for _, tc := range []struct {
		name, proxies, wantIP string
	}{
		{"trusted proxy", "127.0.0.0/8", "203.0.113.7"},
		{"no trusted proxy", "", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, "sqlite", map[string]string{"COFFER_TRUSTED_PROXIES": tc.proxies})
			req, err := http.NewRequest("POST", s.base+"/api/v1/tenants", strings.NewReader(`{"slug":"via-proxy","name":"Via Proxy"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+s.owner)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", "198.51.100.9, 203.0.113.7")
			req.Header.Set("X-Request-ID", "client-chosen-id-0001")
			r := s.send(req)
			if r.status != http.StatusCreated {
				t.Fatalf("create tenant: %d %s", r.status, r.raw)
			}
			serverID := r.header.Get("X-Request-ID")
			if serverID == "" || serverID == "client-chosen-id-0001" {
				t.Fatalf("X-Request-ID = %q: the server must choose its own", serverID)
			}
			var ip, reqID, clientID string
			if err := s.rawDB().QueryRow(`SELECT source_ip, request_id, client_request_id FROM audit_entries WHERE action = 'tenant.create' AND target = 'via-proxy'`).
				Scan(&ip, &reqID, &clientID); err != nil {
				t.Fatal(err)
			}
			if ip != tc.wantIP || reqID != serverID || clientID != "client-chosen-id-0001" {
				t.Fatalf("audit source_ip %q request_id %q client_request_id %q; want %q, %q, client-chosen-id-0001", ip, reqID, clientID, tc.wantIP, serverID)
			}
		})
	}
}
