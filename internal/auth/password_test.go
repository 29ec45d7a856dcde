package auth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhq/coffer"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	const pw = "correct horse battery staple"
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q does not carry the expected algorithm and parameters", h)
	}
	if strings.Contains(h, pw) {
		t.Fatal("hash contains the password")
	}
	ok, stale, err := VerifyPassword(h, pw)
	if err != nil || !ok || stale {
		t.Fatalf("VerifyPassword(right) = %v, %v, %v; want true, false, nil", ok, stale, err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", "Correct horse battery staple", pw + " "} {
		if ok, _, err := VerifyPassword(h, wrong); ok || err != nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	// A fresh salt every time: the same password never hashes alike.
	h2, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Error("two hashes of the same password are equal: the salt is not random")
	}
}

// Hashes made with other (older, or stronger) parameters still verify, and are reported as
// stale so the login can store a fresh one.
func TestPasswordOtherParameters(t *testing.T) {
	const pw = "a passphrase of some length"
	salt := []byte("0123456789abcdef")
	old := encodeHash(argonParams{memory: 8 * 1024, time: 3, threads: 2}, salt, argon2.IDKey([]byte(pw), salt, 3, 8*1024, 2, 32))
	ok, stale, err := VerifyPassword(old, pw)
	if err != nil || !ok || !stale {
		t.Fatalf("VerifyPassword(old params) = %v, %v, %v; want true, true, nil", ok, stale, err)
	}
}

func TestPasswordMalformedHash(t *testing.T) {
	good, err := HashPassword("twelve chars!")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	b := base64.RawStdEncoding
	tests := map[string]string{
		"empty":          "",
		"bcrypt":         "$2a$10$abcdefghijklmnopqrstuuTQzQ0uTm5CqWqT5N5R4vIh4Yv5b1zKu",
		"argon2i":        strings.Replace(good, "argon2id", "argon2i", 1),
		"version":        strings.Replace(good, "v=19", "v=16", 1),
		"missing part":   strings.Join(parts[:5], "$"),
		"extra part":     good + "$x",
		"huge memory":    fmt.Sprintf("$argon2id$v=19$m=%d,t=2,p=1$%s$%s", 4<<20, parts[4], parts[5]),
		"huge time":      fmt.Sprintf("$argon2id$v=19$m=19456,t=1000,p=1$%s$%s", parts[4], parts[5]),
		"zero threads":   fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=0$%s$%s", parts[4], parts[5]),
		"unknown param":  fmt.Sprintf("$argon2id$v=19$m=19456,t=2,x=1$%s$%s", parts[4], parts[5]),
		"repeated param": fmt.Sprintf("$argon2id$v=19$m=19456,m=2,p=1$%s$%s", parts[4], parts[5]),
		"bad salt":       fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$%s$%s", "!!!", parts[5]),
		"short salt":     fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$%s$%s", b.EncodeToString([]byte("1234")), parts[5]),
		"short key":      fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$%s$%s", parts[4], b.EncodeToString([]byte("1234"))),
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			ok, _, err := VerifyPassword(h, "twelve chars!")
			if err == nil || ok {
				t.Errorf("VerifyPassword = %v, %v; want an error", ok, err)
			}
		})
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		name string
		pw   string
		ok   bool
	}{
		{"twelve", "abcdefghijkl", true},
		{"eleven", "abcdefghijk", false},
		{"empty", "", false},
		{"twelve multibyte characters", strings.Repeat("é", 12), true},
		{"eleven multibyte characters", strings.Repeat("é", 11), false},
		{"256 bytes", strings.Repeat("a", 256), true},
		{"257 bytes", strings.Repeat("a", 257), false},
		{"NUL", "abcdefghijkl\x00", false},
		{"invalid UTF-8", "abcdefghijkl\xff", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePassword(tc.pw)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidatePassword = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && coffer.ErrorCode(err) != coffer.EINVALID {
				t.Errorf("code = %s, want %s", coffer.ErrorCode(err), coffer.EINVALID)
			}
			if err != nil && tc.pw != "" && strings.Contains(err.Error(), tc.pw) {
				t.Error("the error echoes the password")
			}
		})
	}
}

// The dummy hash used for unknown users has today's parameters, so verifying against it costs
// what a real verification costs, and no password matches it.
func TestPasswordDummyHash(t *testing.T) {
	p, _, _, err := parseHash(dummyHash())
	if err != nil {
		t.Fatal(err)
	}
	if p != passwordParams {
		t.Errorf("dummy hash parameters %+v, want %+v", p, passwordParams)
	}
	if ok, _, _ := VerifyPassword(dummyHash(), ""); ok {
		t.Error("the empty password matches the dummy hash")
	}
}
