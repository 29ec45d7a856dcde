package tenant

import "github.com/cofferhq/coffer"

// Role is a tenant-wide role.
type Role string

const (
	RoleOwner  Role = "owner"  // everything, including other owners
	RoleAdmin  Role = "admin"  // manages projects and members; acts as admin on every project
	RoleMember Role = "member" // sees only the projects they are a member of
)

// Valid reports whether r is a known tenant role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleMember }

// ProjectRole is a role on one project.
type ProjectRole string

const (
	ProjectAdmin     ProjectRole = "admin"     // all environments, members and settings
	ProjectDeveloper ProjectRole = "developer" // writes unprotected environments, reads protected ones
	ProjectViewer    ProjectRole = "viewer"    // names and metadata, never values
)

// Valid reports whether r is a known project role.
func (r ProjectRole) Valid() bool {
	return r == ProjectAdmin || r == ProjectDeveloper || r == ProjectViewer
}

// Access is a per-environment override of a project role.
type Access string

const (
	AccessNone  Access = "none"
	AccessRead  Access = "read"
	AccessWrite Access = "write"
)

// Valid reports whether a is a known override.
func (a Access) Valid() bool { return a == AccessNone || a == AccessRead || a == AccessWrite }

// Level is what a caller may do in one environment. Levels are ordered.
type Level int

const (
	LevelNone     Level = iota // the environment is invisible
	LevelMetadata              // names, versions and notes, never values
	LevelRead                  // values too
	LevelWrite                 // and changes
)

// Membership is where one user stands in one project: the inputs of every permission rule.
// An empty ProjectRole means the user has no project membership.
type Membership struct {
	TenantRole  Role
	ProjectRole ProjectRole
}

// tenantWide reports whether the tenant role alone grants admin on every project.
func (m Membership) tenantWide() bool { return m.TenantRole == RoleOwner || m.TenantRole == RoleAdmin }

// CanSeeProject reports whether the project exists for this user at all.
func (m Membership) CanSeeProject() bool { return m.tenantWide() || m.ProjectRole.Valid() }

// CanManageProject reports whether the user may change the project, its environments and members.
func (m Membership) CanManageProject() bool { return m.tenantWide() || m.ProjectRole == ProjectAdmin }

// EnvironmentLevel is the single rule deciding access to an environment. Tenant owners and
// admins hold write everywhere; otherwise an explicit override wins over the project role;
// developers only read protected environments; viewers never see values.
func (m Membership) EnvironmentLevel(protected bool, override Access) Level {
	if m.tenantWide() {
		return LevelWrite
	}
	if !m.ProjectRole.Valid() {
		return LevelNone
	}
	switch override {
	case AccessNone:
		return LevelNone
	case AccessRead:
		return LevelRead
	case AccessWrite:
		return LevelWrite
	}
	switch m.ProjectRole {
	case ProjectAdmin:
		return LevelWrite
	case ProjectDeveloper:
		if protected {
			return LevelRead
		}
		return LevelWrite
	default:
		return LevelMetadata
	}
}

// CanManageTenant reports whether role may change the tenant and its projects.
func (r Role) CanManageTenant() bool { return r == RoleOwner || r == RoleAdmin }

// CheckGrantRole decides whether actor may give or take away role target in a tenant: only
// owners touch owners.
func CheckGrantRole(actor, target Role) error {
	if !actor.CanManageTenant() {
		return coffer.Errorf(coffer.EFORBIDDEN, "only tenant owners and admins manage members")
	}
	if target == RoleOwner && actor != RoleOwner {
		return coffer.Errorf(coffer.EFORBIDDEN, "only owners grant or remove the owner role")
	}
	return nil
}
