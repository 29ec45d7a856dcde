// Package envfile reads and writes environments as files: dotenv (read and write), and JSON,
// YAML and POSIX shell (write). It knows nothing of secrets or storage.
//
// The dotenv dialect read here is the common one: blank lines and # comments, an optional
// "export " prefix, NAME=value with spaces allowed around "=", and values that are unquoted
// (to the end of the line, a " #" starting a comment, surrounding spaces trimmed), single-quoted
// (literal, may span lines) or double-quoted (may span lines; \n \r \t \" \\ \$ are escapes).
// Nothing is interpolated: "${X}" is kept as written. Write produces double-quoted values that
// Parse reads back to the same bytes.
package envfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Var is one variable in file order.
type Var struct {
	Name  string
	Value string
	Line  int // where its definition starts, from 1
}

// SyntaxError is a dotenv file that cannot be read, with the line where reading stopped.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// Parse reads a dotenv file. A name defined twice is an error: which definition wins differs
// between tools, so a file that relies on it is refused rather than guessed at.
func Parse(src []byte) ([]Var, error) {
	if !utf8.Valid(src) {
		return nil, &SyntaxError{Line: firstInvalidLine(src), Msg: "the file is not valid UTF-8"}
	}
	p := parser{src: string(src), line: 1}
	var out []Var
	seen := map[string]int{}
	for {
		v, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		if first, dup := seen[v.Name]; dup {
			return nil, &SyntaxError{Line: v.Line, Msg: fmt.Sprintf("%s is defined again (first on line %d)", v.Name, first)}
		}
		seen[v.Name] = v.Line
		out = append(out, v)
	}
}

type parser struct {
	src  string
	pos  int
	line int
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) peek() byte { return p.src[p.pos] }

// skipSpace skips spaces and tabs, not line ends.
func (p *parser) skipSpace() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.pos++
	}
}

// endLine expects the end of a line (after optional spaces and a comment) and moves past it.
func (p *parser) endLine() error {
	p.skipSpace()
	if !p.eof() && p.peek() == '#' {
		for !p.eof() && p.peek() != '\n' {
			p.pos++
		}
	}
	if !p.eof() && p.peek() == '\r' {
		p.pos++
	}
	if p.eof() {
		return nil
	}
	if p.peek() != '\n' {
		return p.errf("unexpected %q after the value; quote values that contain it", p.src[p.pos:p.pos+1])
	}
	p.pos++
	p.line++
	return nil
}

// next reads the next definition; ok is false at the end of the file.
func (p *parser) next() (Var, bool, error) {
	for {
		p.skipSpace()
		if p.eof() {
			return Var{}, false, nil
		}
		switch p.peek() {
		case '\n', '\r', '#':
			if err := p.endLine(); err != nil {
				return Var{}, false, err
			}
			continue
		}
		break
	}
	start := p.line
	if strings.HasPrefix(p.src[p.pos:], "export ") || strings.HasPrefix(p.src[p.pos:], "export\t") {
		p.pos += len("export")
		p.skipSpace()
	}
	name := nameRE.FindString(p.src[p.pos:])
	if name == "" {
		return Var{}, false, p.errf("expected a variable name (letters, digits and _, not starting with a digit)")
	}
	p.pos += len(name)
	p.skipSpace()
	if p.eof() || p.peek() != '=' {
		return Var{}, false, p.errf("expected = after %s", name)
	}
	p.pos++
	p.skipSpace()
	value, err := p.value()
	if err != nil {
		return Var{}, false, err
	}
	if err := p.endLine(); err != nil {
		return Var{}, false, err
	}
	return Var{Name: name, Value: value, Line: start}, true, nil
}

func (p *parser) value() (string, error) {
	if p.eof() {
		return "", nil
	}
	switch p.peek() {
	case '\'':
		return p.quoted('\'')
	case '"':
		return p.quoted('"')
	}
	// Unquoted: to the end of the line or a comment that follows a space.
	end := p.pos
	for end < len(p.src) && p.src[end] != '\n' && p.src[end] != '\r' {
		if p.src[end] == '#' && end > p.pos && (p.src[end-1] == ' ' || p.src[end-1] == '\t') {
			break
		}
		end++
	}
	v := strings.TrimRight(p.src[p.pos:end], " \t")
	if strings.ContainsAny(v, `"'`) {
		return "", p.errf("quotes inside an unquoted value; quote the whole value")
	}
	p.pos = end
	return v, nil
}

// quoted reads a value in quote characters q; double quotes take escapes.
func (p *parser) quoted(q byte) (string, error) {
	open := p.line
	p.pos++ // the opening quote
	var b strings.Builder
	for {
		if p.eof() {
			return "", &SyntaxError{Line: open, Msg: fmt.Sprintf("the value opened with %c is never closed", q)}
		}
		c := p.peek()
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\\' && q == '"':
			if p.pos+1 >= len(p.src) {
				return "", p.errf("a \\ ends the file")
			}
			esc := p.src[p.pos+1]
			switch esc {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\\', '$':
				b.WriteByte(esc)
			default:
				return "", p.errf("unknown escape \\%c; write \\\\ for a backslash", esc)
			}
			p.pos += 2
		default:
			if c == '\n' {
				p.line++
			}
			b.WriteByte(c)
			p.pos++
		}
	}
}

func firstInvalidLine(src []byte) int {
	line := 1
	for len(src) > 0 {
		r, size := utf8.DecodeRune(src)
		if r == utf8.RuneError && size <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		src = src[size:]
	}
	return line
}

// sorted returns the variables ordered by name, as every writer emits them.
func sorted(vars []Var) []Var {
	out := append([]Var(nil), vars...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Dotenv writes NAME="value" lines that Parse reads back to the same values.
func Dotenv(vars []Var) []byte {
	var b bytes.Buffer
	for _, v := range sorted(vars) {
		b.WriteString(v.Name)
		b.WriteString(`="`)
		for i := 0; i < len(v.Value); i++ {
			switch c := v.Value[i]; c {
			case '\\', '"', '$':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteString("\"\n")
	}
	return b.Bytes()
}

// Shell writes "export NAME='value'" lines for a POSIX shell to eval or source: single quotes
// keep every byte literal, and a single quote is written as '\”.
func Shell(vars []Var) []byte {
	var b bytes.Buffer
	for _, v := range sorted(vars) {
		b.WriteString("export ")
		b.WriteString(v.Name)
		b.WriteString("='")
		b.WriteString(strings.ReplaceAll(v.Value, "'", `'\''`))
		b.WriteString("'\n")
	}
	return b.Bytes()
}

// JSON writes one object of names to values.
func JSON(vars []Var) []byte {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(m) // a map of strings always encodes
	return b.Bytes()
}

// YAML writes one mapping of names to values. Names and values are written as JSON strings,
// which YAML 1.2 reads as double-quoted scalars: nothing is left for a reader to guess at
// (NO, 0x10, ~ and the like stay strings).
func YAML(vars []Var) []byte {
	var b bytes.Buffer
	if len(vars) == 0 {
		return []byte("{}\n")
	}
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, v := range sorted(vars) {
		_ = enc.Encode(v.Name) // strings always encode; Encode ends each with a newline
		b.Truncate(b.Len() - 1)
		b.WriteString(": ")
		_ = enc.Encode(v.Value)
	}
	return b.Bytes()
}
