package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238): what every authenticator app assumes by default.
const (
	totpIssuer = "Coffer"
	totpPeriod = 30
	totpSkew   = 1 // one step either side, for clocks that drift a little
	totpDigits = otp.DigitsSix
	// RecoveryCodeCount codes are issued when TOTP is confirmed; each works once.
	RecoveryCodeCount = 10
)

// NewTOTPKey makes a fresh 160-bit TOTP seed for an account and returns the seed (base32, as
// authenticator apps take it) and the otpauth:// URI that carries it.
func NewTOTPKey(account string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: totpIssuer, AccountName: account, Period: totpPeriod, SecretSize: 20,
		Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}

// TOTPURI rebuilds the otpauth:// URI of a stored seed, for showing an enrolment again.
func TOTPURI(account, secret string) (string, error) {
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		return "", err
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: totpIssuer, AccountName: account, Period: totpPeriod, Secret: raw,
		Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", err
	}
	return k.URL(), nil
}

// TOTPStep is the RFC 6238 time step t falls in.
func TOTPStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// MatchTOTP returns the time step, within the allowed skew around now, whose code is code.
// The caller accepts the step only if it is later than the last step the user spent, which
// makes every code single-use.
func MatchTOTP(secret, code string, now time.Time) (int64, bool) {
	code = strings.TrimSpace(code)
	if !isTOTPCode(code) {
		return 0, false
	}
	cur := TOTPStep(now)
	// Later steps first: if a code repeats across the window (one chance in a million),
	// the latest step is the one to spend.
	for step := cur + totpSkew; step >= cur-totpSkew; step-- {
		want, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, true
		}
	}
	return 0, false
}

// isTOTPCode reports whether code has a TOTP code's shape (six digits); anything else typed at
// the second-factor prompt is taken for a recovery code.
func isTOTPCode(code string) bool {
	if len(code) != totpDigits.Length() {
		return false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// recoveryAlphabet leaves out letters that read alike (0/o, 1/l/i) so codes survive being
// written down.
const recoveryAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// NewRecoveryCodes returns RecoveryCodeCount fresh codes, formatted xxxx-xxxx-xxxx (about 59
// bits each), and the hashes to store.
func NewRecoveryCodes() (codes, hashes []string, err error) {
	for range RecoveryCodeCount {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, err
		}
		var sb strings.Builder
		for i, x := range b {
			if i > 0 && i%4 == 0 {
				sb.WriteByte('-')
			}
			// 256 is not a multiple of the alphabet's 31 letters; the bias this leaves
			// (a few letters 1/8 likelier) costs well under a bit of the code's strength.
			sb.WriteByte(recoveryAlphabet[int(x)%len(recoveryAlphabet)])
		}
		code := sb.String()
		codes = append(codes, code)
		hashes = append(hashes, HashRecoveryCode(code))
	}
	return codes, hashes, nil
}

// HashRecoveryCode is what is stored of a recovery code: a SHA-256 of its normalised form
// (lowercase, without separators), so codes typed with spaces or capitals still match. The
// codes are random, so a fast hash is enough.
func HashRecoveryCode(code string) string {
	var sb strings.Builder
	for _, c := range strings.ToLower(code) {
		if c == '-' || c == ' ' {
			continue
		}
		sb.WriteRune(c)
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return hex.EncodeToString(sum[:])
}
