package envfile

import (
	"encoding/json"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const fixture = `# The app's settings
export DB_HOST=db.internal
DB_PORT = 5432   # a comment after a value
EMPTY=
SPACED=  two words  
SINGLE='literal $HOME and \n stay'
DOUBLE="tab\there, quote \" and backslash \\ and dollar \$X"
URL=https://example.com/#anchor
MULTI="line one
line two"
export  KEY_PEM='-----BEGIN KEY-----
abc
-----END KEY-----'
CRLF=windows` + "\r\n" + `UNICODE="héllo ✓"
`

func TestParseFixture(t *testing.T) {
	vars, err := Parse([]byte(fixture))
	if err != nil {
		t.Fatal(err)
	}
	want := []Var{
		{"DB_HOST", "db.internal", 2},
		{"DB_PORT", "5432", 3},
		{"EMPTY", "", 4},
		{"SPACED", "two words", 5},
		{"SINGLE", `literal $HOME and \n stay`, 6},
		{"DOUBLE", "tab\there, quote \" and backslash \\ and dollar $X", 7},
		{"URL", "https://example.com/#anchor", 8},
		{"MULTI", "line one\nline two", 9},
		{"KEY_PEM", "-----BEGIN KEY-----\nabc\n-----END KEY-----", 11},
		{"CRLF", "windows", 14},
		{"UNICODE", "héllo ✓", 15},
	}
	if !reflect.DeepEqual(vars, want) {
		t.Fatalf("parsed:\n%+v\nwant:\n%+v", vars, want)
	}
	// Written out and read back, every value is the same.
	again, err := Parse(Dotenv(vars))
	if err != nil {
		t.Fatalf("parse what Dotenv wrote: %v\n%s", err, Dotenv(vars))
	}
	if !sameValues(vars, again) {
		t.Fatalf("round trip changed values:\n%+v\n%+v", vars, again)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct {
		src  string
		line int
		msg  string
	}{
		{"A=1\n2B=x\n", 2, "variable name"},
		{"A=1\nB x\n", 2, "expected ="},
		{"A=1\n\nB=\"open\nstill open\n", 3, "never closed"},
		{"A='x' trailing\n", 1, "after the value"},
		{"A=\"\\q\"\n", 1, "unknown escape"},
		{"A=it's\n", 1, "quotes inside"},
		{"A=1\nB=2\nA=3\n", 3, "defined again"},
		{"A=1\nB=\xff\n", 2, "UTF-8"},
		{"-A=1\n", 1, "variable name"},
	} {
		_, err := Parse([]byte(c.src))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != c.line || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Parse(%q) = %v, want line %d mentioning %q", c.src, err, c.line, c.msg)
		}
	}
}

func TestWriters(t *testing.T) {
	vars := []Var{{Name: "B", Value: "it's <b>\n"}, {Name: "A", Value: "NO"}}
	if got := string(Dotenv(vars)); got != "A=\"NO\"\nB=\"it's <b>\\n\"\n" {
		t.Errorf("Dotenv: %q", got)
	}
	if got := string(Shell(vars)); got != "export A='NO'\nexport B='it'\\''s <b>\n'\n" {
		t.Errorf("Shell: %q", got)
	}
	if got := string(YAML(vars)); got != "\"A\": \"NO\"\n\"B\": \"it's <b>\\n\"\n" {
		t.Errorf("YAML: %q", got)
	}
	var m map[string]string
	if err := json.Unmarshal(JSON(vars), &m); err != nil || m["A"] != "NO" || m["B"] != "it's <b>\n" {
		t.Errorf("JSON: %s (%v)", JSON(vars), err)
	}
	if string(YAML(nil)) != "{}\n" {
		t.Errorf("empty YAML: %q", YAML(nil))
	}
}

// TestShellOutputEvaluates sources the shell output in a real sh and reads the values back.
func TestShellOutputEvaluates(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	vars := []Var{{Name: "A", Value: "it's $HOME `x` \\ \"q\"\nline"}, {Name: "B", Value: ""}}
	out, err := exec.Command(sh, "-c", string(Shell(vars))+`printf '%s|%s' "$A" "$B"`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != vars[0].Value+"|" {
		t.Fatalf("sh read back %q", out)
	}
}

func sameValues(a, b []Var) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]string{}
	for _, v := range a {
		m[v.Name] = v.Value
	}
	for _, v := range b {
		if w, ok := m[v.Name]; !ok || w != v.Value {
			return false
		}
	}
	return true
}

// FuzzParse: any input either fails with a SyntaxError or parses to values that survive a
// write and a second read unchanged. It never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fixture))
	f.Add([]byte("A=\"x\\\"y\"\nB='z'\n# c\nexport C=d #e\n"))
	f.Add([]byte("A=\"\n\"\r\nB=\\\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		vars, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("Parse(%q) failed without a line: %v", src, err)
			}
			return
		}
		again, err := Parse(Dotenv(vars))
		if err != nil || !sameValues(vars, again) {
			t.Fatalf("round trip of %q: %v\nwrote %q", src, err, Dotenv(vars))
		}
	})
}

// FuzzWrite: any set of values written as dotenv reads back the same.
func FuzzWrite(f *testing.F) {
	f.Add("A", "plain", "B", "multi\nline \"quoted\" $X \\")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		var vars []Var
		for _, kv := range [][2]string{{n1, v1}, {n2, v2}} {
			if !nameRE.MatchString(kv[0]) || nameRE.FindString(kv[0]) != kv[0] || !utf8Valid(kv[1]) {
				continue
			}
			if len(vars) == 1 && vars[0].Name == kv[0] {
				continue
			}
			vars = append(vars, Var{Name: kv[0], Value: kv[1]})
		}
		got, err := Parse(Dotenv(vars))
		if err != nil || !sameValues(vars, got) {
			t.Fatalf("values %+v wrote %q and read back %+v (%v)", vars, Dotenv(vars), got, err)
		}
	})
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
