package crypto

import (
	"context"
	"errors"
	"fmt"
)

// The two classes of key-encryption failure. Callers test them with errors.Is: an unavailable
// key is a dependency problem (503, retry later), an integrity failure means a wrapped key does
// not belong where it was found (tampering or a bug; retrying cannot help).
var (
	ErrKeyUnavailable = errors.New("key-encryption key unavailable")
	ErrKeyIntegrity   = errors.New("wrapped data key failed its integrity check")
)

// KeyError reports a failed key-encryption operation. Every field is safe to log and to show to
// an operator: KEKID names the key (an ARN or a local key's hash-derived id), Reason is a short
// phrase such as "disabled" or "access denied". It never holds key material or wrapped blobs.
type KeyError struct {
	KEKID  string
	Reason string
	Class  error // ErrKeyUnavailable or ErrKeyIntegrity
	Err    error // the underlying cause, for logs; may be nil
}

func (e *KeyError) Error() string {
	id := e.KEKID
	if id == "" {
		id = "(unnamed)"
	}
	msg := fmt.Sprintf("%s: key %s: %s", e.Class, id, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes both the class and the cause to errors.Is and errors.As.
func (e *KeyError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Class}
	}
	return []error{e.Class, e.Err}
}

// Unavailable returns a KeyError of class ErrKeyUnavailable.
func Unavailable(kekID, reason string, cause error) *KeyError {
	return &KeyError{KEKID: kekID, Reason: reason, Class: ErrKeyUnavailable, Err: cause}
}

// IntegrityError returns a KeyError of class ErrKeyIntegrity.
func IntegrityError(kekID, reason string, cause error) *KeyError {
	return &KeyError{KEKID: kekID, Reason: reason, Class: ErrKeyIntegrity, Err: cause}
}

// DataKeyGenerator is implemented by wrappers whose key service makes data keys itself (AWS KMS
// GenerateDataKey), so the material comes from the service's random source and needs no
// separate wrap call. It returns the plaintext material and the same material wrapped under
// KeyID, bound to ec.
type DataKeyGenerator interface {
	GenerateDataKey(ctx context.Context, ec EncryptionContext) (material, wrapped []byte, err error)
}

// Prober is implemented by wrappers backed by a remote service: Probe checks that the current
// key-encryption key exists and can be used, without touching any data key. It backs /readyz.
type Prober interface {
	Probe(ctx context.Context) error
}
