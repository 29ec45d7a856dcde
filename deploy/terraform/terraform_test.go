// Package terraform_test checks the security invariants of the Terraform deployment in this
// directory by parsing its HCL, with no provider schemas and no network: a public database, a
// task with a public IP or a writable root filesystem, a key policy that lets anyone but the task
// role decrypt, unencrypted storage or logs, a weak TLS policy or a missing redirect all fail
// here, naming the file and the resource.
package terraform_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// tlsPolicy is the only listener policy accepted: TLS 1.3 and 1.2 with forward secrecy.
const tlsPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// configFile is Coffer's configuration; every COFFER_* name the deployment sets must exist there.
const configFile = "../../internal/app/config.go"

func TestTerraformInvariants(t *testing.T) {
	cfg, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatalf("read the server configuration: %v", err)
	}
	problems, err := check(".", string(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCheckerCatchesViolations proves each check can fail: it copies the deployment into a
// temporary directory, breaks one invariant, and requires a problem naming it.
func TestCheckerCatchesViolations(t *testing.T) {
	cfg, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatalf("read the server configuration: %v", err)
	}
	tests := []struct {
		name, file, pattern, replace, want string
	}{
		{"public database", "modules/database/main.tf",
			`publicly_accessible(\s*)= false`, `publicly_accessible$1= true`, "publicly_accessible"},
		{"unencrypted database", "modules/database/main.tf",
			`storage_encrypted(\s*)= true`, `storage_encrypted$1= false`, "storage_encrypted"},
		{"single-AZ database", "modules/database/main.tf",
			`multi_az(\s*)= true`, `multi_az$1= false`, "multi_az"},
		{"database without deletion protection", "modules/database/main.tf",
			`deletion_protection(\s*)= true`, `deletion_protection$1= false`, "deletion_protection"},
		{"database without IAM auth", "modules/database/main.tf",
			`iam_database_authentication_enabled = true`, `iam_database_authentication_enabled = false`, "iam_database_authentication_enabled"},
		{"TLS not forced", "modules/database/main.tf",
			`(name\s*= "rds.force_ssl"\s*value\s*=) "1"`, `$1 "0"`, "rds.force_ssl"},
		{"task with a public IP", "modules/service/main.tf",
			`assign_public_ip = false`, `assign_public_ip = true`, "assign_public_ip"},
		{"tasks in the public subnets", "main.tf",
			`private_subnet_ids(\s*)= module.network.private_app_subnet_ids`, `private_subnet_ids$1= module.network.public_subnet_ids`, "private subnets"},
		{"writable root filesystem", "modules/service/main.tf",
			`readonlyRootFilesystem(\s*)= true`, `readonlyRootFilesystem$1= false`, "readonlyRootFilesystem"},
		{"root user", "modules/service/main.tf",
			`(\buser\s*=) "65532:65532"`, `$1 "0:0"`, "non-root user"},
		{"user from a variable", "modules/service/main.tf",
			`(\buser\s*=) "65532:65532"`, `$1 var.name`, "non-root user"},
		{"no user", "modules/service/main.tf",
			`\n\s*user\s*= "65532:65532"[^\n]*\n`, "\n", "non-root user"},
		{"public database by variable", "modules/database/main.tf",
			`publicly_accessible(\s*)= false`, `publicly_accessible$1= var.publicly_accessible`, "publicly_accessible"},
		{"key rotation off", "modules/kms/main.tf",
			`enable_key_rotation(\s*)= true`, `enable_key_rotation$1= false`, "enable_key_rotation"},
		{"decrypt deny turned into allow", "modules/kms/main.tf",
			`(sid\s*= "DenyDecryptExceptCofferTask"\s*effect\s*=) "Deny"`, `$1 "Allow"`, "Deny statement on kms:Decrypt"},
		{"decrypt deny without the exception", "modules/kms/main.tf",
			`values(\s*)= \[var.task_role_arn\]`, `values$1= ["arn:aws:iam::123456789012:role/other"]`, "Deny statement on kms:Decrypt"},
		{"root may decrypt", "modules/kms/main.tf",
			`"kms:CancelKeyDeletion",`, `"kms:CancelKeyDeletion", "kms:Decrypt",`, "allows kms:Decrypt"},
		{"log group without a key", "modules/service/main.tf",
			`(resource "aws_cloudwatch_log_group" "coffer" \{\s*name\s*= "[^"]*"\s*)kms_key_id\s*= var.infra_kms_key_arn`, `$1`, "kms_key_id"},
		{"log group without retention", "modules/network/main.tf",
			`retention_in_days = var.log_retention_days`, `retention_in_days = 0`, "retention_in_days"},
		{"weak TLS policy", "modules/edge/main.tf",
			`ssl_policy(\s*)= "ELBSecurityPolicy-TLS13-1-2-2021-06"`, `ssl_policy$1= "ELBSecurityPolicy-2016-08"`, "ssl_policy"},
		{"HTTP served, not redirected", "modules/edge/main.tf",
			`type = "redirect"`, `type = "forward"`, "redirect"},
		{"invalid headers kept", "modules/edge/main.tf",
			`drop_invalid_header_fields = true`, `drop_invalid_header_fields = false`, "drop_invalid_header_fields"},
		{"Coffer's key renamed out of the checks", "modules/kms/main.tf",
			`resource "aws_kms_key" "coffer"`, `resource "aws_kms_key" "kek"`, "no coffer key"},
		{"no HTTPS listener", "modules/edge/main.tf",
			`(protocol\s*=) "HTTPS"(\s*ssl_policy)`, `$1 "HTTP"$2`, "no https listener"},
		{"unknown COFFER_ variable", "modules/service/main.tf",
			`"COFFER_LOG_LEVEL"`, `"COFFER_LOG_LEVELS"`, "COFFER_LOG_LEVELS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, ".")
			path := filepath.Join(dir, filepath.FromSlash(tc.file))
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			re := regexp.MustCompile(tc.pattern)
			if !re.Match(src) {
				t.Fatalf("%s no longer contains %q: update this test", tc.file, tc.pattern)
			}
			if err := os.WriteFile(path, re.ReplaceAll(src, []byte(tc.replace)), 0o600); err != nil {
				t.Fatal(err)
			}
			problems, err := check(dir, string(cfg))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("the checker missed the broken copy (want a problem mentioning %q); it reported:\n%s",
				tc.want, strings.Join(problems, "\n"))
		})
	}
}

// copyTree copies every .tf file under src into a fresh temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".tf" {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// --- Loading ---

// block is a top-level block (resource, data, module, variable, locals, output) of one module.
type block struct {
	file string // path relative to the checked root, for messages
	*hclsyntax.Block
}

// addr names the block the way Terraform does: aws_db_instance.this, data.aws_iam_policy_document.x.
func (b *block) addr() string {
	switch b.Type {
	case "resource":
		return strings.Join(b.Labels, ".")
	case "data":
		return "data." + strings.Join(b.Labels, ".")
	default:
		return strings.Join(append([]string{b.Type}, b.Labels...), ".")
	}
}

// where is "file:line: address" for messages.
func (b *block) where() string {
	return fmt.Sprintf("%s:%d: %s", b.file, b.DefRange().Start.Line, b.addr())
}

// module is the .tf files of one directory.
type module struct {
	dir    string // relative to the checked root, "." for the root module
	blocks []*block
	src    map[string][]byte // parsed path (hcl.Range.Filename) -> contents
}

func (m *module) find(typ string, labels ...string) *block {
	for _, b := range m.blocks {
		if b.Type == typ && slices.Equal(b.Labels, labels) {
			return b
		}
	}
	return nil
}

func (m *module) resources(typ string) []*block {
	var out []*block
	for _, b := range m.blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

// load parses every .tf file under root, grouped by directory.
func load(root string) ([]*module, error) {
	parser := hclparse.NewParser()
	mods := map[string]*module{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir // .terraform and the like
		}
		if d.IsDir() || filepath.Ext(path) != ".tf" {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, diags := parser.ParseHCLFile(path)
		if diags.HasErrors() {
			return fmt.Errorf("%s: %s", rel, diags.Error())
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		m := mods[dir]
		if m == nil {
			m = &module{dir: dir, src: map[string][]byte{}}
			mods[dir] = m
		}
		m.src[path] = f.Bytes
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			m.blocks = append(m.blocks, &block{file: rel, Block: b})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("no .tf files under %s", root)
	}
	var out []*module
	for _, m := range mods {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	return out, nil
}

// --- Expressions ---

// attr returns the expression of body's attribute name, or nil.
func attr(body *hclsyntax.Body, name string) hclsyntax.Expression {
	if a, ok := body.Attributes[name]; ok {
		return a.Expr
	}
	return nil
}

// nested returns body's nested blocks of type typ.
func nested(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// source is the text of expr as written.
func (m *module) source(expr hclsyntax.Expression) string {
	r := expr.Range()
	return string(r.SliceBytes(m.src[r.Filename]))
}

// resolve follows local.X to the local's value within the module, so that a constant named by a
// local is still checked. A variable's default is never followed: a caller can override it, so
// a security setting given by a variable is not a constant.
func (m *module) resolve(expr hclsyntax.Expression) hclsyntax.Expression {
	for range 4 {
		st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(st.Traversal) != 2 {
			return expr
		}
		field, ok := st.Traversal[1].(hcl.TraverseAttr)
		if !ok {
			return expr
		}
		var next hclsyntax.Expression
		if st.Traversal.RootName() == "local" {
			for _, b := range m.blocks {
				if e := attr(b.Body, field.Name); b.Type == "locals" && e != nil {
					next = e
				}
			}
		}
		if next == nil {
			return expr
		}
		expr = next
	}
	return expr
}

// value is the constant value of expr after resolve, or cty.NilVal when it is not a constant.
func (m *module) value(expr hclsyntax.Expression) cty.Value {
	if expr == nil {
		return cty.NilVal
	}
	expr = m.resolve(expr)
	v, diags := expr.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		return cty.NilVal
	}
	return v
}

func (m *module) isBool(expr hclsyntax.Expression, want bool) bool {
	v := m.value(expr)
	return v != cty.NilVal && v.Type() == cty.Bool && !v.IsNull() && v.True() == want
}

func (m *module) str(expr hclsyntax.Expression) (string, bool) {
	v := m.value(expr)
	if v == cty.NilVal || v.IsNull() {
		return "", false
	}
	switch v.Type() {
	case cty.String:
		return v.AsString(), true
	case cty.Number:
		return v.AsBigFloat().Text('f', -1), true
	case cty.Bool:
		return strconv.FormatBool(v.True()), true
	}
	return "", false
}

// list returns the constant strings of a list expression, and the source of any element
// that is not constant (a reference), so that callers can check what it refers to.
func (m *module) list(expr hclsyntax.Expression) (consts, refs []string) {
	if expr == nil {
		return nil, nil
	}
	expr = m.resolve(expr)
	tuple, ok := expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil, []string{m.source(expr)}
	}
	for _, e := range tuple.Exprs {
		if s, ok := m.str(e); ok {
			consts = append(consts, s)
		} else {
			refs = append(refs, m.source(e))
		}
	}
	return consts, refs
}

// objectKey is the key of an object constructor item (a bare word or a string).
func objectKey(e hclsyntax.Expression) string {
	if k, ok := e.(*hclsyntax.ObjectConsKeyExpr); ok {
		e = k.Wrapped
	}
	if st, ok := e.(*hclsyntax.ScopeTraversalExpr); ok && len(st.Traversal) == 1 {
		return st.Traversal.RootName()
	}
	if v, diags := e.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
		return v.AsString()
	}
	return ""
}

func objectField(obj *hclsyntax.ObjectConsExpr, key string) hclsyntax.Expression {
	for _, it := range obj.Items {
		if objectKey(it.KeyExpr) == key {
			return it.ValueExpr
		}
	}
	return nil
}

// --- The invariants ---

type report struct {
	problems []string
	seen     map[string]bool // things that must exist somewhere: "coffer key", "https listener", ...
}

func (r *report) add(b *block, format string, args ...any) {
	r.problems = append(r.problems, b.where()+": "+fmt.Sprintf(format, args...))
}

// check returns every violated invariant in the Terraform under root. config is the server's
// configuration source, which must name every COFFER_* variable the deployment sets.
func check(root, config string) ([]string, error) {
	mods, err := load(root)
	if err != nil {
		return nil, err
	}
	r := &report{seen: map[string]bool{}}
	counts := map[string]int{}
	for _, m := range mods {
		for _, b := range m.blocks {
			if b.Type == "resource" && len(b.Labels) == 2 {
				counts[b.Labels[0]]++
			}
		}
		checkNoPublic(r, m)
		checkDatabase(r, m)
		checkLogGroups(r, m)
		checkKMS(r, m)
		checkListeners(r, m)
		checkECS(r, m)
		checkCofferVariables(r, m, config)
	}
	checkWiring(r, mods)
	for _, must := range []string{"coffer key", "https listener", "http redirect listener", "kms module wiring", "service module wiring"} {
		if !r.seen[must] {
			r.problems = append(r.problems, fmt.Sprintf("%s: no %s found: the deployment is incomplete", root, must))
		}
	}
	for _, typ := range []string{
		"aws_db_instance", "aws_db_parameter_group", "aws_ecs_service", "aws_ecs_task_definition",
		"aws_kms_key", "aws_lb", "aws_lb_listener", "aws_cloudwatch_log_group", "aws_flow_log",
	} {
		if counts[typ] == 0 {
			r.problems = append(r.problems, fmt.Sprintf("%s: no %s resource found: the deployment is incomplete", root, typ))
		}
	}
	return r.problems, nil
}

// checkNoPublic: nothing anywhere is made publicly accessible or gets a public IP.
func checkNoPublic(r *report, m *module) {
	for _, b := range m.blocks {
		var walk func(body *hclsyntax.Body)
		walk = func(body *hclsyntax.Body) {
			for _, name := range []string{"publicly_accessible", "assign_public_ip", "associate_public_ip_address", "map_public_ip_on_launch"} {
				if e := attr(body, name); e != nil && !m.isBool(e, false) {
					r.add(b, "%s must be the literal false, found %s", name, m.source(e))
				}
			}
			for _, nb := range body.Blocks {
				walk(nb.Body)
			}
		}
		walk(b.Body)
	}
}

func checkDatabase(r *report, m *module) {
	groups := map[string]*block{}
	for _, g := range m.resources("aws_db_parameter_group") {
		groups[g.Labels[1]] = g
		forced := false
		for _, p := range nested(g.Body, "parameter") {
			name, _ := m.str(attr(p.Body, "name"))
			value, _ := m.str(attr(p.Body, "value"))
			if name == "rds.force_ssl" && value == "1" {
				forced = true
			}
		}
		if !forced {
			r.add(g, `the parameter group must set rds.force_ssl to "1"`)
		}
	}
	for _, db := range m.resources("aws_db_instance") {
		for _, want := range []struct {
			name string
			val  bool
		}{
			{"publicly_accessible", false},
			{"storage_encrypted", true},
			{"deletion_protection", true},
			{"iam_database_authentication_enabled", true},
			{"multi_az", true},
			{"copy_tags_to_snapshot", true},
		} {
			if !m.isBool(attr(db.Body, want.name), want.val) {
				r.add(db, "%s must be set to %t", want.name, want.val)
			}
		}
		if m.isBool(attr(db.Body, "skip_final_snapshot"), true) || attr(db.Body, "final_snapshot_identifier") == nil {
			r.add(db, "a final snapshot must be taken (skip_final_snapshot = false, final_snapshot_identifier set)")
		}
		if attr(db.Body, "kms_key_id") == nil {
			r.add(db, "kms_key_id must name the customer managed key for storage")
		}
		if m.isBool(attr(db.Body, "performance_insights_enabled"), true) && attr(db.Body, "performance_insights_kms_key_id") == nil {
			r.add(db, "performance_insights_kms_key_id must be set when Performance Insights is on")
		}
		if e := attr(db.Body, "backup_retention_period"); e == nil {
			r.add(db, "backup_retention_period must be set")
		} else if n, ok := m.str(e); ok && n == "0" {
			r.add(db, "backup_retention_period must be above 0 (0 turns backups off)")
		}
		pg := attr(db.Body, "parameter_group_name")
		if pg == nil {
			r.add(db, "parameter_group_name must name a parameter group that sets rds.force_ssl")
			continue
		}
		src := m.source(pg)
		ok := false
		for name := range groups {
			if strings.Contains(src, "aws_db_parameter_group."+name+".") {
				ok = true
			}
		}
		if !ok {
			r.add(db, "parameter_group_name %s is not a parameter group of this module (which must set rds.force_ssl)", src)
		}
	}
}

func checkLogGroups(r *report, m *module) {
	for _, lg := range m.resources("aws_cloudwatch_log_group") {
		if attr(lg.Body, "kms_key_id") == nil {
			r.add(lg, "kms_key_id must be set: log groups are encrypted with the customer managed key")
		}
		e := attr(lg.Body, "retention_in_days")
		if e == nil {
			r.add(lg, "retention_in_days must be set")
		} else if n, ok := m.str(e); ok && n == "0" {
			r.add(lg, "retention_in_days must be set (0 keeps logs forever)")
		}
	}
}

// checkKMS: rotation on every key; Coffer's key ("coffer") has a policy document with a Deny on
// kms:Decrypt for every principal except the task role, and no Allow of Decrypt to anyone else.
func checkKMS(r *report, m *module) {
	for _, k := range m.resources("aws_kms_key") {
		if !m.isBool(attr(k.Body, "enable_key_rotation"), true) {
			r.add(k, "enable_key_rotation must be true")
		}
		if k.Labels[1] != "coffer" {
			continue
		}
		r.seen["coffer key"] = true
		pol := attr(k.Body, "policy")
		if pol == nil {
			r.add(k, "Coffer's key needs a key policy (an aws_iam_policy_document)")
			continue
		}
		src := m.source(pol)
		ref := regexp.MustCompile(`^data\.aws_iam_policy_document\.([A-Za-z0-9_-]+)\.json$`).FindStringSubmatch(src)
		if ref == nil {
			r.add(k, "policy must be data.aws_iam_policy_document.<name>.json, found %s", src)
			continue
		}
		doc := m.find("data", "aws_iam_policy_document", ref[1])
		if doc == nil {
			r.add(k, "policy document %s is not in this module", ref[1])
			continue
		}
		checkKeyPolicy(r, m, doc)
	}
}

func hasAction(actions []string, want string) bool {
	for _, a := range actions {
		if a == want || a == "*" || a == "kms:*" {
			return true
		}
		if strings.HasSuffix(a, "*") && strings.HasPrefix(want, strings.TrimSuffix(a, "*")) {
			return true
		}
	}
	return false
}

func checkKeyPolicy(r *report, m *module, doc *block) {
	denied := false
	for _, st := range nested(doc.Body, "statement") {
		effect := "Allow"
		if e := attr(st.Body, "effect"); e != nil {
			effect, _ = m.str(e)
		}
		actions, actionRefs := m.list(attr(st.Body, "actions"))
		if len(actionRefs) > 0 {
			r.add(doc, "statement actions must be constant lists, found %s", strings.Join(actionRefs, ", "))
			continue
		}
		var principals, principalRefs []string
		for _, p := range nested(st.Body, "principals") {
			c, refs := m.list(attr(p.Body, "identifiers"))
			principals = append(principals, c...)
			principalRefs = append(principalRefs, refs...)
		}
		switch effect {
		case "Allow":
			if !hasAction(actions, "kms:Decrypt") {
				continue
			}
			if len(principals) > 0 || len(principalRefs) != 1 || principalRefs[0] != "var.task_role_arn" {
				r.add(doc, "a statement allows kms:Decrypt to %s: only var.task_role_arn may decrypt",
					strings.Join(append(principals, principalRefs...), ", "))
			}
		case "Deny":
			if !hasAction(actions, "kms:Decrypt") || !slices.Contains(principals, "*") {
				continue
			}
			for _, c := range nested(st.Body, "condition") {
				test, _ := m.str(attr(c.Body, "test"))
				variable, _ := m.str(attr(c.Body, "variable"))
				_, refs := m.list(attr(c.Body, "values"))
				if (test == "ArnNotEquals" || test == "StringNotEquals") &&
					variable == "aws:PrincipalArn" && slices.Equal(refs, []string{"var.task_role_arn"}) {
					denied = true
				}
			}
		}
	}
	if !denied {
		r.add(doc, `Coffer's key policy needs a Deny statement on kms:Decrypt for principal "*" `+
			`with condition ArnNotEquals aws:PrincipalArn = [var.task_role_arn]`)
	}
}

func checkListeners(r *report, m *module) {
	for _, lb := range m.resources("aws_lb") {
		if !m.isBool(attr(lb.Body, "drop_invalid_header_fields"), true) {
			r.add(lb, "drop_invalid_header_fields must be true")
		}
		logs := nested(lb.Body, "access_logs")
		if len(logs) == 0 || !m.isBool(attr(logs[0].Body, "enabled"), true) {
			r.add(lb, "access_logs must be enabled")
		}
	}
	for _, l := range m.resources("aws_lb_listener") {
		proto, _ := m.str(attr(l.Body, "protocol"))
		switch proto {
		case "HTTPS":
			r.seen["https listener"] = true
			if p, _ := m.str(attr(l.Body, "ssl_policy")); p != tlsPolicy {
				r.add(l, "the HTTPS listener's ssl_policy must be %q, found %q", tlsPolicy, p)
			}
		case "HTTP":
			redirects := false
			for _, a := range nested(l.Body, "default_action") {
				typ, _ := m.str(attr(a.Body, "type"))
				for _, rd := range nested(a.Body, "redirect") {
					if p, _ := m.str(attr(rd.Body, "protocol")); typ == "redirect" && p == "HTTPS" {
						redirects = true
					}
				}
			}
			if !redirects {
				r.add(l, "the HTTP listener must only redirect to HTTPS")
			} else {
				r.seen["http redirect listener"] = true
			}
		default:
			r.add(l, "listener protocol must be HTTPS, or HTTP redirecting to HTTPS; found %q", proto)
		}
	}
}

// nonRootUser matches a numeric uid[:gid] other than 0.
var nonRootUser = regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`)

func checkECS(r *report, m *module) {
	for _, svc := range m.resources("aws_ecs_service") {
		ncs := nested(svc.Body, "network_configuration")
		if len(ncs) == 0 {
			r.add(svc, "network_configuration is required (awsvpc tasks in private subnets)")
			continue
		}
		nc := ncs[0].Body
		if !m.isBool(attr(nc, "assign_public_ip"), false) {
			r.add(svc, "network_configuration.assign_public_ip must be false")
		}
		_, refs := m.list(attr(nc, "subnets"))
		if len(refs) != 1 || !strings.Contains(refs[0], "private") {
			r.add(svc, "network_configuration.subnets must reference the private subnet ids, found %s", strings.Join(refs, ", "))
		}
	}
	for _, td := range m.resources("aws_ecs_task_definition") {
		call, ok := attr(td.Body, "container_definitions").(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "jsonencode" || len(call.Args) != 1 {
			r.add(td, "container_definitions must be jsonencode([...]) so that it can be checked")
			continue
		}
		list, ok := call.Args[0].(*hclsyntax.TupleConsExpr)
		if !ok || len(list.Exprs) == 0 {
			r.add(td, "container_definitions must be a list of container objects")
			continue
		}
		for i, e := range list.Exprs {
			c, ok := e.(*hclsyntax.ObjectConsExpr)
			if !ok {
				r.add(td, "container %d is not an object constructor", i)
				continue
			}
			name, _ := m.str(objectField(c, "name"))
			if name == "" {
				name = strconv.Itoa(i)
			}
			if !m.isBool(objectField(c, "readonlyRootFilesystem"), true) {
				r.add(td, "container %s: readonlyRootFilesystem must be true", name)
			}
			if m.isBool(objectField(c, "privileged"), true) {
				r.add(td, "container %s: privileged must not be true", name)
			}
			user, ok := m.str(objectField(c, "user"))
			if !ok || !nonRootUser.MatchString(user) {
				r.add(td, "container %s: needs a non-root user (numeric uid:gid, not 0), found %q", name, user)
			}
		}
	}
}

var cofferVar = regexp.MustCompile(`"(COFFER_[A-Z0-9_]+)"`)

// checkCofferVariables: every COFFER_* name the deployment sets is one the server reads.
func checkCofferVariables(r *report, m *module, config string) {
	for path, src := range m.src {
		for _, match := range cofferVar.FindAllStringSubmatch(string(src), -1) {
			if !strings.Contains(config, `"`+match[1]+`"`) {
				r.problems = append(r.problems, fmt.Sprintf("%s: %s is not a variable the server reads (internal/app/config.go)",
					filepath.Join(m.dir, filepath.Base(path)), match[1]))
			}
		}
	}
}

// checkWiring: in the root module, the service gets the private app subnets and the KMS module
// excepts the service's task role.
func checkWiring(r *report, mods []*module) {
	var root *module
	for _, m := range mods {
		if m.dir == "." {
			root = m
		}
	}
	if root == nil {
		r.problems = append(r.problems, "no root module (main.tf in the checked directory)")
		return
	}
	for _, b := range root.blocks {
		if b.Type != "module" {
			continue
		}
		srcExpr := attr(b.Body, "source")
		source, _ := root.str(srcExpr)
		switch filepath.Base(source) {
		case "service":
			r.seen["service module wiring"] = true
			e := attr(b.Body, "private_subnet_ids")
			if e == nil || !regexp.MustCompile(`^module\.network\.private_[a-z_]*subnet_ids$`).MatchString(root.source(e)) {
				r.add(b, "private_subnet_ids must be the network module's private subnets (tasks run in private subnets only)")
			}
		case "kms":
			r.seen["kms module wiring"] = true
			e := attr(b.Body, "task_role_arn")
			if e == nil || root.source(e) != "module.service.task_role_arn" {
				r.add(b, "task_role_arn must be module.service.task_role_arn: the only principal allowed to decrypt")
			}
		}
	}
}
