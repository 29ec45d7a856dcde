package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhq/coffer"
)

// Password rules. The upper bound is in bytes: it bounds the work one login can ask of the
// server, and still leaves room for any passphrase a person types.
const (
	MinPasswordChars = 12
	MaxPasswordBytes = 256
)

// argonParams are the Argon2id cost parameters a hash was made with; they travel in the
// encoded hash so that raising them later leaves older hashes verifiable.
type argonParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
}

// passwordParams are OWASP's recommended minimum for Argon2id (19 MiB, two passes, one lane).
var passwordParams = argonParams{memory: 19 * 1024, time: 2, threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// Bounds on parameters read back from storage: a tampered or corrupt row must not make one
// verification allocate gigabytes or run for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 16
	maxThreads   = 16
)

var b64 = base64.RawStdEncoding

// argonSlots bounds how many Argon2id computations run at once: each takes 19 MiB, and a
// flood of sign-ins from many addresses must queue rather than exhaust memory.
var argonSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// idKey is argon2.IDKey run in one of the slots.
func idKey(pw, salt []byte, p argonParams, n uint32) []byte {
	argonSlots <- struct{}{}
	defer func() { <-argonSlots }()
	return argon2.IDKey(pw, salt, p.time, p.memory, p.threads, n)
}

// ValidatePassword checks a new password against the rules. It never echoes the password.
func ValidatePassword(pw string) error {
	if !utf8.ValidString(pw) || strings.ContainsRune(pw, 0) {
		return coffer.Errorf(coffer.EINVALID, "password must be text without NUL characters")
	}
	if len(pw) > MaxPasswordBytes {
		return coffer.Errorf(coffer.EINVALID, "password must be at most %d bytes", MaxPasswordBytes)
	}
	if utf8.RuneCountInString(pw) < MinPasswordChars {
		return coffer.Errorf(coffer.EINVALID, "password must be at least %d characters", MinPasswordChars)
	}
	return nil
}

// HashPassword returns the PHC-style Argon2id encoding of pw under a fresh random salt:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return encodeHash(passwordParams, salt, idKey([]byte(pw), salt, passwordParams, keyLen)), nil
}

func encodeHash(p argonParams, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

var errMalformedHash = errors.New("malformed password hash")

// parseHash reads an encoded Argon2id hash back into its parameters, salt and key.
func parseHash(encoded string) (argonParams, []byte, []byte, error) {
	var p argonParams
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errMalformedHash
	}
	seen := 0
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, errMalformedHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return p, nil, nil, errMalformedHash
		}
		switch k {
		case "m":
			p.memory, seen = uint32(n), seen|1
		case "t":
			p.time, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return p, nil, nil, errMalformedHash
			}
			p.threads, seen = uint8(n), seen|4
		default:
			return p, nil, nil, errMalformedHash
		}
	}
	if seen != 7 || p.memory < 8*uint32(p.threads) || p.memory > maxMemoryKiB || p.time < 1 || p.time > maxTime ||
		p.threads < 1 || p.threads > maxThreads {
		return p, nil, nil, errMalformedHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errMalformedHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errMalformedHash
	}
	return p, salt, key, nil
}

// VerifyPassword reports whether pw matches the encoded hash, and whether the hash was made
// with other parameters than today's (the caller may store a fresh hash). A malformed hash is
// an error, not a mismatch, so that a corrupt row shows up in the logs.
func VerifyPassword(encoded, pw string) (ok, stale bool, err error) {
	p, salt, key, err := parseHash(encoded)
	if err != nil {
		return false, false, err
	}
	got := idKey([]byte(pw), salt, p, uint32(len(key)))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	return ok, p != passwordParams || len(key) != keyLen || len(salt) != saltLen, nil
}

var (
	dummyOnce sync.Once
	dummy     string
)

// dummyHash is a hash of a random password nobody knows. Verifying against it when there is
// no user, or the user has no password, makes those answers cost what a wrong password costs,
// so timing does not tell which addresses have accounts.
func dummyHash() string {
	dummyOnce.Do(func() {
		var b [24]byte
		_, _ = rand.Read(b[:])
		h, err := HashPassword(b64.EncodeToString(b[:]))
		if err != nil {
			panic("auth: cannot hash the dummy password: " + err.Error())
		}
		dummy = h
	})
	return dummy
}
