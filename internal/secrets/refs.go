package secrets

import (
	"context"
	"regexp"
	"strings"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// MaxRefDepth bounds how deep references may nest: a value that refers to a value that refers
// on, and so on.
const MaxRefDepth = 8

// Ref is a reference in a value: ${NAME} (same environment), ${env.NAME} (another environment
// of the project) or ${project.env.NAME} (another project of the tenant). $${ is a literal ${.
type Ref struct {
	Project, Env, Name string
}

func (r Ref) String() string {
	switch {
	case r.Project != "":
		return "${" + r.Project + "." + r.Env + "." + r.Name + "}"
	case r.Env != "":
		return "${" + r.Env + "." + r.Name + "}"
	}
	return "${" + r.Name + "}"
}

var refRE = regexp.MustCompile(`^(?:([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.)?(?:([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.)?([A-Za-z_][A-Za-z0-9_]*)$`)

// segment is a piece of a value: literal text, or a reference.
type segment struct {
	text string
	ref  *Ref
}

// parseValue splits a value into literal text and references. A "${" without its "}" or with
// something other than a reference inside is an error: it was meant as one and cannot be read.
func parseValue(v string) ([]segment, error) {
	var out []segment
	var lit strings.Builder
	for i := 0; i < len(v); {
		switch {
		case strings.HasPrefix(v[i:], "$${"):
			lit.WriteString("${")
			i += 3
		case strings.HasPrefix(v[i:], "${"):
			end := strings.IndexByte(v[i+2:], '}')
			if end < 0 {
				return nil, coffer.Errorf(coffer.EINVALID, "a reference opened with ${ is never closed (write $${ for a literal ${)")
			}
			m := refRE.FindStringSubmatch(v[i+2 : i+2+end])
			if m == nil {
				return nil, coffer.Errorf(coffer.EINVALID, "${%s} is not a reference: use ${NAME}, ${env.NAME} or ${project.env.NAME} (or $${ for a literal ${)", v[i+2:i+2+end])
			}
			r := Ref{Name: m[3]}
			switch {
			case m[1] != "" && m[2] != "":
				r.Project, r.Env = m[1], m[2]
			case m[1] != "":
				r.Env = m[1]
			}
			if lit.Len() > 0 {
				out = append(out, segment{text: lit.String()})
				lit.Reset()
			}
			out = append(out, segment{ref: &r})
			i += 2 + end + 1
		default:
			lit.WriteByte(v[i])
			i++
		}
	}
	if lit.Len() > 0 {
		out = append(out, segment{text: lit.String()})
	}
	return out, nil
}

// ScopeFinder resolves the environment a reference names, as the caller sees it: another
// environment of the scope's project, or an environment of another project of its tenant.
// What the caller may not see is ENOTFOUND.
type ScopeFinder interface {
	EnvironmentScope(ctx context.Context, sc tenant.Scope, envSlug string) (tenant.Scope, error)
	ProjectEnvironmentScope(ctx context.Context, sc tenant.Scope, projectSlug, envSlug string) (tenant.Scope, error)
}

// resolver expands references for one request: every referenced secret is read with the
// caller's own access (a reference never shows what the caller could not read directly), each
// is read once, and every value it reveals is audited per environment.
type resolver struct {
	s      *Service
	ctx    context.Context
	find   ScopeFinder
	scopes map[string]tenant.Scope // "project/env" > scope
	done   map[string]string       // "envID/NAME" > resolved value
	open   map[string]bool         // the references being resolved, to catch cycles
	reveal map[string]*revealedIn  // envID > what was read there
}

type revealedIn struct {
	sc  tenant.Scope
	set audit.RevealedSet
}

func (s *Service) newResolver(ctx context.Context, find ScopeFinder) *resolver {
	return &resolver{s: s, ctx: ctx, find: find, scopes: map[string]tenant.Scope{}, done: map[string]string{},
		open: map[string]bool{}, reveal: map[string]*revealedIn{}}
}

// expand resolves the references in value, which belongs to sc; path is the chain of
// references that led here, for the depth bound and cycle messages.
func (r *resolver) expand(sc tenant.Scope, value string, path []string) (string, error) {
	segs, err := parseValue(value)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, seg := range segs {
		if seg.ref == nil {
			b.WriteString(seg.text)
			continue
		}
		v, err := r.lookup(sc, *seg.ref, path)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// lookup resolves one reference made from sc.
func (r *resolver) lookup(from tenant.Scope, ref Ref, path []string) (string, error) {
	sc, err := r.scopeOf(from, ref)
	if err != nil {
		return "", err
	}
	key := sc.Environment.ID + "/" + ref.Name
	label := sc.Project.Slug + "." + sc.Environment.Slug + "." + ref.Name
	if r.open[key] {
		return "", &coffer.Error{Code: coffer.EINVALID, Message: "the references form a cycle: " + strings.Join(append(path, label), " -> "),
			Details: map[string]any{"cycle": append(path, label)}}
	}
	if v, ok := r.done[key]; ok {
		return v, nil
	}
	if len(path) >= MaxRefDepth {
		return "", coffer.Errorf(coffer.EINVALID, "references nest deeper than %d: %s", MaxRefDepth, strings.Join(append(path, label), " -> "))
	}
	if err := tenant.Authorize(sc, tenant.ReadSecrets); err != nil {
		return "", refErr(ref, err)
	}
	rec, err := r.s.readable(r.ctx, sc, ref.Name, 0)
	if err != nil {
		if coffer.ErrorCode(err) == coffer.ENOTFOUND {
			return "", coffer.Errorf(coffer.EINVALID, "%s names a secret that does not exist", ref)
		}
		return "", refErr(ref, err)
	}
	var o opener
	defer o.wipe()
	raw, err := r.s.open(r.ctx, &o, sc, &rec)
	if err != nil {
		return "", err
	}
	value := string(raw)
	clear(raw)
	r.revealed(sc, rec)
	r.open[key] = true
	v, err := r.expand(sc, value, append(path, label))
	delete(r.open, key)
	if err != nil {
		return "", err
	}
	r.done[key] = v
	return v, nil
}

func refErr(ref Ref, err error) error {
	return coffer.Wrap(coffer.ErrorCode(err), err, ref.String()+": "+coffer.ErrorMessage(err))
}

// scopeOf finds the environment a reference points at, from the scope it was made in.
func (r *resolver) scopeOf(from tenant.Scope, ref Ref) (tenant.Scope, error) {
	if ref.Project == "" && ref.Env == "" {
		return from, nil
	}
	project := ref.Project
	if project == "" {
		project = from.Project.Slug
	}
	key := project + "/" + ref.Env
	if sc, ok := r.scopes[key]; ok {
		return sc, nil
	}
	var sc tenant.Scope
	var err error
	if project == from.Project.Slug {
		sc, err = r.find.EnvironmentScope(r.ctx, from, ref.Env)
	} else {
		sc, err = r.find.ProjectEnvironmentScope(r.ctx, from, project, ref.Env)
	}
	if err != nil {
		return tenant.Scope{}, refErr(ref, err)
	}
	r.scopes[key] = sc
	return sc, nil
}

func (r *resolver) revealed(sc tenant.Scope, rec Record) {
	in := r.reveal[sc.Environment.ID]
	if in == nil {
		in = &revealedIn{sc: sc}
		r.reveal[sc.Environment.ID] = in
	}
	in.set = append(in.set, audit.Revealed{Name: rec.Name, Version: rec.Version})
}

// audit makes every value the references revealed durable in the audit log, one entry per
// environment, before the caller sees any of them.
func (r *resolver) audit(actor audit.Actor) error {
	for _, in := range r.reveal {
		e := actor.New(audit.ActionSecretReveal, in.sc.Tenant.ID, "environment", in.sc.Environment.ID, in.sc.Path(),
			map[string]any{"secrets": in.set, "referenced": true})
		if err := r.s.reveal(r.ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// Resolve expands the references in values read from sc (name > value, already revealed and
// audited by the caller) in place. Referenced secrets are read with the caller's access and
// audited as reveals; a cycle, a missing or unreadable reference fails the whole read.
func (s *Service) Resolve(ctx context.Context, actor audit.Actor, sc tenant.Scope, find ScopeFinder, values map[string]*string) error {
	r := s.newResolver(ctx, find)
	label := func(name string) string { return sc.Project.Slug + "." + sc.Environment.Slug + "." + name }
	for name, v := range values {
		if v == nil {
			continue
		}
		key := sc.Environment.ID + "/" + name
		r.open[key] = true
		out, err := r.expand(sc, *v, []string{label(name)})
		delete(r.open, key)
		if err != nil {
			return err
		}
		*v = out
	}
	return r.audit(actor)
}
