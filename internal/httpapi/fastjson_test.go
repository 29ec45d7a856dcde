package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/secrets"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\n\r\t\b\f\x00\x01\x1f\x7f",
		"é ü 日本 🎉", "\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80", "trailing \xe2\x82",
	} {
		checkString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("seed <&> \"x\" \u2028 \xff")
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}

func checkString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendString(nil, s); !bytes.Equal(got, want) {
		t.Errorf("appendString(%q) = %s, want %s", s, got, want)
	}
}

func TestAppendSecretPageMatchesEncodingJSON(t *testing.T) {
	v1, v2 := "s3cr3t <&>", ""
	del := time.Date(2026, 11, 23, 20, 0, 0, 123456789, time.UTC)
	items := []secrets.Secret{
		{Name: "A", Version: 3, Value: &v1, Note: "note\n", CreatedBy: "u1", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))},
		{Name: "B", Version: 1, Value: &v2, CreatedAt: time.Unix(0, 1).UTC(), UpdatedAt: time.Unix(1, 0).UTC()},
		{Name: "C", Version: 7, DeletedAt: &del},
	}
	for _, next := range []string{"", "Qw"} {
		for _, page := range [][]secrets.Secret{items, nil} {
			views := listBody[secretView]{Items: make([]secretView, 0), NextCursor: next}
			for _, s := range page {
				views.Items = append(views.Items, viewSecret(s))
			}
			want, err := json.Marshal(views)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendSecretPage(nil, page, next); !bytes.Equal(got, want) {
				t.Errorf("appendSecretPage:\n got %s\nwant %s", got, want)
			}
		}
	}
}

// appendSecretPage writes a whole page as listSecrets does, from secrets whose values, if
// any, are set.
func appendSecretPage(b []byte, items []secrets.Secret, next string) []byte {
	b = append(b, `{"items":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		var value []byte
		if items[i].Value != nil {
			value = stringBytes(*items[i].Value)
		}
		b = appendSecret(b, &items[i], value, items[i].Value != nil)
	}
	return appendPageEnd(b, next)
}

// BenchmarkAppendJSONString64 escapes a 64-character value, the size make bench-load reads.
func BenchmarkAppendJSONString64(b *testing.B) {
	s := []byte("Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4")
	buf := make([]byte, 0, 128)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = appendJSONString(buf[:0], s)
	}
}
