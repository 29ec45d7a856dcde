package secrets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Record is a secret as stored: metadata and, when asked for, the sealed value.
type Record struct {
	Secret
	Ciphertext []byte
	// Destroyed says this version's ciphertext was erased (Ciphertext is empty).
	Destroyed bool
}

// Op is the kind of one change in a write.
type Op int

const (
	OpPut Op = iota
	OpDelete
	OpRestore
)

// Change is one change of a write; Value and Note apply to OpPut.
type Change struct {
	Op    Op
	Name  string
	Value string
	Note  string
	// Expect, when set, is compare-and-set: the change applies only if the secret's current
	// version is *Expect, where 0 means the secret does not exist (or is deleted). Otherwise
	// the whole write fails with EPRECONDITION and the current version, changing nothing.
	Expect *int
}

// VersionMismatch is the EPRECONDITION of a change whose Expect does not hold; current is
// the secret's version now, 0 when it does not exist or is deleted.
func VersionMismatch(name string, current int) error {
	details := map[string]any{"name": name, "current_version": current}
	if current == 0 {
		details["current_version"] = nil
		return &coffer.Error{Code: coffer.EPRECONDITION, Details: details,
			Message: fmt.Sprintf("secret %s has no current version (it does not exist or is deleted); nothing was changed", name)}
	}
	return &coffer.Error{Code: coffer.EPRECONDITION, Details: details,
		Message: fmt.Sprintf("secret %s is at version %d now; nothing was changed", name, current)}
}

// Result is what a change did: the version it wrote (OpPut) or the version it left current.
type Result struct {
	Op      Op
	Name    string
	Version int
	Created bool // the secret did not exist before
}

// Write is one all-or-nothing set of changes to an environment. Under the environment's row
// lock the store reads the current data key and asks RollNeeded whether it may seal this many
// more values; if not, it makes Roll current (or fails with ErrRollNeeded when Roll is nil, so
// the caller makes one and tries again). It calls Seal once per put with the key and version
// it settled on, and appends Audit's entry for every result (and RollAudit's for a roll) in the
// same transaction.
type Write struct {
	TenantID   string
	EnvID      string
	Author     string // user id recorded on new versions
	Changes    []Change
	Roll       *tenant.WrappedKey
	RollNeeded func(current tenant.KeyInfo, seals int64) bool
	RollAudit  func(previous tenant.KeyInfo, next tenant.WrappedKey) audit.Entry
	Seal       func(keyID, name string, version int, value string) ([]byte, error)
	Audit      func(Result) audit.Entry
}

// ErrRollNeeded is returned by Store.Apply when the current data key may not seal the write's
// values and the write brought no new key.
var ErrRollNeeded = errors.New("secrets: the environment's data key must roll first")

// ListOptions selects a page of an environment's secrets.
type ListOptions struct {
	After          string
	Limit          int
	WithValues     bool
	IncludeDeleted bool
}

// Store persists secrets. Every method is scoped by tenant and environment.
type Store interface {
	KeyStore
	// List returns one page of secrets at their latest version in one query, and the
	// environment's revision they are at (0 when the page is empty); with opts.WithValues it
	// includes the ciphertexts.
	List(ctx context.Context, tenantID, envID string, opts ListOptions) ([]Record, int64, error)
	// Get returns a secret at a version (0: latest) with its ciphertext; ENOTFOUND if the
	// secret or version does not exist.
	Get(ctx context.Context, tenantID, envID, name string, version int) (Record, error)
	Versions(ctx context.Context, tenantID, envID, name string, before, limit int) ([]Version, error)
	// StateAt returns the environment as it was at a time: each secret that existed then, at
	// the version current then, with its ciphertext, by name.
	StateAt(ctx context.Context, tenantID, envID string, at time.Time) ([]Record, error)
	// Destroy erases the ciphertexts of versions of the secret for good, keeping their
	// metadata, and appends e, in one transaction. The current version cannot be destroyed
	// (ECONFLICT); a version the secret never had is ENOTFOUND; one destroyed before is
	// left as it is. It returns the versions it destroyed now.
	Destroy(ctx context.Context, tenantID, envID, name string, versions []int, by string, at time.Time, e func(destroyed []int) audit.Entry) ([]int, error)
	Apply(ctx context.Context, w Write) ([]Result, error)
}

// Auditor makes reveal entries durable before a value leaves the server.
type Auditor interface {
	Append(ctx context.Context, entries ...audit.Entry) error
}

// KeyPolicy bounds how much one data key seals and for how long (shared/SECURITY.md).
type KeyPolicy struct {
	MaxUses int64
	MaxAge  time.Duration
}

// DefaultKeyPolicy keeps a data key well under GCM's random-nonce bound and rolls it after
// 90 days.
var DefaultKeyPolicy = KeyPolicy{MaxUses: 1 << 30, MaxAge: 90 * 24 * time.Hour}

// Service applies access rules, encryption and auditing to secrets.
type Service struct {
	store   Store
	keys    *Keyring
	auditor Auditor
	pub     coffer.Publisher
	policy  KeyPolicy
	lists   *listCache
}

// ListCacheBytes bounds the memory the listing cache may hold (ciphertexts and metadata).
const ListCacheBytes = 64 << 20

// NewService returns a Service.
func NewService(store Store, keys *Keyring, auditor Auditor, pub coffer.Publisher, policy KeyPolicy) *Service {
	return &Service{store: store, keys: keys, auditor: auditor, pub: pub, policy: policy, lists: newListCache(ListCacheBytes)}
}

// page reads a page of opts.Limit records, from the listing cache when the environment is
// unchanged since it was filled; rev is the environment's revision the page shows, and more
// reports whether another page follows.
func (s *Service) page(ctx context.Context, sc tenant.Scope, opts ListOptions) (recs []Record, rev int64, more bool, err error) {
	fetch := opts
	fetch.Limit++ // one more than the page, to learn whether another follows
	key := listKey(sc.Environment.ID, fetch)
	rev = sc.Environment.Revision
	recs, ok := s.lists.get(key, rev)
	if !ok {
		var at int64
		if recs, at, err = s.store.List(ctx, sc.Tenant.ID, sc.Environment.ID, fetch); err != nil {
			return nil, 0, false, err
		}
		// A change may have committed since the scope was read: the listing names the
		// revision it really shows. An empty one names none, and shows nothing to audit.
		if at != 0 {
			rev = at
		}
		s.lists.put(key, rev, recs)
	}
	if len(recs) > opts.Limit {
		return recs[:opts.Limit], rev, true, nil
	}
	return recs, rev, false, nil
}

// List returns a page of secrets' metadata, never values (those come only through Reveal);
// more reports whether another page follows.
func (s *Service) List(ctx context.Context, sc tenant.Scope, opts ListOptions) (out []Secret, more bool, err error) {
	opts.WithValues = false
	if err := tenant.Authorize(sc, tenant.ViewSecrets); err != nil {
		return nil, false, err
	}
	recs, _, more, err := s.page(ctx, sc, opts)
	if err != nil {
		return nil, false, err
	}
	out = make([]Secret, len(recs))
	for i := range recs {
		out[i] = recs[i].Secret
	}
	return out, more, nil
}

// Reveal opens a page of secrets and hands each, with its value, to fn. The value is valid
// only during the call and wiped after it: fn copies what it keeps. Once every value opened,
// one reveal entry naming the page (audit.RevealedPage: the environment's revision, the
// page's start and length, a digest of the names and versions) is made durable; only then
// does Reveal return nil. On an error, the caller must discard whatever fn produced.
func (s *Service) Reveal(ctx context.Context, actor audit.Actor, sc tenant.Scope, opts ListOptions, fn func(sec *Secret, value []byte)) (more bool, err error) {
	if err := tenant.Authorize(sc, tenant.ReadSecrets); err != nil {
		return false, err
	}
	opts.WithValues, opts.IncludeDeleted = true, false
	recs, rev, more, err := s.page(ctx, sc, opts)
	if err != nil {
		return false, err
	}
	revealed := make(audit.RevealedSet, len(recs))
	var o opener
	defer o.wipe()
	for i := range recs {
		value, err := s.open(ctx, &o, sc, &recs[i])
		if err != nil {
			return false, err
		}
		sec := recs[i].Secret
		fn(&sec, value)
		clear(value)
		revealed[i] = audit.Revealed{Name: recs[i].Name, Version: recs[i].Version}
	}
	if len(recs) > 0 {
		page := audit.RevealedPage{Revision: rev, After: opts.After, Count: len(recs), Digest: audit.RevealedDigest(revealed)}
		e := actor.New(audit.ActionSecretReveal, sc.Tenant.ID, "environment", sc.Environment.ID, sc.Path(), page.Metadata())
		if err := s.reveal(ctx, e); err != nil {
			return false, err
		}
	}
	return more, nil
}

// Get returns one secret with its value at a version (0: latest).
func (s *Service) Get(ctx context.Context, actor audit.Actor, sc tenant.Scope, name string, version int) (Secret, error) {
	if err := tenant.Authorize(sc, tenant.ReadSecrets); err != nil {
		return Secret{}, err
	}
	rec, err := s.readable(ctx, sc, name, version)
	if err != nil {
		return Secret{}, err
	}
	var o opener
	defer o.wipe()
	value, err := s.open(ctx, &o, sc, &rec)
	if err != nil {
		return Secret{}, err
	}
	v := string(value)
	e := actor.New(audit.ActionSecretReveal, sc.Tenant.ID, "secret", name, sc.Path()+"/"+name, map[string]any{"secrets": audit.RevealedSet{{Name: name, Version: rec.Version}}})
	if err := s.reveal(ctx, e); err != nil {
		return Secret{}, err
	}
	out := rec.Secret
	out.Value = &v
	return out, nil
}

// readable looks up a version that may be read (or rolled back to): no version of a deleted
// secret is, until it is restored, and a destroyed version never is again.
func (s *Service) readable(ctx context.Context, sc tenant.Scope, name string, version int) (Record, error) {
	rec, err := s.store.Get(ctx, sc.Tenant.ID, sc.Environment.ID, name, version)
	if err != nil {
		return Record{}, err
	}
	if rec.DeletedAt != nil {
		return Record{}, coffer.Errorf(coffer.ENOTFOUND, "secret %s is deleted: restore it to read any of its versions", name)
	}
	if rec.Destroyed {
		return Record{}, coffer.Errorf(coffer.EGONE, "version %d of secret %s was destroyed and can never be read again", rec.Version, name)
	}
	return rec, nil
}

// MaxDestroy bounds the versions one destroy names.
const MaxDestroy = 1000

// Destroy erases versions of a secret for good: project admins who may write the environment,
// never a service token. The current version cannot be destroyed (write a new one first), so a
// secret always has a readable value. Audited with the versions destroyed.
func (s *Service) Destroy(ctx context.Context, actor audit.Actor, sc tenant.Scope, name string, versions []int) ([]int, error) {
	if err := tenant.Authorize(sc, tenant.DestroySecrets); err != nil {
		return nil, err
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if len(versions) == 0 || len(versions) > MaxDestroy {
		return nil, coffer.Errorf(coffer.EINVALID, "versions must list 1 to %d versions", MaxDestroy)
	}
	vs := slices.Clone(versions)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	if vs[0] < 1 {
		return nil, coffer.Errorf(coffer.EINVALID, "versions are positive integers")
	}
	ev := coffer.Event{Type: audit.ActionSecretDestroy, TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID, EnvironmentID: sc.Environment.ID, Name: name}
	destroyed, err := s.store.Destroy(ctx, sc.Tenant.ID, sc.Environment.ID, name, vs, actor.ID, time.Now().UTC(), func(d []int) audit.Entry {
		e := actor.New(audit.ActionSecretDestroy, sc.Tenant.ID, "secret", name, sc.Path()+"/"+name, map[string]any{"versions": d})
		e.Event = &ev
		return e
	})
	if err != nil {
		return nil, err
	}
	s.pub.Publish(ctx, ev)
	return destroyed, nil
}

func (s *Service) reveal(ctx context.Context, e audit.Entry) error {
	e.Receipt = audit.ReceiptSlotFrom(ctx) // the response names this entry
	if err := s.auditor.Append(ctx, e); err != nil {
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the audit log could not record this read, so no value was returned")
	}
	return nil
}

// ErrUnknownDataKey is the cause when a ciphertext names a data key its environment does not
// have: a value moved from elsewhere, or read just before a reseal retired its old key.
var ErrUnknownDataKey = errors.New("secrets: the value names a data key its environment does not have")

// open opens rec's value. A reseal re-encrypts every version before it retires the old data
// key, so a ciphertext read just before the retirement can name a key that is gone by the time
// it is looked up: such a version is read again, once. A value that still names a missing key
// fails its integrity check as before.
func (s *Service) open(ctx context.Context, o *opener, sc tenant.Scope, rec *Record) ([]byte, error) {
	value, err := o.open(ctx, s.keys, sc, rec)
	if !errors.Is(err, ErrUnknownDataKey) {
		return value, err
	}
	again, rerr := s.store.Get(ctx, sc.Tenant.ID, sc.Environment.ID, rec.Name, rec.Version)
	if rerr != nil {
		return nil, err
	}
	return o.open(ctx, s.keys, sc, &again)
}

// opener opens the ciphertexts of one request, looking each data key up once and reusing
// its buffers: a value it returns is valid until the next open.
type opener struct {
	id      uuid.UUID
	key     *crypto.DataKey
	plain   []byte
	aad, ad []byte
}

func (o *opener) open(ctx context.Context, keys *Keyring, sc tenant.Scope, rec *Record) ([]byte, error) {
	id, err := crypto.KeyIDOf(rec.Ciphertext)
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "stored value is malformed")
	}
	if o.key == nil || o.id != id {
		k, err := keys.key(ctx, sc.Tenant.ID, sc.Project.ID, sc.Environment.ID, id)
		if err != nil {
			return nil, err
		}
		o.id, o.key = id, k
	}
	o.aad = appendAAD(o.aad[:0], sc.Tenant.ID, sc.Project.ID, sc.Environment.ID, rec.Name, rec.Version)
	o.plain, o.ad, err = o.key.OpenAppend(o.plain[:0], o.ad, rec.Ciphertext, o.aad)
	if err != nil {
		// Never the value, never the key: just where the integrity check failed.
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "a stored value failed its integrity check")
	}
	return o.plain, nil
}

// wipe clears the plaintext buffer once the request is done with it.
func (o *opener) wipe() { clear(o.plain[:cap(o.plain)]) }

// Versions lists the versions of a secret, newest first, before the given version (0: all).
func (s *Service) Versions(ctx context.Context, sc tenant.Scope, name string, before, limit int) ([]Version, error) {
	if err := tenant.Authorize(sc, tenant.ViewSecrets); err != nil {
		return nil, err
	}
	return s.store.Versions(ctx, sc.Tenant.ID, sc.Environment.ID, name, before, limit)
}

// Put writes a new version of one secret; expect is as in Change.
func (s *Service) Put(ctx context.Context, actor audit.Actor, sc tenant.Scope, name, value, note string, expect *int) (Result, error) {
	res, err := s.Apply(ctx, actor, sc, []Change{{Op: OpPut, Name: name, Value: value, Note: note, Expect: expect}})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// Delete soft-deletes a secret; its versions stay and it can be restored.
func (s *Service) Delete(ctx context.Context, actor audit.Actor, sc tenant.Scope, name string) (Result, error) {
	res, err := s.Apply(ctx, actor, sc, []Change{{Op: OpDelete, Name: name}})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// Restore undoes a soft delete.
func (s *Service) Restore(ctx context.Context, actor audit.Actor, sc tenant.Scope, name string) (Result, error) {
	res, err := s.Apply(ctx, actor, sc, []Change{{Op: OpRestore, Name: name}})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// Rollback writes a new version holding the value of an earlier one.
func (s *Service) Rollback(ctx context.Context, actor audit.Actor, sc tenant.Scope, name string, version int) (Result, error) {
	if err := tenant.Authorize(sc, tenant.WriteSecrets); err != nil {
		return Result{}, err
	}
	if version < 1 {
		return Result{}, coffer.Errorf(coffer.EINVALID, "version must be a positive integer")
	}
	rec, err := s.readable(ctx, sc, name, version)
	if err != nil {
		return Result{}, err
	}
	var o opener
	defer o.wipe()
	value, err := s.open(ctx, &o, sc, &rec)
	if err != nil {
		return Result{}, err
	}
	res, err := s.apply(ctx, actor, sc, []Change{{Op: OpPut, Name: name, Value: string(value), Note: rec.Note}}, func(r Result) audit.Entry {
		return actor.New(audit.ActionSecretRollback, sc.Tenant.ID, "secret", name, sc.Path()+"/"+name,
			map[string]any{"from_version": version, "version": r.Version})
	})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// Apply validates and applies changes all or nothing.
func (s *Service) Apply(ctx context.Context, actor audit.Actor, sc tenant.Scope, changes []Change) ([]Result, error) {
	return s.apply(ctx, actor, sc, changes, func(r Result) audit.Entry {
		action := map[Op]string{OpPut: audit.ActionSecretWrite, OpDelete: audit.ActionSecretDelete, OpRestore: audit.ActionSecretRestore}[r.Op]
		return actor.New(action, sc.Tenant.ID, "secret", r.Name, sc.Path()+"/"+r.Name, map[string]any{"version": r.Version, "created": r.Created})
	})
}

func (s *Service) apply(ctx context.Context, actor audit.Actor, sc tenant.Scope, changes []Change, entry func(Result) audit.Entry) ([]Result, error) {
	if err := tenant.Authorize(sc, tenant.WriteSecrets); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, coffer.Errorf(coffer.EINVALID, "no changes given")
	}
	if len(changes) > MaxBatch {
		return nil, coffer.Errorf(coffer.EINVALID, "at most %d changes per request", MaxBatch)
	}
	seen := make(map[string]bool, len(changes))
	puts := int64(0)
	for _, c := range changes {
		if err := ValidateName(c.Name); err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, coffer.Errorf(coffer.EINVALID, "secret %s appears more than once", c.Name)
		}
		seen[c.Name] = true
		if c.Expect != nil && *c.Expect < 0 {
			return nil, coffer.Errorf(coffer.EINVALID, "the expected version of %s must be 0 (absent) or a version", c.Name)
		}
		if c.Op == OpPut {
			if err := ValidateValue(c.Value); err != nil {
				return nil, err
			}
			if err := ValidateNote(c.Note); err != nil {
				return nil, err
			}
			puts++
		}
	}
	env := *sc.Environment
	// Fetch the sealing key before the transaction, so that the common case calls no key
	// service while holding the environment's lock.
	var cur *crypto.DataKey
	if puts > 0 && !s.mustRoll(env.Key, puts) {
		var err error
		if cur, err = s.keys.keyByID(ctx, sc.Tenant.ID, sc.Project.ID, env.ID, env.Key.ID); err != nil {
			return nil, err
		}
	}
	// Each change's entry carries its event, stored with it.
	withEvent := func(r Result) audit.Entry {
		e := entry(r)
		e.Event = &coffer.Event{Type: e.Action, TenantID: sc.Tenant.ID, ProjectID: sc.Project.ID, EnvironmentID: env.ID, Name: r.Name, Version: r.Version}
		return e
	}
	w := Write{
		TenantID:   sc.Tenant.ID,
		EnvID:      env.ID,
		Author:     actor.ID,
		Changes:    changes,
		RollNeeded: s.mustRoll,
		RollAudit: func(prev tenant.KeyInfo, next tenant.WrappedKey) audit.Entry {
			return actor.New(audit.ActionKeyRoll, sc.Tenant.ID, "environment", env.ID, sc.Path(),
				map[string]any{"previous_key": prev.ID, "key": next.ID, "kek": next.KEKID, "previous_uses": prev.Uses})
		},
		Seal: func(keyID, name string, version int, value string) ([]byte, error) {
			key := cur
			if key == nil || key.ID().String() != keyID {
				var err error
				if key, err = s.keys.keyByID(ctx, sc.Tenant.ID, sc.Project.ID, env.ID, keyID); err != nil {
					return nil, err
				}
			}
			return key.Seal([]byte(value), AAD(sc.Tenant.ID, sc.Project.ID, env.ID, name, version))
		},
		Audit: withEvent,
	}
	if puts > 0 && cur == nil {
		if err := s.prepareRoll(ctx, sc, &w); err != nil {
			return nil, err
		}
	}
	results, err := s.store.Apply(ctx, w)
	if errors.Is(err, ErrRollNeeded) {
		// Another writer used the key up between our look at it and our lock: roll now.
		if err := s.prepareRoll(ctx, sc, &w); err != nil {
			return nil, err
		}
		results, err = s.store.Apply(ctx, w)
	}
	if err != nil {
		return nil, err
	}
	events := make([]coffer.Event, len(results))
	for i, r := range results {
		events[i] = *withEvent(r).Event
	}
	s.pub.Publish(ctx, events...)
	return results, nil
}

// prepareRoll makes the new data key a write brings in case its environment's current key is
// used up. The key goes into the cache at once: it was made here and need not be unwrapped.
// If the store finds that another writer rolled first, the new key is simply never stored.
func (s *Service) prepareRoll(ctx context.Context, sc tenant.Scope, w *Write) error {
	wk, dk, err := s.keys.newKey(ctx, sc.Tenant.ID, sc.Project.ID, sc.Environment.ID)
	if err != nil {
		return err
	}
	s.keys.cache.Add(sc.Environment.ID, dk)
	w.Roll = &wk
	return nil
}

func (s *Service) mustRoll(k tenant.KeyInfo, n int64) bool {
	return k.Uses+n > s.policy.MaxUses || (s.policy.MaxAge > 0 && time.Since(k.CreatedAt) > s.policy.MaxAge)
}
