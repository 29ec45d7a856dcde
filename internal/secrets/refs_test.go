package secrets

import (
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: segments joined, refs as <project|env|NAME>
		err      string
	}{
		{"plain", "plain", ""},
		{"", "", ""},
		{"${A}", "<||A>", ""},
		{"x${staging.A_1}y", "x<|staging|A_1>y", ""},
		{"${shared.prod-eu.REGION}", "<shared|prod-eu|REGION>", ""},
		{"$${A} and $$ and $x", "${A} and $$ and $x", ""},
		{"$$${A}", "$${A}", ""}, // a lone $, then the escape
		{"${A", "", "never closed"},
		{"${a b}", "", "not a reference"},
		{"${Staging.A}", "", "not a reference"},
		{"${a.b.c.D}", "", "not a reference"},
		{"${}", "", "not a reference"},
	} {
		segs, err := parseValue(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseValue(%q) = %v, want an error about %q", c.in, err, c.err)
			}
			continue
		}
		var b strings.Builder
		for _, s := range segs {
			if s.ref != nil {
				b.WriteString("<" + s.ref.Project + "|" + s.ref.Env + "|" + s.ref.Name + ">")
			} else {
				b.WriteString(s.text)
			}
		}
		if err != nil || b.String() != c.want {
			t.Errorf("parseValue(%q) = %q, %v; want %q", c.in, b.String(), err, c.want)
		}
	}
}
