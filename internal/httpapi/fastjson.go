package httpapi

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/cofferhq/coffer/internal/secrets"
)

// Listing an environment with values is the hottest response Coffer sends, and reflection-
// based encoding was a fifth of its CPU. appendSecret and appendPageEnd write exactly the
// bytes encoding/json would write for listBody[secretView] (a test holds them to that), by
// hand, with values taken straight from the decryption buffer.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// appendPageEnd closes the items array and the page object.
func appendPageEnd(b []byte, next string) []byte {
	b = append(b, ']')
	if next != "" {
		b = append(b, `,"next_cursor":`...)
		b = appendString(b, next)
	}
	return append(b, '}')
}

// appendSecret writes one secret; the value, when withValue, comes from value rather than
// s.Value so that it can be rendered straight from a decryption buffer.
func appendSecret(b []byte, s *secrets.Secret, value []byte, withValue bool) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(s.Version), 10)
	if withValue {
		b = append(b, `,"value":`...)
		b = appendJSONString(b, value)
	}
	b = append(b, `,"note":`...)
	b = appendString(b, s.Note)
	b = append(b, `,"created_by":`...)
	b = appendString(b, s.CreatedBy)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, s.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, s.UpdatedAt)
	if s.DeletedAt != nil {
		b = append(b, `,"deleted_at":`...)
		b = appendTime(b, *s.DeletedAt)
	}
	return append(b, '}')
}

// appendTime matches time.Time.MarshalJSON for the years Coffer stores.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// jsonSafe holds the bytes encoding/json writes unchanged: printable ASCII but the quote, the
// backslash and the HTML-escaped <, > and &. Bytes from 0x80 are not in it: they are checked as
// UTF-8. One table load a byte is what makes the scan fast on values, which are mostly safe.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString is appendJSONString for a string, without copying it.
func appendString(b []byte, s string) []byte { return appendJSONString(b, stringBytes(s)) }

// stringBytes views s as bytes; the bytes are only read.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// appendJSONString matches encoding/json's string encoding, HTML escaping included: control
// characters, quotes, backslashes, <, > and &, U+2028 and U+2029 are escaped, and invalid
// UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
