package secrets

import (
	"cmp"
	"context"
	"crypto/subtle"
	"slices"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// DiffEntry is one name in a diff: its version on each side (0: absent there) and, when
// values were asked for, the values.
type DiffEntry struct {
	Name                   string
	FromVersion, ToVersion int
	FromValue, ToValue     *string
}

// Diff is how two environments of a project differ: names only in one, and names whose values
// differ. Names with equal values are counted, not listed.
type Diff struct {
	OnlyFrom, OnlyTo, Different []DiffEntry
	Same                        int
}

// MaxDiffSecrets bounds the environments a diff or promotion reads whole.
const MaxDiffSecrets = 10000

// Diff compares the current values of two environments. Comparing values needs read access to
// both; with values the answer shows them, and each side's reveal is audited like a read.
func (s *Service) Diff(ctx context.Context, actor audit.Actor, from, to tenant.Scope, withValues bool) (Diff, error) {
	for _, sc := range []tenant.Scope{from, to} {
		if err := tenant.Authorize(sc, tenant.ReadSecrets); err != nil {
			return Diff{}, err
		}
	}
	a, err := s.readAll(ctx, from)
	if err != nil {
		return Diff{}, err
	}
	defer wipeValues(a)
	b, err := s.readAll(ctx, to)
	if err != nil {
		return Diff{}, err
	}
	defer wipeValues(b)
	var d Diff
	var revealFrom, revealTo audit.RevealedSet
	show := func(v opened, side *audit.RevealedSet) *string {
		if !withValues {
			return nil
		}
		*side = append(*side, audit.Revealed{Name: v.name, Version: v.version})
		str := string(v.value)
		return &str
	}
	for name, av := range a {
		bv, ok := b[name]
		switch {
		case !ok:
			d.OnlyFrom = append(d.OnlyFrom, DiffEntry{Name: name, FromVersion: av.version, FromValue: show(av, &revealFrom)})
		case subtle.ConstantTimeCompare(av.value, bv.value) != 1:
			d.Different = append(d.Different, DiffEntry{Name: name, FromVersion: av.version, ToVersion: bv.version,
				FromValue: show(av, &revealFrom), ToValue: show(bv, &revealTo)})
		default:
			d.Same++
		}
	}
	for name, bv := range b {
		if _, ok := a[name]; !ok {
			d.OnlyTo = append(d.OnlyTo, DiffEntry{Name: name, ToVersion: bv.version, ToValue: show(bv, &revealTo)})
		}
	}
	for _, l := range [][]DiffEntry{d.OnlyFrom, d.OnlyTo, d.Different} {
		slices.SortFunc(l, func(x, y DiffEntry) int { return cmp.Compare(x.Name, y.Name) })
	}
	for _, r := range []struct {
		sc  tenant.Scope
		set audit.RevealedSet
	}{{from, revealFrom}, {to, revealTo}} {
		if len(r.set) == 0 {
			continue
		}
		slices.SortFunc(r.set, func(x, y audit.Revealed) int { return cmp.Compare(x.Name, y.Name) })
		e := actor.New(audit.ActionSecretReveal, r.sc.Tenant.ID, "environment", r.sc.Environment.ID, r.sc.Path(),
			map[string]any{"secrets": r.set, "diff": true})
		if err := s.reveal(ctx, e); err != nil {
			return Diff{}, err
		}
	}
	return d, nil
}

// Promotion names one secret to copy from one environment to another, with the versions the
// caller saw: the source must still be at FromVersion and the target at ToVersion (0: absent).
type Promotion struct {
	Name                   string
	FromVersion, ToVersion int
}

// Promote copies the chosen secrets' values from one environment to another as one bulk write
// on the target, all or nothing, compare-and-set on both sides: a source that moved on since
// the diff, or a target written meanwhile, fails the whole promotion with EPRECONDITION. The
// values go from one environment to the other inside the server: nothing is revealed to the
// caller, and each written secret is audited as a promotion.
func (s *Service) Promote(ctx context.Context, actor audit.Actor, from, to tenant.Scope, items []Promotion) ([]Result, error) {
	if err := tenant.Authorize(from, tenant.ReadSecrets); err != nil {
		return nil, err
	}
	if err := tenant.Authorize(to, tenant.WriteSecrets); err != nil {
		return nil, err
	}
	if from.Environment.ID == to.Environment.ID {
		return nil, coffer.Errorf(coffer.EINVALID, "from and to are the same environment")
	}
	if len(items) == 0 || len(items) > MaxBatch {
		return nil, coffer.Errorf(coffer.EINVALID, "names must list 1 to %d secrets", MaxBatch)
	}
	src, err := s.readAll(ctx, from)
	if err != nil {
		return nil, err
	}
	defer wipeValues(src)
	changes := make([]Change, len(items))
	fromVersion := make(map[string]int, len(items))
	for i, it := range items {
		if err := ValidateName(it.Name); err != nil {
			return nil, err
		}
		if it.FromVersion < 1 || it.ToVersion < 0 {
			return nil, coffer.Errorf(coffer.EINVALID, "%s: from_version must be a version and to_version a version or 0", it.Name)
		}
		v, ok := src[it.Name]
		if !ok {
			return nil, VersionMismatch(it.Name, 0)
		}
		if v.version != it.FromVersion {
			return nil, VersionMismatch(it.Name, v.version)
		}
		expect := it.ToVersion
		changes[i] = Change{Op: OpPut, Name: it.Name, Value: string(v.value), Note: v.note, Expect: &expect}
		fromVersion[it.Name] = v.version
	}
	return s.apply(ctx, actor, to, changes, func(r Result) audit.Entry {
		return actor.New(audit.ActionSecretPromote, to.Tenant.ID, "secret", r.Name, to.Path()+"/"+r.Name,
			map[string]any{"from": from.Path(), "from_version": fromVersion[r.Name], "version": r.Version, "created": r.Created})
	})
}

// opened is a secret's current value, opened.
type opened struct {
	name    string
	version int
	note    string
	value   []byte
}

// readAll opens every live secret of an environment, for server-side comparison and copying.
// The caller wipes the values (wipeValues) when done.
func (s *Service) readAll(ctx context.Context, sc tenant.Scope) (map[string]opened, error) {
	out := map[string]opened{}
	opts := ListOptions{Limit: MaxBatch, WithValues: true}
	var o opener
	defer o.wipe()
	for {
		recs, _, more, err := s.page(ctx, sc, opts)
		if err != nil {
			wipeValues(out)
			return nil, err
		}
		for i := range recs {
			value, err := s.open(ctx, &o, sc, &recs[i])
			if err != nil {
				wipeValues(out)
				return nil, err
			}
			out[recs[i].Name] = opened{name: recs[i].Name, version: recs[i].Version, note: recs[i].Note, value: slices.Clone(value)}
			clear(value)
			opts.After = recs[i].Name
		}
		if len(out) > MaxDiffSecrets {
			wipeValues(out)
			return nil, coffer.Errorf(coffer.EINVALID, "environment %s has more than %d secrets: too many to compare at once", sc.Environment.Slug, MaxDiffSecrets)
		}
		if !more {
			return out, nil
		}
	}
}

func wipeValues(m map[string]opened) {
	for _, v := range m {
		clear(v.value)
	}
}
