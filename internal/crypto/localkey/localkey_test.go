package localkey

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/crypto/cryptotest"
)

func testKEK() []byte { return bytes.Repeat([]byte{0x42}, crypto.KeySize) }

func newWrapper(t *testing.T, kek []byte) *Wrapper {
	t.Helper()
	w, err := New(kek)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

func TestConformance(t *testing.T) {
	cryptotest.TestKeyWrapper(t, newWrapper(t, testKEK()))
}

func TestKeyID(t *testing.T) {
	a := newWrapper(t, testKEK())
	if !strings.HasPrefix(a.KeyID(), "local:") || len(a.KeyID()) != len("local:")+16 {
		t.Fatalf("KeyID = %q, want local: and 16 hex characters", a.KeyID())
	}
	if b := newWrapper(t, testKEK()); b.KeyID() != a.KeyID() {
		t.Fatal("the same key gave two KeyIDs")
	}
	other := testKEK()
	other[0] ^= 1
	if b := newWrapper(t, other); b.KeyID() == a.KeyID() {
		t.Fatal("different keys share a KeyID")
	}
}

func TestOtherLocalKeyCannotUnwrap(t *testing.T) {
	a := newWrapper(t, testKEK())
	other := testKEK()
	other[0] ^= 1
	b := newWrapper(t, other)
	ec := crypto.EncryptionContext{"tenant": "t"}
	blob, err := a.WrapKey(t.Context(), testKEK(), ec)
	if err != nil {
		t.Fatal(err)
	}
	// Even when told the right id, a different KEK must not open the blob.
	b.id = a.id
	if _, err := b.UnwrapKey(t.Context(), a.KeyID(), blob, ec); err == nil {
		t.Fatal("a different key-encryption key unwrapped the blob")
	}
}

func TestNewCopiesKey(t *testing.T) {
	kek := testKEK()
	w := newWrapper(t, kek)
	ec := crypto.EncryptionContext{"tenant": "t"}
	blob, err := w.WrapKey(t.Context(), testKEK(), ec)
	if err != nil {
		t.Fatal(err)
	}
	clear(kek)
	if _, err := w.UnwrapKey(t.Context(), w.KeyID(), blob, ec); err != nil {
		t.Fatalf("wrapper depends on the caller's slice: %v", err)
	}
}

func TestRejectsBadKeys(t *testing.T) {
	const secretish = "c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtbG9n!!"
	tests := []struct {
		name  string
		input string
	}{
		{"empty", ""},
		{"not base64", secretish},
		{"url alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xFB}, crypto.KeySize))},
		{"16 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))},
		{"31 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 31))},
		{"33 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 33))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := FromBase64(tt.input)
			if err == nil || w != nil {
				t.Fatalf("FromBase64 = %v, %v; want an error", w, err)
			}
			if tt.input != "" && strings.Contains(err.Error(), tt.input) {
				t.Fatalf("error %q echoes the input", err)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Fatalf("error %q echoes part of the input", err)
			}

			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, []byte(tt.input+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadOrCreate(path); err == nil {
				t.Fatal("LoadOrCreate accepted a bad key file")
			} else if tt.input != "" && strings.Contains(err.Error(), tt.input) {
				t.Fatalf("error %q echoes the file content", err)
			}
		})
	}
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Fatalf("New accepted a %d-byte key", n)
		}
	}
}

func TestFromBase64TrimsWhitespace(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString(testKEK())
	w, err := FromBase64("  " + enc + "\r\n")
	if err != nil {
		t.Fatalf("FromBase64: %v", err)
	}
	if w.KeyID() != newWrapper(t, testKEK()).KeyID() {
		t.Fatal("FromBase64 decoded a different key")
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "keys")
	path := filepath.Join(dir, "master.key")

	first, created, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("first LoadOrCreate: %v", err)
	}
	if !created {
		t.Fatal("created = false for a new file")
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatal("key file does not end in a newline")
	}
	kek, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(kek) != crypto.KeySize {
		t.Fatalf("key file does not hold a base64 32-byte key (err %v)", err)
	}

	second, created, err := LoadOrCreate(path)
	if err != nil {
		t.Fatalf("second LoadOrCreate: %v", err)
	}
	if created {
		t.Fatal("created = true for an existing file")
	}
	if second.KeyID() != first.KeyID() {
		t.Fatalf("reloaded KeyID %q, want %q", second.KeyID(), first.KeyID())
	}
	ec := crypto.EncryptionContext{"tenant": "t"}
	blob, err := first.WrapKey(t.Context(), testKEK(), ec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := second.UnwrapKey(t.Context(), second.KeyID(), blob, ec); err != nil || !bytes.Equal(got, testKEK()) {
		t.Fatalf("reloaded key cannot unwrap: %v", err)
	}
}

func TestLoadOrCreateConcurrentStartsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	ids := make([]string, n)
	createdCount := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w, created, err := LoadOrCreate(path)
			if err != nil {
				// A loser can read the winner's file before it is written; see LoadOrCreate.
				// Any other failure is a bug.
				if !errors.Is(err, errBase64) && !errors.Is(err, errKEKSize) {
					t.Errorf("LoadOrCreate: %v", err)
				}
				return
			}
			ids[i] = w.KeyID()
			if created {
				mu.Lock()
				createdCount++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if createdCount != 1 {
		t.Fatalf("%d callers created the key file, want exactly 1", createdCount)
	}
	final, _, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if id != "" && id != final.KeyID() {
			t.Fatalf("caller %d got KeyID %q, but the file holds %q", i, id, final.KeyID())
		}
	}
}

func TestLoadOrCreateRefusesLoosePermissions(t *testing.T) {
	enc := base64.StdEncoding.EncodeToString(testKEK())
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(enc+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			w, created, err := LoadOrCreate(path)
			if err == nil || w != nil || created {
				t.Fatalf("LoadOrCreate accepted a %v key file", mode)
			}
			msg := err.Error()
			for _, want := range []string{path, "chmod 600", fmt.Sprintf("%04o", mode.Perm())} {
				if !strings.Contains(msg, want) {
					t.Fatalf("error %q does not mention %q", msg, want)
				}
			}
			if strings.Contains(msg, enc) {
				t.Fatalf("error %q contains the key", msg)
			}
			if data, _ := os.ReadFile(path); string(data) != enc+"\n" {
				t.Fatal("refused key file was modified")
			}
		})
	}
}

func TestLoadOrCreateRefusesDirectory(t *testing.T) {
	path := t.TempDir()
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(path); err == nil {
		t.Fatal("LoadOrCreate accepted a directory")
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %04o, want %04o", path, got, want)
	}
}
