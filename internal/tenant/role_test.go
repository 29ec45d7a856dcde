package tenant_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Short names keep the permission table readable, one row per line.
const (
	owner  = tenant.RoleOwner
	admin  = tenant.RoleAdmin
	member = tenant.RoleMember

	prNone   = tenant.ProjectRole("")
	prAdmin  = tenant.ProjectAdmin
	prDev    = tenant.ProjectDeveloper
	prViewer = tenant.ProjectViewer

	ovUnset = tenant.Access("")
	ovNone  = tenant.AccessNone
	ovRead  = tenant.AccessRead
	ovWrite = tenant.AccessWrite

	lvNone  = tenant.LevelNone
	lvMeta  = tenant.LevelMetadata
	lvRead  = tenant.LevelRead
	lvWrite = tenant.LevelWrite
)

var levelNames = map[tenant.Level]string{lvNone: "none", lvMeta: "metadata", lvRead: "read", lvWrite: "write"}

func levelName(l tenant.Level) string {
	if n, ok := levelNames[l]; ok {
		return n
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// TestEnvironmentLevelTable states the expected level for every combination of tenant role,
// project role, protection and override: 3 x 4 x 2 x 4 = 96 rows.
func TestEnvironmentLevelTable(t *testing.T) {
	type row struct {
		tenantRole  tenant.Role
		projectRole tenant.ProjectRole
		protected   bool
		override    tenant.Access
		want        tenant.Level
	}
	table := []row{
		// Tenant owners hold write everywhere, whatever the project role or override.
		{owner, prNone, false, ovUnset, lvWrite},
		{owner, prNone, false, ovNone, lvWrite},
		{owner, prNone, false, ovRead, lvWrite},
		{owner, prNone, false, ovWrite, lvWrite},
		{owner, prNone, true, ovUnset, lvWrite},
		{owner, prNone, true, ovNone, lvWrite},
		{owner, prNone, true, ovRead, lvWrite},
		{owner, prNone, true, ovWrite, lvWrite},
		{owner, prAdmin, false, ovUnset, lvWrite},
		{owner, prAdmin, false, ovNone, lvWrite},
		{owner, prAdmin, false, ovRead, lvWrite},
		{owner, prAdmin, false, ovWrite, lvWrite},
		{owner, prAdmin, true, ovUnset, lvWrite},
		{owner, prAdmin, true, ovNone, lvWrite},
		{owner, prAdmin, true, ovRead, lvWrite},
		{owner, prAdmin, true, ovWrite, lvWrite},
		{owner, prDev, false, ovUnset, lvWrite},
		{owner, prDev, false, ovNone, lvWrite},
		{owner, prDev, false, ovRead, lvWrite},
		{owner, prDev, false, ovWrite, lvWrite},
		{owner, prDev, true, ovUnset, lvWrite},
		{owner, prDev, true, ovNone, lvWrite},
		{owner, prDev, true, ovRead, lvWrite},
		{owner, prDev, true, ovWrite, lvWrite},
		{owner, prViewer, false, ovUnset, lvWrite},
		{owner, prViewer, false, ovNone, lvWrite},
		{owner, prViewer, false, ovRead, lvWrite},
		{owner, prViewer, false, ovWrite, lvWrite},
		{owner, prViewer, true, ovUnset, lvWrite},
		{owner, prViewer, true, ovNone, lvWrite},
		{owner, prViewer, true, ovRead, lvWrite},
		{owner, prViewer, true, ovWrite, lvWrite},
		// Tenant admins likewise.
		{admin, prNone, false, ovUnset, lvWrite},
		{admin, prNone, false, ovNone, lvWrite},
		{admin, prNone, false, ovRead, lvWrite},
		{admin, prNone, false, ovWrite, lvWrite},
		{admin, prNone, true, ovUnset, lvWrite},
		{admin, prNone, true, ovNone, lvWrite},
		{admin, prNone, true, ovRead, lvWrite},
		{admin, prNone, true, ovWrite, lvWrite},
		{admin, prAdmin, false, ovUnset, lvWrite},
		{admin, prAdmin, false, ovNone, lvWrite},
		{admin, prAdmin, false, ovRead, lvWrite},
		{admin, prAdmin, false, ovWrite, lvWrite},
		{admin, prAdmin, true, ovUnset, lvWrite},
		{admin, prAdmin, true, ovNone, lvWrite},
		{admin, prAdmin, true, ovRead, lvWrite},
		{admin, prAdmin, true, ovWrite, lvWrite},
		{admin, prDev, false, ovUnset, lvWrite},
		{admin, prDev, false, ovNone, lvWrite},
		{admin, prDev, false, ovRead, lvWrite},
		{admin, prDev, false, ovWrite, lvWrite},
		{admin, prDev, true, ovUnset, lvWrite},
		{admin, prDev, true, ovNone, lvWrite},
		{admin, prDev, true, ovRead, lvWrite},
		{admin, prDev, true, ovWrite, lvWrite},
		{admin, prViewer, false, ovUnset, lvWrite},
		{admin, prViewer, false, ovNone, lvWrite},
		{admin, prViewer, false, ovRead, lvWrite},
		{admin, prViewer, false, ovWrite, lvWrite},
		{admin, prViewer, true, ovUnset, lvWrite},
		{admin, prViewer, true, ovNone, lvWrite},
		{admin, prViewer, true, ovRead, lvWrite},
		{admin, prViewer, true, ovWrite, lvWrite},
		// A member without a project role sees nothing, overrides notwithstanding.
		{member, prNone, false, ovUnset, lvNone},
		{member, prNone, false, ovNone, lvNone},
		{member, prNone, false, ovRead, lvNone},
		{member, prNone, false, ovWrite, lvNone},
		{member, prNone, true, ovUnset, lvNone},
		{member, prNone, true, ovNone, lvNone},
		{member, prNone, true, ovRead, lvNone},
		{member, prNone, true, ovWrite, lvNone},
		// Project admins write unless an override says otherwise.
		{member, prAdmin, false, ovUnset, lvWrite},
		{member, prAdmin, false, ovNone, lvNone},
		{member, prAdmin, false, ovRead, lvRead},
		{member, prAdmin, false, ovWrite, lvWrite},
		{member, prAdmin, true, ovUnset, lvWrite},
		{member, prAdmin, true, ovNone, lvNone},
		{member, prAdmin, true, ovRead, lvRead},
		{member, prAdmin, true, ovWrite, lvWrite},
		// Developers write unprotected environments and read protected ones; overrides win.
		{member, prDev, false, ovUnset, lvWrite},
		{member, prDev, false, ovNone, lvNone},
		{member, prDev, false, ovRead, lvRead},
		{member, prDev, false, ovWrite, lvWrite},
		{member, prDev, true, ovUnset, lvRead},
		{member, prDev, true, ovNone, lvNone},
		{member, prDev, true, ovRead, lvRead},
		{member, prDev, true, ovWrite, lvWrite},
		// Viewers see metadata only; overrides win.
		{member, prViewer, false, ovUnset, lvMeta},
		{member, prViewer, false, ovNone, lvNone},
		{member, prViewer, false, ovRead, lvRead},
		{member, prViewer, false, ovWrite, lvWrite},
		{member, prViewer, true, ovUnset, lvMeta},
		{member, prViewer, true, ovNone, lvNone},
		{member, prViewer, true, ovRead, lvRead},
		{member, prViewer, true, ovWrite, lvWrite},
	}

	type key struct {
		tr        tenant.Role
		pr        tenant.ProjectRole
		protected bool
		ov        tenant.Access
	}
	seen := map[key]bool{}
	for _, r := range table {
		k := key{r.tenantRole, r.projectRole, r.protected, r.override}
		if seen[k] {
			t.Fatalf("duplicate row %+v", k)
		}
		seen[k] = true
		name := fmt.Sprintf("%s/%q/protected=%v/override=%q", r.tenantRole, r.projectRole, r.protected, r.override)
		t.Run(name, func(t *testing.T) {
			m := tenant.Membership{TenantRole: r.tenantRole, ProjectRole: r.projectRole}
			if got := m.EnvironmentLevel(r.protected, r.override); got != r.want {
				t.Errorf("EnvironmentLevel = %s, want %s", levelName(got), levelName(r.want))
			}
		})
	}
	// The table must be the full cross product, so no combination goes untested.
	if len(seen) != 3*4*2*4 {
		t.Fatalf("table has %d distinct rows, want %d", len(seen), 3*4*2*4)
	}
}

func TestLevelsAreOrdered(t *testing.T) {
	if !(lvNone < lvMeta && lvMeta < lvRead && lvRead < lvWrite) {
		t.Fatalf("levels out of order: none=%d metadata=%d read=%d write=%d", lvNone, lvMeta, lvRead, lvWrite)
	}
}

func TestMembershipCanSeeAndManageProject(t *testing.T) {
	tests := []struct {
		tenantRole  tenant.Role
		projectRole tenant.ProjectRole
		see, manage bool
	}{
		{owner, prNone, true, true},
		{owner, prAdmin, true, true},
		{owner, prDev, true, true},
		{owner, prViewer, true, true},
		{admin, prNone, true, true},
		{admin, prAdmin, true, true},
		{admin, prDev, true, true},
		{admin, prViewer, true, true},
		{member, prNone, false, false},
		{member, prAdmin, true, true},
		{member, prDev, true, false},
		{member, prViewer, true, false},
		// An unknown project role is no membership at all.
		{member, tenant.ProjectRole("owner"), false, false},
		{member, tenant.ProjectRole("Admin"), false, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%q", tc.tenantRole, tc.projectRole), func(t *testing.T) {
			m := tenant.Membership{TenantRole: tc.tenantRole, ProjectRole: tc.projectRole}
			if got := m.CanSeeProject(); got != tc.see {
				t.Errorf("CanSeeProject = %v, want %v", got, tc.see)
			}
			if got := m.CanManageProject(); got != tc.manage {
				t.Errorf("CanManageProject = %v, want %v", got, tc.manage)
			}
		})
	}
}

func TestRoleValidity(t *testing.T) {
	tests := []struct {
		what string
		got  bool
		want bool
	}{
		{"role owner", owner.Valid(), true},
		{"role admin", admin.Valid(), true},
		{"role member", member.Valid(), true},
		{"role empty", tenant.Role("").Valid(), false},
		{"role Owner", tenant.Role("Owner").Valid(), false},
		{"role viewer", tenant.Role("viewer").Valid(), false},
		{"project admin", prAdmin.Valid(), true},
		{"project developer", prDev.Valid(), true},
		{"project viewer", prViewer.Valid(), true},
		{"project empty", prNone.Valid(), false},
		{"project owner", tenant.ProjectRole("owner").Valid(), false},
		{"access none", ovNone.Valid(), true},
		{"access read", ovRead.Valid(), true},
		{"access write", ovWrite.Valid(), true},
		{"access empty", ovUnset.Valid(), false},
		{"access admin", tenant.Access("admin").Valid(), false},
		{"manage tenant owner", owner.CanManageTenant(), true},
		{"manage tenant admin", admin.CanManageTenant(), true},
		{"manage tenant member", member.CanManageTenant(), false},
		{"manage tenant empty", tenant.Role("").CanManageTenant(), false},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

func TestCheckGrantRole(t *testing.T) {
	tests := []struct {
		actor, target tenant.Role
		ok            bool
	}{
		{owner, owner, true},
		{owner, admin, true},
		{owner, member, true},
		{admin, owner, false}, // only owners touch owners
		{admin, admin, true},
		{admin, member, true},
		{member, owner, false}, // members cannot manage anyone
		{member, admin, false},
		{member, member, false},
		{tenant.Role(""), member, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s_grants_%s", tc.actor, tc.target), func(t *testing.T) {
			err := tenant.CheckGrantRole(tc.actor, tc.target)
			if tc.ok {
				if err != nil {
					t.Fatalf("CheckGrantRole = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckGrantRole = nil, want forbidden")
			}
			if code := coffer.ErrorCode(err); code != coffer.EFORBIDDEN {
				t.Errorf("code = %q, want %q", code, coffer.EFORBIDDEN)
			}
		})
	}
}

func TestValidateSlug(t *testing.T) {
	tests := []struct {
		name string
		slug string
		ok   bool
	}{
		{"single letter", "a", true},
		{"single digit", "7", true},
		{"letters and digits", "web2", true},
		{"leading digit", "2fa", true},
		{"inner hyphen", "my-app", true},
		{"double inner hyphen", "my--app", true},
		{"63 chars", strings.Repeat("a", 63), true},
		{"63 chars with hyphens", "a" + strings.Repeat("-", 61) + "z", true},
		{"64 chars", strings.Repeat("a", 64), false},
		{"empty", "", false},
		{"leading hyphen", "-app", false},
		{"trailing hyphen", "app-", false},
		{"only hyphen", "-", false},
		{"uppercase", "App", false},
		{"all uppercase", "APP", false},
		{"underscore", "my_app", false},
		{"dot", "my.app", false},
		{"slash", "a/b", false},
		{"space", "my app", false},
		{"trailing newline", "app\n", false},
		{"non-ascii", "café", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tenant.ValidateSlug("project slug", tc.slug)
			checkValid(t, err, tc.ok, "project slug")
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"one char", "x", true},
		{"words", "Acme Corp", true},
		{"surrounding spaces", "  Acme  ", true},
		{"unicode", "Café Ünïcode", true},
		{"200 bytes", strings.Repeat("n", 200), true},
		{"201 bytes", strings.Repeat("n", 201), false},
		{"empty", "", false},
		{"only spaces", "   ", false},
		{"only whitespace", "\t\n ", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tenant.ValidateName("tenant name", tc.input)
			checkValid(t, err, tc.ok, "tenant name")
		})
	}
}

// checkValid asserts that err is nil when ok, and otherwise a validation error naming field.
func checkValid(t *testing.T, err error, ok bool, field string) {
	t.Helper()
	if ok {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatal("got nil, want a validation error")
	}
	if code := coffer.ErrorCode(err); code != coffer.EINVALID {
		t.Errorf("code = %q, want %q", code, coffer.EINVALID)
	}
	if msg := coffer.ErrorMessage(err); !strings.Contains(msg, field) {
		t.Errorf("message %q does not name the field %q", msg, field)
	}
}

func TestScopeLevel(t *testing.T) {
	prod := &tenant.Environment{Slug: "production", Protected: true}
	dev := &tenant.Environment{Slug: "development"}
	tests := []struct {
		name  string
		scope tenant.Scope
		want  tenant.Level
	}{
		{"owner without environment", tenant.Scope{Role: owner, Project: &tenant.Project{}}, lvNone},
		{"project admin without environment", tenant.Scope{Role: member, ProjectRole: prAdmin, Project: &tenant.Project{}}, lvNone},
		{"nothing but a tenant", tenant.Scope{Role: admin}, lvNone},
		{"owner in protected", tenant.Scope{Role: owner, Environment: prod}, lvWrite},
		{"developer in protected", tenant.Scope{Role: member, ProjectRole: prDev, Environment: prod}, lvRead},
		{"developer in unprotected", tenant.Scope{Role: member, ProjectRole: prDev, Environment: dev}, lvWrite},
		{"developer overridden to none", tenant.Scope{Role: member, ProjectRole: prDev, Environment: dev, Override: ovNone}, lvNone},
		{"viewer overridden to read", tenant.Scope{Role: member, ProjectRole: prViewer, Environment: prod, Override: ovRead}, lvRead},
		{"viewer", tenant.Scope{Role: member, ProjectRole: prViewer, Environment: dev}, lvMeta},
		{"no project role", tenant.Scope{Role: member, Environment: dev, Override: ovWrite}, lvNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.scope.Level(); got != tc.want {
				t.Errorf("Level = %s, want %s", levelName(got), levelName(tc.want))
			}
		})
	}
}

func TestScopeMembership(t *testing.T) {
	sc := tenant.Scope{Role: admin, ProjectRole: prViewer}
	want := tenant.Membership{TenantRole: admin, ProjectRole: prViewer}
	if got := sc.Membership(); got != want {
		t.Fatalf("Membership = %+v, want %+v", got, want)
	}
}

func TestScopePath(t *testing.T) {
	acme := tenant.Tenant{Slug: "acme"}
	web := &tenant.Project{Slug: "web"}
	prod := &tenant.Environment{Slug: "production"}
	tests := []struct {
		name  string
		scope tenant.Scope
		want  string
	}{
		{"tenant", tenant.Scope{Tenant: acme}, "acme"},
		{"project", tenant.Scope{Tenant: acme, Project: web}, "acme/web"},
		{"environment", tenant.Scope{Tenant: acme, Project: web, Environment: prod}, "acme/web/production"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.scope.Path(); got != tc.want {
				t.Errorf("Path = %q, want %q", got, tc.want)
			}
		})
	}
}
