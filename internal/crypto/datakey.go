package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// DataKey is an unwrapped DEK. It is safe for concurrent use.
type DataKey struct {
	id   uuid.UUID
	aead cipher.AEAD

	// keyMu guards key only: Wipe may run (on cache eviction) while other goroutines still
	// seal and open, which never touch key.
	keyMu sync.Mutex
	key   []byte
}

// NewDataKey generates a fresh DEK with a random (v4) id.
func NewDataKey() (*DataKey, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("crypto: generate data key id: %w", err)
	}
	material := make([]byte, KeySize)
	if _, err := rand.Read(material); err != nil {
		return nil, fmt.Errorf("crypto: generate data key: %w", err)
	}
	return newDataKey(id, material)
}

// DataKeyFrom rebuilds a DEK from unwrapped material. The material is copied, so the caller may
// wipe its own slice afterwards.
func DataKeyFrom(id uuid.UUID, material []byte) (*DataKey, error) {
	if id == uuid.Nil {
		return nil, errors.New("crypto: data key id is nil")
	}
	if len(material) != KeySize {
		return nil, fmt.Errorf("crypto: data key must be %d bytes, got %d", KeySize, len(material))
	}
	return newDataKey(id, append([]byte(nil), material...))
}

// newDataKey takes ownership of material.
func newDataKey(id uuid.UUID, material []byte) (*DataKey, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("crypto: data key cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("crypto: data key cipher: %w", err)
	}
	return &DataKey{id: id, aead: aead, key: material}, nil
}

// ID names the key; it is stored in every ciphertext the key seals.
func (k *DataKey) ID() uuid.UUID { return k.id }

// Material returns a copy of the raw key for wrapping under a key-encryption key. After Wipe it
// returns nil, so a wiped key can never be wrapped as zeros by mistake.
func (k *DataKey) Material() []byte {
	k.keyMu.Lock()
	defer k.keyMu.Unlock()
	if k.key == nil {
		return nil
	}
	return append([]byte(nil), k.key...)
}

// Wipe zeroes the raw key bytes. It is best effort: the AES key schedule inside the AEAD cannot
// be reached and stays in memory until the garbage collector frees it. That is also why Seal
// and Open keep working after Wipe, which lets the cache wipe keys that callers still hold.
func (k *DataKey) Wipe() {
	k.keyMu.Lock()
	defer k.keyMu.Unlock()
	clear(k.key)
	k.key = nil
}

// RandomKey returns KeySize fresh random bytes: material for a key check or a throwaway wrap.
// The caller wipes it.
func RandomKey() ([]byte, error) {
	m := make([]byte, KeySize)
	if _, err := rand.Read(m); err != nil {
		return nil, fmt.Errorf("crypto: generate key: %w", err)
	}
	return m, nil
}
