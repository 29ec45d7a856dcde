package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret, so that secret scanners can spot a leaked one.
const SecretPrefix = "whsec_"

// SecretPurpose seals signing secrets (secrets.Fields); the owner is the webhook's id, so a
// sealed secret copied to another webhook's row fails to open.
const SecretPurpose = "webhook-signing-secret"

// Headers of a delivery.
const (
	HeaderSignature = "Coffer-Signature"
	HeaderEventID   = "Coffer-Event-Id"
	HeaderEventType = "Coffer-Event-Type"
	HeaderWebhookID = "Coffer-Webhook-Id"
)

// SignatureTolerance is how old a signature timestamp receivers should accept (documented
// in docs/webhooks.md; Verify applies it).
const SignatureTolerance = 5 * time.Minute

// NewSecret returns a fresh signing secret: the prefix and 32 random bytes, base64url.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Sign returns the Coffer-Signature header value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>". The HMAC key is the whole
// secret string as shown to the user, prefix included, so receivers use it as given.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verification failures.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook signature timestamp is too old or in the future")
	ErrMalformed    = errors.New("webhook signature header is malformed")
)

// Verify checks a Coffer-Signature header against body as a receiver should: the timestamp
// within SignatureTolerance of now, and one v1 signature equal, compared in constant time.
// It is the algorithm docs/webhooks.md shows, kept here so tests check what is documented.
func Verify(secret, header string, body []byte, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				return ErrMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return ErrStale
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrBadSignature
}
