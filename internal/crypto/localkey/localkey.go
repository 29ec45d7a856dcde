// Package localkey provides the local key-encryption key: a 32-byte key kept in a file on the
// server, which wraps DEKs when no KMS is configured. It is the development and single-host
// default; production deployments are expected to use a KMS, because anyone who can read the
// file and the database can read every secret.
package localkey

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/internal/crypto"
)

const (
	keyIDPrefix = "local:"
	// wrapPurpose separates DEK wrapping from any future use of the same KEK.
	wrapPurpose = "coffer/dek/v1"
	nonceSize   = 12
)

// Errors are constant strings so that no input (key, blob or file content) can reach a log.
var (
	errKEKSize     = fmt.Errorf("localkey: key-encryption key must be %d bytes", crypto.KeySize)
	errBase64      = errors.New("localkey: key-encryption key is not valid base64")
	errMaterialLen = fmt.Errorf("localkey: data key material must be %d bytes", crypto.KeySize)
)

// Wrapper wraps DEKs with AES-256-GCM under a local key-encryption key. It keeps only the
// expanded cipher, not the raw key. It is safe for concurrent use.
type Wrapper struct {
	id   string
	aead cipher.AEAD
}

var _ crypto.KeyWrapper = (*Wrapper)(nil)

// New returns a Wrapper for kek, which must be 32 bytes. The caller may wipe kek afterwards.
func New(kek []byte) (*Wrapper, error) {
	if len(kek) != crypto.KeySize {
		return nil, errKEKSize
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("localkey: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("localkey: cipher: %w", err)
	}
	h := sha256.New()
	h.Write([]byte("coffer local kek id\x00"))
	h.Write(kek)
	return &Wrapper{id: keyIDPrefix + hex.EncodeToString(h.Sum(nil))[:16], aead: aead}, nil
}

// FromBase64 parses a standard-base64 key, ignoring surrounding whitespace (a trailing newline
// in a file or environment variable is common).
func FromBase64(s string) (*Wrapper, error) {
	kek, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		// The decoder's error quotes an offset into the key; say nothing about the input.
		return nil, errBase64
	}
	defer clear(kek)
	return New(kek)
}

// KeyID names this KEK by a hash of it, so a wrapped DEK records which local key it needs
// without revealing that key.
func (w *Wrapper) KeyID() string { return w.id }

// WrapKey returns nonce || AES-GCM(material), authenticated with the KEK id and ec.
func (w *Wrapper) WrapKey(ctx context.Context, material []byte, ec crypto.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(material) != crypto.KeySize {
		return nil, errMaterialLen
	}
	out := make([]byte, nonceSize, nonceSize+len(material)+w.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("localkey: generate nonce: %w", err)
	}
	return w.aead.Seal(out, out, material, w.additionalData(ec)), nil
}

// UnwrapKey reverses WrapKey. A kekID other than this key's is unavailable (this server does
// not hold that key); every other failure is the same integrity error: telling a wrong context
// from a damaged blob helps nobody but an attacker.
func (w *Wrapper) UnwrapKey(ctx context.Context, kekID string, wrapped []byte, ec crypto.EncryptionContext) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if kekID != w.id {
		return nil, crypto.Unavailable(kekID, "this local master key is not loaded", nil)
	}
	if len(wrapped) != nonceSize+crypto.KeySize+w.aead.Overhead() {
		return nil, crypto.IntegrityError(w.id, "wrapped data key does not open here", nil)
	}
	material, err := w.aead.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], w.additionalData(ec))
	if err != nil {
		return nil, crypto.IntegrityError(w.id, "wrapped data key does not open here", nil)
	}
	return material, nil
}

func (w *Wrapper) additionalData(ec crypto.EncryptionContext) []byte {
	return append(crypto.AAD(wrapPurpose, w.id), ec.Encode()...)
}
