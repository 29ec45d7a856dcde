package httpapi

import (
	"time"

	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Response shapes. They are separate from domain types so that nothing internal (ids of
// keys, hashes) can leak into a response by adding a field.

type tenantView struct {
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewTenant(t tenant.Tenant, role tenant.Role) tenantView {
	return tenantView{Slug: t.Slug, Name: t.Name, Role: string(role), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

type projectView struct {
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewProject(p tenant.Project) projectView {
	return projectView{Slug: p.Slug, Name: p.Name, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

type environmentView struct {
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	Protected bool      `json:"protected"`
	Access    string    `json:"access"` // the caller's: metadata, read or write
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

var levelNames = map[tenant.Level]string{tenant.LevelMetadata: "metadata", tenant.LevelRead: "read", tenant.LevelWrite: "write"}

func viewEnvironment(e tenant.Environment, l tenant.Level) environmentView {
	return environmentView{Slug: e.Slug, Name: e.Name, Protected: e.Protected, Access: levelNames[l], CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

type secretView struct {
	Name      string     `json:"name"`
	Version   int        `json:"version"`
	Value     *string    `json:"value,omitempty"`
	Note      string     `json:"note"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

func viewSecret(s secrets.Secret) secretView {
	return secretView{Name: s.Name, Version: s.Version, Value: s.Value, Note: s.Note, CreatedBy: s.CreatedBy,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, DeletedAt: s.DeletedAt}
}

type versionView struct {
	Version     int        `json:"version"`
	Note        string     `json:"note"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	Destroyed   bool       `json:"destroyed"`
	DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
	DestroyedBy string     `json:"destroyed_by,omitempty"`
}

func viewVersion(v secrets.Version) versionView {
	return versionView{Version: v.Version, Note: v.Note, CreatedBy: v.CreatedBy, CreatedAt: v.CreatedAt,
		Destroyed: v.DestroyedAt != nil, DestroyedAt: v.DestroyedAt, DestroyedBy: v.DestroyedBy}
}

type resultView struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
}

func viewResults(rs []secrets.Result) []resultView {
	out := make([]resultView, len(rs))
	for i, r := range rs {
		out[i] = viewResult(r)
	}
	return out
}

func viewResult(r secrets.Result) resultView {
	return resultView{Name: r.Name, Version: r.Version, Deleted: r.Op == secrets.OpDelete}
}

type memberView struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
	Role   string `json:"role"`
}

func viewMember(m tenant.Member) memberView {
	return memberView{UserID: m.UserID, Email: m.Email, Name: m.Name, Role: string(m.Role)}
}

type projectMemberView struct {
	memberView
	Environments map[string]tenant.Access `json:"environments"`
}

func viewProjectMember(m tenant.ProjectMember) projectMemberView {
	envs := m.Environments
	if envs == nil {
		envs = map[string]tenant.Access{}
	}
	return projectMemberView{memberView: memberView{UserID: m.UserID, Email: m.Email, Name: m.Name, Role: string(m.Role)}, Environments: envs}
}

type tokenView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	CreatedAt  time.Time  `json:"created_at"`
}

func viewToken(t auth.Token) tokenView {
	return tokenView{ID: t.ID, Name: t.Name, Prefix: t.DisplayPrefix, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, CreatedAt: t.CreatedAt}
}

type userView struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	Name          string    `json:"name"`
	InstanceAdmin bool      `json:"instance_admin"`
	CreatedAt     time.Time `json:"created_at"`
}

func viewUser(u auth.User) userView {
	return userView{ID: u.ID, Email: u.Email, Name: u.Name, InstanceAdmin: u.InstanceAdmin, CreatedAt: u.CreatedAt}
}
