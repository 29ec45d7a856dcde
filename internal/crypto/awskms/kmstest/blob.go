package kmstest

import (
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"slices"

	"github.com/google/uuid"
)

const (
	blobFormat    byte = 1
	blobHeader         = 1 + 16 // format byte, key id
	nonceSize          = 12
	tagSize            = 16
	maxCiphertext      = 6144 // KMS's limit for CiphertextBlob
)

// adPurpose separates this server's additional data from any other use of the same bytes.
const adPurpose = "kmstest ciphertext v1\x00"

// seal returns [format][key id][nonce][AES-GCM(plaintext)], authenticating the header and ec.
func (k *key) seal(plaintext []byte, ec map[string]string) ([]byte, *apiError) {
	out := make([]byte, blobHeader+nonceSize, blobHeader+nonceSize+len(plaintext)+tagSize)
	out[0] = blobFormat
	copy(out[1:blobHeader], k.id[:])
	nonce := out[blobHeader:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, code: "KMSInternalException", msg: "random source failed"}
	}
	return k.aead.Seal(out, nonce, plaintext, additionalData(out[:blobHeader], ec)), nil
}

// open reverses seal; it reports false for any blob or context that does not authenticate.
func (k *key) open(blob []byte, ec map[string]string) ([]byte, bool) {
	if len(blob) < blobHeader+nonceSize+tagSize {
		return nil, false
	}
	plaintext, err := k.aead.Open(nil, blob[blobHeader:blobHeader+nonceSize], blob[blobHeader+nonceSize:], additionalData(blob[:blobHeader], ec))
	return plaintext, err == nil
}

// keyOf returns the key id a blob claims to be sealed under, if it is shaped like a blob.
func keyOf(blob []byte) (uuid.UUID, bool) {
	var id uuid.UUID
	if len(blob) < blobHeader+nonceSize+tagSize || blob[0] != blobFormat {
		return id, false
	}
	copy(id[:], blob[1:blobHeader])
	return id, true
}

// additionalData binds the blob header (format and key id) and the encryption context. The
// context is encoded canonically: pairs sorted by key, each key and value prefixed with its
// length, so no two different contexts encode alike ({"ab":"c"} differs from {"a":"bc"}) and
// map order does not matter.
func additionalData(header []byte, ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	n := len(adPurpose) + len(header) + 4
	for k, v := range ec {
		keys = append(keys, k)
		n += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	ad := make([]byte, 0, n)
	ad = append(ad, adPurpose...)
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(keys)))
	for _, k := range keys {
		ad = appendPart(ad, k)
		ad = appendPart(ad, ec[k])
	}
	return ad
}

func appendPart(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
