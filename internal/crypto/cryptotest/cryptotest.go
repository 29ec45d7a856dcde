// Package cryptotest holds the conformance suite every crypto.KeyWrapper implementation must
// pass, so the local key file and AWS KMS behave the same to the code above them.
package cryptotest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto"
)

// TestKeyWrapper runs the conformance suite against w. It wraps a handful of keys, so a
// wrapper backed by a remote service costs a few dozen calls.
func TestKeyWrapper(t *testing.T, w crypto.KeyWrapper) {
	t.Helper()
	ec := crypto.EncryptionContext{
		"tenant":      "9a1f3c52-7f0e-4c4e-8d0b-3f3b2a9c1e77",
		"project":     "payments-api",
		"environment": "production",
	}
	material := newMaterial(t)
	wrapped := wrap(t, w, material, ec)

	// Every failure is also checked for leaks: error text ends up in logs, so it must never
	// carry the key material or the wrapped key.
	unwrapFails := func(t *testing.T, kekID string, blob []byte, ec crypto.EncryptionContext, class error) {
		t.Helper()
		got, err := w.UnwrapKey(t.Context(), kekID, blob, ec)
		if err == nil {
			t.Fatal("UnwrapKey succeeded, want an error")
		}
		if !errors.Is(err, class) {
			t.Fatalf("UnwrapKey error %q is not of class %q", err, class)
		}
		var ke *crypto.KeyError
		if !errors.As(err, &ke) || ke.Reason == "" {
			t.Fatalf("UnwrapKey error %q is not a *crypto.KeyError giving a reason", err)
		}
		if got != nil {
			t.Fatalf("UnwrapKey returned %d bytes alongside an error", len(got))
		}
		assertNoLeak(t, err, "key material", material)
		assertNoLeak(t, err, "wrapped key", wrapped)
		assertNoLeak(t, err, "wrapped key", blob)
	}

	t.Run("KeyID is non-empty and stable", func(t *testing.T) {
		id := w.KeyID()
		if id == "" {
			t.Fatal("KeyID is empty")
		}
		if again := w.KeyID(); again != id {
			t.Fatalf("KeyID changed from %q to %q", id, again)
		}
	})

	t.Run("round trip", func(t *testing.T) {
		got, err := w.UnwrapKey(t.Context(), w.KeyID(), wrapped, ec)
		if err != nil {
			t.Fatalf("UnwrapKey: %v", err)
		}
		if !bytes.Equal(got, material) {
			t.Fatal("UnwrapKey returned different material")
		}
		if bytes.Contains(wrapped, material) {
			t.Fatal("wrapped key contains the material in clear")
		}
	})

	t.Run("context map is read, not its iteration order", func(t *testing.T) {
		same := crypto.EncryptionContext{}
		for _, k := range []string{"environment", "project", "tenant"} {
			same[k] = ec[k]
		}
		got, err := w.UnwrapKey(t.Context(), w.KeyID(), wrapped, same)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("UnwrapKey with an equal context: %v", err)
		}
	})

	t.Run("wrapping twice differs", func(t *testing.T) {
		if again := wrap(t, w, material, ec); bytes.Equal(again, wrapped) {
			t.Fatal("wrapping the same key twice gave the same blob")
		}
	})

	t.Run("caller's slices are not retained", func(t *testing.T) {
		m := bytes.Clone(material)
		blob := wrap(t, w, m, ec)
		clear(m)
		got, err := w.UnwrapKey(t.Context(), w.KeyID(), blob, ec)
		if err != nil || !bytes.Equal(got, material) {
			t.Fatalf("wrapper kept the caller's material slice: %v", err)
		}
		got[0] ^= 0xFF
		again, err := w.UnwrapKey(t.Context(), w.KeyID(), blob, ec)
		if err != nil || !bytes.Equal(again, material) {
			t.Fatalf("unwrapped slice is shared between calls: %v", err)
		}
	})

	t.Run("context mismatch fails", func(t *testing.T) {
		tests := []struct {
			name string
			ec   crypto.EncryptionContext
		}{
			{"other environment", with(ec, "environment", "staging")},
			{"other tenant", with(ec, "tenant", "0b6c7d1e-2f3a-4b5c-9d8e-7f6a5b4c3d2e")},
			{"extra key", with(ec, "secret", "DATABASE_URL")},
			{"missing key", without(ec, "environment")},
			{"empty context", crypto.EncryptionContext{}},
			{"nil context", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				unwrapFails(t, w.KeyID(), wrapped, tt.ec, crypto.ErrKeyIntegrity)
			})
		}
	})

	t.Run("tampered blob fails", func(t *testing.T) {
		tests := []struct {
			name string
			blob []byte
		}{
			{"first byte flipped", flip(wrapped, 0)},
			{"middle byte flipped", flip(wrapped, len(wrapped)/2)},
			{"last byte flipped", flip(wrapped, len(wrapped)-1)},
			{"truncated", wrapped[:len(wrapped)-1]},
			{"extended", append(bytes.Clone(wrapped), 0)},
			{"empty", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				unwrapFails(t, w.KeyID(), tt.blob, ec, crypto.ErrKeyIntegrity)
			})
		}
	})

	t.Run("unknown key-encryption key fails", func(t *testing.T) {
		for _, kekID := range []string{"", w.KeyID() + "-unknown", "coffer-conformance-unknown-kek"} {
			unwrapFails(t, kekID, wrapped, ec, crypto.ErrKeyUnavailable)
		}
	})

	t.Run("generated data keys unwrap to their material", func(t *testing.T) {
		g, ok := w.(crypto.DataKeyGenerator)
		if !ok {
			t.Skip("wrapper does not generate data keys")
		}
		m, blob, err := g.GenerateDataKey(t.Context(), ec)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		if len(m) != crypto.KeySize {
			t.Fatalf("GenerateDataKey returned %d bytes of material, want %d", len(m), crypto.KeySize)
		}
		got, err := w.UnwrapKey(t.Context(), w.KeyID(), blob, ec)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("generated key does not unwrap to its material: %v", err)
		}
		unwrapFails(t, w.KeyID(), blob, with(ec, "environment", "staging"), crypto.ErrKeyIntegrity)
	})

	t.Run("material of the wrong size is refused", func(t *testing.T) {
		for _, n := range []int{0, crypto.KeySize - 1, crypto.KeySize + 1} {
			blob, err := w.WrapKey(t.Context(), make([]byte, n), ec)
			if err == nil {
				t.Fatalf("WrapKey accepted %d bytes of material", n)
			}
			if blob != nil {
				t.Fatal("WrapKey returned a blob alongside an error")
			}
		}
	})
}

func newMaterial(t *testing.T) []byte {
	t.Helper()
	m := make([]byte, crypto.KeySize)
	if _, err := rand.Read(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func wrap(t *testing.T, w crypto.KeyWrapper, material []byte, ec crypto.EncryptionContext) []byte {
	t.Helper()
	blob, err := w.WrapKey(t.Context(), material, ec)
	if err != nil {
		t.Fatalf("WrapKey: %v", err)
	}
	if len(blob) == 0 {
		t.Fatal("WrapKey returned an empty blob")
	}
	return blob
}

func with(ec crypto.EncryptionContext, k, v string) crypto.EncryptionContext {
	out := crypto.EncryptionContext{k: v}
	for key, val := range ec {
		if key != k {
			out[key] = val
		}
	}
	return out
}

func without(ec crypto.EncryptionContext, k string) crypto.EncryptionContext {
	out := crypto.EncryptionContext{}
	for key, val := range ec {
		if key != k {
			out[key] = val
		}
	}
	return out
}

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}

func assertNoLeak(t *testing.T, err error, what string, secret []byte) {
	t.Helper()
	if len(secret) < 8 { // too short to tell a leak from chance
		return
	}
	msg := err.Error()
	for _, s := range encodings(secret) {
		if strings.Contains(msg, s) {
			t.Fatalf("error %q contains the %s", msg, what)
		}
	}
}

// encodings lists the forms a byte string usually takes when it leaks into a message.
func encodings(b []byte) []string {
	return []string{
		string(b),
		fmt.Sprint(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}
