// Package auth owns who is calling: users, personal access tokens (generated, hashed at rest,
// shown once), the principal of a request, and bootstrapping the first owner. It has no HTTP
// and no storage code; permission rules on tenants live in package tenant.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/cofferhq/coffer"
)

// PersonalTokenPrefix marks personal access tokens so secret scanners can spot leaked ones.
const PersonalTokenPrefix = "cfr_pat_"

// displayLen is how much of a token is kept in clear to tell tokens apart: the prefix and
// four characters, far too few to help guess the rest.
const displayLen = len(PersonalTokenPrefix) + 4

var tokenRE = regexp.MustCompile(`^cfr_pat_[A-Za-z0-9_-]{32,128}$`)

// NewToken returns a fresh personal access token: 32 random bytes, base64url encoded.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return PersonalTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidateToken checks the shape of a token supplied from outside (bootstrap).
func ValidateToken(tok string) error {
	if !tokenRE.MatchString(tok) {
		return coffer.Errorf(coffer.EINVALID, "a token is cfr_pat_ followed by 32 to 128 characters of A-Z, a-z, 0-9, _ or -")
	}
	return nil
}

// HashToken is what is stored and looked up: a SHA-256 of the token. Tokens carry 256 bits
// of entropy, so a fast hash is enough; no salt is needed to stop guessing.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// HashesEqual compares two token hashes in constant time.
func HashesEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// DisplayPrefix is the short, harmless part of a token shown in listings.
func DisplayPrefix(tok string) string {
	if len(tok) < displayLen {
		return tok
	}
	return tok[:displayLen]
}

// ParseBearer extracts a token from an Authorization header value.
func ParseBearer(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tokenRE.MatchString(tok) || serviceTokenRE.MatchString(tok)
}
