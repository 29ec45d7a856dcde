// Package tenant owns the organisation of secrets: tenants, their projects and environments,
// and who belongs to them with which role. It holds the domain types, their validation and
// the pure rules that turn roles into an access level; storage and HTTP live elsewhere.
package tenant

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cofferhq/coffer"
)

// Tenant is an isolated organisation. No request ever crosses from one tenant to another.
type Tenant struct {
	ID        string
	Slug      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Project groups environments inside a tenant.
type Project struct {
	ID        string
	TenantID  string
	Slug      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Environment holds secrets, each sealed under the environment's current data key.
type Environment struct {
	ID        string
	TenantID  string
	ProjectID string
	Slug      string
	Name      string
	Protected bool
	// Key describes the data key new values are sealed with.
	Key KeyInfo
	// Revision changes whenever a secret in the environment changes.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// KeyInfo is the metadata of an environment's current data key; the key itself never leaves
// the crypto and secrets packages.
type KeyInfo struct {
	ID        string
	Uses      int64
	CreatedAt time.Time
}

// WrappedKey is a data key as stored: wrapped by a key-encryption key, never in clear.
type WrappedKey struct {
	ID        string
	KEKID     string
	Wrapped   []byte
	CreatedAt time.Time
	// TenantKEK says KEKID is a key the tenant registered (bring your own key) rather than one
	// of the platform's.
	TenantKEK bool
	// PreviousKEKID is set on a rewrapped key: the KEK it was wrapped under when read, so the
	// store replaces only a row that has not changed since.
	PreviousKEKID string
}

// DefaultEnvironments are created with every project; production starts protected.
var DefaultEnvironments = []struct {
	Slug, Name string
	Protected  bool
}{
	{"development", "Development", false},
	{"staging", "Staging", false},
	{"production", "Production", true},
}

var slugRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateSlug checks a URL-safe identifier: lowercase letters, digits and inner hyphens.
func ValidateSlug(field, slug string) error {
	if !slugRE.MatchString(slug) {
		return coffer.Errorf(coffer.EINVALID, "%s must be 1-63 lowercase letters, digits or inner hyphens", field)
	}
	return nil
}

// ValidateName checks a display name: 1-200 characters of valid UTF-8 and no control
// characters (Postgres refuses NUL in text, and a name is shown on one line).
func ValidateName(field, name string) error {
	n := strings.TrimSpace(name)
	if n == "" || utf8.RuneCountInString(name) > 200 {
		return coffer.Errorf(coffer.EINVALID, "%s must be 1-200 characters", field)
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return coffer.Errorf(coffer.EINVALID, "%s must be text without control characters", field)
	}
	return nil
}
