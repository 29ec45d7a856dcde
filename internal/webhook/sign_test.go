package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignMatchesTheDocumentedAlgorithm(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) != len(SecretPrefix)+43 {
		t.Fatalf("secret %q: want whsec_ and 43 base64url characters", secret)
	}
	body := []byte(`{"id":7,"type":"secret.write"}`)
	at := time.Unix(1_800_000_000, 0)
	got := Sign(secret, at, body)

	// Recomputed by hand, as docs/webhooks.md tells receivers to.
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("1800000000." + string(body)))
	want := "t=1800000000,v1=" + hex.EncodeToString(m.Sum(nil))
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
	if err := Verify(secret, got, body, at.Add(time.Minute)); err != nil {
		t.Fatalf("Verify of a fresh signature: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret := "whsec_test"
	body := []byte(`{"id":1}`)
	now := time.Unix(1_800_000_000, 0)
	good := Sign(secret, now, body)
	ts := strconv.FormatInt(now.Unix(), 10)
	for _, c := range []struct {
		name, header string
		body         []byte
		secret       string
		at           time.Time
		want         error
	}{
		{"another body", good, []byte(`{"id":2}`), secret, now, ErrBadSignature},
		{"another secret", good, body, "whsec_other", now, ErrBadSignature},
		{"older than 5 minutes", good, body, secret, now.Add(5*time.Minute + time.Second), ErrStale},
		{"from the future", good, body, secret, now.Add(-6 * time.Minute), ErrStale},
		{"timestamp changed", strings.Replace(good, "t="+ts, "t="+strconv.FormatInt(now.Unix()+1, 10), 1), body, secret, now, ErrBadSignature},
		{"no signature", "t=" + ts, body, secret, now, ErrMalformed},
		{"no timestamp", strings.TrimPrefix(good, "t="+ts+","), body, secret, now, ErrMalformed},
		{"not hex", "t=" + ts + ",v1=zz", body, secret, now, ErrMalformed},
		{"garbage", "nonsense", body, secret, now, ErrMalformed},
	} {
		if err := Verify(c.secret, c.header, c.body, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
	// A header with a second, unknown-scheme signature and the right v1 passes.
	if err := Verify(secret, good+",v0=abc", body, now); err != nil {
		t.Errorf("extra signature scheme: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	base, max := 10*time.Second, time.Hour
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 9: 2560 * time.Second, 10: time.Hour, 60: time.Hour} {
		for range 50 {
			got := Backoff(n, base, max)
			if got < want/2 || got > want {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, got, want/2, want)
			}
		}
	}
	// Jitter: not every delay is the same.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[Backoff(5, base, max)] = true
	}
	if len(seen) < 2 {
		t.Error("Backoff has no jitter")
	}
}
