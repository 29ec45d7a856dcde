package auth

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestTOTPKey(t *testing.T) {
	secret, uri, err := NewTOTPKey("ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 { // 20 bytes, base32 without padding
		t.Errorf("secret %q has %d characters, want 32", secret, len(secret))
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("uri %q is not an otpauth://totp URI", uri)
	}
	q := u.Query()
	if q.Get("secret") != secret || q.Get("issuer") != "Coffer" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("uri parameters %v", q)
	}
	again, err := TOTPURI("ada@example.com", secret)
	if err != nil || again != uri {
		t.Errorf("TOTPURI = %q, %v; want %q", again, err, uri)
	}
	other, _, err := NewTOTPKey("ada@example.com")
	if err != nil || other == secret {
		t.Error("two keys share a seed")
	}
}

func TestTOTPMatchWindow(t *testing.T) {
	secret, _, err := NewTOTPKey("ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 15, 0, time.UTC)
	cur := TOTPStep(now)
	for _, tc := range []struct {
		name  string
		at    time.Time
		step  int64
		match bool
	}{
		{"now", now, cur, true},
		{"one step ago", now.Add(-30 * time.Second), cur - 1, true},
		{"one step ahead", now.Add(30 * time.Second), cur + 1, true},
		{"two steps ago", now.Add(-60 * time.Second), 0, false},
		{"two steps ahead", now.Add(60 * time.Second), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := totp.GenerateCode(secret, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			step, ok := MatchTOTP(secret, code, now)
			if ok != tc.match || (ok && step != tc.step) {
				t.Errorf("MatchTOTP = %d, %v; want %d, %v", step, ok, tc.step, tc.match)
			}
		})
	}
	code, _ := totp.GenerateCode(secret, now)
	for _, bad := range []string{"", "12345", "1234567", "abcdef", code + "0", " " + code[:5]} {
		if _, ok := MatchTOTP(secret, bad, now); ok {
			t.Errorf("MatchTOTP(%q) matched", bad)
		}
	}
	if _, ok := MatchTOTP(secret, " "+code+" ", now); !ok {
		t.Error("a code with surrounding spaces did not match")
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, hashes, err := NewRecoveryCodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("got %d codes and %d hashes, want %d", len(codes), len(hashes), RecoveryCodeCount)
	}
	seen := map[string]bool{}
	for i, c := range codes {
		if len(c) != 14 || c[4] != '-' || c[9] != '-' {
			t.Errorf("code %q is not xxxx-xxxx-xxxx", c)
		}
		if isTOTPCode(strings.ReplaceAll(c, "-", "")) {
			t.Errorf("code %q could be taken for a TOTP code", c)
		}
		if seen[c] {
			t.Errorf("code %q issued twice", c)
		}
		seen[c] = true
		if hashes[i] != HashRecoveryCode(c) {
			t.Errorf("hash %d is not the hash of code %d", i, i)
		}
		if strings.Contains(hashes[i], strings.ReplaceAll(c, "-", "")) {
			t.Error("the hash contains the code")
		}
		// Typed without dashes, in capitals, with spaces: the same code.
		for _, typed := range []string{strings.ToUpper(c), strings.ReplaceAll(c, "-", ""), strings.ReplaceAll(c, "-", " ")} {
			if HashRecoveryCode(typed) != hashes[i] {
				t.Errorf("code typed as %q does not match", typed)
			}
		}
	}
}
