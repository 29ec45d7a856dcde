package app_test

import (
	"net/http"
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
