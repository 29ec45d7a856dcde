package app_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func deviceAuthorizations(t *testing.T, s *server) int {
	t.Helper()
	var n int
	if err := s.rawDB().QueryRow(`SELECT count(*) FROM device_authorizations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeviceAuthorizationAPI: the device sign-in's answers, in the order a client meets them,
// and what it refuses: a poll too soon, a spent or expired code, an unknown code on the page,
// a visitor who is not signed in.
func TestDeviceAuthorizationAPI(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		start := s.must(http.StatusOK, "POST", "/api/v1/device/code", "", map[string]any{"client_name": "coffer CLI on test", "expires_in_days": 7})
		device, _ := start.body["device_code"].(string)
		code, _ := start.body["user_code"].(string)
		if !strings.HasPrefix(device, "cfr_dev_") || !regexp.MustCompile(`^[A-Z]{4}-[A-Z]{4}$`).MatchString(code) ||
			start.body["verification_uri_complete"] != s.base+"/device?code="+code || start.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("start: %s", start.raw)
		}
		var stored int
		if err := s.rawDB().QueryRow(s.q(`SELECT count(*) FROM device_authorizations WHERE device_code_hash = ? OR user_code_hash = ?`), device, code).Scan(&stored); err != nil || stored != 0 {
			t.Fatalf("a code is stored in clear (%d rows, %v)", stored, err)
		}
		poll := func() response {
			return s.call("POST", "/api/v1/device/token", "", map[string]string{"device_code": device})
		}
		if r := poll(); r.status != http.StatusAccepted || r.body["status"] != "authorization_pending" {
			t.Fatalf("first poll: %d %s", r.status, r.raw)
		}
		if r := poll(); r.status != http.StatusTooManyRequests {
			t.Fatalf("a poll at once after another: %d %s", r.status, r.raw)
		}

		// The page: sign in first; unknown codes are not found.
		if r := s.localBrowser().get("/device?code=" + code); r.status != http.StatusSeeOther ||
			!strings.HasPrefix(r.header.Get("Location"), "/login?return_to=") {
			t.Fatalf("the page without a session: %d %s", r.status, r.header.Get("Location"))
		}
		cookie := s.signIn(s.owner)
		if r := s.browse("GET", "/device?code=BBBB-BBBB", cookie, "", "", "", false); r.status != http.StatusNotFound {
			t.Fatalf("an unknown code: %d", r.status)
		}
		page := s.browse("GET", "/device?code="+strings.ToLower(strings.ReplaceAll(code, "-", "")), cookie, "", "", "", false)
		if page.status != http.StatusOK || !strings.Contains(string(page.raw), code) || !strings.Contains(string(page.raw), "7 days") {
			t.Fatalf("the page with the code typed loosely: %d %s", page.status, page.raw)
		}
		csrf := match(t, csrfRE, page.raw)
		if r := s.browse("POST", "/device", cookie, s.base, "", "code="+code+"&decision=approve", true); r.status != http.StatusForbidden {
			t.Fatalf("approval without the CSRF token: %d", r.status)
		}
		if r := s.browse("POST", "/device", cookie, s.base, csrf, "code="+code+"&decision=approve", true); r.status != http.StatusOK {
			t.Fatalf("approve: %d %s", r.status, r.raw)
		}
		if r := s.browse("POST", "/device", cookie, s.base, csrf, "code="+code+"&decision=deny", true); r.status != http.StatusNotFound {
			t.Fatalf("answering twice: %d %s", r.status, r.raw)
		}

		time.Sleep(1100 * time.Millisecond)
		r := poll()
		tok, _ := r.body["token"].(string)
		if r.status != http.StatusOK || !strings.HasPrefix(tok, "cfr_pat_") {
			t.Fatalf("poll after approval: %d %s", r.status, r.raw)
		}
		me := s.must(http.StatusOK, "GET", "/api/v1/me", tok, nil)
		exp, _ := time.Parse(time.RFC3339Nano, me.body["token_expires_at"].(string))
		if me.body["kind"] != "personal_token" || time.Until(exp) < 6*24*time.Hour || time.Until(exp) > 7*24*time.Hour {
			t.Fatalf("the token: %s", me.raw)
		}
		time.Sleep(1100 * time.Millisecond)
		if r := poll(); r.status != http.StatusGone {
			t.Fatalf("a second collection: %d %s", r.status, r.raw)
		}
		// Both are instance-level entries, outside any tenant's chain.
		var approvals, creations int
		db := s.rawDB()
		if err := db.QueryRow(`SELECT count(*) FROM audit_entries WHERE action = 'device.approve'`).Scan(&approvals); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(s.q(`SELECT count(*) FROM audit_entries WHERE action = 'token.create' AND target_id = ?`), me.body["token_id"]).Scan(&creations); err != nil {
			t.Fatal(err)
		}
		if approvals != 1 || creations != 1 {
			t.Fatalf("audit: %d approvals, %d creations of the token", approvals, creations)
		}

		// An expired code: 410, and its page says so.
		start = s.must(http.StatusOK, "POST", "/api/v1/device/code", "", map[string]any{"client_name": "late"})
		device, _ = start.body["device_code"].(string)
		if _, err := db.Exec(s.q(`UPDATE device_authorizations SET expires_at = ? WHERE client_name = 'late'`), time.Now().Add(-time.Minute).UTC()); err != nil {
			t.Fatal(err)
		}
		if r := poll(); r.status != http.StatusGone {
			t.Fatalf("an expired code: %d %s", r.status, r.raw)
		}
		if r := s.call("POST", "/api/v1/device/token", "", map[string]string{"device_code": "cfr_dev_nope"}); r.status != http.StatusNotFound {
			t.Fatalf("an unknown device code: %d", r.status)
		}
		if r := s.call("POST", "/api/v1/device/code", "", map[string]any{"client_name": "x", "expires_in_days": 91}); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("91 days: %d", r.status)
		}
	})
}
