package app_test

import (
	"bytes"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// localBrowser is a cookie-keeping client that does not follow redirects, so tests see each
// 303 and where it points. Form posts carry the server's Origin, as a browser's do.
type localBrowser struct {
	t *testing.T
	s *server
	c *http.Client
}

func (s *server) localBrowser() *localBrowser {
	s.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return &localBrowser{t: s.t, s: s, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *localBrowser) do(req *http.Request) response {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			b.t.Fatalf("%s %s: %v: %s", req.Method, req.URL.Path, err, raw)
		}
	}
	return r
}

func (b *localBrowser) get(path string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.s.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *localBrowser) post(path string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.s.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.s.base)
	return b.do(req)
}

func (b *localBrowser) postJSON(path string, body any) response {
	b.t.Helper()
	enc, err := json.Marshal(body)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, b.s.base+path, bytes.NewReader(enc))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", b.s.base)
	return b.do(req)
}

// me is GET /api/v1/me with the browser's cookies only.
func (b *localBrowser) me() response {
	b.t.Helper()
	return b.get("/api/v1/me")
}

// login posts the sign-in form and returns the answer (a 303 on success).
func (b *localBrowser) login(email, password string) response {
	b.t.Helper()
	return b.post("/login", url.Values{"email": {email}, "password": {password}})
}

// mustSignedIn fails unless the browser's session answers GET /api/v1/me as email.
func (b *localBrowser) mustSignedIn(email string) {
	b.t.Helper()
	r := b.me()
	if r.status != http.StatusOK {
		b.t.Fatalf("GET /api/v1/me with the session: %d %s", r.status, r.raw)
	}
	u, _ := r.body["user"].(map[string]any)
	if u["email"] != email || r.body["kind"] != "session" {
		b.t.Fatalf("GET /api/v1/me = %s, want a session of %s", r.raw, email)
	}
}

const localPassword = "correct horse battery staple"

// localUser provisions a user and returns their id and token.
func (s *server) localUser(email string) (string, string) {
	s.t.Helper()
	tok := s.newUser(email)
	me := s.must(http.StatusOK, "GET", "/api/v1/me", tok, nil)
	u, _ := me.body["user"].(map[string]any)
	id, _ := u["id"].(string)
	return id, tok
}

// resetCode has the owner issue a reset link for userID and returns its code.
func (s *server) resetCode(userID string) string {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", "/api/v1/users/"+userID+"/password-reset", s.owner, nil)
	link, _ := r.body["reset_url"].(string)
	if !strings.HasPrefix(link, s.base+"/password/reset?code=") {
		s.t.Fatalf("reset_url %q is not a link to this server's reset page", link)
	}
	if _, err := time.Parse(time.RFC3339, r.body["expires_at"].(string)); err != nil {
		s.t.Fatalf("expires_at: %v", err)
	}
	u, err := url.Parse(link)
	if err != nil {
		s.t.Fatal(err)
	}
	return u.Query().Get("code")
}

// setLocalPassword gives userID a password through an admin-issued reset link.
func (s *server) setLocalPassword(userID, password string) {
	s.t.Helper()
	b := s.localBrowser()
	code := s.resetCode(userID)
	if r := b.get("/password/reset?code=" + url.QueryEscape(code)); r.status != http.StatusOK {
		s.t.Fatalf("GET /password/reset: %d %s", r.status, r.raw)
	}
	r := b.post("/password/reset", url.Values{"code": {code}, "password": {password}, "password_confirm": {password}})
	if r.status != http.StatusOK {
		s.t.Fatalf("POST /password/reset: %d %s", r.status, r.raw)
	}
}

var (
	csrfRE     = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	secretRE   = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
	recoveryRE = regexp.MustCompile(`<li><code>([a-z0-9-]+)</code></li>`)
)

func match(t *testing.T, re *regexp.Regexp, page []byte) string {
	t.Helper()
	m := re.FindSubmatch(page)
	if m == nil {
		t.Fatalf("page has no %s: %s", re, page)
	}
	return string(m[1])
}

// code is the TOTP code of secret at now+offset.
func code(t *testing.T, secret string, offset time.Duration) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, time.Now().Add(offset))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// awayFromStepEdge waits, if needed, until at least minLeft of the current 30-second TOTP step
// remains, so a sequence of codes for the previous, current and next steps all stay valid.
func awayFromStepEdge(minLeft time.Duration) {
	left := 30*time.Second - time.Duration(time.Now().UnixNano()%int64(30*time.Second))
	if left < minLeft {
		time.Sleep(left + 200*time.Millisecond)
	}
}

func TestLocalLoginGivesSession(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, _ := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)

		b := s.localBrowser()
		if r := b.get("/login"); r.status != http.StatusOK || !bytes.Contains(r.raw, []byte(`action="/login"`)) {
			t.Fatalf("GET /login: %d %s", r.status, r.raw)
		}
		r := b.post("/login", url.Values{"email": {"Ada@Example.com"}, "password": {localPassword}, "return_to": {"/account/totp"}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/account/totp" {
			t.Fatalf("POST /login: %d Location %q: %s", r.status, r.header.Get("Location"), r.raw)
		}
		b.mustSignedIn("ada@example.com")

		// Only paths on this site are followed after sign-in.
		for _, bad := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "x"} {
			r := s.localBrowser().post("/login", url.Values{"email": {"ada@example.com"}, "password": {localPassword}, "return_to": {bad}})
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
				t.Errorf("return_to %q: %d Location %q, want 303 to /", bad, r.status, r.header.Get("Location"))
			}
		}

		// Scripts may sign in with JSON and get the same cookie.
		j := s.localBrowser()
		r = j.postJSON("/login", map[string]string{"email": "ada@example.com", "password": localPassword})
		if r.status != http.StatusOK {
			t.Fatalf("JSON login: %d %s", r.status, r.raw)
		}
		j.mustSignedIn("ada@example.com")

		// The sign-in is audited; the password is nowhere in the audit log or the logs.
		db := s.rawDB()
		var n int
		if err := db.QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = 'auth.login' AND actor_id = ?`), id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 2 {
			t.Errorf("%d auth.login audit entries for the user, want at least 2", n)
		}
		requireNotRecorded(t, s, localPassword)
	})
}

// requireNotRecorded fails if secret appears in any audit entry or log line.
func requireNotRecorded(t *testing.T, s *server, secret string) {
	t.Helper()
	rows, err := s.rawDB().Query(`SELECT action, target, metadata FROM audit_entries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var action string
		var target sql.NullString
		var meta []byte
		if err := rows.Scan(&action, &target, &meta); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(target.String, secret) || bytes.Contains(meta, []byte(secret)) {
			t.Errorf("audit entry %s holds a secret: %s %s", action, target.String, meta)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.logs.String(), secret) {
		t.Error("the logs hold a secret")
	}
}

func TestLocalLoginFailuresLookAlike(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, _ := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)
		noPw, _ := s.localUser("nopassword@example.com")
		_ = noPw
		offID, _ := s.localUser("off@example.com")
		s.setLocalPassword(offID, localPassword)
		s.must(http.StatusNoContent, "POST", "/api/v1/users/"+offID+"/disable", s.owner, nil)

		b := s.localBrowser()
		wrong := b.login("ada@example.com", "not the password at all")
		if wrong.status != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d %s", wrong.status, wrong.raw)
		}
		cases := map[string]response{
			"unknown e-mail":    b.login("nobody@example.com", "not the password at all"),
			"no password":       b.login("nopassword@example.com", "not the password at all"),
			"disabled user":     b.login("off@example.com", localPassword),
			"malformed e-mail":  b.login("not an address", "not the password at all"),
			"over-long":         b.login("ada@example.com", strings.Repeat("x", 300)),
			"wrong, other case": b.login("ADA@example.com", "not the password at all!"),
		}
		for name, r := range cases {
			if r.status != wrong.status || !bytes.Equal(r.raw, wrong.raw) {
				t.Errorf("%s: %d %s\nwant the wrong-password answer: %d %s", name, r.status, r.raw, wrong.status, wrong.raw)
			}
		}
		if r := b.me(); r.status != http.StatusUnauthorized {
			t.Errorf("after failed logins GET /api/v1/me = %d, want 401", r.status)
		}

		// JSON: same status, code and message (the request id differs, as for every answer).
		jw := b.postJSON("/login", map[string]string{"email": "ada@example.com", "password": "not the password at all"})
		ju := b.postJSON("/login", map[string]string{"email": "nobody@example.org", "password": "not the password at all"})
		ew, _ := jw.body["error"].(map[string]any)
		eu, _ := ju.body["error"].(map[string]any)
		if jw.status != http.StatusUnauthorized || jw.status != ju.status || ew["code"] != eu["code"] || ew["message"] != eu["message"] {
			t.Errorf("JSON answers differ: %d %s / %d %s", jw.status, jw.raw, ju.status, ju.raw)
		}
	})
}

func TestLocalLoginRateLimited(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, tok := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)
		b := s.localBrowser()

		// Per account: five failures, then even the right password waits.
		for i := range 5 {
			if r := b.login("ada@example.com", "wrong password "+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", i, r.status, r.raw)
			}
		}
		r := b.login("ada@example.com", localPassword)
		requireRetryAfter(t, r, "per account")
		if r := b.me(); r.status != http.StatusUnauthorized {
			t.Fatalf("a refused login signed in: %d", r.status)
		}
		// The account's limit does not spill onto other accounts from the address yet.
		if r := b.login("someone@example.com", "wrong password"); r.status != http.StatusUnauthorized {
			t.Fatalf("another account: %d, want 401", r.status)
		}

		// Per address: failures of unknown addresses count too; 20 in all.
		for i := range 14 {
			if r := b.login("nobody"+strconv.Itoa(i)+"@example.com", "wrong password"); r.status != http.StatusUnauthorized {
				t.Fatalf("unknown-address failure %d: %d %s", i, r.status, r.raw)
			}
		}
		requireRetryAfter(t, b.login("fresh@example.com", "wrong password"), "per address")
		jr := b.postJSON("/login", map[string]string{"email": "fresh2@example.com", "password": "wrong password"})
		requireRetryAfter(t, jr, "per address, JSON")
		if jr.errCode() != "rate_limited" {
			t.Errorf("JSON code %q, want rate_limited", jr.errCode())
		}

		// A valid bearer token from the same address is not slowed.
		s.must(http.StatusOK, "GET", "/api/v1/me", tok, nil)
	})
}

func requireRetryAfter(t *testing.T, r response, what string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s: %d %s, want 429", what, r.status, r.raw)
	}
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 15*60 {
		t.Errorf("%s: Retry-After %q, want 1 to 900 seconds", what, r.header.Get("Retry-After"))
	}
}

func TestLocalTOTP(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, _ := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)

		// Signed out, the page sends the browser to sign in.
		if r := s.localBrowser().get("/account/totp"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?return_to=") {
			t.Fatalf("GET /account/totp signed out: %d %q", r.status, r.header.Get("Location"))
		}

		b := s.localBrowser()
		if r := b.login("ada@example.com", localPassword); r.status != http.StatusSeeOther {
			t.Fatalf("login: %d %s", r.status, r.raw)
		}
		page := b.get("/account/totp")
		if page.status != http.StatusOK {
			t.Fatalf("GET /account/totp: %d %s", page.status, page.raw)
		}
		secret := match(t, secretRE, page.raw)
		csrf := match(t, csrfRE, page.raw)
		if !bytes.Contains(page.raw, []byte("otpauth://totp/")) {
			t.Errorf("the page shows no otpauth URI: %s", page.raw)
		}
		// Reloading shows the same pending seed.
		if again := b.get("/account/totp"); match(t, secretRE, again.raw) != secret {
			t.Error("reloading the page changed the pending seed")
		}

		// The seed is stored sealed: neither the base32 text nor its bytes are in the row.
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
		if err != nil {
			t.Fatal(err)
		}
		var sealed []byte
		if err := s.rawDB().QueryRow(s.q(`SELECT sealed_seed FROM user_totp WHERE user_id = ?`), id).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if len(sealed) == 0 || bytes.Contains(sealed, []byte(secret)) || bytes.Contains(sealed, raw) ||
			bytes.Contains(bytes.ToUpper(sealed), []byte(secret)) {
			t.Fatalf("user_totp.sealed_seed holds the seed in clear")
		}

		awayFromStepEdge(8 * time.Second)
		// The CSRF token is required, and a wrong code is refused.
		if r := b.post("/account/totp", url.Values{"code": {code(t, secret, -30*time.Second)}}); r.status != http.StatusForbidden {
			t.Fatalf("confirm without CSRF token: %d, want 403", r.status)
		}
		if r := b.post("/account/totp", url.Values{"csrf_token": {csrf}, "code": {"000000"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("confirm with a wrong code: %d, want 401: %s", r.status, r.raw)
		}
		// Confirm with the previous step's code, leaving the current and next steps for later.
		enrolCode := code(t, secret, -30*time.Second)
		r := b.post("/account/totp", url.Values{"csrf_token": {csrf}, "code": {enrolCode}})
		if r.status != http.StatusOK {
			t.Fatalf("confirm: %d %s", r.status, r.raw)
		}
		var codes []string
		for _, m := range recoveryRE.FindAllSubmatch(r.raw, -1) {
			codes = append(codes, string(m[1]))
		}
		if len(codes) != 10 {
			t.Fatalf("%d recovery codes, want 10: %s", len(codes), r.raw)
		}
		var stored int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM totp_recovery_codes WHERE user_id = ? AND code_hash = ?`), id, codes[0]).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != 0 {
			t.Error("a recovery code is stored in clear")
		}

		// Now the password alone does not sign in: it leads to the code prompt.
		login := func() *localBrowser {
			t.Helper()
			nb := s.localBrowser()
			r := nb.login("ada@example.com", localPassword)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login/totp" {
				t.Fatalf("login with TOTP on: %d Location %q", r.status, r.header.Get("Location"))
			}
			if r := nb.me(); r.status != http.StatusUnauthorized {
				t.Fatalf("signed in before the second factor: %d", r.status)
			}
			if r := nb.get("/login/totp"); r.status != http.StatusOK {
				t.Fatalf("GET /login/totp: %d %s", r.status, r.raw)
			}
			return nb
		}
		nb := login()
		// The code the enrolment used is spent.
		if r := nb.post("/login/totp", url.Values{"code": {enrolCode}}); r.status != http.StatusUnauthorized {
			t.Fatalf("the enrolment's code again: %d, want 401", r.status)
		}
		current := code(t, secret, 0)
		if r := nb.post("/login/totp", url.Values{"code": {current}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Fatalf("login with a current code: %d %q %s", r.status, r.header.Get("Location"), r.raw)
		}
		nb.mustSignedIn("ada@example.com")

		// The same code a second time, from another login, is refused.
		other := login()
		if r := other.post("/login/totp", url.Values{"code": {current}}); r.status != http.StatusUnauthorized {
			t.Fatalf("a reused code: %d, want 401", r.status)
		}
		if r := other.me(); r.status != http.StatusUnauthorized {
			t.Fatal("a reused code signed in")
		}

		// A recovery code works once (typed in capitals, for good measure).
		if r := other.post("/login/totp", url.Values{"code": {strings.ToUpper(codes[3])}}); r.status != http.StatusSeeOther {
			t.Fatalf("login with a recovery code: %d %s", r.status, r.raw)
		}
		other.mustSignedIn("ada@example.com")
		third := login()
		if r := third.post("/login/totp", url.Values{"code": {codes[3]}}); r.status != http.StatusUnauthorized {
			t.Fatalf("a recovery code a second time: %d, want 401", r.status)
		}

		// Turning TOTP off takes a current (unspent) code and the CSRF token.
		page = nb.get("/account/totp")
		csrf = match(t, csrfRE, page.raw)
		if r := nb.post("/account/totp/disable", url.Values{"csrf_token": {csrf}, "code": {current}}); r.status != http.StatusUnauthorized {
			t.Fatalf("disable with a spent code: %d, want 401", r.status)
		}
		if r := nb.post("/account/totp/disable", url.Values{"csrf_token": {csrf}, "code": {code(t, secret, 30*time.Second)}}); r.status != http.StatusOK {
			t.Fatalf("disable: %d %s", r.status, r.raw)
		}
		if r := s.localBrowser().login("ada@example.com", localPassword); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Fatalf("login after disabling TOTP: %d %q", r.status, r.header.Get("Location"))
		}

		// Each step is audited; no code or seed is recorded anywhere.
		for _, action := range []string{"user.totp.enable", "user.totp.recovery_code.use", "user.totp.disable"} {
			var n int
			if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = ? AND target_id = ?`), action, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("%d %s audit entries, want 1", n, action)
			}
		}
		for _, secretish := range []string{secret, codes[3], codes[0], localPassword} {
			requireNotRecorded(t, s, secretish)
		}
	})
}

func TestLocalPasswordResetLinkOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, tok := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)
		b := s.localBrowser()
		if r := b.login("ada@example.com", localPassword); r.status != http.StatusSeeOther {
			t.Fatalf("login: %d", r.status)
		}
		b.mustSignedIn("ada@example.com")

		// Only instance admins issue links.
		s.must(http.StatusForbidden, "POST", "/api/v1/users/"+id+"/password-reset", tok, nil)
		s.must(http.StatusNotFound, "POST", "/api/v1/users/no-such-user/password-reset", s.owner, nil)

		code := s.resetCode(id)
		// An earlier link ends when a new one is issued.
		newer := s.resetCode(id)
		if r := s.localBrowser().get("/password/reset?code=" + url.QueryEscape(code)); r.status != http.StatusNotFound {
			t.Fatalf("a superseded link: %d, want 404", r.status)
		}
		code = newer

		rb := s.localBrowser()
		const newPassword = "a brand new passphrase"
		if r := rb.post("/password/reset", url.Values{"code": {code}, "password": {"short"}, "password_confirm": {"short"}}); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("a short password: %d, want 422", r.status)
		}
		if r := rb.post("/password/reset", url.Values{"code": {code}, "password": {newPassword}, "password_confirm": {newPassword + "x"}}); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("passwords that differ: %d, want 422", r.status)
		}
		if r := rb.post("/password/reset", url.Values{"code": {code}, "password": {newPassword}, "password_confirm": {newPassword}}); r.status != http.StatusOK {
			t.Fatalf("reset: %d %s", r.status, r.raw)
		}
		// Once only.
		if r := rb.post("/password/reset", url.Values{"code": {code}, "password": {"yet another passphrase"}, "password_confirm": {"yet another passphrase"}}); r.status != http.StatusNotFound {
			t.Fatalf("the link a second time: %d, want 404", r.status)
		}
		if r := rb.get("/password/reset?code=" + url.QueryEscape(code)); r.status != http.StatusNotFound {
			t.Fatalf("GET of a used link: %d, want 404", r.status)
		}
		// The reset ended the session signed in with the old password.
		if r := b.me(); r.status != http.StatusUnauthorized {
			t.Fatalf("the old session after a reset: %d, want 401", r.status)
		}
		if r := s.localBrowser().login("ada@example.com", localPassword); r.status != http.StatusUnauthorized {
			t.Fatalf("the old password: %d, want 401", r.status)
		}
		nb := s.localBrowser()
		if r := nb.login("ada@example.com", newPassword); r.status != http.StatusSeeOther {
			t.Fatalf("the new password: %d %s", r.status, r.raw)
		}
		nb.mustSignedIn("ada@example.com")

		// Only hashes of codes are stored; the reset is audited.
		var n int
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM password_resets WHERE code_hash = ?`), code).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Error("a reset code is stored in clear")
		}
		if err := s.rawDB().QueryRow(s.q(`SELECT COUNT(*) FROM audit_entries WHERE action = 'user.password.reset' AND target_id = ?`), id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 { // one to give the first password, one here
			t.Errorf("%d user.password.reset entries, want 2", n)
		}
		requireNotRecorded(t, s, code)
		requireNotRecorded(t, s, newPassword)
	})
}

func TestLocalLoginOff(t *testing.T) {
	forEachDialectWith(t, map[string]string{"COFFER_LOCAL_LOGIN": "false"}, func(t *testing.T, s *server) {
		{
			id, _ := s.localUser("ada@example.com")
			b := s.localBrowser()
			for _, r := range []response{
				b.get("/login"),
				b.login("ada@example.com", localPassword),
				b.get("/login/totp"),
				b.post("/login/totp", url.Values{"code": {"123456"}}),
				b.get("/account/totp"),
				b.post("/account/totp", url.Values{"code": {"123456"}}),
				b.post("/account/totp/disable", url.Values{"code": {"123456"}}),
				b.get("/password/reset?code=x"),
				b.post("/password/reset", url.Values{"code": {"x"}}),
				s.call("POST", "/api/v1/users/"+id+"/password-reset", s.owner, nil),
			} {
				if r.status != http.StatusNotFound {
					t.Errorf("with local login off: %d %s, want 404", r.status, r.raw)
				}
			}
		}
	})
}

func TestLocalSetupSetsPassword(t *testing.T) {
	forEachDialectWith(t, map[string]string{"COFFER_BOOTSTRAP_TOKEN": ""}, func(t *testing.T, s *server) {
		setup := s.app.SetupURL
		if setup == "" {
			t.Fatal("no setup link")
		}
		u, err := url.Parse(setup)
		if err != nil {
			t.Fatal(err)
		}
		code := u.Query().Get("code")
		b := s.localBrowser()
		page := b.get("/setup?code=" + url.QueryEscape(code))
		if page.status != http.StatusOK || !bytes.Contains(page.raw, []byte(`name="password"`)) {
			t.Fatalf("setup form: %d %s", page.status, page.raw)
		}
		form := url.Values{"code": {code}, "email": {"owner@example.com"}, "name": {"Owner"}, "tenant_slug": {"acme"}, "tenant_name": {"Acme"}}
		// The browser form needs a password, checked before anything is created.
		if r := b.post("/setup", form); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("setup without a password: %d %s", r.status, r.raw)
		}
		form.Set("password", "short")
		if r := b.post("/setup", form); r.status != http.StatusUnprocessableEntity {
			t.Fatalf("setup with a short password: %d %s", r.status, r.raw)
		}
		form.Set("password", localPassword)
		r := b.post("/setup", form)
		if r.status != http.StatusCreated || !bytes.Contains(r.raw, []byte("cfr_pat_")) {
			t.Fatalf("setup: %d %s", r.status, r.raw)
		}
		// The form signed the owner in, and the password signs them in again.
		b.mustSignedIn("owner@example.com")
		nb := s.localBrowser()
		if r := nb.login("owner@example.com", localPassword); r.status != http.StatusSeeOther {
			t.Fatalf("login with the setup password: %d %s", r.status, r.raw)
		}
		nb.mustSignedIn("owner@example.com")
		requireNotRecorded(t, s, localPassword)
	})
}

// forEachDialectWith is forEachDialect with settings of the test's own.
func forEachDialectWith(t *testing.T, env map[string]string, fn func(t *testing.T, s *server)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			fn(t, start(t, d, env))
		})
	}
}

// enrolTOTP turns TOTP on for a signed-in browser and returns the seed. The enrolment spends
// the previous step's code, leaving the current and next steps for the test.
func (b *localBrowser) enrolTOTP() string {
	b.t.Helper()
	page := b.get("/account/totp")
	secret, csrf := match(b.t, secretRE, page.raw), match(b.t, csrfRE, page.raw)
	awayFromStepEdge(8 * time.Second)
	if r := b.post("/account/totp", url.Values{"csrf_token": {csrf}, "code": {code(b.t, secret, -30*time.Second)}}); r.status != http.StatusOK {
		b.t.Fatalf("confirm TOTP: %d %s", r.status, r.raw)
	}
	return secret
}

// racePost sends the same form post from each browser at once and returns the statuses; it
// is safe to call from the test goroutine only, and reports transport errors as 0.
func racePost(bs []*localBrowser, path string, form url.Values) []int {
	statuses := make([]int, len(bs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, b := range bs {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, b.s.base+path, strings.NewReader(form.Encode()))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", b.s.base)
			<-start
			res, err := b.c.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			statuses[i] = res.StatusCode
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

// A TOTP code and a reset link each work once even when requests race: the conditional
// UPDATE lets exactly one through.
func TestLocalTOTPAndResetRaces(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *server) {
		id, _ := s.localUser("ada@example.com")
		s.setLocalPassword(id, localPassword)
		b := s.localBrowser()
		if r := b.login("ada@example.com", localPassword); r.status != http.StatusSeeOther {
			t.Fatalf("login: %d", r.status)
		}
		secret := b.enrolTOTP()

		const n = 4
		bs := make([]*localBrowser, n)
		for i := range bs {
			bs[i] = s.localBrowser()
			if r := bs[i].login("ada@example.com", localPassword); r.header.Get("Location") != "/login/totp" {
				t.Fatalf("login %d: %d %q", i, r.status, r.header.Get("Location"))
			}
		}
		statuses := racePost(bs, "/login/totp", url.Values{"code": {code(t, secret, 0)}})
		if ok, refused := countStatus(statuses, http.StatusSeeOther), countStatus(statuses, http.StatusUnauthorized); ok != 1 || refused != n-1 {
			t.Fatalf("one code, %d racing logins: statuses %v, want one 303 and the rest 401", n, statuses)
		}

		resetCode := s.resetCode(id)
		for i := range bs {
			bs[i] = s.localBrowser()
		}
		pw := "the racing passphrase"
		statuses = racePost(bs, "/password/reset", url.Values{"code": {resetCode}, "password": {pw}, "password_confirm": {pw}})
		if ok, gone := countStatus(statuses, http.StatusOK), countStatus(statuses, http.StatusNotFound); ok != 1 || gone != n-1 {
			t.Fatalf("one reset link, %d racing posts: statuses %v, want one 200 and the rest 404", n, statuses)
		}
	})
}

func countStatus(statuses []int, want int) int {
	n := 0
	for _, s := range statuses {
		if s == want {
			n++
		}
	}
	return n
}
