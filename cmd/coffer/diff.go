package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
)

// diffEntry is one name of a diff; a version is nil on the side that lacks the name, and
// values are there only when asked for.
type diffEntry struct {
	Name        string  `json:"name"`
	FromVersion *int    `json:"from_version"`
	ToVersion   *int    `json:"to_version"`
	FromValue   *string `json:"from_value,omitempty"`
	ToValue     *string `json:"to_value,omitempty"`
}

// envDiff is GET …/projects/{p}/diff: names only in one environment, names whose values
// differ, and how many are the same (counted, not listed).
type envDiff struct {
	From       string      `json:"from"`
	To         string      `json:"to"`
	OnlyInFrom []diffEntry `json:"only_in_from"`
	OnlyInTo   []diffEntry `json:"only_in_to"`
	Different  []diffEntry `json:"different"`
	Same       int         `json:"same"`
}

func fetchDiff(ctx context.Context, c *apiClient, sc *scopeFlags, from, to string, reveal bool) (envDiff, error) {
	q := url.Values{"from": {from}, "to": {to}}
	if reveal {
		q.Set("include", "values")
	}
	var d envDiff
	err := c.do(ctx, "GET", sc.projectPath("diff"), q, nil, &d)
	for _, l := range []*[]diffEntry{&d.OnlyInFrom, &d.OnlyInTo, &d.Different} {
		if *l == nil {
			*l = []diffEntry{}
		}
	}
	return d, err
}

// withProject is the common start of a command on a project: the scope and a client.
func (a *cli) withProject(sc *scopeFlags) (*apiClient, error) {
	if err := a.resolveScope(sc, false); err != nil {
		return nil, err
	}
	c, _, err := a.client()
	return c, err
}

func (a *cli) diffCommand() *cobra.Command {
	var sc scopeFlags
	var reveal bool
	cmd := &cobra.Command{
		Use:   "diff ENV_A ENV_B",
		Short: "Compare two environments of a project",
		Long: "Lists the names only in ENV_A, only in ENV_B, and in both with different values, with their versions,\n" +
			"and counts the names that are the same. Values are masked unless --reveal (an audited read of both).\n" +
			"Exits 0 whether or not they differ.",
		Example: "  coffer diff staging production\n" +
			"  coffer diff staging production --reveal\n" +
			"  coffer diff development staging --json",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withProject(&sc)
			if err != nil {
				return err
			}
			d, err := fetchDiff(cmd.Context(), c, &sc, args[0], args[1], reveal)
			if err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				return a.printJSON(d)
			}
			head := []string{"NAME", "STATUS", d.From, d.To}
			rows := [][]string{head}
			show := func(version *int, value *string) string {
				switch {
				case version == nil:
					return "-"
				case reveal && value != nil:
					return displayValue(*value)
				case reveal:
					return "v" + strconv.Itoa(*version)
				}
				return "v" + strconv.Itoa(*version) + " ****"
			}
			for _, g := range []struct {
				status string
				list   []diffEntry
			}{{a.green("only in " + d.From), d.OnlyInFrom}, {a.red("only in " + d.To), d.OnlyInTo}, {a.yellow("differ"), d.Different}} {
				for _, e := range g.list {
					rows = append(rows, []string{e.Name, g.status, show(e.FromVersion, e.FromValue), show(e.ToVersion, e.ToValue)})
				}
			}
			if len(rows) > 1 {
				if err := a.table(rows); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stdout, "%d only in %s, %d only in %s, %d differ, %d the same\n",
				len(d.OnlyInFrom), d.From, len(d.OnlyInTo), d.To, len(d.Different), d.Same)
			return nil
		},
	}
	addScopeFlags(cmd, &sc, false)
	cmd.Flags().BoolVar(&reveal, "reveal", false, "show the values (an audited read of both environments)")
	return cmd
}

// promotion names one secret to promote with the versions the diff showed.
type promotion struct {
	Name        string `json:"name"`
	FromVersion int    `json:"from_version"`
	ToVersion   int    `json:"to_version"` // 0: absent in the target
}

func (a *cli) promoteCommand() *cobra.Command {
	var sc scopeFlags
	var from, to string
	var all bool
	cmd := &cobra.Command{
		Use:   "promote --from ENV --to ENV (NAME… | --all)",
		Short: "Copy secrets from one environment to another",
		Long: "Copies the named secrets' current values from --from to --to, in one all-or-nothing write on the\n" +
			"server (values are never sent to this machine). --all promotes every name that is missing from or\n" +
			"different in --to. Each copy is compare-and-set against the versions just compared: a secret changed\n" +
			"meanwhile fails the promotion (exit 3) and nothing is written. Names already the same are skipped.",
		Example: "  coffer promote --from staging --to production API_URL FEATURE_FLAGS\n" +
			"  coffer promote --from staging --to production --all",
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || to == "" {
				return fail(exitUsage, "--from and --to are required")
			}
			if all == (len(args) > 0) {
				return fail(exitUsage, "name the secrets to promote, or pass --all")
			}
			c, err := a.withProject(&sc)
			if err != nil {
				return err
			}
			d, err := fetchDiff(cmd.Context(), c, &sc, from, to, false)
			if err != nil {
				return exitOf(err)
			}
			pending := map[string]promotion{}
			for _, e := range append(append([]diffEntry{}, d.OnlyInFrom...), d.Different...) {
				p := promotion{Name: e.Name, FromVersion: *e.FromVersion}
				if e.ToVersion != nil {
					p.ToVersion = *e.ToVersion
				}
				pending[e.Name] = p
			}
			onlyTo := map[string]bool{}
			for _, e := range d.OnlyInTo {
				onlyTo[e.Name] = true
			}
			var items []promotion
			var same []string
			if all {
				for _, l := range [][]diffEntry{d.OnlyInFrom, d.Different} {
					for _, e := range l {
						items = append(items, pending[e.Name])
					}
				}
			} else {
				var unknown []string
				for _, n := range args {
					switch p, ok := pending[n]; {
					case ok:
						items = append(items, p)
					case onlyTo[n]:
						return fail(exitNotFound, "%s is not in %s (only in %s): nothing was promoted", n, from, to)
					default:
						unknown = append(unknown, n)
					}
				}
				// Names in neither list are the same on both sides, or in neither: tell which.
				if len(unknown) > 0 {
					fromSc := sc
					fromSc.env = from
					list, err := listSecrets(cmd.Context(), c, &fromSc, nil)
					if err != nil {
						return exitOf(err)
					}
					live := map[string]bool{}
					for _, s := range list {
						live[s.Name] = true
					}
					for _, n := range unknown {
						if !live[n] {
							return fail(exitNotFound, "%s is not in %s: nothing was promoted", n, from)
						}
						same = append(same, n)
					}
				}
			}
			for _, n := range same {
				a.warn("%s is already the same in %s: skipped", n, to)
			}
			if len(items) == 0 {
				if a.jsonOut {
					return a.printJSON(map[string]any{"from": from, "to": to, "items": []writeResult{}})
				}
				fmt.Fprintf(a.stdout, "nothing to promote: %s has the same values as %s\n", to, from)
				return nil
			}
			var out struct {
				From  string        `json:"from"`
				To    string        `json:"to"`
				Items []writeResult `json:"items"`
			}
			body := map[string]any{"from": from, "to": to, "names": items}
			if err := c.do(cmd.Context(), "POST", sc.projectPath("promote"), nil, body, &out); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
					return &exitError{exitConflict, fmt.Errorf("%w; a secret changed since the comparison: nothing was promoted, run it again", ae)}
				}
				return exitOf(err)
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			for _, r := range out.Items {
				fmt.Fprintf(a.stdout, "promoted %s to %s: version %d\n", r.Name, out.To, r.Version)
			}
			return nil
		},
	}
	addScopeFlags(cmd, &sc, false)
	cmd.Flags().StringVar(&from, "from", "", "the environment to copy from")
	cmd.Flags().StringVar(&to, "to", "", "the environment to copy to")
	cmd.Flags().BoolVar(&all, "all", false, "promote every secret missing from or different in --to")
	return cmd
}
