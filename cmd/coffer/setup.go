package main

// This file is `coffer setup`: it writes the repository's .coffer.yaml (repoConfig, repo.go).
//
// Where: at the root of the git repository holding the working directory (the directory of
// its .git), so that every directory of the repository finds it and the branch patterns
// apply to the whole repository; outside a repository, or with --here, in the working
// directory (a monorepo can give each project's directory its own file: the nearest wins).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"
)

type setupFlags struct {
	scope    scopeFlags
	branches []string
	force    bool
	here     bool
}

func (a *cli) setupCommand() *cobra.Command {
	var f setupFlags
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Write .coffer.yaml: this repository's tenant, project and environments",
		Long: "Writes .coffer.yaml at the root of the git repository (outside one, or with --here, in the\n" +
			"current directory), so that later commands need no --tenant, --project or --env. Without --project\n" +
			"it asks on standard input, listing your tenants, projects and environments when you are signed in;\n" +
			"with --project it asks nothing (for scripts). A branch pattern (path.Match syntax: * stops at /)\n" +
			"names the environment a branch reads; the first that matches wins, else the default environment.\n" +
			"An existing file is kept unless --force is given (exit code 3).",
		Example: "  coffer setup\n" +
			"  coffer setup --project web --env development --branch main=production --branch 'release/*=staging'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd.Context(), &f, cmd.Flags().Changed("project"))
		},
	}
	cmd.Flags().StringVar(&f.scope.tenant, "tenant", "", "tenant slug (with --project: \"default\" when not given)")
	cmd.Flags().StringVar(&f.scope.project, "project", "", "project slug; given, setup asks nothing")
	cmd.Flags().StringVarP(&f.scope.env, "env", "e", "", "the default environment (when no branch pattern matches)")
	cmd.Flags().StringArrayVar(&f.branches, "branch", nil, "PATTERN=ENV: branches matching PATTERN read ENV (repeatable, in order)")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace an existing .coffer.yaml")
	cmd.Flags().BoolVar(&f.here, "here", false, "write in the current directory, not at the git repository's root")
	return cmd
}

func (a *cli) setup(ctx context.Context, f *setupFlags, scripted bool) error {
	dir, err := os.Getwd()
	if err != nil {
		return fail(exitFailure, "no working directory: %v", err)
	}
	if !f.here {
		if g, err := findUp(dir, ".git"); err == nil && g != "" {
			dir = filepath.Dir(g)
		}
	}
	file := filepath.Join(dir, repoFile)
	if _, err := os.Stat(file); err == nil && !f.force {
		return fail(exitConflict, "%s already exists: pass --force to replace it", file)
	}
	cfg := repoConfig{Tenant: f.scope.tenant, Project: f.scope.project, Environment: f.scope.env}
	for _, b := range f.branches {
		p, err := parseBranchPattern(b)
		if err != nil {
			return &exitError{exitUsage, fmt.Errorf("--branch %q: %w", b, err)}
		}
		cfg.Branches = append(cfg.Branches, p)
	}
	known := newDirectory(a)
	if scripted {
		if cfg.Tenant == "" {
			cfg.Tenant = "default"
		}
		if err := known.check(ctx, cfg); err != nil {
			return err
		}
	} else {
		p := &prompter{a: a, in: bufio.NewReader(a.stdin)}
		if err := p.ask(ctx, known, &cfg); err != nil {
			return err
		}
	}
	if err := writeRepoConfig(file, cfg, f.force); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "wrote %s\n", file)
	return nil
}

// parseBranchPattern reads PATTERN=ENV.
func parseBranchPattern(s string) (branchPattern, error) {
	pat, env, ok := strings.Cut(s, "=")
	pat, env = strings.TrimSpace(pat), strings.TrimSpace(env)
	if !ok || pat == "" || env == "" {
		return branchPattern{}, errors.New("write it as PATTERN=ENVIRONMENT, e.g. main=production")
	}
	if _, err := path.Match(pat, ""); err != nil {
		return branchPattern{}, fmt.Errorf("pattern %q: %w", pat, err)
	}
	return branchPattern{Pattern: pat, Environment: env}, nil
}

// writeRepoConfig writes the file through a temporary one: renamed over the old file with
// force, else linked into place, which fails if a file appeared meanwhile.
func writeRepoConfig(file string, cfg repoConfig, force bool) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	b = append([]byte("# Written by `coffer setup`: this repository's Coffer tenant, project and environments.\n"+
		"# branches: the first pattern (path.Match syntax) matching the git branch picks the environment.\n"), b...)
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+repoFile+".*")
	if err != nil {
		return fail(exitFailure, "writing %s: %v", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fail(exitFailure, "writing %s: %v", file, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fail(exitFailure, "writing %s: %v", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fail(exitFailure, "writing %s: %v", file, err)
	}
	if force {
		err = os.Rename(tmp.Name(), file)
	} else if err = os.Link(tmp.Name(), file); errors.Is(err, os.ErrExist) {
		return fail(exitConflict, "%s already exists: pass --force to replace it", file)
	}
	if err != nil {
		return fail(exitFailure, "writing %s: %v", file, err)
	}
	return nil
}

// directory is what the server says the signed-in user can see, for choosing and checking
// names; client is nil when not signed in (names are then taken as given).
type directory struct {
	a      *cli
	client *apiClient
}

func newDirectory(a *cli) directory {
	c, _, err := a.client()
	if err != nil {
		return directory{a: a}
	}
	return directory{a: a, client: c}
}

// slugs lists the slugs at an API list path (its first 200): complete is false when there
// were more, or the list could not be read.
func (d directory) slugs(ctx context.Context, p string) (slugs []string, complete bool, err error) {
	var body struct {
		Items []struct {
			Slug string `json:"slug"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	if err := d.client.do(ctx, "GET", p, url.Values{"limit": {"200"}}, nil, &body); err != nil {
		return nil, false, err
	}
	for _, it := range body.Items {
		slugs = append(slugs, it.Slug)
	}
	return slugs, body.NextCursor == "", nil
}

// check confirms, when signed in, that the project exists and has the environments named;
// a server that cannot be reached only earns a warning, a refusal fails.
func (d directory) check(ctx context.Context, cfg repoConfig) error {
	if d.client == nil {
		return nil
	}
	sc := scopeFlags{tenant: cfg.Tenant, project: cfg.Project}
	envs, complete, err := d.slugs(ctx, sc.projectPath("environments"))
	if unavailable(err) {
		d.a.warn("the names are not checked: %v", exitOf(err))
		return nil
	}
	if err != nil {
		return exitOf(err)
	}
	if !complete {
		return nil
	}
	want := []string{cfg.Environment}
	for _, b := range cfg.Branches {
		want = append(want, b.Environment)
	}
	for _, e := range want {
		if e != "" && !slices.Contains(envs, e) {
			return fail(exitNotFound, "project %s/%s has no environment %q (it has %s)", cfg.Tenant, cfg.Project, e, strings.Join(envs, ", "))
		}
	}
	return nil
}

// prompter asks for what the flags did not give, one line at a time: prompts on stderr,
// answers from stdin.
type prompter struct {
	a  *cli
	in *bufio.Reader
}

// line asks a question and returns the trimmed answer, or def for an empty one.
func (p *prompter) line(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.a.stderr, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.a.stderr, "%s: ", question)
	}
	s, err := p.in.ReadString('\n')
	if err != nil && (err != io.EOF || s == "") {
		if err == io.EOF {
			return "", fail(exitUsage, "no answer on standard input: pass --project (and --tenant, --env, --branch) to run without questions")
		}
		return "", err
	}
	if s = strings.TrimSpace(s); s == "" {
		return def, nil
	}
	return s, nil
}

// choose asks for one of choices (when known: an answer not among them is asked again).
func (p *prompter) choose(what string, choices []string, complete bool, def string) (string, error) {
	if len(choices) > 0 {
		fmt.Fprintf(p.a.stderr, "Your %ss: %s\n", what, strings.Join(choices, ", "))
		if def == "" && len(choices) == 1 {
			def = choices[0]
		}
	}
	for {
		v, err := p.line(strings.ToUpper(what[:1])+what[1:], def)
		if err != nil {
			return "", err
		}
		if v != "" && (!complete || len(choices) == 0 || slices.Contains(choices, v)) {
			return v, nil
		}
		if v == "" {
			fmt.Fprintf(p.a.stderr, "A %s is needed.\n", what)
		} else {
			fmt.Fprintf(p.a.stderr, "%q is not one of them.\n", v)
		}
	}
}

// ask fills cfg interactively, listing what the server shows when signed in.
func (p *prompter) ask(ctx context.Context, d directory, cfg *repoConfig) error {
	list := func(path string) ([]string, bool) {
		if d.client == nil {
			return nil, false
		}
		s, complete, err := d.slugs(ctx, path)
		if err != nil {
			p.a.warn("cannot list them (%v): the names are not checked", exitOf(err))
			return nil, false
		}
		return s, complete
	}
	if d.client == nil {
		p.a.warn("not signed in: the names are not checked (`coffer login` first to choose from lists)")
	}
	var err error
	tenants, complete := list(apiPath("tenants"))
	def := cfg.Tenant
	if def == "" && (len(tenants) == 0 || slices.Contains(tenants, "default")) {
		def = "default"
	}
	if cfg.Tenant, err = p.choose("tenant", tenants, complete, def); err != nil {
		return err
	}
	sc := scopeFlags{tenant: cfg.Tenant}
	projects, complete := list(apiPath("tenants", cfg.Tenant, "projects"))
	if cfg.Project, err = p.choose("project", projects, complete, cfg.Project); err != nil {
		return err
	}
	sc.project = cfg.Project
	envs, complete := list(sc.projectPath("environments"))
	def = cfg.Environment
	if def == "" && slices.Contains(envs, "development") {
		def = "development"
	}
	if cfg.Environment, err = p.choose("default environment", envs, complete, def); err != nil {
		return err
	}
	if len(cfg.Branches) > 0 {
		return nil
	}
	if cfg.Environment != "production" && (!complete || slices.Contains(envs, "production")) {
		yes, err := p.line("Use production on branch main? (y/n)", "y")
		if err != nil {
			return err
		}
		if strings.HasPrefix(strings.ToLower(yes), "y") {
			cfg.Branches = append(cfg.Branches, branchPattern{Pattern: "main", Environment: "production"})
		}
	}
	fmt.Fprintln(p.a.stderr, "More branch patterns, as PATTERN=ENVIRONMENT (e.g. release/*=staging); an empty line to finish.")
	for {
		s, err := p.line("Pattern", "")
		if err != nil {
			var ee *exitError
			if errors.As(err, &ee) && ee.code == exitUsage { // end of input ends the list
				return nil
			}
			return err
		}
		if s == "" {
			return nil
		}
		b, err := parseBranchPattern(s)
		if err == nil && complete && len(envs) > 0 && !slices.Contains(envs, b.Environment) {
			err = fmt.Errorf("%q is not one of the project's environments", b.Environment)
		}
		if err != nil {
			fmt.Fprintf(p.a.stderr, "%v\n", err)
			continue
		}
		cfg.Branches = append(cfg.Branches, b)
	}
}
