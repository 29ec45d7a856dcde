package tenant

import (
	"slices"

	"github.com/cofferhq/coffer"
)

// Action is something a caller may ask to do on a scope. Authorize is the one place that
// decides, whatever the transport (REST, the event stream, pages).
type Action int

const (
	ViewTenant             Action = iota // see the tenant and its members
	ManageTenant                         // rename it, create and delete projects
	DeleteTenant                         // delete the tenant (owners)
	ManageMembers                        // invite, list invitations, remove members
	ManageKeys                           // key-encryption keys and rotation (owners)
	ManageTokens                         // a project's service tokens; the tenant's tokens
	ViewProject                          // see the project and its environments
	ManageProject                        // change it, its environments and its members
	ViewSecrets                          // names, versions and notes, never values
	ReadSecrets                          // values too
	WriteSecrets                         // change secrets
	ManageIdentityProvider               // the tenant's own OpenID provider (owners)
	LowerProtection                      // unprotect or delete a protected environment
	DestroySecrets                       // erase versions of secrets for good (project admins)
	ViewAudit                            // read and verify the tenant's audit log
	ManageWebhooks                       // a project's webhooks and their deliveries (project admins)
)

// Grant is what a credential is limited to whatever its holder's roles: the service token
// that made the request. A user's own credentials (session, personal token) carry none.
type Grant struct {
	TokenID   string
	ProjectID string
	// Environments are the ids of the environments the token reaches; others are invisible.
	Environments []string
	Write        bool
}

// level is the grant's access to an environment.
func (g *Grant) level(env *Environment) Level {
	if env == nil || env.ProjectID != g.ProjectID || !slices.Contains(g.Environments, env.ID) {
		return LevelNone
	}
	if g.Write {
		return LevelWrite
	}
	return LevelRead
}

var (
	errServiceToken = coffer.Errorf(coffer.EFORBIDDEN, "service tokens only read and write the secrets of their environments: they cannot manage members, roles, keys, tokens or settings")
	errNotFoundEnv  = coffer.Errorf(coffer.ENOTFOUND, "environment not found")
)

// forbidden are the refusals of a user's roles, by action.
var forbidden = map[Action]string{
	ManageTenant:           "only tenant owners and admins change the tenant and its projects",
	DeleteTenant:           "only tenant owners delete the tenant",
	ManageMembers:          "only tenant owners and admins manage members and invitations",
	ManageKeys:             "only tenant owners manage keys",
	ManageTokens:           "only project admins manage the project's service tokens",
	ManageProject:          "only project admins change the project, its environments and its members",
	ManageIdentityProvider: "only tenant owners configure the tenant's identity provider",
	LowerProtection:        "only tenant owners and admins unprotect or delete a protected environment",
	DestroySecrets:         "only project admins who may write this environment destroy secret versions",
	ViewAudit:              "only tenant owners and admins read the audit log",
	ManageWebhooks:         "only project admins manage the project's webhooks",
}

// Authorize decides whether the caller of sc may do a. Scopes come from one query that
// already hides what the caller may not see (see Visible), so this answers 403 for the
// visible-but-not-allowed, with a message that says which role is needed.
func Authorize(sc Scope, a Action) error {
	if g := sc.Grant; g != nil {
		switch a {
		case ViewProject:
			if sc.Project != nil && sc.Project.ID == g.ProjectID {
				return nil
			}
			return errServiceToken
		case ViewSecrets, ReadSecrets, WriteSecrets:
			return needLevel(sc, a)
		}
		return errServiceToken
	}
	m := sc.Membership()
	var ok bool
	switch a {
	case ViewTenant:
		ok = sc.Role.Valid()
	case ManageTenant, ManageMembers, LowerProtection, ViewAudit:
		ok = sc.Role.CanManageTenant()
	case DeleteTenant, ManageKeys, ManageIdentityProvider:
		ok = sc.Role == RoleOwner
	case ViewProject:
		ok = m.CanSeeProject()
	case ManageProject, ManageTokens:
		ok = m.CanManageProject()
	case ManageWebhooks: // Webhooks.
		ok = m.CanManageProject()
	case DestroySecrets:
		if sc.Level() == LevelNone {
			return errNotFoundEnv
		}
		ok = m.CanManageProject() && sc.Level() >= LevelWrite
	case ViewSecrets, ReadSecrets, WriteSecrets:
		return needLevel(sc, a)
	}
	if ok {
		return nil
	}
	return coffer.Errorf(coffer.EFORBIDDEN, "%s", forbidden[a])
}

// needLevel checks the caller's access to the scope's environment against what a needs.
func needLevel(sc Scope, a Action) error {
	want := LevelWrite
	switch a {
	case ViewSecrets:
		want = LevelMetadata
	case ReadSecrets:
		want = LevelRead
	}
	have := sc.Level()
	if have >= want {
		return nil
	}
	switch {
	case have == LevelNone:
		return errNotFoundEnv
	case sc.Grant != nil:
		return coffer.Errorf(coffer.EFORBIDDEN, "this service token may read but not change secrets")
	case want == LevelWrite && sc.Environment.Protected:
		return coffer.Errorf(coffer.EFORBIDDEN, "this environment is protected: your role may read but not change it")
	case want == LevelWrite:
		return coffer.Errorf(coffer.EFORBIDDEN, "your role may not change secrets in this environment")
	}
	return coffer.Errorf(coffer.EFORBIDDEN, "your role may see secret names but not values in this environment")
}

// levelOf is the caller's access to env of the scope's project, given the caller's
// override there (used when listing, where the scope names no environment).
func (s Scope) levelOf(env *Environment, override Access) Level {
	if s.Grant != nil {
		return s.Grant.level(env)
	}
	return s.Membership().EnvironmentLevel(env.Protected, override)
}
