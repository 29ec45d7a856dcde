package main

import (
	"github.com/spf13/cobra"
)

// scopeFlags are --tenant, --project and --env; what is not given comes from the repository's
// .coffer.yaml (repo.go), and the tenant defaults to "default".
type scopeFlags struct {
	tenant, project, env string
}

// addScopeFlags adds --tenant and --project, and --env when the command works on one
// environment.
func addScopeFlags(cmd *cobra.Command, f *scopeFlags, withEnv bool) {
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant slug (default: .coffer.yaml's, else \"default\")")
	cmd.Flags().StringVar(&f.project, "project", "", "project slug (default: .coffer.yaml's)")
	if withEnv {
		cmd.Flags().StringVarP(&f.env, "env", "e", "", "environment slug (default: .coffer.yaml's for the current git branch)")
	}
}

// resolve fills what the flags left empty from .coffer.yaml and checks that the command has
// what it needs.
func (a *cli) resolveScope(f *scopeFlags, withEnv bool) error {
	if f.tenant == "" || f.project == "" || (withEnv && f.env == "") {
		d, err := a.repoDefaults()
		if err != nil {
			return err
		}
		if f.tenant == "" {
			f.tenant = d.Tenant
		}
		if f.project == "" {
			f.project = d.Project
		}
		if withEnv && f.env == "" {
			f.env = d.environment
		}
	}
	if f.tenant == "" {
		f.tenant = "default"
	}
	if f.project == "" {
		return fail(exitUsage, "no project: pass --project or run `coffer setup` to write .coffer.yaml")
	}
	if withEnv && f.env == "" {
		return fail(exitUsage, "no environment: pass --env or name one in .coffer.yaml (`coffer setup`)")
	}
	return nil
}

// projectPath is /api/v1/tenants/{t}/projects/{p}, with more segments appended.
func (f *scopeFlags) projectPath(more ...string) string {
	return apiPath(append([]string{"tenants", f.tenant, "projects", f.project}, more...)...)
}

// envPath is …/environments/{env}, with more segments appended.
func (f *scopeFlags) envPath(more ...string) string {
	return f.projectPath(append([]string{"environments", f.env}, more...)...)
}
