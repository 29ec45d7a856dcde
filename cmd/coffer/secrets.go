package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// secretItem is a secret as the API shows it; Value only when it was asked for.
type secretItem struct {
	Name      string     `json:"name"`
	Version   int        `json:"version"`
	Value     *string    `json:"value,omitempty"`
	Note      string     `json:"note"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// bulkChange is one entry of a bulk write (PATCH …/secrets). ExpectedVersion is compare-and-set:
// the secret must be at that version (0: must not exist), or nothing is written.
type bulkChange struct {
	Name            string  `json:"name"`
	Value           *string `json:"value,omitempty"`
	Note            string  `json:"note,omitempty"`
	Delete          bool    `json:"delete,omitempty"`
	ExpectedVersion *int    `json:"expected_version,omitempty"`
}

// writeResult is what a write did to one secret.
type writeResult struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
}

// listSecrets reads every page of an environment's secrets with query (include=…).
func listSecrets(ctx context.Context, c *apiClient, sc *scopeFlags, query url.Values) ([]secretItem, error) {
	var all []secretItem
	q := url.Values{"limit": {"1000"}}
	for k, v := range query {
		q[k] = v
	}
	for {
		var page struct {
			Items      []secretItem `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		if err := c.do(ctx, "GET", sc.envPath("secrets"), q, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// writeChanges applies changes in one all-or-nothing bulk write.
func writeChanges(ctx context.Context, c *apiClient, sc *scopeFlags, changes []bulkChange) ([]writeResult, error) {
	var out struct {
		Items []writeResult `json:"items"`
	}
	err := c.do(ctx, "PATCH", sc.envPath("secrets"), nil, map[string]any{"secrets": changes}, &out)
	return out.Items, err
}

// casError explains a compare-and-set refusal (412, exit 3) in the user's terms.
func casError(err error, name string) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
		return &exitError{exitConflict, fmt.Errorf("%w; read %s again (`coffer secrets get %s --json` shows its version) and retry", ae, name, name)}
	}
	return exitOf(err)
}

// displayValue shows a value on one line of a table: as it is when that is unambiguous,
// else Go-quoted.
func displayValue(v string) string {
	if v == "" || strings.ContainsAny(v, "\"\\") || strings.TrimSpace(v) != v {
		return strconv.Quote(v)
	}
	for _, r := range v {
		if !strconv.IsPrint(r) {
			return strconv.Quote(v)
		}
	}
	return v
}

// shortTime shows a time in the local zone, to the second.
func shortTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func (a *cli) secretsCommand() *cobra.Command {
	var sc scopeFlags
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "List, read, write and manage an environment's secrets",
		Long: "Secrets of one environment: names, versions and values. Values are shown only by the commands that\n" +
			"are asked for them: get, list --reveal.",
		Example: "  coffer secrets list --project web --env staging\n" +
			"  coffer secrets get DATABASE_URL\n" +
			"  printf %s \"$TOKEN\" | coffer secrets set API_TOKEN",
	}
	cmd.AddCommand(a.secretsList(&sc), a.secretsGet(&sc), a.secretsSet(&sc), a.secretsDelete(&sc), a.secretsRestore(&sc),
		a.secretsVersions(&sc), a.secretsRollback(&sc), a.secretsDestroy(&sc))
	return cmd
}

// withEnv is the common start of a command on one environment: the scope and a client.
func (a *cli) withEnv(sc *scopeFlags) (*apiClient, error) {
	if err := a.resolveScope(sc, true); err != nil {
		return nil, err
	}
	c, _, err := a.client()
	return c, err
}

func (a *cli) secretsList(sc *scopeFlags) *cobra.Command {
	var reveal, deleted bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the environment's secrets: names, versions, update times",
		Long:  "Lists names, versions and when each was last written. Values are not read unless --reveal (an audited read).",
		Example: "  coffer secrets list --project web --env staging\n" +
			"  coffer secrets list --deleted          # soft-deleted secrets, which `restore` brings back\n" +
			"  coffer secrets list --reveal --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reveal && deleted {
				return fail(exitUsage, "--reveal and --deleted cannot be combined")
			}
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			q := url.Values{}
			switch {
			case reveal:
				q.Set("include", "values")
			case deleted:
				q.Set("include", "deleted")
			}
			list, err := listSecrets(cmd.Context(), c, sc, q)
			if err != nil {
				return exitOf(err)
			}
			if deleted {
				// include=deleted lists the live secrets too: keep the deleted ones.
				gone := list[:0]
				for _, s := range list {
					if s.DeletedAt != nil {
						gone = append(gone, s)
					}
				}
				list = gone
			}
			if a.jsonOut {
				if list == nil {
					list = []secretItem{}
				}
				return a.printJSON(list)
			}
			head := []string{"NAME", "VERSION", "UPDATED"}
			if reveal {
				head = append(head, "VALUE")
			}
			if deleted {
				head = append(head, "DELETED")
			}
			rows := [][]string{head}
			for _, s := range list {
				row := []string{s.Name, strconv.Itoa(s.Version), shortTime(s.UpdatedAt)}
				if reveal && s.Value != nil {
					row = append(row, displayValue(*s.Value))
				}
				if deleted && s.DeletedAt != nil {
					row = append(row, shortTime(*s.DeletedAt))
				}
				rows = append(rows, row)
			}
			return a.table(rows)
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show the values too (the read is audited)")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "list the soft-deleted secrets instead")
	return cmd
}

func (a *cli) secretsGet(sc *scopeFlags) *cobra.Command {
	var version int
	var noNewline bool
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a secret's value",
		Long:  "Prints the value alone, followed by a newline (-n: without it). --json prints the secret with its value and metadata.",
		Example: "  coffer secrets get DATABASE_URL --env production\n" +
			"  coffer secrets get TLS_KEY -n > tls.key\n" +
			"  coffer secrets get API_KEY --version 3 --json",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			q := url.Values{}
			if version > 0 {
				q.Set("version", strconv.Itoa(version))
			}
			var s secretItem
			if err := c.do(cmd.Context(), "GET", sc.envPath("secrets", args[0]), q, nil, &s); err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				return a.printJSON(s)
			}
			if s.Value == nil {
				return fail(exitFailure, "the server sent %s without its value", args[0])
			}
			v := *s.Value
			if !noNewline {
				v += "\n"
			}
			_, err = io.WriteString(a.stdout, v)
			return err
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().IntVar(&version, "version", 0, "read this version rather than the current one")
	cmd.Flags().BoolVarP(&noNewline, "no-newline", "n", false, "print the value without a trailing newline")
	return cmd
}

func (a *cli) secretsSet(sc *scopeFlags) *cobra.Command {
	var ifVersion int
	var note string
	cmd := &cobra.Command{
		Use:   "set NAME [VALUE|-]",
		Short: "Write a new version of a secret",
		Long: "Writes a new version of NAME (creating it if needed). The value is VALUE, or, when VALUE is left out or\n" +
			"is \"-\", what is read from standard input: byte for byte from a pipe or file (a trailing newline too:\n" +
			"use printf rather than echo), or one hidden line typed at a terminal. Reading it from stdin keeps the\n" +
			"value out of the shell history and the process list.\n\n" +
			"--if-version N writes only if NAME is at version N now (0: only if it does not exist yet); if it is\n" +
			"not, nothing is written and coffer exits 3.",
		Example: "  coffer secrets set LOG_LEVEL debug\n" +
			"  coffer secrets set API_KEY                    # type it, hidden\n" +
			"  coffer secrets set TLS_KEY < tls.key\n" +
			"  printf %s \"$NEW\" | coffer secrets set API_KEY - --if-version 4",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			var value string
			if len(args) == 2 && args[1] != "-" {
				value = args[1]
			} else if value, err = a.readValue(args[0]); err != nil {
				return err
			}
			ch := bulkChange{Name: args[0], Value: &value, Note: note}
			if cmd.Flags().Changed("if-version") {
				if ifVersion < 0 {
					return fail(exitUsage, "--if-version takes a version, or 0 for a secret that must not exist")
				}
				ch.ExpectedVersion = &ifVersion
			}
			res, err := writeChanges(cmd.Context(), c, sc, []bulkChange{ch})
			if err != nil {
				return casError(err, args[0])
			}
			return a.printResults(res, "set")
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().IntVar(&ifVersion, "if-version", 0, "write only if the secret is at this version now (0: only if it does not exist)")
	cmd.Flags().StringVar(&note, "note", "", "a note kept with the version")
	return cmd
}

// readValue reads a secret's value from stdin: one hidden line at a terminal, else all of it.
func (a *cli) readValue(name string) (string, error) {
	if a.stdinIsTerminal() {
		fmt.Fprintf(a.stderr, "value of %s (hidden): ", name)
		b, err := term.ReadPassword(int(a.stdin.(*os.File).Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fail(exitNoInput, "reading the value: %v", err)
		}
		return string(b), nil
	}
	b, err := io.ReadAll(a.stdin)
	if err != nil {
		return "", fail(exitNoInput, "reading the value from standard input: %v", err)
	}
	return string(b), nil
}

// printResults prints what a write did, one line a secret (--json: the results).
func (a *cli) printResults(res []writeResult, verb string) error {
	if a.jsonOut {
		if res == nil {
			res = []writeResult{}
		}
		return a.printJSON(res)
	}
	for _, r := range res {
		if r.Deleted {
			fmt.Fprintf(a.stdout, "deleted %s (version %d kept: `coffer secrets restore %s` brings it back)\n", r.Name, r.Version, r.Name)
			continue
		}
		fmt.Fprintf(a.stdout, "%s %s: version %d\n", verb, r.Name, r.Version)
	}
	return nil
}

func (a *cli) secretsDelete(sc *scopeFlags) *cobra.Command {
	var ifVersion int
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Soft-delete a secret (restore brings it back)",
		Long: "Deletes NAME from the environment; its versions are kept and `coffer secrets restore` brings it back.\n" +
			"--if-version N deletes only if NAME is at version N now; if it is not, nothing changes and coffer exits 3.",
		Example: "  coffer secrets delete OLD_API_KEY\n" +
			"  coffer secrets delete OLD_API_KEY --if-version 2",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			ch := bulkChange{Name: args[0], Delete: true}
			if cmd.Flags().Changed("if-version") {
				if ifVersion < 1 {
					return fail(exitUsage, "--if-version takes a version (1 or more)")
				}
				ch.ExpectedVersion = &ifVersion
			}
			res, err := writeChanges(cmd.Context(), c, sc, []bulkChange{ch})
			if err != nil {
				return casError(err, args[0])
			}
			return a.printResults(res, "deleted")
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().IntVar(&ifVersion, "if-version", 0, "delete only if the secret is at this version now")
	return cmd
}

func (a *cli) secretsRestore(sc *scopeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "restore NAME",
		Short:   "Bring back a soft-deleted secret",
		Long:    "Undoes `coffer secrets delete`: NAME is live again with the value it had (`secrets list --deleted` lists them).",
		Example: "  coffer secrets restore OLD_API_KEY --env staging",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			var r writeResult
			if err := c.do(cmd.Context(), "POST", sc.envPath("secrets", args[0], "restore"), nil, nil, &r); err != nil {
				return exitOf(err)
			}
			return a.printResults([]writeResult{r}, "restored")
		},
	}
	addScopeFlags(cmd, sc, true)
	return cmd
}

func (a *cli) secretsVersions(sc *scopeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "versions NAME",
		Short:   "List a secret's versions, newest first",
		Example: "  coffer secrets versions DATABASE_URL\n  coffer secrets versions DATABASE_URL --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			type version struct {
				Version     int        `json:"version"`
				Note        string     `json:"note"`
				CreatedBy   string     `json:"created_by"`
				CreatedAt   time.Time  `json:"created_at"`
				Destroyed   bool       `json:"destroyed"`
				DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
				DestroyedBy string     `json:"destroyed_by,omitempty"`
			}
			all := []version{}
			q := url.Values{"limit": {"1000"}}
			for {
				var page struct {
					Items      []version `json:"items"`
					NextCursor string    `json:"next_cursor"`
				}
				if err := c.do(cmd.Context(), "GET", sc.envPath("secrets", args[0], "versions"), q, nil, &page); err != nil {
					return exitOf(err)
				}
				all = append(all, page.Items...)
				if page.NextCursor == "" {
					break
				}
				q.Set("cursor", page.NextCursor)
			}
			if a.jsonOut {
				return a.printJSON(all)
			}
			rows := [][]string{{"VERSION", "CREATED", "BY", "NOTE", "DESTROYED"}}
			for _, v := range all {
				destroyed := ""
				if v.Destroyed {
					destroyed = "yes"
				}
				rows = append(rows, []string{strconv.Itoa(v.Version), shortTime(v.CreatedAt), v.CreatedBy, displayNote(v.Note), destroyed})
			}
			return a.table(rows)
		},
	}
	addScopeFlags(cmd, sc, true)
	return cmd
}

func displayNote(n string) string {
	if n == "" {
		return ""
	}
	return displayValue(n)
}

func (a *cli) secretsRollback(sc *scopeFlags) *cobra.Command {
	var to int
	cmd := &cobra.Command{
		Use:   "rollback NAME --to-version N",
		Short: "Write a new version holding an earlier version's value",
		Long: "Rolls NAME back to version N by writing a new version with N's value: history is kept, and the\n" +
			"rollback itself can be rolled back.",
		Example: "  coffer secrets rollback API_KEY --to-version 3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 1 {
				return fail(exitUsage, "--to-version N is required (a version, 1 or more)")
			}
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			var r writeResult
			if err := c.do(cmd.Context(), "POST", sc.envPath("secrets", args[0], "rollback"), nil, map[string]int{"version": to}, &r); err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "rolled back %s: version %d has the value of version %d\n", r.Name, r.Version, to)
			return nil
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().IntVar(&to, "to-version", 0, "the version whose value to restore")
	return cmd
}

func (a *cli) secretsDestroy(sc *scopeFlags) *cobra.Command {
	var versions []int
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy NAME --versions N[,N…]",
		Short: "Erase versions of a secret for good",
		Long: "Erases the values of the given versions of NAME; this cannot be undone (their metadata stays). The\n" +
			"current version cannot be destroyed: write a new one first. Asks for confirmation at a terminal;\n" +
			"elsewhere pass --yes.",
		Example: "  coffer secrets destroy API_KEY --versions 1,2\n" +
			"  coffer secrets destroy API_KEY --versions 3 --yes",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(versions) == 0 {
				return fail(exitUsage, "--versions is required")
			}
			c, err := a.withEnv(sc)
			if err != nil {
				return err
			}
			if !yes {
				if err := a.confirmTyped(fmt.Sprintf("Erase versions %s of %s in %s for good? Type the name to confirm: ", joinInts(versions), args[0], sc.env), args[0]); err != nil {
					return err
				}
			}
			var out struct {
				Name      string `json:"name"`
				Destroyed []int  `json:"destroyed"`
			}
			if err := c.do(cmd.Context(), "POST", sc.envPath("secrets", args[0], "destroy"), nil, map[string][]int{"versions": versions}, &out); err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				if out.Destroyed == nil {
					out.Destroyed = []int{}
				}
				return a.printJSON(out)
			}
			if len(out.Destroyed) == 0 {
				fmt.Fprintf(a.stdout, "%s: nothing to destroy (those versions were destroyed already)\n", out.Name)
				return nil
			}
			fmt.Fprintf(a.stdout, "destroyed versions %s of %s\n", joinInts(out.Destroyed), out.Name)
			return nil
		},
	}
	addScopeFlags(cmd, sc, true)
	cmd.Flags().IntSliceVar(&versions, "versions", nil, "the versions to erase (repeat or comma-separate)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirmTyped asks at a terminal for want to be typed; elsewhere it refuses (the caller offers --yes).
func (a *cli) confirmTyped(prompt, want string) error {
	if !a.stdinIsTerminal() {
		return fail(exitUsage, "this cannot be undone: pass --yes to confirm")
	}
	fmt.Fprint(a.stderr, prompt)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return fail(exitUsage, "not confirmed")
	}
	if strings.TrimSpace(line) != want {
		return fail(exitUsage, "not confirmed: nothing was changed")
	}
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
