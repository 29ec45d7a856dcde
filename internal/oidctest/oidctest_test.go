package oidctest_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/oidctest"
)

type discovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

// TestPasswordLogin drives the whole code flow with PKCE over plain HTTP, the way a browser and
// Coffer's callback handler will: discovery, authorization, the password form, the redirect
// back with a code, and the code exchange.
func TestPasswordLogin(t *testing.T) {
	const redirectURI = "http://127.0.0.1:1/oidc/callback" // never dialled: redirects stop there
	p := oidctest.Start(t, oidctest.Options{RedirectURI: redirectURI, Email: "ada@example.com", Password: "correct horse"})

	var d discovery
	getJSON(t, http.DefaultClient, p.DiscoveryURL(), &d)
	if d.Issuer != p.Issuer {
		t.Fatalf("discovery issuer %q, want %q", d.Issuer, p.Issuer)
	}
	if d.AuthorizationEndpoint != p.Issuer+"/auth" || d.TokenEndpoint != p.Issuer+"/token" {
		t.Fatalf("endpoints %q and %q, want under %q", d.AuthorizationEndpoint, d.TokenEndpoint, p.Issuer)
	}

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var callback *url.URL
	browser := &http.Client{
		Jar: jar,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Host == "127.0.0.1:1" {
				callback = req.URL
				return http.ErrUseLastResponse
			}
			return nil
		},
	}

	verifier := rand.Text() + rand.Text()
	challenge := sha256.Sum256([]byte(verifier))
	state, nonce := rand.Text(), rand.Text()
	auth := d.AuthorizationEndpoint + "?" + url.Values{
		"response_type":         {"code"},
		"client_id":             {p.ClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {"openid email"},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}.Encode()
	page, pageURL := get(t, browser, auth)
	action := formAction(t, page, pageURL)

	// A wrong password shows the form again rather than redirecting.
	if _, _ = post(t, browser, action, url.Values{"login": {p.Email}, "password": {"wrong"}}); callback != nil {
		t.Fatalf("a wrong password was let through to %s", callback)
	}
	post(t, browser, action, url.Values{"login": {p.Email}, "password": {p.Password}})
	if callback == nil {
		t.Fatal("the login did not redirect to the client")
	}
	if got := callback.Scheme + "://" + callback.Host + callback.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
	q := callback.Query()
	if q.Get("state") != state {
		t.Fatalf("state %q, want %q", q.Get("state"), state)
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("no code in %s", callback)
	}

	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
	req, err := http.NewRequest(http.MethodPost, d.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(p.ClientSecret))
	var tok struct {
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	do(t, http.DefaultClient, req, &tok)
	if tok.IDToken == "" || tok.AccessToken == "" {
		t.Fatalf("token response lacks tokens: %+v", tok)
	}

	// The claims are read, not verified: signature checks belong to the code under test.
	parts := strings.Split(tok.IDToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("id_token payload: %v", err)
	}
	var claims struct {
		Iss   string `json:"iss"`
		Aud   any    `json:"aud"`
		Sub   string `json:"sub"`
		Email string `json:"email"`
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatalf("id_token claims: %v", err)
	}
	if claims.Iss != p.Issuer || claims.Email != p.Email || claims.Nonce != nonce || claims.Sub == "" {
		t.Fatalf("claims %+v, want iss %q, email %q, nonce %q and a subject", claims, p.Issuer, p.Email, nonce)
	}
}

// TestProvidersAreSeparate: each Start gets its own port and client.
func TestProvidersAreSeparate(t *testing.T) {
	a := oidctest.Start(t, oidctest.Options{})
	b := oidctest.Start(t, oidctest.Options{})
	if a.Issuer == b.Issuer || a.ClientID == b.ClientID || a.ClientSecret == b.ClientSecret || a.Password == b.Password {
		t.Fatalf("providers share settings: %+v and %+v", a, b)
	}
}

var formRE = regexp.MustCompile(`<form method="post" action="([^"]*)"`)

// formAction finds the password form's target on the login page, resolved against its URL.
func formAction(t *testing.T, page string, pageURL *url.URL) string {
	t.Helper()
	m := formRE.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, `name="login"`) || !strings.Contains(page, `name="password"`) {
		t.Fatalf("no password form at %s:\n%s", pageURL, page)
	}
	action, err := pageURL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatalf("form action %q: %v", m[1], err)
	}
	return action.String()
}

func get(t *testing.T, c *http.Client, u string) (string, *url.URL) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, c, req)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (string, *url.URL) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return send(t, c, req)
}

// send returns the body and URL of the last response; a redirect stopped at the client is fine.
func send(t *testing.T, c *http.Client, req *http.Request) (string, *url.URL) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", req.URL, err)
	}
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s %s: %s\n%s", req.Method, req.URL, resp.Status, body)
	}
	return string(body), resp.Request.URL
}

func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	do(t, c, req, v)
}

func do(t *testing.T, c *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s\n%s", req.Method, req.URL, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", req.URL, errors.Join(err, errors.New(string(body))))
	}
}
