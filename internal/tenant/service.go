package tenant

import (
	"context"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// Scope is what a caller reached through a URL and where they stand there. It is resolved
// from slugs together with the caller's token, in one query that also proves the caller is a
// member of the tenant (see auth.Service.AuthorizeScope); Project and Environment are nil at
// the levels above them.
type Scope struct {
	UserID      string
	Tenant      Tenant
	Role        Role
	Project     *Project
	ProjectRole ProjectRole
	Environment *Environment
	Override    Access // per-environment override, or ""
	// Grant limits a service token to its project's environments; nil for users.
	Grant *Grant
	// IdPID is the public id of the tenant's own OpenID provider, "" when it has none.
	// RequiredIdP is the same id when the tenant requires browser sessions to have been
	// started through it, else "".
	IdPID       string
	RequiredIdP string
}

// Membership returns the caller's roles in the scope's project.
func (s Scope) Membership() Membership {
	return Membership{TenantRole: s.Role, ProjectRole: s.ProjectRole}
}

// Level returns the caller's access to the scope's environment.
func (s Scope) Level() Level {
	if s.Environment == nil {
		return LevelNone
	}
	return s.levelOf(s.Environment, s.Override)
}

// Path names the scope for audit targets, e.g. "acme/web/production".
func (s Scope) Path() string {
	p := s.Tenant.Slug
	if s.Project != nil {
		p += "/" + s.Project.Slug
	}
	if s.Environment != nil {
		p += "/" + s.Environment.Slug
	}
	return p
}

// Member is a user's membership of a tenant.
type Member struct {
	UserID string
	Email  string
	Name   string
	Role   Role
}

// ProjectMember is a user's membership of a project, with per-environment overrides keyed by
// environment slug.
type ProjectMember struct {
	UserID       string
	Email        string
	Name         string
	Role         ProjectRole
	Environments map[string]Access
}

// Membered is a tenant with the caller's role in it, as listed.
type Membered struct {
	Tenant
	Role Role
}

// NewEnvironment is an environment to create together with its first data key.
type NewEnvironment struct {
	Environment Environment
	Key         WrappedKey
}

// Store persists tenants and everything under them. Every method that changes data appends
// the given audit entries in the same transaction and fails if they cannot be written. Every
// query is scoped by tenant.
type Store interface {
	CreateTenant(ctx context.Context, t *Tenant, ownerID string, e audit.Entry) error
	ListTenants(ctx context.Context, userID, after string, limit int) ([]Membered, error)
	UpdateTenant(ctx context.Context, t *Tenant, e audit.Entry) error
	DeleteTenant(ctx context.Context, tenantID string, e audit.Entry) error

	ListMembers(ctx context.Context, tenantID, after string, limit int) ([]Member, error)
	RemoveMember(ctx context.Context, tenantID, userID string, actorRole Role, e audit.Entry) error
	// SetMemberRole changes a member's role, under the same owner rules as RemoveMember, and
	// appends e with the previous and new role; setting the role a member has changes nothing.
	SetMemberRole(ctx context.Context, tenantID, userID string, role, actorRole Role, e audit.Entry) error

	CreateProject(ctx context.Context, p *Project, envs []NewEnvironment, e audit.Entry) error
	// ListProjects lists the projects of a tenant; with memberOnly, only those userID is a
	// member of.
	ListProjects(ctx context.Context, tenantID, userID string, memberOnly bool, after string, limit int) ([]Project, error)
	UpdateProject(ctx context.Context, p *Project, e audit.Entry) error
	// DeleteProject deletes a project with its environments, their keys and secrets; it
	// returns the ids of the environments it deleted.
	DeleteProject(ctx context.Context, tenantID, projectID string, e audit.Entry) ([]string, error)

	CreateEnvironment(ctx context.Context, env NewEnvironment, e audit.Entry) error
	// ProjectBySlug returns the tenant's project with that slug and userID's role in it (""
	// when not a member); ENOTFOUND if there is none.
	ProjectBySlug(ctx context.Context, tenantID, userID, slug string) (Project, ProjectRole, error)
	// Environment returns the project's environment with that slug, with its current key and
	// userID's override there; ENOTFOUND if there is none.
	Environment(ctx context.Context, tenantID, projectID, userID, slug string) (Environment, Access, error)
	// ListEnvironments returns a project's environments with userID's override on each.
	ListEnvironments(ctx context.Context, tenantID, projectID, userID, after string, limit int) ([]Environment, []Access, error)
	// UpdateEnvironment and DeleteEnvironment change the environment only while it is as
	// protected as wasProtected says (ECONFLICT otherwise: the permission was decided on that),
	// and record its live secret count in the entry's metadata as "secrets".
	UpdateEnvironment(ctx context.Context, env *Environment, wasProtected bool, e audit.Entry) error
	DeleteEnvironment(ctx context.Context, tenantID, envID string, wasProtected bool, e audit.Entry) error

	ListProjectMembers(ctx context.Context, tenantID, projectID, after string, limit int) ([]ProjectMember, error)
	// PutProjectMember sets a member's role and replaces their overrides; the user must be
	// a member of the tenant, and an address that is not a member's answers the same whether
	// or not a user has it.
	PutProjectMember(ctx context.Context, tenantID, projectID, email string, role ProjectRole, envs map[string]Access, e audit.Entry) (ProjectMember, error)
	RemoveProjectMember(ctx context.Context, tenantID, projectID, userID string, e audit.Entry) error

	InvitationStore
}

// KeyMaker creates the first data key of a new environment, wrapped for storage, and forgets
// the keys of deleted environments.
type KeyMaker interface {
	NewEnvironmentKey(ctx context.Context, tenantID, projectID, envID string) (WrappedKey, error)
	// Forget drops whatever unwrapped keys of these environments are held in memory.
	Forget(envIDs ...string)
}

// Service applies the tenancy rules on top of a Store.
type Service struct {
	store Store
	keys  KeyMaker
	pub   coffer.Publisher
	newID func() string
}

// NewService returns a Service. newID generates object ids.
func NewService(store Store, keys KeyMaker, pub coffer.Publisher, newID func() string) *Service {
	return &Service{store: store, keys: keys, pub: pub, newID: newID}
}
