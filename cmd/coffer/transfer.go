package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/envfile"
)

// progressThreshold is the number of variables from which an import shows a progress bar
// (on a terminal).
const progressThreshold = 200

// importPlan is what an import changes, by name; values never appear in it.
type importPlan struct {
	Added     []string `json:"added"`
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
	// Removed are the environment's names not in the file: deleted with --delete-missing,
	// else kept (and listed as Kept).
	Removed []string `json:"removed"`
	Kept    []string `json:"kept"`
	DryRun  bool     `json:"dry_run"`
}

// planImport compares the file's variables with the environment's current secrets and returns
// the plan and the bulk write that carries it out, each entry compare-and-set against the
// version just read, so a write that lands in between fails the import rather than being
// overwritten unseen.
func planImport(vars []envfile.Var, current []secretItem, deleteMissing bool) (importPlan, []bulkChange) {
	p := importPlan{Added: []string{}, Changed: []string{}, Unchanged: []string{}, Removed: []string{}, Kept: []string{}}
	cur := make(map[string]secretItem, len(current))
	for _, s := range current {
		cur[s.Name] = s
	}
	var changes []bulkChange
	inFile := make(map[string]bool, len(vars))
	for _, v := range vars {
		inFile[v.Name] = true
		value := v.Value
		s, ok := cur[v.Name]
		switch {
		case !ok:
			zero := 0
			p.Added = append(p.Added, v.Name)
			changes = append(changes, bulkChange{Name: v.Name, Value: &value, ExpectedVersion: &zero})
		case s.Value == nil || *s.Value != value:
			version := s.Version
			p.Changed = append(p.Changed, v.Name)
			changes = append(changes, bulkChange{Name: v.Name, Value: &value, ExpectedVersion: &version})
		default:
			p.Unchanged = append(p.Unchanged, v.Name)
		}
	}
	for _, s := range current {
		if inFile[s.Name] {
			continue
		}
		if !deleteMissing {
			p.Kept = append(p.Kept, s.Name)
			continue
		}
		version := s.Version
		p.Removed = append(p.Removed, s.Name)
		changes = append(changes, bulkChange{Name: s.Name, Delete: true, ExpectedVersion: &version})
	}
	for _, l := range [][]string{p.Added, p.Changed, p.Unchanged, p.Removed, p.Kept} {
		sort.Strings(l)
	}
	return p, changes
}

// readInput reads a file named on the command line ("-": standard input); one that cannot be
// read exits 66.
func (a *cli) readInput(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, fail(exitNoInput, "reading standard input: %v", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fail(exitNoInput, "%s: cannot read it: %v", name, unwrapPath(err))
	}
	return b, nil
}

// unwrapPath drops the operation and path of a file error, which the message names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (a *cli) importCommand() *cobra.Command {
	var sc scopeFlags
	var dryRun, deleteMissing bool
	cmd := &cobra.Command{
		Use:   "import FILE.env",
		Short: "Write a dotenv file's variables into an environment, all or nothing",
		Long: "Reads FILE (\"-\": standard input) as a dotenv file: # comments, an optional \"export \" prefix, unquoted,\n" +
			"'single-quoted' (literal) and \"double-quoted\" values (\\n \\t \\\" \\\\ \\$ escapes), which may span lines;\n" +
			"nothing is interpolated. A file that cannot be read is refused with its line (exit 65).\n\n" +
			"The environment's current secrets are read once (an audited read) and only the names whose value\n" +
			"differs are written, in one all-or-nothing bulk write: each compare-and-set against the version just\n" +
			"read, so a secret changed meanwhile fails the import (exit 3) and nothing is written. Names of the\n" +
			"environment that the file lacks are kept, unless --delete-missing. The summary lists names only,\n" +
			"never values. --dry-run shows the summary and writes nothing.",
		Example: "  coffer import .env --project web --env development --dry-run\n" +
			"  coffer import .env --env staging\n" +
			"  coffer import prod.env --env production --delete-missing",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			src, err := a.readInput(file)
			if err != nil {
				return err
			}
			defer clear(src)
			vars, err := envfile.Parse(src)
			if err != nil {
				var se *envfile.SyntaxError
				if errors.As(err, &se) {
					return fail(exitDataErr, "%s: line %d: %s", file, se.Line, se.Msg)
				}
				return fail(exitDataErr, "%s: %v", file, err)
			}
			if len(vars) == 0 {
				return fail(exitDataErr, "%s: the file defines no variables", file)
			}
			c, err := a.withEnv(&sc)
			if err != nil {
				return err
			}
			current, err := listSecrets(cmd.Context(), c, &sc, url.Values{"include": {"values"}})
			if err != nil {
				return exitOf(err)
			}
			plan, changes := planImport(vars, current, deleteMissing)
			plan.DryRun = dryRun
			if !dryRun && len(changes) > 0 {
				if err := a.sendImport(cmd.Context(), c, &sc, changes, len(vars)); err != nil {
					var ae *apiError
					if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
						return &exitError{exitConflict, fmt.Errorf("%w; the environment changed while importing: nothing was written, run the import again", ae)}
					}
					return exitOf(err)
				}
			}
			return a.printPlan(plan, file, sc.env)
		},
	}
	addScopeFlags(cmd, &sc, true)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change (names only) and write nothing")
	cmd.Flags().BoolVar(&deleteMissing, "delete-missing", false, "also delete the environment's secrets that the file does not define")
	return cmd
}

// sendImport makes the one bulk write, with a progress bar of the upload on stderr when that
// is a terminal and the file is large.
func (a *cli) sendImport(ctx context.Context, c *apiClient, sc *scopeFlags, changes []bulkChange, nvars int) error {
	body, err := json.Marshal(map[string]any{"secrets": changes})
	if err != nil {
		return err
	}
	defer clear(body)
	var rd io.Reader = bytes.NewReader(body)
	if nvars > progressThreshold && isTerminal(a.stderr) {
		bar := progressbar.NewOptions64(int64(len(body)),
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription(fmt.Sprintf("importing %d changes", len(changes))),
			progressbar.OptionShowBytes(true),
			progressbar.OptionClearOnFinish())
		defer bar.Close()
		r := progressbar.NewReader(rd, bar)
		rd = &r
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.send(ctx, "PATCH", sc.envPath("secrets"), nil, rd, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func (a *cli) printPlan(p importPlan, file, env string) error {
	if a.jsonOut {
		return a.printJSON(p)
	}
	for _, l := range []struct {
		mark  string
		names []string
	}{{a.green("+"), p.Added}, {a.yellow("~"), p.Changed}, {a.red("-"), p.Removed}} {
		for _, n := range l.names {
			fmt.Fprintf(a.stdout, "%s %s\n", l.mark, n)
		}
	}
	verb := "imported"
	if p.DryRun {
		verb = "dry run, nothing written"
	}
	fmt.Fprintf(a.stdout, "%s %s into %s: %d added, %d changed, %d unchanged, %d removed", verb, file, env,
		len(p.Added), len(p.Changed), len(p.Unchanged), len(p.Removed))
	if len(p.Kept) > 0 {
		fmt.Fprintf(a.stdout, "; %d not in the file kept (--delete-missing deletes them)", len(p.Kept))
	}
	fmt.Fprintln(a.stdout)
	return nil
}

func (a *cli) exportCommand() *cobra.Command {
	var sc scopeFlags
	var format, output string
	var resolve bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write an environment's secrets, with their values, as a dotenv, JSON, YAML or shell file",
		Long: "Prints the whole environment with its values (an audited read) in --format, on standard output or\n" +
			"into --output FILE, created with mode 0600. dotenv output is read back by `coffer import` to the same\n" +
			"values; shell output is `export NAME='value'` lines for a POSIX shell to source.",
		Example: "  coffer export --env staging > staging.env\n" +
			"  coffer export --env production --format json --output prod.json\n" +
			"  eval \"$(coffer export --format shell)\"",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "dotenv", "json", "yaml", "shell":
			default:
				return fail(exitUsage, "--format must be dotenv, json, yaml or shell")
			}
			c, err := a.withEnv(&sc)
			if err != nil {
				return err
			}
			q := url.Values{"include": {"values"}, "format": {format}}
			if resolve {
				q.Set("resolve", "true")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			resp, err := c.send(ctx, "GET", sc.envPath("secrets"), q, nil, "")
			if err != nil {
				return exitOf(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return fail(exitUnavailable, "reading the export: %v", err)
			}
			defer clear(body)
			if output == "" || output == "-" {
				_, err = a.stdout.Write(body)
				return err
			}
			if err := writePrivateFile(filepath.Dir(output), filepath.Base(output), body); err != nil {
				return fail(exitFailure, "writing %s: %v", output, err)
			}
			a.warn("wrote %s (mode 0600)", output)
			return nil
		},
	}
	addScopeFlags(cmd, &sc, true)
	cmd.Flags().StringVarP(&format, "format", "f", "dotenv", "dotenv, json, yaml or shell")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file (mode 0600) rather than standard output")
	cmd.Flags().BoolVar(&resolve, "resolve", false, "expand references to other secrets in the values")
	return cmd
}
