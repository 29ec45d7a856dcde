package crypto

import (
	"context"
	"slices"
)

// EncryptionContext names where a wrapped key belongs (tenant, project, environment). It is
// authenticated by the wrapper (AAD for the local key, KMS EncryptionContext for AWS), so a
// wrapped key copied to another environment cannot be unwrapped there.
type EncryptionContext map[string]string

// Encode returns the canonical encoding of ec: keys sorted, each key and value length-prefixed
// as in AAD. Map iteration order is random, so anything authenticated must go through this.
func (ec EncryptionContext) Encode() []byte {
	keys := make([]string, 0, len(ec))
	n := 0
	for k, v := range ec {
		keys = append(keys, k)
		n += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	out := make([]byte, 0, n)
	for _, k := range keys {
		out = appendPart(out, k)
		out = appendPart(out, ec[k])
	}
	return out
}

// KeyWrapper wraps DEKs under a key-encryption key (KEK). Implementations: localkey (a key file)
// and awskms. Every implementation must pass cryptotest.TestKeyWrapper.
//
// Failures are *KeyError values of class ErrKeyUnavailable (the key cannot be used now: unknown,
// disabled, denied, throttled, unreachable) or ErrKeyIntegrity (the wrapped key does not open
// under this context: tampered, moved, or wrapped by another key); context cancellation is
// returned as is. Optional abilities are the separate interfaces DataKeyGenerator and Prober.
type KeyWrapper interface {
	// KeyID names the key-encryption key new data keys are wrapped under.
	KeyID() string
	// WrapKey encrypts DEK material, binding it to ec. The result is opaque.
	WrapKey(ctx context.Context, material []byte, ec EncryptionContext) ([]byte, error)
	// UnwrapKey reverses WrapKey. kekID is the KeyID stored next to the wrapped key, which may
	// be an older KEK than the current one; ec must equal the one used to wrap.
	UnwrapKey(ctx context.Context, kekID string, wrapped []byte, ec EncryptionContext) ([]byte, error)
}
