package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
)

// printJSON writes v as indented JSON on stdout (--json).
func (a *cli) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes rows as aligned columns on stdout, the first row being the header.
func (a *cli) table(rows [][]string) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for i, r := range rows {
		for j, cell := range r {
			if j > 0 {
				fmt.Fprint(tw, "\t")
			}
			if i == 0 {
				cell = a.bold(cell)
			}
			fmt.Fprint(tw, cell)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// colour says whether w is a terminal and NO_COLOR is unset (https://no-color.org).
func (a *cli) colour(w io.Writer) bool {
	if a.getenv("NO_COLOR") != "" || a.getenv("TERM") == "dumb" {
		return false
	}
	return isTerminal(w)
}

// isTerminal says whether a stream (an *os.File) is a terminal.
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

func (a *cli) paint(code, s string) string {
	if !a.colour(a.stdout) {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (a *cli) bold(s string) string   { return a.paint("1", s) }
func (a *cli) red(s string) string    { return a.paint("31", s) }
func (a *cli) green(s string) string  { return a.paint("32", s) }
func (a *cli) yellow(s string) string { return a.paint("33", s) }

// warn writes one line on stderr, prefixed "coffer: ".
func (a *cli) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "coffer: "+format+"\n", args...)
}

// stdinIsTerminal says whether stdin is a terminal (prompts are only shown then).
func (a *cli) stdinIsTerminal() bool { return isTerminal(a.stdin) }
