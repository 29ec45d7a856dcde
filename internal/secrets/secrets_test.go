package secrets_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/secrets"
)

// checkErr asserts that err is nil when code is empty, and otherwise carries code and does
// not repeat input (when input is long enough to be recognisable).
func checkErr(t *testing.T, err error, code, input string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got nil, want code %q", code)
	}
	if got := coffer.ErrorCode(err); got != code {
		t.Fatalf("code = %q, want %q (%v)", got, code, err)
	}
	if len(input) >= 8 && strings.Contains(err.Error(), input) {
		t.Errorf("error %q repeats the input", err)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		code  string
	}{
		{"upper", "DB_URL", ""},
		{"lower", "db_url", ""},
		{"mixed", "dbUrl2", ""},
		{"single letter", "A", ""},
		{"underscore", "_", ""},
		{"leading underscore", "_PRIVATE", ""},
		{"digits after first", "A1_2", ""},
		{"256 chars", "A" + strings.Repeat("b", 255), ""},
		{"257 chars", "A" + strings.Repeat("b", 256), coffer.EINVALID},
		{"empty", "", coffer.EINVALID},
		{"leading digit", "1PASSWORD", coffer.EINVALID},
		{"hyphen", "DB-URL", coffer.EINVALID},
		{"dot", "db.url", coffer.EINVALID},
		{"space", "DB URL", coffer.EINVALID},
		{"equals", "A=B", coffer.EINVALID},
		{"dollar", "$HOME", coffer.EINVALID},
		{"slash", "a/b", coffer.EINVALID},
		{"trailing newline", "DB_URL\n", coffer.EINVALID},
		{"nul", "DB\x00URL", coffer.EINVALID},
		{"non-ascii letter", "PÄSSWORD", coffer.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, secrets.ValidateName(tc.input), tc.code, "")
		})
	}
}

func TestValidateValue(t *testing.T) {
	// A recognisable value shows whether an error message ever repeats it.
	fill := func(n int) string { return strings.Repeat("s3cr3t-", n/7+1)[:n] }
	tests := []struct {
		name  string
		input string
		code  string
	}{
		{"empty", "", ""},
		{"small", "hunter2", ""},
		{"binary", "\x00\xff\x01", ""},
		{"64 KiB exactly", fill(65536), ""},
		{"64 KiB plus one", fill(65537), coffer.ETOOLARGE},
		{"1 MiB", fill(1 << 20), coffer.ETOOLARGE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := secrets.ValidateValue(tc.input)
			checkErr(t, err, tc.code, tc.input)
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q contains part of the value", err)
			}
		})
	}
}

func TestValidateNote(t *testing.T) {
	tests := []struct {
		name  string
		input string
		code  string
	}{
		{"empty", "", ""},
		{"short", "rotated after the incident", ""},
		{"1024", strings.Repeat("n", 1024), ""},
		{"1025", strings.Repeat("n", 1025), coffer.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, secrets.ValidateNote(tc.input), tc.code, "")
		})
	}
}

// place is everything the additional data binds.
type place struct {
	tenant, project, env, name string
	version                    int
}

func (p place) aad() []byte { return secrets.AAD(p.tenant, p.project, p.env, p.name, p.version) }

var home = place{"tenant-1", "project-1", "env-1", "DB_URL", 3}

// moves are places that differ from home in exactly one part.
var moves = []struct {
	name string
	to   place
}{
	{"other tenant", place{"tenant-2", home.project, home.env, home.name, home.version}},
	{"other project", place{home.tenant, "project-2", home.env, home.name, home.version}},
	{"other environment", place{home.tenant, home.project, "env-2", home.name, home.version}},
	{"other name", place{home.tenant, home.project, home.env, "API_KEY", home.version}},
	{"name differs in case", place{home.tenant, home.project, home.env, "db_url", home.version}},
	{"older version", place{home.tenant, home.project, home.env, home.name, 2}},
	{"newer version", place{home.tenant, home.project, home.env, home.name, 4}},
	{"version zero", place{home.tenant, home.project, home.env, home.name, 0}},
	{"negative version", place{home.tenant, home.project, home.env, home.name, -3}},
	{"tenant and project swapped", place{home.project, home.tenant, home.env, home.name, home.version}},
	{"empty tenant", place{"", home.project, home.env, home.name, home.version}},
}

func TestAADDiffersForEveryPart(t *testing.T) {
	if !bytes.Equal(home.aad(), home.aad()) {
		t.Fatal("AAD is not deterministic")
	}
	for _, m := range moves {
		t.Run(m.name, func(t *testing.T) {
			if bytes.Equal(home.aad(), m.to.aad()) {
				t.Errorf("AAD%+v == AAD%+v", home, m.to)
			}
		})
	}
}

func TestAADIsUnambiguous(t *testing.T) {
	// Each pair joins to the same string under naive concatenation or a "/" separator.
	tests := []struct {
		name string
		a, b place
	}{
		{"env/name boundary", place{"t", "p", "bc", "a", 1}, place{"t", "p", "b", "ca", 1}},
		{"name a + env bc vs name ab + env c", place{"t", "p", "bc", "a", 1}, place{"t", "p", "c", "ab", 1}},
		{"tenant/project boundary", place{"ab", "c", "e", "N", 1}, place{"a", "bc", "e", "N", 1}},
		{"project/env boundary", place{"t", "pe", "nv", "N", 1}, place{"t", "p", "env", "N", 1}},
		{"name/version boundary", place{"t", "p", "e", "A1", 2}, place{"t", "p", "e", "A", 12}},
		{"separator inside a part", place{"t", "p/e", "x", "N", 1}, place{"t", "p", "e/x", "N", 1}},
		{"empty part moved", place{"", "tp", "e", "N", 1}, place{"tp", "", "e", "N", 1}},
		{"length-like bytes", place{"t", "p", "e\x00\x00\x00\x01N", "", 1}, place{"t", "p", "e", "N", 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.a.aad(), tc.b.aad()) {
				t.Errorf("AAD%+v == AAD%+v", tc.a, tc.b)
			}
		})
	}
}

func TestSealedValueOpensOnlyInItsPlace(t *testing.T) {
	key, err := crypto.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("postgres://app:hunter2@db/prod")
	sealed, err := key.Seal(plaintext, home.aad())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plaintext) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := key.Open(sealed, home.aad())
	if err != nil {
		t.Fatalf("Open in its own place: %v", err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("Open = %q, want %q", got, plaintext)
	}
	for _, m := range moves {
		t.Run(m.name, func(t *testing.T) {
			out, err := key.Open(sealed, m.to.aad())
			if err == nil {
				t.Fatalf("value sealed for %+v opened at %+v as %q", home, m.to, out)
			}
			if !errors.Is(err, crypto.ErrDecrypt) {
				t.Errorf("err = %v, want crypto.ErrDecrypt", err)
			}
			if out != nil {
				t.Errorf("Open returned %d bytes with its error", len(out))
			}
			if strings.Contains(err.Error(), string(plaintext)) || strings.Contains(fmt.Sprint(err), "hunter2") {
				t.Errorf("error %q leaks the plaintext", err)
			}
		})
	}
}
