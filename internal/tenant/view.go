package tenant

import (
	"context"

	"github.com/cofferhq/coffer"
)

// View is what a caller may see of one tenant, for the event stream: which of its projects and
// environments (and under which slugs), and whether it sees tenant-wide changes. It is worked
// out with Authorize, from a scope resolved for the caller, so the stream decides exactly as
// the REST routes do.
type View struct {
	Tenant Tenant
	// TenantWide is true for owners and admins, who see changes to the tenant itself
	// (members, invitations, projects being created or deleted).
	TenantWide   bool
	Projects     map[string]string          // visible project id -> slug
	Environments map[string]ViewEnvironment // visible environment id -> where it is
}

// ViewEnvironment is a visible environment.
type ViewEnvironment struct {
	ProjectID string
	Slug      string
}

// viewPage is how many projects or environments one listing reads.
const viewPage = 500

// View works out what the caller of sc (a tenant scope, or a project scope when the caller
// named one) may see. With a project in sc only that project counts; a service token always
// has one.
func (s *Service) View(ctx context.Context, sc Scope) (View, error) {
	v := View{Tenant: sc.Tenant, Projects: map[string]string{}, Environments: map[string]ViewEnvironment{}}
	if sc.Project != nil {
		return v, s.addProject(ctx, &v, sc)
	}
	if sc.Grant != nil {
		return View{}, coffer.Errorf(coffer.EINVALID, "a service token subscribes to its own project: name it")
	}
	if err := Authorize(sc, ViewTenant); err != nil {
		return View{}, err
	}
	v.TenantWide = Authorize(sc, ManageTenant) == nil
	after := ""
	for {
		projects, err := s.ListProjects(ctx, sc, after, viewPage)
		if err != nil {
			return View{}, err
		}
		for i := range projects {
			p, role, err := s.store.ProjectBySlug(ctx, sc.Tenant.ID, sc.UserID, projects[i].Slug)
			if coffer.ErrorCode(err) == coffer.ENOTFOUND {
				continue // deleted meanwhile
			}
			if err != nil {
				return View{}, err
			}
			ps := sc
			ps.Project, ps.ProjectRole = &p, role
			if err := s.addProject(ctx, &v, ps); err != nil && coffer.ErrorCode(err) != coffer.ENOTFOUND {
				return View{}, err
			}
		}
		if len(projects) < viewPage {
			return v, nil
		}
		after = projects[len(projects)-1].Slug
	}
}

// addProject adds the project of sc and those of its environments whose secret names the
// caller may see (ViewSecrets).
func (s *Service) addProject(ctx context.Context, v *View, sc Scope) error {
	if err := Visible(sc); err != nil {
		return err
	}
	after := ""
	for {
		// ListEnvironments returns each with the caller's level (Authorize's rule); ViewSecrets
		// is what LevelMetadata and above allow.
		envs, levels, err := s.ListEnvironments(ctx, sc, after, viewPage)
		if err != nil {
			return err
		}
		v.Projects[sc.Project.ID] = sc.Project.Slug
		for i := range envs {
			if levels[i] >= LevelMetadata {
				v.Environments[envs[i].ID] = ViewEnvironment{ProjectID: sc.Project.ID, Slug: envs[i].Slug}
			}
		}
		if len(envs) < viewPage {
			return nil
		}
		after = envs[len(envs)-1].Slug
	}
}
