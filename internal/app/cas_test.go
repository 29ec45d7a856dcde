package app_test

import (
	"net/http"
	"sync"
	"testing"
)

// putIf writes a secret with a compare-and-set header.
func (s *server) putIf(name, header, tag, value string) response {
	s.t.Helper()
	req := s.request("PUT", envPath+"development/secrets/"+name, s.owner, map[string]string{"value": value})
	if header != "" {
		req.Header.Set(header, tag)
	}
	return s.send(req)
}

func TestCompareAndSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		// Create-only.
		r := s.putIf("API_KEY", "If-None-Match", "*", "one")
		if r.status != http.StatusCreated || r.header.Get("ETag") != `"1"` {
			t.Fatalf("create-only on a new secret: %d ETag %q %s", r.status, r.header.Get("ETag"), r.raw)
		}
		r = s.putIf("API_KEY", "If-None-Match", "*", "again")
		if r.status != http.StatusPreconditionFailed || r.errCode() != "precondition_failed" {
			t.Fatalf("create-only on an existing secret: %d %s", r.status, r.raw)
		}
		details, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
		if details["current_version"] != float64(1) || details["name"] != "API_KEY" {
			t.Fatalf("412 details: %s", r.raw)
		}
		// If-Match with the current version writes and answers the new ETag; a stale one
		// changes nothing.
		if r := s.putIf("API_KEY", "If-Match", `"1"`, "two"); r.status != http.StatusOK || r.header.Get("ETag") != `"2"` {
			t.Fatalf("If-Match current: %d %q %s", r.status, r.header.Get("ETag"), r.raw)
		}
		if r := s.putIf("API_KEY", "If-Match", `"1"`, "stale"); r.status != http.StatusPreconditionFailed {
			t.Fatalf("If-Match stale: %d %s", r.status, r.raw)
		}
		get := s.must(http.StatusOK, "GET", envPath+"development/secrets/API_KEY", s.owner, nil)
		if get.body["value"] != "two" || get.header.Get("ETag") != `"2"` {
			t.Fatalf("after a stale write: %s ETag %q", get.raw, get.header.Get("ETag"))
		}
		// Malformed conditions are refused before anything happens.
		for _, c := range [][2]string{{"If-Match", "2"}, {"If-Match", `W/"2"`}, {"If-Match", `"2", "3"`}, {"If-Match", `"0"`}, {"If-None-Match", `"2"`}} {
			if r := s.putIf("API_KEY", c[0], c[1], "x"); r.status != http.StatusBadRequest {
				t.Errorf("%s: %s: %d, want 400", c[0], c[1], r.status)
			}
		}
		// A deleted secret has no current version: If-Match fails, create-only works.
		s.must(http.StatusNoContent, "DELETE", envPath+"development/secrets/API_KEY", s.owner, nil)
		if r := s.putIf("API_KEY", "If-Match", `"2"`, "x"); r.status != http.StatusPreconditionFailed {
			t.Fatalf("If-Match on a deleted secret: %d %s", r.status, r.raw)
		}
		if r := s.putIf("API_KEY", "If-None-Match", "*", "three"); r.status != http.StatusOK || r.header.Get("ETag") != `"3"` {
			t.Fatalf("create-only over a deleted secret: %d %s", r.status, r.raw)
		}

		// Bulk: one stale entry fails the whole write with 412, nothing applied.
		bulk := func(entries ...map[string]any) response {
			return s.call("PATCH", envPath+"development/secrets", s.owner, map[string]any{"secrets": entries})
		}
		r = bulk(map[string]any{"name": "NEW_ONE", "value": "n", "expected_version": 0},
			map[string]any{"name": "API_KEY", "value": "four", "expected_version": 2})
		if r.status != http.StatusPreconditionFailed {
			t.Fatalf("bulk with a stale entry: %d %s", r.status, r.raw)
		}
		if r := s.call("GET", envPath+"development/secrets/NEW_ONE", s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("a failed bulk write created NEW_ONE: %d", r.status)
		}
		if r := bulk(map[string]any{"name": "NEW_ONE", "value": "n", "expected_version": 0},
			map[string]any{"name": "API_KEY", "value": "four", "expected_version": 3}); r.status != http.StatusOK {
			t.Fatalf("bulk with current versions: %d %s", r.status, r.raw)
		}
		if r := bulk(map[string]any{"name": "API_KEY", "value": "x", "expected_version": -1}); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("bulk with a negative version: %d %s", r.status, r.raw)
		}
	})
}

// TestCompareAndSetRace: two clients update one secret with the same If-Match: exactly one
// wins, the other gets 412, and the winner's value is the one stored.
func TestCompareAndSetRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		s.withProject()
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/RACE", s.owner, map[string]string{"value": "v1"})
		for round := 1; round <= 20; round++ {
			tag := `"` + itoa(round) + `"`
			var wg sync.WaitGroup
			results := make([]response, 2)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = s.putIf("RACE", "If-Match", tag, "client-"+itoa(i)+"-round-"+itoa(round))
				}()
			}
			wg.Wait()
			ok, failed, winner := 0, 0, -1
			for i, r := range results {
				switch r.status {
				case http.StatusOK:
					ok, winner = ok+1, i
				case http.StatusPreconditionFailed:
					failed++
				default:
					t.Fatalf("round %d: %d %s", round, r.status, r.raw)
				}
			}
			if ok != 1 || failed != 1 {
				t.Fatalf("round %d: %d writes won and %d failed, want one each", round, ok, failed)
			}
			got := s.must(http.StatusOK, "GET", envPath+"development/secrets/RACE", s.owner, nil)
			if want := "client-" + itoa(winner) + "-round-" + itoa(round); got.body["value"] != want || got.header.Get("ETag") != `"`+itoa(round+1)+`"` {
				t.Fatalf("round %d: stored %v at %s, want %s", round, got.body["value"], got.header.Get("ETag"), want)
			}
		}
	})
}
