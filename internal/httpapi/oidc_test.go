package httpapi

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cofferhq/coffer"
)

const (
	testIssuer   = "https://idp.example.com"
	testClientID = "coffer"
	testNonce    = "nonce-of-this-sign-in"
)

// signIDToken signs claims as an RS256 JWT with key, the way a provider does.
func signIDToken(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestOIDCVerifyIDToken runs verifyIDToken with tokens no real provider would send: each must
// be refused as unauthorized, and the good ones accepted with their claims.
func TestOIDCVerifyIDToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	verifier := oidc.NewVerifier(testIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Public()}},
		&oidc.Config{ClientID: testClientID})
	now := time.Now()
	good := func() map[string]any {
		return map[string]any{
			"iss": testIssuer, "sub": "user-1", "aud": testClientID, "nonce": testNonce,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"email": "ada@example.com", "email_verified": true, "name": "Ada",
		}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	refused := []struct {
		name   string
		claims map[string]any
		key    *rsa.PrivateKey
	}{
		{"expired", with("exp", now.Add(-time.Minute).Unix()), key},
		{"foreign audience", with("aud", "someone-else"), key},
		{"several audiences, no azp", with("aud", []string{"someone-else", testClientID}), key},
		{"several audiences, azp another client", func() map[string]any {
			c := with("aud", []string{"someone-else", testClientID})
			c["azp"] = "someone-else"
			return c
		}(), key},
		{"wrong nonce", with("nonce", "another-sign-in"), key},
		{"no nonce", with("nonce", nil), key},
		{"unknown issuer", with("iss", "https://evil.example.com"), key},
		{"signed by another key", good(), other},
		{"no subject", with("sub", ""), key},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			raw := signIDToken(t, tc.key, tc.claims)
			_, err := verifyIDToken(context.Background(), verifier, raw, testClientID, testNonce)
			if coffer.ErrorCode(err) != coffer.EUNAUTHORIZED {
				t.Fatalf("err = %v, want unauthorized", err)
			}
		})
	}

	t.Run("tampered payload", func(t *testing.T) {
		raw := signIDToken(t, key, good())
		forged := signIDToken(t, key, with("sub", "admin"))
		// The signature of one token over the header and payload of another.
		a, b := strings.Split(raw, "."), strings.Split(forged, ".")
		if _, err := verifyIDToken(context.Background(), verifier, a[0]+"."+b[1]+"."+a[2], testClientID, testNonce); coffer.ErrorCode(err) != coffer.EUNAUTHORIZED {
			t.Fatalf("err = %v, want unauthorized", err)
		}
	})

	accepted := []struct {
		name     string
		claims   map[string]any
		verified bool
	}{
		{"plain", good(), true},
		{"several audiences, azp is this client", func() map[string]any {
			c := with("aud", []string{"someone-else", testClientID})
			c["azp"] = testClientID
			return c
		}(), true},
		{"email_verified as a string", with("email_verified", "true"), true},
		{"email not verified", with("email_verified", false), false},
		{"email_verified absent", with("email_verified", nil), false},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			c, err := verifyIDToken(context.Background(), verifier, signIDToken(t, key, tc.claims), testClientID, testNonce)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if c.Issuer != testIssuer || c.Subject != "user-1" || c.Email != "ada@example.com" || c.EmailVerified != tc.verified {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}
