// Package secrets owns secret values: their names and immutable versions, sealing and opening
// them under their environment's data key with additional data that binds each ciphertext to
// its place, and the audit entry of every reveal. Plaintext exists only in memory here.
package secrets

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/crypto"
)

// Limits on what a secret may hold.
const (
	MaxNameLen   = 256
	MaxValueSize = 64 << 10
	MaxNoteLen   = 1024
	MaxBatch     = 1000 // changes in one bulk write
)

// Secret is one named value in an environment at one version. Value is set only when it was
// asked for and the caller may read it.
type Secret struct {
	Name      string
	Version   int
	Value     *string
	Note      string
	CreatedBy string // user id of the version's author
	CreatedAt time.Time
	UpdatedAt time.Time // when the latest version was written
	DeletedAt *time.Time
}

// Version is the metadata of one immutable version of a secret.
type Version struct {
	Version   int
	Note      string
	CreatedBy string
	CreatedAt time.Time
	// DestroyedAt is set once the version's value was destroyed; DestroyedBy did it.
	DestroyedAt *time.Time
	DestroyedBy string
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateName checks that name can be used as an environment variable.
func ValidateName(name string) error {
	if len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return coffer.Errorf(coffer.EINVALID, "secret names match ^[A-Za-z_][A-Za-z0-9_]*$ and are at most %d characters", MaxNameLen)
	}
	return nil
}

// ValidateValue checks a value's size. The message never includes the value.
func ValidateValue(value string) error {
	if len(value) > MaxValueSize {
		return coffer.Errorf(coffer.ETOOLARGE, "secret values are at most %d bytes", MaxValueSize)
	}
	return nil
}

// ValidateNote checks a note: at most MaxNoteLen characters of valid UTF-8, and no NUL
// (which Postgres refuses in text); line breaks and tabs are fine.
func ValidateNote(note string) error {
	if utf8.RuneCountInString(note) > MaxNoteLen {
		return coffer.Errorf(coffer.EINVALID, "notes are at most %d characters", MaxNoteLen)
	}
	if !utf8.ValidString(note) || strings.ContainsRune(note, 0) {
		return coffer.Errorf(coffer.EINVALID, "notes must be text without NUL characters")
	}
	return nil
}

// aadLabel versions the additional-data layout so that a future layout can never be confused
// with this one.
const aadLabel = "coffer/secret/v1"

// AAD binds a ciphertext to its place: a value sealed for one tenant, project, environment,
// name and version fails to open anywhere else. Ids, not slugs, are bound because slugs are
// user-facing and names of things may change.
func AAD(tenantID, projectID, envID, name string, version int) []byte {
	return appendAAD(nil, tenantID, projectID, envID, name, version)
}

func appendAAD(dst []byte, tenantID, projectID, envID, name string, version int) []byte {
	return crypto.AppendAAD(dst, aadLabel, tenantID, projectID, envID, name, strconv.Itoa(version))
}
