package secrets

import (
	"context"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// checkAt refuses a time the environment has no state for: before it existed, or to come.
func checkAt(sc tenant.Scope, at time.Time, now time.Time) error {
	switch {
	case at.IsZero():
		return coffer.Errorf(coffer.EINVALID, "at must be an RFC 3339 time")
	case at.After(now):
		return coffer.Errorf(coffer.EINVALID, "at is in the future")
	case at.Before(sc.Environment.CreatedAt):
		return coffer.Errorf(coffer.EINVALID, "at is before environment %s existed (%s)", sc.Environment.Slug, sc.Environment.CreatedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// ListAt returns the environment as it was at a time: the secrets that existed then at the
// versions current then, by name. With values they are opened and the read is audited like
// any reveal; a version destroyed since cannot be shown and fails the read with EGONE.
func (s *Service) ListAt(ctx context.Context, actor audit.Actor, sc tenant.Scope, at time.Time, withValues bool) ([]Secret, error) {
	need := tenant.ViewSecrets
	if withValues {
		need = tenant.ReadSecrets
	}
	if err := tenant.Authorize(sc, need); err != nil {
		return nil, err
	}
	if err := checkAt(sc, at, time.Now()); err != nil {
		return nil, err
	}
	recs, err := s.store.StateAt(ctx, sc.Tenant.ID, sc.Environment.ID, at)
	if err != nil {
		return nil, err
	}
	out := make([]Secret, len(recs))
	var o opener
	defer o.wipe()
	revealed := make(audit.RevealedSet, 0, len(recs))
	for i := range recs {
		out[i] = recs[i].Secret
		if !withValues {
			continue
		}
		if recs[i].Destroyed {
			return nil, coffer.Errorf(coffer.EGONE, "version %d of %s, current at that time, was destroyed", recs[i].Version, recs[i].Name)
		}
		value, err := s.open(ctx, &o, sc, &recs[i])
		if err != nil {
			return nil, err
		}
		v := string(value)
		clear(value)
		out[i].Value = &v
		revealed = append(revealed, audit.Revealed{Name: recs[i].Name, Version: recs[i].Version})
	}
	if len(revealed) > 0 {
		e := actor.New(audit.ActionSecretReveal, sc.Tenant.ID, "environment", sc.Environment.ID, sc.Path(),
			map[string]any{"secrets": revealed, "at": at.UTC()})
		if err := s.reveal(ctx, e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RollbackTo puts the environment back as it was at a time, in one transaction: each secret
// that existed then gets a new version with the value it had (if its value or existence
// differs now), and each secret that did not exist then is deleted. Every change is
// compare-and-set against the state just read, so a write that lands meanwhile fails the
// rollback (EPRECONDITION) rather than being undone unseen.
func (s *Service) RollbackTo(ctx context.Context, actor audit.Actor, sc tenant.Scope, at time.Time) ([]Result, error) {
	if err := tenant.Authorize(sc, tenant.WriteSecrets); err != nil {
		return nil, err
	}
	if err := checkAt(sc, at, time.Now()); err != nil {
		return nil, err
	}
	then, err := s.store.StateAt(ctx, sc.Tenant.ID, sc.Environment.ID, at)
	if err != nil {
		return nil, err
	}
	now, err := s.readAll(ctx, sc)
	if err != nil {
		return nil, err
	}
	defer wipeValues(now)
	var o opener
	defer o.wipe()
	var changes []Change
	fromVersion := map[string]int{}
	existed := make(map[string]bool, len(then))
	for i := range then {
		rec := &then[i]
		existed[rec.Name] = true
		cur, exists := now[rec.Name]
		if exists && cur.version == rec.Version {
			continue // unchanged since
		}
		if rec.Destroyed {
			return nil, coffer.Errorf(coffer.EGONE, "version %d of %s, current at that time, was destroyed: it cannot be put back", rec.Version, rec.Name)
		}
		value, err := s.open(ctx, &o, sc, rec)
		if err != nil {
			return nil, err
		}
		expect := 0
		if exists {
			expect = cur.version
		}
		changes = append(changes, Change{Op: OpPut, Name: rec.Name, Value: string(value), Note: rec.Note, Expect: &expect})
		clear(value)
		fromVersion[rec.Name] = rec.Version
	}
	for name, cur := range now {
		if !existed[name] {
			expect := cur.version
			changes = append(changes, Change{Op: OpDelete, Name: name, Expect: &expect})
		}
	}
	if len(changes) == 0 {
		return []Result{}, nil
	}
	return s.apply(ctx, actor, sc, changes, func(r Result) audit.Entry {
		meta := map[string]any{"at": at.UTC(), "version": r.Version}
		if v, ok := fromVersion[r.Name]; ok {
			meta["from_version"] = v
		} else {
			meta["deleted"] = true
		}
		return actor.New(audit.ActionSecretRollback, sc.Tenant.ID, "secret", r.Name, sc.Path()+"/"+r.Name, meta)
	})
}
