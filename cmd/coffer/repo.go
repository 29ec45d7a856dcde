package main

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
)

// repoFile is the repository defaults' file name, found by walking up from the working
// directory.
const repoFile = ".coffer.yaml"

// repoConfig is .coffer.yaml: the tenant and project of a repository, and which environment
// a git branch reads (the first pattern that matches, in path.Match syntax, else
// environment).
type repoConfig struct {
	Tenant      string          `yaml:"tenant,omitempty"`
	Project     string          `yaml:"project,omitempty"`
	Environment string          `yaml:"environment,omitempty"`
	Branches    []branchPattern `yaml:"branches,omitempty"`
	// environment is the one chosen for the current branch.
	environment string
}

type branchPattern struct {
	Pattern     string `yaml:"pattern"`
	Environment string `yaml:"environment"`
}

// repoDefaults reads the nearest .coffer.yaml (none: no defaults) and picks the environment
// of the current branch.
func (a *cli) repoDefaults() (repoConfig, error) {
	var c repoConfig
	dir, err := os.Getwd()
	if err != nil {
		return c, nil
	}
	file, err := findUp(dir, repoFile)
	if file == "" || err != nil {
		return c, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return c, fail(exitConfig, "reading %s: %v", file, err)
	}
	if err := yaml.UnmarshalWithOptions(b, &c, yaml.Strict()); err != nil {
		return c, fail(exitConfig, "%s: %s", file, strings.ReplaceAll(yaml.FormatError(err, false, false), "\n", " "))
	}
	c.environment = c.Environment
	if branch := gitBranch(filepath.Dir(file)); branch != "" {
		for _, p := range c.Branches {
			if ok, _ := path.Match(p.Pattern, branch); ok {
				c.environment = p.Environment
				break
			}
		}
	}
	return c, nil
}

// findUp returns the path of name in dir or the nearest directory above it that has it.
func findUp(dir, name string) (string, error) {
	for {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fail(exitConfig, "looking for %s: %v", name, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}

// gitBranch is the branch checked out in the repository holding dir ("" when detached or not
// in a repository), read from .git/HEAD (a worktree's .git file points at its own HEAD).
func gitBranch(dir string) string {
	gitPath, err := findUp(dir, ".git")
	if gitPath == "" || err != nil {
		return ""
	}
	head := filepath.Join(gitPath, "HEAD")
	if fi, err := os.Stat(gitPath); err == nil && !fi.IsDir() {
		b, err := os.ReadFile(gitPath)
		if err != nil {
			return ""
		}
		gd, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
		if !ok {
			return ""
		}
		if !filepath.IsAbs(gd) {
			gd = filepath.Join(filepath.Dir(gitPath), gd)
		}
		head = filepath.Join(gd, "HEAD")
	}
	b, err := os.ReadFile(head)
	if err != nil {
		return ""
	}
	ref, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ref: refs/heads/")
	if !ok {
		return ""
	}
	return ref
}
