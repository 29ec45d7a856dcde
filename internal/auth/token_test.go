package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

var newTokenRE = regexp.MustCompile(`^cfr_pat_[A-Za-z0-9_-]{43}$`)

// mustToken returns a fresh token or stops the test.
func mustToken(t *testing.T) string {
	t.Helper()
	tok, err := auth.NewToken()
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	return tok
}

func TestNewTokenShapeAndUniqueness(t *testing.T) {
	const n = 1000
	seen := make(map[string]bool, n)
	for range n {
		tok := mustToken(t)
		if !newTokenRE.MatchString(tok) {
			t.Fatalf("token %q does not match %s", tok, newTokenRE)
		}
		if !strings.HasPrefix(tok, auth.PersonalTokenPrefix) {
			t.Fatalf("token %q lacks prefix %q", tok, auth.PersonalTokenPrefix)
		}
		if err := auth.ValidateToken(tok); err != nil {
			t.Fatalf("ValidateToken(NewToken()) = %v", err)
		}
		if seen[tok] {
			t.Fatalf("duplicate token after %d tokens", len(seen))
		}
		seen[tok] = true
	}
}

func TestValidateToken(t *testing.T) {
	body := func(n int) string { return strings.Repeat("aB3_-", 30)[:n] }
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"32 chars", "cfr_pat_" + body(32), true},
		{"43 chars", "cfr_pat_" + body(43), true},
		{"128 chars", "cfr_pat_" + body(128), true},
		{"31 chars", "cfr_pat_" + body(31), false},
		{"129 chars", "cfr_pat_" + body(129), false},
		{"empty", "", false},
		{"prefix only", "cfr_pat_", false},
		{"plus", "cfr_pat_" + body(31) + "+", false},
		{"slash", "cfr_pat_" + body(31) + "/", false},
		{"padding", "cfr_pat_" + body(31) + "=", false},
		{"dot", "cfr_pat_" + body(31) + ".", false},
		{"space", "cfr_pat_" + body(16) + " " + body(16), false},
		{"non-ascii", "cfr_pat_" + body(31) + "é", false},
		{"trailing newline", "cfr_pat_" + body(32) + "\n", false},
		{"leading space", " cfr_pat_" + body(32), false},
		{"service prefix", "cfr_svc_" + body(43), false},
		{"uppercase prefix", "CFR_PAT_" + body(43), false},
		{"github prefix", "ghp_" + body(43), false},
		{"no prefix", body(43), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := auth.ValidateToken(tc.tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("ValidateToken = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ValidateToken = nil, want an error")
			}
			if code := coffer.ErrorCode(err); code != coffer.EINVALID {
				t.Errorf("code = %q, want %q", code, coffer.EINVALID)
			}
			// The message may describe the prefix, but never repeat what was supplied.
			if len(tc.tok) > len(auth.PersonalTokenPrefix) && (strings.Contains(err.Error(), tc.tok) || strings.Contains(coffer.ErrorMessage(err), tc.tok)) {
				t.Errorf("error %q echoes the token", err)
			}
			// Not even the secret part may show up.
			if rest, ok := strings.CutPrefix(tc.tok, "cfr_pat_"); ok && len(rest) >= 8 && strings.Contains(err.Error(), rest) {
				t.Errorf("error %q echoes the token body", err)
			}
		})
	}
}

func TestHashToken(t *testing.T) {
	toks := []string{mustToken(t), mustToken(t), "cfr_pat_" + strings.Repeat("A", 32), ""}
	hashes := map[string]string{}
	for _, tok := range toks {
		got := auth.HashToken(tok)
		sum := sha256.Sum256([]byte(tok))
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("HashToken(%q) = %s, want %s", tok, got, want)
		}
		if again := auth.HashToken(tok); again != got {
			t.Errorf("HashToken(%q) not deterministic: %s then %s", tok, got, again)
		}
		if len(got) != 64 || strings.ToLower(got) != got {
			t.Errorf("HashToken(%q) = %q, want 64 lowercase hex digits", tok, got)
		}
		if strings.Contains(got, tok) && tok != "" {
			t.Errorf("hash contains the token")
		}
		if prev, dup := hashes[got]; dup {
			t.Errorf("tokens %q and %q hash alike", prev, tok)
		}
		hashes[got] = tok
	}
}

func TestHashesEqual(t *testing.T) {
	h1 := auth.HashToken(mustToken(t))
	h2 := auth.HashToken(mustToken(t))
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", h1, h1, true},
		{"same value, different string", h1, string([]byte(h1)), true},
		{"different", h1, h2, false},
		{"last digit differs", h1, h1[:63] + flip(h1[63]), false},
		{"prefix", h1, h1[:32], false},
		{"longer", h1, h1 + "0", false},
		{"case", h1, strings.ToUpper(h1), strings.ToUpper(h1) == h1},
		{"against empty", h1, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.HashesEqual(tc.a, tc.b); got != tc.want {
				t.Errorf("HashesEqual = %v, want %v", got, tc.want)
			}
			if got := auth.HashesEqual(tc.b, tc.a); got != tc.want {
				t.Errorf("HashesEqual (swapped) = %v, want %v", got, tc.want)
			}
		})
	}
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

func TestDisplayPrefix(t *testing.T) {
	for range 50 {
		tok := mustToken(t)
		p := auth.DisplayPrefix(tok)
		if len(p) != 12 {
			t.Fatalf("DisplayPrefix(%q) = %q, want 12 characters", tok, p)
		}
		if !strings.HasPrefix(tok, p) {
			t.Fatalf("DisplayPrefix(%q) = %q is not a prefix", tok, p)
		}
		if !strings.HasPrefix(p, auth.PersonalTokenPrefix) {
			t.Fatalf("DisplayPrefix %q does not keep the recognisable prefix", p)
		}
	}
	short := []string{"", "cfr", "cfr_pat_abc"}
	for _, s := range short {
		if got := auth.DisplayPrefix(s); got != s {
			t.Errorf("DisplayPrefix(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestParseBearer(t *testing.T) {
	tok := "cfr_pat_" + strings.Repeat("x", 43)
	tests := []struct {
		name   string
		header string
		want   string // the token when ok
		ok     bool
	}{
		{"canonical", "Bearer " + tok, tok, true},
		{"lowercase scheme", "bearer " + tok, tok, true},
		{"uppercase scheme", "BEARER " + tok, tok, true},
		{"mixed case scheme", "bEaReR " + tok, tok, true},
		{"extra spaces before token", "Bearer    " + tok, tok, true},
		{"trailing spaces", "Bearer " + tok + "   ", tok, true},
		{"empty", "", "", false},
		{"token without scheme", tok, "", false},
		{"scheme only", "Bearer", "", false},
		{"scheme and space", "Bearer ", "", false},
		{"basic", "Basic " + tok, "", false},
		{"basic credentials", "Basic dXNlcjpwYXNz", "", false},
		{"other scheme", "Token " + tok, "", false},
		{"scheme glued to token", "Bearer" + tok, "", false},
		{"malformed token", "Bearer cfr_pat_short", "", false},
		{"wrong prefix", "Bearer ghp_" + strings.Repeat("x", 43), "", false},
		{"two tokens", "Bearer " + tok + " " + tok, "", false},
		{"bad character", "Bearer " + tok[:40] + "$", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := auth.ParseBearer(tc.header)
			if ok != tc.ok {
				t.Fatalf("ParseBearer(%q) ok = %v, want %v", tc.header, ok, tc.ok)
			}
			if ok && got != tc.want {
				t.Errorf("ParseBearer(%q) = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}
