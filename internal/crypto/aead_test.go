package crypto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/uuid"
)

func newTestKey(t testing.TB) *DataKey {
	t.Helper()
	k, err := NewDataKey()
	if err != nil {
		t.Fatalf("NewDataKey: %v", err)
	}
	return k
}

func seal(t testing.TB, k *DataKey, plaintext, aad []byte) []byte {
	t.Helper()
	ct, err := k.Seal(plaintext, aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return ct
}

// secretAAD is shaped like the AAD the secrets service builds for a stored value.
func secretAAD(env, name string) []byte {
	return AAD("coffer/secret/v1", "3b7a9f3e-0d1c-4b8e-9a55-2f0c6a1e9d42", "payments-api", env, name, "7")
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := newTestKey(t)
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty value", []byte{}, secretAAD("production", "EMPTY")},
		{"short value", []byte("x"), secretAAD("production", "X")},
		{"typical value", []byte("postgres://app:s3cr3t@db.internal:5432/app"), secretAAD("staging", "DATABASE_URL")},
		{"large value", bytes.Repeat([]byte{0xA5}, 64<<10), secretAAD("production", "TLS_BUNDLE")},
		{"no aad", []byte("value"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := seal(t, k, tt.plaintext, tt.aad)
			if want := headerSize + NonceSize + len(tt.plaintext) + tagSize; len(ct) != want {
				t.Fatalf("ciphertext length = %d, want %d", len(ct), want)
			}
			if ct[0] != FormatV1 {
				t.Fatalf("format byte = %d, want %d", ct[0], FormatV1)
			}
			if len(tt.plaintext) > 8 && bytes.Contains(ct, tt.plaintext) {
				t.Fatal("ciphertext contains the plaintext")
			}
			got, err := k.Open(ct, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	k := newTestKey(t)
	aad := secretAAD("production", "DATABASE_URL")
	ct := seal(t, k, []byte("top secret"), aad)

	sameIDOtherMaterial, err := DataKeyFrom(k.ID(), bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  *DataKey
		aad  []byte
		want error
	}{
		{"other environment", k, secretAAD("staging", "DATABASE_URL"), ErrDecrypt},
		{"other secret name", k, secretAAD("production", "DATABASE_URL2"), ErrDecrypt},
		{"no aad", k, nil, ErrDecrypt},
		{"same id, other material", sameIDOtherMaterial, aad, ErrDecrypt},
		{"other data key", newTestKey(t), aad, ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Open(ct, tt.aad)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatalf("Open returned %d bytes alongside an error", len(got))
			}
		})
	}
}

func TestOpenDetectsEveryByteFlip(t *testing.T) {
	k := newTestKey(t)
	aad := secretAAD("production", "API_KEY")
	ct := seal(t, k, []byte("0123456789abcdef0123456789abcdef"), aad)
	for i := range ct {
		tampered := bytes.Clone(ct)
		tampered[i] ^= 0x01
		want := ErrDecrypt
		switch {
		case i == 0:
			want = ErrFormat
		case i < headerSize:
			want = ErrWrongKey
		}
		if _, err := k.Open(tampered, aad); !errors.Is(err, want) {
			t.Fatalf("byte %d flipped: Open error = %v, want %v", i, err, want)
		}
	}
}

func TestOpenTruncated(t *testing.T) {
	k := newTestKey(t)
	aad := secretAAD("production", "API_KEY")
	ct := seal(t, k, []byte("some value"), aad)
	for n := range len(ct) {
		want := ErrDecrypt
		if n < minSealed {
			want = ErrFormat
		}
		if _, err := k.Open(ct[:n], aad); !errors.Is(err, want) {
			t.Fatalf("truncated to %d bytes: Open error = %v, want %v", n, err, want)
		}
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	k := newTestKey(t)
	aad := secretAAD("production", "API_KEY")
	a := seal(t, k, []byte("same value"), aad)
	b := seal(t, k, []byte("same value"), aad)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical")
	}
	if bytes.Equal(a[headerSize:headerSize+NonceSize], b[headerSize:headerSize+NonceSize]) {
		t.Fatal("two seals reused a nonce")
	}
}

func TestKeyIDOf(t *testing.T) {
	k := newTestKey(t)
	ct := seal(t, k, []byte("v"), nil)
	otherVersion := bytes.Clone(ct)
	otherVersion[0] = 2

	tests := []struct {
		name    string
		in      []byte
		want    uuid.UUID
		wantErr error
	}{
		{"sealed value", ct, k.ID(), nil},
		{"empty", nil, uuid.Nil, ErrFormat},
		{"header only", ct[:headerSize], uuid.Nil, ErrFormat},
		{"unknown version", otherVersion, uuid.Nil, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KeyIDOf(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("KeyIDOf error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("KeyIDOf = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAADIsUnambiguous(t *testing.T) {
	if got, want := AAD("ab", "c"), []byte{0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c'}; !bytes.Equal(got, want) {
		t.Fatalf("AAD(ab, c) = %v, want %v", got, want)
	}
	tests := []struct {
		name string
		a, b []string
	}{
		{"boundary moved", []string{"ab", "c"}, []string{"a", "bc"}},
		{"trailing empty part", []string{"a", ""}, []string{"a"}},
		{"leading empty part", []string{"", "a"}, []string{"a"}},
		{"separator inside part", []string{"a/b"}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(AAD(tt.a...), AAD(tt.b...)) {
				t.Fatalf("AAD(%q) == AAD(%q)", tt.a, tt.b)
			}
		})
	}
}

func TestEncryptionContextEncode(t *testing.T) {
	ec := EncryptionContext{"tenant": "t1", "environment": "prod", "project": "p"}
	want := AAD("environment", "prod", "project", "p", "tenant", "t1")
	for range 10 { // map iteration order varies between runs of the loop
		if got := ec.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("Encode = %v, want %v", got, want)
		}
	}
	tests := []struct {
		name string
		a, b EncryptionContext
	}{
		{"boundary between key and value", EncryptionContext{"ab": "c"}, EncryptionContext{"a": "bc"}},
		{"empty value vs missing key", EncryptionContext{"a": "b", "c": ""}, EncryptionContext{"a": "b"}},
		{"value differs", EncryptionContext{"tenant": "t1"}, EncryptionContext{"tenant": "t2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(tt.a.Encode(), tt.b.Encode()) {
				t.Fatalf("%v and %v encode the same", tt.a, tt.b)
			}
		})
	}
}

func TestDataKeyFrom(t *testing.T) {
	id := uuid.New()
	tests := []struct {
		name     string
		id       uuid.UUID
		material []byte
		wantErr  bool
	}{
		{"valid", id, bytes.Repeat([]byte{1}, KeySize), false},
		{"short", id, make([]byte, KeySize-1), true},
		{"long", id, make([]byte, KeySize+1), true},
		{"empty", id, nil, true},
		{"nil id", uuid.Nil, make([]byte, KeySize), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := DataKeyFrom(tt.id, tt.material)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DataKeyFrom error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if k.ID() != tt.id {
				t.Fatalf("ID = %s, want %s", k.ID(), tt.id)
			}
			if !bytes.Equal(k.Material(), tt.material) {
				t.Fatal("Material differs from the input")
			}
		})
	}
}

func TestDataKeyOwnsItsMaterial(t *testing.T) {
	material := bytes.Repeat([]byte{9}, KeySize)
	k, err := DataKeyFrom(uuid.New(), material)
	if err != nil {
		t.Fatal(err)
	}
	clear(material) // the caller wiping its copy must not affect the key
	if !bytes.Equal(k.Material(), bytes.Repeat([]byte{9}, KeySize)) {
		t.Fatal("DataKeyFrom kept the caller's slice")
	}
	m := k.Material()
	m[0] ^= 0xFF
	if k.Material()[0] != 9 {
		t.Fatal("Material returned the key's own slice")
	}
	rebuilt, err := DataKeyFrom(k.ID(), k.Material())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rebuilt.Open(seal(t, k, []byte("v"), nil), nil); err != nil {
		t.Fatalf("key rebuilt from Material cannot open: %v", err)
	}
}

func TestWipe(t *testing.T) {
	k := newTestKey(t)
	raw := k.key
	ct := seal(t, k, []byte("sealed before wipe"), nil)
	k.Wipe()
	if !bytes.Equal(raw, make([]byte, KeySize)) {
		t.Fatal("Wipe left key bytes in memory")
	}
	if m := k.Material(); m != nil {
		t.Fatalf("Material after Wipe = %v, want nil", m)
	}
	// Holders of an evicted key keep working; see Wipe.
	if got, err := k.Open(ct, nil); err != nil || string(got) != "sealed before wipe" {
		t.Fatalf("Open after Wipe = %q, %v", got, err)
	}
	if _, err := k.Open(seal(t, k, []byte("v"), nil), nil); err != nil {
		t.Fatalf("Seal/Open after Wipe: %v", err)
	}
	k.Wipe() // idempotent
}

func BenchmarkSealOpen64(b *testing.B) {
	k := newTestKey(b)
	value := bytes.Repeat([]byte("s"), 64)
	aad := secretAAD("production", "DATABASE_URL")
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		ct, err := k.Seal(value, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Open(ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOpenAppendMatchesOpen(t *testing.T) {
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	aad := AAD("t", "p", "e", "NAME", "1")
	if !bytes.Equal(AppendAAD([]byte("x"), "t", "p", "e", "NAME", "1"), append([]byte("x"), aad...)) {
		t.Fatal("AppendAAD differs from AAD")
	}
	var dst, scratch []byte
	for i, msg := range []string{"first", "", "a longer third value that needs more room"} {
		ct, err := k.Seal([]byte(msg), aad)
		if err != nil {
			t.Fatal(err)
		}
		prefix := len(dst)
		dst, scratch, err = k.OpenAppend(dst, scratch, ct, aad)
		if err != nil || string(dst[prefix:]) != msg {
			t.Fatalf("value %d: %q %v", i, dst[prefix:], err)
		}
		before := len(dst)
		if dst, scratch, err = k.OpenAppend(dst, scratch, ct, AAD("t", "p", "e", "OTHER", "1")); !errors.Is(err, ErrDecrypt) || len(dst) != before {
			t.Fatalf("value %d under moved AAD: err %v, dst grew to %d", i, err, len(dst))
		}
	}
	other, _ := NewDataKey()
	ct, _ := other.Seal([]byte("x"), aad)
	if _, _, err := k.OpenAppend(nil, nil, ct, aad); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v", err)
	}
}
