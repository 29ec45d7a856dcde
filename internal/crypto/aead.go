package crypto

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/google/uuid"
)

const (
	// KeySize is the size of a DEK: AES-256.
	KeySize = 32
	// NonceSize is the GCM standard nonce size; random nonces of this size are safe for 2^32
	// seals per key, and callers roll DEKs far earlier.
	NonceSize = 12
	// FormatV1 marks [format][DEK id][nonce][AES-256-GCM ciphertext+tag].
	FormatV1 byte = 1

	headerSize = 1 + 16
	tagSize    = 16
	minSealed  = headerSize + NonceSize + tagSize
)

// Errors never carry key material, plaintext or the underlying cipher error, so they are safe to
// log; callers test them with errors.Is.
var (
	ErrDecrypt  = errors.New("crypto: message authentication failed")
	ErrFormat   = errors.New("crypto: unrecognised ciphertext format")
	ErrWrongKey = errors.New("crypto: ciphertext was sealed by another data key")
)

// Seal encrypts plaintext under k with a fresh random nonce. aad must name the value's place
// (see AAD) so that a ciphertext copied elsewhere fails to open. The format byte and DEK id are
// authenticated along with aad.
func (k *DataKey) Seal(plaintext, aad []byte) ([]byte, error) {
	n := headerSize + NonceSize + len(plaintext) + tagSize
	// One allocation holds the output and, past its capacity, the additional data, which must
	// be contiguous (header || aad) and would otherwise cost a second allocation on every seal.
	buf := make([]byte, n+headerSize+len(aad))
	out := buf[: headerSize+NonceSize : n]
	out[0] = FormatV1
	copy(out[1:headerSize], k.id[:])
	nonce := out[headerSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("crypto: generate nonce: %w", err)
	}
	ad := buf[n:]
	copy(ad, out[:headerSize])
	copy(ad[headerSize:], aad)
	return k.aead.Seal(out, nonce, plaintext, ad), nil
}

// Open authenticates and decrypts a ciphertext produced by Seal with the same aad.
func (k *DataKey) Open(ciphertext, aad []byte) ([]byte, error) {
	id, err := KeyIDOf(ciphertext)
	if err != nil {
		return nil, err
	}
	if id != k.id {
		return nil, ErrWrongKey
	}
	nonce := ciphertext[headerSize : headerSize+NonceSize]
	body := ciphertext[headerSize+NonceSize:]
	ptLen := len(body) - tagSize
	// Same single-allocation layout as Seal: plaintext first, additional data past its capacity.
	buf := make([]byte, ptLen+headerSize+len(aad))
	ad := buf[ptLen:]
	copy(ad, ciphertext[:headerSize])
	copy(ad[headerSize:], aad)
	plaintext, err := k.aead.Open(buf[:0:ptLen], nonce, body, ad)
	if err != nil {
		// The cipher's own error says nothing useful and must not leak into logs or clients.
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// OpenAppend is Open for loops over many values: it appends the plaintext to dst and builds
// the additional data in scratch, so a caller reusing both buffers opens a whole listing
// without allocating per value. It returns the extended dst and the scratch for reuse; on
// failure dst is returned unextended.
func (k *DataKey) OpenAppend(dst, scratch, ciphertext, aad []byte) (plain, ad []byte, err error) {
	id, err := KeyIDOf(ciphertext)
	if err != nil {
		return dst, scratch, err
	}
	if id != k.id {
		return dst, scratch, ErrWrongKey
	}
	ad = append(append(scratch[:0], ciphertext[:headerSize]...), aad...)
	nonce := ciphertext[headerSize : headerSize+NonceSize]
	out, err := k.aead.Open(dst, nonce, ciphertext[headerSize+NonceSize:], ad)
	if err != nil {
		return dst, ad, ErrDecrypt
	}
	return out, ad, nil
}

// AppendAAD is AAD appending to dst.
func AppendAAD(dst []byte, parts ...string) []byte {
	for _, p := range parts {
		dst = appendPart(dst, p)
	}
	return dst
}

// KeyIDOf reads the id of the DEK that sealed ciphertext, so the caller can fetch that key. The
// id is not authenticated until Open succeeds.
func KeyIDOf(ciphertext []byte) (uuid.UUID, error) {
	if len(ciphertext) < minSealed {
		return uuid.Nil, ErrFormat
	}
	if ciphertext[0] != FormatV1 {
		return uuid.Nil, fmt.Errorf("%w: version %d", ErrFormat, ciphertext[0])
	}
	return uuid.UUID(ciphertext[1:headerSize]), nil
}

// AAD encodes parts as additional authenticated data. Each part is prefixed with its 4-byte
// big-endian length, so no choice of parts can collide with another: ("ab","c") != ("a","bc").
func AAD(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = appendPart(out, p)
	}
	return out
}

func appendPart(dst []byte, p string) []byte {
	if uint64(len(p)) > math.MaxUint32 {
		// No legitimate name or context value comes near 4 GiB; this is a programming error.
		panic("crypto: additional data part longer than 4 GiB")
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}
