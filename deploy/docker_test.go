package deploy_test

// Checks of the container image and the local docker-compose setup that run without a Docker
// daemon: the Dockerfile is parsed with BuildKit's own parser, docker-compose.yml is loaded and
// validated with compose-go (what `docker compose config` uses).

import (
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/goccy/go-yaml"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/cofferhq/coffer/internal/app"
)

// root is the repository's root, from this package's directory.
const root = ".."

// stage is one FROM … section of a Dockerfile.
type stage struct {
	from, name string
	lines      []*parser.Node
}

func dockerfileStages(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "from") {
			s := stage{from: n.Next.Value}
			if as := n.Next.Next; as != nil && strings.EqualFold(as.Value, "as") && as.Next != nil {
				s.name = as.Next.Value
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, n)
	}
	return stages
}

// args are an instruction's words after the keyword.
func args(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

func TestDockerfile(t *testing.T) {
	stages := dockerfileStages(t)
	if len(stages) < 3 {
		t.Fatalf("want build, kms and final stages, got %d", len(stages))
	}
	final := stages[len(stages)-1]
	if final.name != "" || !strings.HasPrefix(final.from, "gcr.io/distroless/static") || !strings.HasSuffix(final.from, ":nonroot") {
		t.Errorf("the final (default) stage must be unnamed distroless static nonroot, is %q %q", final.from, final.name)
	}
	found := map[string][]string{}
	for _, n := range final.lines {
		found[strings.ToLower(n.Value)] = args(n)
	}
	if u := found["user"]; len(u) != 1 || (u[0] != "65532:65532" && u[0] != "nonroot:nonroot") {
		t.Errorf("final stage USER %v, want the nonroot user", u)
	}
	if e := found["expose"]; !slices.Equal(e, []string{"8080"}) {
		t.Errorf("EXPOSE %v, want 8080", e)
	}
	if h := strings.Join(found["healthcheck"], " "); !strings.Contains(h, "/coffer-server") || !strings.Contains(h, "healthcheck") {
		t.Errorf("HEALTHCHECK %q must run the binary's healthcheck subcommand (no shell in the image)", h)
	}
	if e := found["entrypoint"]; len(e) == 0 || e[0] != "/coffer-server" {
		t.Errorf("ENTRYPOINT %v", e)
	}
	if v := found["volume"]; !slices.Contains(v, "/data") {
		t.Errorf("VOLUME %v, want /data", v)
	}

	var kms, cgoOff bool
	for _, s := range stages {
		kms = kms || s.name == "kms"
		for _, n := range s.lines {
			text := strings.Join(args(n), " ")
			switch strings.ToLower(n.Value) {
			case "env":
				cgoOff = cgoOff || strings.Contains(n.Original, "CGO_ENABLED=0")
				fallthrough
			case "arg":
				// Nothing secret is baked into a layer.
				for _, w := range []string{"SECRET", "PASSWORD", "TOKEN", "MASTER_KEY", "KEY_MATERIAL"} {
					if strings.Contains(strings.ToUpper(text), w) {
						t.Errorf("%s %q looks like a secret baked into the image", n.Value, text)
					}
				}
			case "run":
				cgoOff = cgoOff || strings.Contains(text, "CGO_ENABLED=0")
			case "copy", "add":
				if strings.Contains(text, ".env") || strings.Contains(text, "master.key") {
					t.Errorf("%s %q copies a secret file", n.Value, text)
				}
			}
		}
	}
	if !kms {
		t.Error("no kms stage (the KMS test server image for docker-compose)")
	}
	if !cgoOff {
		t.Error("the build does not set CGO_ENABLED=0 (the final image has no libc)")
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil || !strings.Contains(string(ignore), ".env") {
		t.Errorf(".dockerignore must keep .env out of the build context: %v", err)
	}
}

// serverEnv is every environment variable the server's configuration reads, learnt by
// parsing a configuration and noting what it asks for.
func serverEnv(t *testing.T) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	if _, err := app.ParseConfig(nil, func(k string) string { seen[k] = true; return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	return seen
}

// loadCompose loads docker-compose.yml as `docker compose config` would, with the values
// .env.example names filled in.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for line := range strings.Lines(string(example)) {
		line = strings.TrimSpace(line)
		if name, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			if value != "" {
				t.Errorf(".env.example gives %s a value; it must hold names only", name)
			}
			env = append(env, name+"=example-"+strings.ToLower(name))
		}
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithName("coffer"), cli.WithWorkingDirectory(root), cli.WithEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

func TestDockerCompose(t *testing.T) {
	p := loadCompose(t)
	names := slices.Sorted(maps.Keys(p.Services))
	if !slices.Equal(names, []string{"coffer", "dex", "kms", "postgres"}) {
		t.Fatalf("services %v", names)
	}
	for _, name := range []string{"coffer", "dex", "postgres"} {
		if hc := p.Services[name].HealthCheck; hc == nil || len(hc.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	if pg := p.Services["postgres"]; !strings.HasPrefix(pg.Image, "postgres:16") || len(pg.Volumes) == 0 || pg.Volumes[0].Type != "volume" {
		t.Errorf("postgres: image %q, volumes %+v (want postgres:16 with a named volume)", pg.Image, pg.Volumes)
	}
	if _, ok := p.Volumes["postgres-data"]; !ok {
		t.Error("no named volume postgres-data")
	}
	if kms := p.Services["kms"]; kms.Build == nil || kms.Build.Target != "kms" || len(kms.Ports) != 0 {
		t.Errorf("kms: build %+v ports %v (want the Dockerfile's kms target, not published)", kms.Build, kms.Ports)
	}

	coffer := p.Services["coffer"]
	if !coffer.ReadOnly {
		t.Error("coffer's root filesystem is not read-only")
	}
	known := serverEnv(t)
	env := map[string]string{}
	for k, v := range coffer.Environment {
		if v != nil {
			env[k] = *v
		}
		if strings.HasPrefix(k, "COFFER_") && !known[k] {
			t.Errorf("coffer sets %s, which the server does not read", k)
		}
	}
	for _, k := range []string{"COFFER_DATABASE_URL", "COFFER_KMS_ENDPOINT", "COFFER_OIDC_ISSUER", "COFFER_BOOTSTRAP_TOKEN"} {
		if env[k] == "" {
			t.Errorf("coffer does not set %s", k)
		}
	}
	if env["COFFER_KMS"] != "awskms" || !strings.HasPrefix(env["COFFER_DATABASE_URL"], "postgres://") {
		t.Errorf("coffer must run on Postgres and AWS KMS: %s, %s", env["COFFER_KMS"], env["COFFER_DATABASE_URL"])
	}

	// Dex's client is Coffer's: id, secret (the same .env value), redirect URL and issuer.
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "dex", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var dex struct {
		Issuer        string `yaml:"issuer"`
		StaticClients []struct {
			ID           string   `yaml:"id"`
			SecretEnv    string   `yaml:"secretEnv"`
			RedirectURIs []string `yaml:"redirectURIs"`
		} `yaml:"staticClients"`
	}
	if err := yaml.Unmarshal(raw, &dex); err != nil {
		t.Fatalf("deploy/dex/config.yaml: %v", err)
	}
	if dex.Issuer != env["COFFER_OIDC_ISSUER"] {
		t.Errorf("Dex issuer %q, Coffer's COFFER_OIDC_ISSUER %q", dex.Issuer, env["COFFER_OIDC_ISSUER"])
	}
	if len(dex.StaticClients) != 1 {
		t.Fatalf("Dex has %d static clients, want 1", len(dex.StaticClients))
	}
	client := dex.StaticClients[0]
	if client.ID != env["COFFER_OIDC_CLIENT_ID"] {
		t.Errorf("Dex client %q, Coffer's COFFER_OIDC_CLIENT_ID %q", client.ID, env["COFFER_OIDC_CLIENT_ID"])
	}
	if want := env["COFFER_BASE_URL"] + "/auth/oidc/callback"; !slices.Equal(client.RedirectURIs, []string{want}) {
		t.Errorf("Dex redirect URIs %v, want [%s]", client.RedirectURIs, want)
	}
	dexEnv := p.Services["dex"].Environment[client.SecretEnv]
	if dexEnv == nil || *dexEnv == "" || *dexEnv != env["COFFER_OIDC_CLIENT_SECRET"] {
		t.Errorf("Dex's client secret (%s) is not Coffer's COFFER_OIDC_CLIENT_SECRET", client.SecretEnv)
	}
}
