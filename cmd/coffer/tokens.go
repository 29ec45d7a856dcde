package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// serviceToken is a project's service token as the API lists it (never the token itself).
type serviceToken struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Prefix       string     `json:"prefix"`
	Environments []string   `json:"environments"`
	Access       string     `json:"access"`
	ExpiresAt    time.Time  `json:"expires_at"`
	LastUsedAt   *time.Time `json:"last_used_at"`
	CreatedAt    time.Time  `json:"created_at"`
	CreatedBy    *string    `json:"created_by"`
}

func (a *cli) tokensCommand() *cobra.Command {
	var sc scopeFlags
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Manage a project's service tokens (for CI and servers)",
		Long: "Service tokens reach chosen environments of one project, read-only or read-write, and always expire.\n" +
			"The token is shown once, when it is created; the server keeps only its hash.",
		Example: "  coffer tokens list --project web\n" +
			"  coffer tokens create ci-deploy --env staging --env production --expires-in-days 30\n" +
			"  coffer tokens revoke 6f1c…",
	}
	cmd.AddCommand(a.tokensList(&sc), a.tokensCreate(&sc), a.tokensRevoke(&sc))
	return cmd
}

func (a *cli) tokensList(sc *scopeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the project's live service tokens",
		Example: "  coffer tokens list --project web\n  coffer tokens list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.withProject(sc)
			if err != nil {
				return err
			}
			var out struct {
				Items []serviceToken `json:"items"`
			}
			if err := c.do(cmd.Context(), "GET", sc.projectPath("service-tokens"), nil, nil, &out); err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				if out.Items == nil {
					out.Items = []serviceToken{}
				}
				return a.printJSON(out.Items)
			}
			rows := [][]string{{"ID", "NAME", "PREFIX", "ENVIRONMENTS", "ACCESS", "EXPIRES", "LAST USED"}}
			for _, t := range out.Items {
				last := "never"
				if t.LastUsedAt != nil {
					last = shortTime(*t.LastUsedAt)
				}
				rows = append(rows, []string{t.ID, t.Name, t.Prefix, strings.Join(t.Environments, ","), t.Access, shortTime(t.ExpiresAt), last})
			}
			return a.table(rows)
		},
	}
	addScopeFlags(cmd, sc, false)
	return cmd
}

func (a *cli) tokensCreate(sc *scopeFlags) *cobra.Command {
	var envs []string
	var access string
	var days int
	cmd := &cobra.Command{
		Use:   "create NAME --env ENV… [--access read|read-write] [--expires-in-days N]",
		Short: "Create a service token and print it, once",
		Long: "Creates a service token for the project's environments named by --env, and prints the token on\n" +
			"standard output: it is shown only this once. You cannot give a token more access than you have.",
		Example: "  coffer tokens create ci --env staging\n" +
			"  coffer tokens create deployer --env production --access read-write --expires-in-days 7\n" +
			"  TOKEN=$(coffer tokens create ci --env staging)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(envs) == 0 {
				return fail(exitUsage, "name the environments the token reaches with --env")
			}
			if access != "read" && access != "read-write" {
				return fail(exitUsage, "--access must be read or read-write")
			}
			c, err := a.withProject(sc)
			if err != nil {
				return err
			}
			var out struct {
				serviceToken
				Token string `json:"token"`
			}
			body := map[string]any{"name": args[0], "environments": envs, "access": access, "expires_in_days": days}
			if err := c.do(cmd.Context(), "POST", sc.projectPath("service-tokens"), nil, body, &out); err != nil {
				return exitOf(err)
			}
			if a.jsonOut {
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(a.stdout, out.Token)
			}
			a.warn("service token %s (id %s, %s on %s) expires %s; it is shown only this once", out.Name, out.ID, out.Access,
				strings.Join(out.Environments, ","), shortTime(out.ExpiresAt))
			return nil
		},
	}
	addScopeFlags(cmd, sc, false)
	cmd.Flags().StringSliceVarP(&envs, "env", "e", nil, "an environment the token reaches (repeat or comma-separate)")
	cmd.Flags().StringVar(&access, "access", "read", "read or read-write")
	cmd.Flags().IntVar(&days, "expires-in-days", 90, "days until the token expires")
	return cmd
}

func (a *cli) tokensRevoke(sc *scopeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a service token: its next request is refused",
		Example: "  coffer tokens revoke 0193a2c4-7f1e-7c3a-9d1e-2b8f6a0c1d2e --project web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.withProject(sc)
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), "DELETE", sc.projectPath("service-tokens", args[0]), nil, nil, nil); err != nil {
				return exitOf(err)
			}
			fmt.Fprintf(a.stdout, "revoked %s\n", args[0])
			return nil
		},
	}
	addScopeFlags(cmd, sc, false)
	return cmd
}
