package tenant

import (
	"context"
	"fmt"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// Visible hides what the caller may not see: a project they are not a member of and an
// environment overridden to none answer not found, like missing ones.
func Visible(sc Scope) error {
	if sc.Project != nil && Authorize(sc, ViewProject) != nil {
		return coffer.Errorf(coffer.ENOTFOUND, "project not found")
	}
	if sc.Environment != nil && sc.Level() == LevelNone {
		return coffer.Errorf(coffer.ENOTFOUND, "environment not found")
	}
	return nil
}

// CreateTenant creates a tenant owned by the actor.
func (s *Service) CreateTenant(ctx context.Context, actor audit.Actor, slug, name string) (Tenant, error) {
	if err := ValidateSlug("slug", slug); err != nil {
		return Tenant{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Tenant{}, err
	}
	now := time.Now().UTC()
	t := Tenant{ID: s.newID(), Slug: slug, Name: name, CreatedAt: now, UpdatedAt: now}
	e := actor.New(audit.ActionTenantCreate, t.ID, "tenant", t.ID, slug, map[string]any{"name": name})
	e.Event = &coffer.Event{Type: e.Action, TenantID: t.ID}
	if err := s.store.CreateTenant(ctx, &t, actor.ID, e); err != nil {
		return Tenant{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return t, nil
}

// ListTenants lists the tenants userID is a member of.
func (s *Service) ListTenants(ctx context.Context, userID, after string, limit int) ([]Membered, error) {
	return s.store.ListTenants(ctx, userID, after, limit)
}

// UpdateTenant renames a tenant.
func (s *Service) UpdateTenant(ctx context.Context, actor audit.Actor, sc Scope, name string) (Tenant, error) {
	if err := Authorize(sc, ManageTenant); err != nil {
		return Tenant{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Tenant{}, err
	}
	t := sc.Tenant
	before := t.Name
	t.Name, t.UpdatedAt = name, time.Now().UTC()
	e := actor.New(audit.ActionTenantUpdate, t.ID, "tenant", t.ID, t.Slug, map[string]any{"name": map[string]string{"before": before, "after": name}})
	e.Event = &coffer.Event{Type: e.Action, TenantID: t.ID}
	if err := s.store.UpdateTenant(ctx, &t, e); err != nil {
		return Tenant{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return t, nil
}

// DeleteTenant deletes an empty tenant; only owners may, and projects must be deleted first
// so that no secret disappears as a side effect.
func (s *Service) DeleteTenant(ctx context.Context, actor audit.Actor, sc Scope) error {
	if err := Authorize(sc, DeleteTenant); err != nil {
		return err
	}
	e := actor.New(audit.ActionTenantDelete, sc.Tenant.ID, "tenant", sc.Tenant.ID, sc.Tenant.Slug, nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID}
	if err := s.store.DeleteTenant(ctx, sc.Tenant.ID, e); err != nil {
		return err
	}
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// ListMembers lists a tenant's members; every member may see who else is.
func (s *Service) ListMembers(ctx context.Context, sc Scope, after string, limit int) ([]Member, error) {
	if err := Authorize(sc, ViewTenant); err != nil {
		return nil, err
	}
	return s.store.ListMembers(ctx, sc.Tenant.ID, after, limit)
}

// RemoveMember removes a user from the tenant and all its projects. The last owner stays.
func (s *Service) RemoveMember(ctx context.Context, actor audit.Actor, sc Scope, userID string) error {
	// Anyone may leave; removing someone else is managing members.
	if err := Authorize(sc, ViewTenant); err != nil {
		return err
	}
	if userID != sc.UserID {
		if err := Authorize(sc, ManageMembers); err != nil {
			return err
		}
	}
	e := actor.New(audit.ActionTenantMemberRemove, sc.Tenant.ID, "user", userID, sc.Tenant.Slug, nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID}
	if err := s.store.RemoveMember(ctx, sc.Tenant.ID, userID, sc.Role, e); err != nil {
		return err
	}
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// SetMemberRole changes another member's role in the tenant: owners and admins, only owners
// grant or take away the owner role, and a tenant keeps at least one owner. Nobody changes
// their own role (another owner or admin does), so no one locks themselves out by mistake.
func (s *Service) SetMemberRole(ctx context.Context, actor audit.Actor, sc Scope, userID string, role Role) error {
	if err := Authorize(sc, ManageMembers); err != nil {
		return err
	}
	if !role.Valid() {
		return coffer.Errorf(coffer.EINVALID, "role must be owner, admin or member")
	}
	if err := CheckGrantRole(sc.Role, role); err != nil {
		return err
	}
	if userID == sc.UserID {
		return coffer.Errorf(coffer.ECONFLICT, "you cannot change your own role; another owner or admin can")
	}
	e := actor.New(audit.ActionTenantMemberRole, sc.Tenant.ID, "user", userID, sc.Tenant.Slug, nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID}
	if err := s.store.SetMemberRole(ctx, sc.Tenant.ID, userID, role, sc.Role, e); err != nil {
		return err
	}
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// CreateProject creates a project with the default environments, each with its own data key.
func (s *Service) CreateProject(ctx context.Context, actor audit.Actor, sc Scope, slug, name string) (Project, error) {
	if err := Authorize(sc, ManageTenant); err != nil {
		return Project{}, err
	}
	if err := ValidateSlug("slug", slug); err != nil {
		return Project{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Project{}, err
	}
	now := time.Now().UTC()
	p := Project{ID: s.newID(), TenantID: sc.Tenant.ID, Slug: slug, Name: name, CreatedAt: now, UpdatedAt: now}
	envs := make([]NewEnvironment, 0, len(DefaultEnvironments))
	for _, d := range DefaultEnvironments {
		ne, err := s.newEnvironment(ctx, p, d.Slug, d.Name, d.Protected, now)
		if err != nil {
			return Project{}, err
		}
		envs = append(envs, ne)
	}
	e := actor.New(audit.ActionProjectCreate, sc.Tenant.ID, "project", p.ID, sc.Tenant.Slug+"/"+slug, map[string]any{"name": name})
	e.Event = &coffer.Event{Type: e.Action, TenantID: p.TenantID, ProjectID: p.ID}
	if err := s.store.CreateProject(ctx, &p, envs, e); err != nil {
		return Project{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return p, nil
}

func (s *Service) newEnvironment(ctx context.Context, p Project, slug, name string, protected bool, now time.Time) (NewEnvironment, error) {
	env := Environment{ID: s.newID(), TenantID: p.TenantID, ProjectID: p.ID, Slug: slug, Name: name, Protected: protected, CreatedAt: now, UpdatedAt: now}
	key, err := s.keys.NewEnvironmentKey(ctx, p.TenantID, p.ID, env.ID)
	if err != nil {
		return NewEnvironment{}, fmt.Errorf("new data key for environment %s: %w", slug, err)
	}
	env.Key = KeyInfo{ID: key.ID, CreatedAt: key.CreatedAt}
	return NewEnvironment{Environment: env, Key: key}, nil
}

// ListProjects lists the projects the caller can see.
func (s *Service) ListProjects(ctx context.Context, sc Scope, after string, limit int) ([]Project, error) {
	if err := Authorize(sc, ViewTenant); err != nil {
		return nil, err
	}
	return s.store.ListProjects(ctx, sc.Tenant.ID, sc.UserID, !sc.Role.CanManageTenant(), after, limit)
}

// UpdateProject renames a project.
func (s *Service) UpdateProject(ctx context.Context, actor audit.Actor, sc Scope, name string) (Project, error) {
	if err := Authorize(sc, ManageProject); err != nil {
		return Project{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Project{}, err
	}
	p := *sc.Project
	before := p.Name
	p.Name, p.UpdatedAt = name, time.Now().UTC()
	e := actor.New(audit.ActionProjectUpdate, p.TenantID, "project", p.ID, sc.Path(), map[string]any{"name": map[string]string{"before": before, "after": name}})
	e.Event = &coffer.Event{Type: e.Action, TenantID: p.TenantID, ProjectID: p.ID}
	if err := s.store.UpdateProject(ctx, &p, e); err != nil {
		return Project{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return p, nil
}

// DeleteProject deletes a project with its environments and secrets; tenant owners and
// admins only, since it destroys every environment at once.
func (s *Service) DeleteProject(ctx context.Context, actor audit.Actor, sc Scope) error {
	if err := Authorize(sc, ManageTenant); err != nil {
		return err
	}
	e := actor.New(audit.ActionProjectDelete, sc.Tenant.ID, "project", sc.Project.ID, sc.Path(), nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID}
	envIDs, err := s.store.DeleteProject(ctx, sc.Tenant.ID, sc.Project.ID, e)
	if err != nil {
		return err
	}
	s.keys.Forget(envIDs...)
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// CreateEnvironment adds an environment with its own data key.
func (s *Service) CreateEnvironment(ctx context.Context, actor audit.Actor, sc Scope, slug, name string, protected bool) (Environment, error) {
	if err := Authorize(sc, ManageProject); err != nil {
		return Environment{}, err
	}
	if err := ValidateSlug("slug", slug); err != nil {
		return Environment{}, err
	}
	if err := ValidateName("name", name); err != nil {
		return Environment{}, err
	}
	ne, err := s.newEnvironment(ctx, *sc.Project, slug, name, protected, time.Now().UTC())
	if err != nil {
		return Environment{}, err
	}
	env := ne.Environment
	e := actor.New(audit.ActionEnvironmentCreate, env.TenantID, "environment", env.ID, sc.Path()+"/"+slug, map[string]any{"protected": protected})
	e.Event = &coffer.Event{Type: e.Action, TenantID: env.TenantID, ProjectID: env.ProjectID, EnvironmentID: env.ID}
	if err := s.store.CreateEnvironment(ctx, ne, e); err != nil {
		return Environment{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return env, nil
}

// ListEnvironments lists up to limit environments of the scope's project that the caller can
// see, after the slug after, with the caller's access level on each. Visibility is Authorize's
// rule, applied here rather than in SQL; so that hidden environments never shorten a page, it
// reads on until the page is full or the project has no more.
func (s *Service) ListEnvironments(ctx context.Context, sc Scope, after string, limit int) ([]Environment, []Level, error) {
	if err := Authorize(sc, ViewProject); err != nil {
		return nil, nil, err
	}
	var out []Environment
	var levels []Level
	for len(out) < limit {
		envs, overrides, err := s.store.ListEnvironments(ctx, sc.Tenant.ID, sc.Project.ID, sc.UserID, after, limit)
		if err != nil {
			return nil, nil, err
		}
		for i := range envs {
			env := envs[i]
			if l := sc.levelOf(&env, overrides[i]); l > LevelNone && len(out) < limit {
				out = append(out, env)
				levels = append(levels, l)
			}
		}
		if len(envs) < limit {
			break
		}
		after = envs[len(envs)-1].Slug
	}
	return out, levels, nil
}

// EnvironmentScope is sc narrowed to another environment of its project, for operations that
// span two (diff, promote): what the caller may not see there is not found, as in the URL.
func (s *Service) EnvironmentScope(ctx context.Context, sc Scope, slug string) (Scope, error) {
	if err := ValidateSlug("environment", slug); err != nil {
		return Scope{}, err
	}
	if err := Visible(Scope{Project: sc.Project, Role: sc.Role, ProjectRole: sc.ProjectRole, Grant: sc.Grant}); err != nil {
		return Scope{}, err
	}
	env, override, err := s.store.Environment(ctx, sc.Tenant.ID, sc.Project.ID, sc.UserID, slug)
	if err != nil {
		return Scope{}, err
	}
	out := sc
	out.Environment, out.Override = &env, override
	if err := Visible(out); err != nil {
		return Scope{}, err
	}
	return out, nil
}

// ProjectEnvironmentScope is sc moved to an environment of another project of its tenant (a
// reference across projects), with the caller's role there; what the caller may not see there
// is not found. A service token reaches no other project.
func (s *Service) ProjectEnvironmentScope(ctx context.Context, sc Scope, projectSlug, envSlug string) (Scope, error) {
	if err := ValidateSlug("project", projectSlug); err != nil {
		return Scope{}, err
	}
	if sc.Grant != nil {
		return Scope{}, coffer.Errorf(coffer.ENOTFOUND, "project not found")
	}
	p, role, err := s.store.ProjectBySlug(ctx, sc.Tenant.ID, sc.UserID, projectSlug)
	if err != nil {
		return Scope{}, err
	}
	out := sc
	out.Project, out.ProjectRole, out.Environment, out.Override = &p, role, nil, ""
	return s.EnvironmentScope(ctx, out, envSlug)
}

// EnvironmentPatch holds the fields of an environment update; nil leaves a field as is.
type EnvironmentPatch struct {
	Name      *string
	Protected *bool
}

// UpdateEnvironment renames an environment or changes its protection.
func (s *Service) UpdateEnvironment(ctx context.Context, actor audit.Actor, sc Scope, patch EnvironmentPatch) (Environment, error) {
	if err := Authorize(sc, ManageProject); err != nil {
		return Environment{}, err
	}
	env := *sc.Environment
	meta := map[string]any{}
	if patch.Name != nil {
		if err := ValidateName("name", *patch.Name); err != nil {
			return Environment{}, err
		}
		meta["name"] = map[string]string{"before": env.Name, "after": *patch.Name}
		env.Name = *patch.Name
	}
	if patch.Protected != nil {
		if env.Protected && !*patch.Protected {
			if err := Authorize(sc, LowerProtection); err != nil {
				return Environment{}, err
			}
		}
		meta["protected"] = map[string]bool{"before": env.Protected, "after": *patch.Protected}
		env.Protected = *patch.Protected
	}
	env.UpdatedAt = time.Now().UTC()
	e := actor.New(audit.ActionEnvironmentUpdate, env.TenantID, "environment", env.ID, sc.Path(), meta)
	e.Event = &coffer.Event{Type: e.Action, TenantID: env.TenantID, ProjectID: env.ProjectID, EnvironmentID: env.ID}
	if err := s.store.UpdateEnvironment(ctx, &env, sc.Environment.Protected, e); err != nil {
		return Environment{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return env, nil
}

// DeleteEnvironment deletes an environment and its secrets.
func (s *Service) DeleteEnvironment(ctx context.Context, actor audit.Actor, sc Scope) error {
	if err := Authorize(sc, ManageProject); err != nil {
		return err
	}
	env := sc.Environment
	if env.Protected {
		if err := Authorize(sc, LowerProtection); err != nil {
			return err
		}
	}
	e := actor.New(audit.ActionEnvironmentDelete, env.TenantID, "environment", env.ID, sc.Path(), map[string]any{"protected": env.Protected})
	e.Event = &coffer.Event{Type: e.Action, TenantID: env.TenantID, ProjectID: env.ProjectID, EnvironmentID: env.ID}
	if err := s.store.DeleteEnvironment(ctx, env.TenantID, env.ID, env.Protected, e); err != nil {
		return err
	}
	s.keys.Forget(env.ID)
	s.pub.Publish(ctx, *e.Event)
	return nil
}

// ListProjectMembers lists a project's members; anyone who sees the project may.
func (s *Service) ListProjectMembers(ctx context.Context, sc Scope, after string, limit int) ([]ProjectMember, error) {
	if err := Authorize(sc, ViewTenant); err != nil {
		return nil, err
	}
	return s.store.ListProjectMembers(ctx, sc.Tenant.ID, sc.Project.ID, after, limit)
}

// PutProjectMember adds a tenant member to the project or changes their role and overrides.
func (s *Service) PutProjectMember(ctx context.Context, actor audit.Actor, sc Scope, email string, role ProjectRole, envs map[string]Access) (ProjectMember, error) {
	if err := Authorize(sc, ManageProject); err != nil {
		return ProjectMember{}, err
	}
	if !role.Valid() {
		return ProjectMember{}, coffer.Errorf(coffer.EINVALID, "role must be admin, developer or viewer")
	}
	overrides := map[string]string{}
	for slug, a := range envs {
		if !a.Valid() {
			return ProjectMember{}, coffer.Errorf(coffer.EINVALID, "environment access must be none, read or write")
		}
		overrides[slug] = string(a)
	}
	e := actor.New(audit.ActionProjectMemberAdd, sc.Tenant.ID, "user", "", sc.Path(), map[string]any{"role": string(role), "environments": overrides})
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID}
	m, err := s.store.PutProjectMember(ctx, sc.Tenant.ID, sc.Project.ID, email, role, envs, e)
	if err != nil {
		return ProjectMember{}, err
	}
	s.pub.Publish(ctx, *e.Event)
	return m, nil
}

// RemoveProjectMember removes a user from a project.
func (s *Service) RemoveProjectMember(ctx context.Context, actor audit.Actor, sc Scope, userID string) error {
	if err := Authorize(sc, ManageProject); err != nil {
		return err
	}
	e := actor.New(audit.ActionProjectMemberRemove, sc.Tenant.ID, "user", userID, sc.Path(), nil)
	e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID}
	if err := s.store.RemoveProjectMember(ctx, sc.Tenant.ID, sc.Project.ID, userID, e); err != nil {
		return err
	}
	s.pub.Publish(ctx, *e.Event)
	return nil
}
