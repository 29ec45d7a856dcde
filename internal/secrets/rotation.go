package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// Rotation job kinds.
const (
	// JobRewrap rewraps data keys under another key-encryption key; values are untouched.
	JobRewrap = "rewrap"
	// JobReseal gives each environment in scope a new data key and re-encrypts every stored
	// version under it, then retires the old keys.
	JobReseal = "reseal"
)

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// Job is a rotation job. Its progress (Cursor, Done) is saved in the same transaction as each
// batch of work, so a job stopped at any point, even by kill -9, resumes after the last batch
// that committed and never does an item twice.
type Job struct {
	ID            string
	TenantID      string // "" for a platform-wide rewrap
	Kind          string
	ProjectID     string // scope of a reseal: tenant (both empty), project, or environment
	EnvironmentID string
	TargetKEK     string // the KEK a rewrap moves data keys to
	State         string
	Cursor        string
	Done, Total   int64
	Error         string
	CreatedBy     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	FinishedAt    *time.Time
}

// WrappedRef is a stored data key with the ids its encryption context names.
type WrappedRef struct {
	TenantID, ProjectID, EnvironmentID string
	Key                                tenant.WrappedKey
}

// EnvRef names an environment a reseal job visits.
type EnvRef struct {
	TenantID, ProjectID, ID, Path string
}

// SealedVersion is one stored version to re-encrypt.
type SealedVersion struct {
	SecretID   string
	Name       string
	Version    int
	Ciphertext []byte
	// Latest says the secret row keeps a copy of this version's ciphertext, to rewrite too.
	Latest bool
}

// JobStore persists rotation jobs and does their batches, each in one transaction. Every
// batch method checks that owner still holds the job's lease and extends it to until.
type JobStore interface {
	CreateJob(ctx context.Context, j Job, e audit.Entry) error
	Job(ctx context.Context, tenantID, id string) (Job, error)
	// ClaimJob takes the lease of the oldest running job whose lease has lapsed.
	ClaimJob(ctx context.Context, owner string, until time.Time) (Job, bool, error)
	FinishJob(ctx context.Context, j Job, owner string, e audit.Entry) error

	// RewrapBatch returns up to limit data keys in the job's scope, after the cursor, not
	// wrapped under the target.
	RewrapBatch(ctx context.Context, j Job, limit int) ([]WrappedRef, error)
	// SaveRewrap replaces each key's wrapped form (only where it is still wrapped as read).
	SaveRewrap(ctx context.Context, j Job, owner string, until time.Time, keys []tenant.WrappedKey, cursor string) error
	// RewrapPlatformKeys rewraps the platform data keys with fn, all in one transaction.
	RewrapPlatformKeys(ctx context.Context, target string, fn func(tenant.WrappedKey) (tenant.WrappedKey, error)) error
	// RetireKEKs forgets platform KEKs and tenant KEKs that no longer wrap any key.
	RetireKEKs(ctx context.Context, keep string) error

	// JobEnvironments lists the environments of a reseal's scope after the given id.
	JobEnvironments(ctx context.Context, j Job, afterID string, limit int) ([]EnvRef, error)
	// RollForJob makes key the environment's current data key and saves the cursor.
	RollForJob(ctx context.Context, j Job, owner string, until time.Time, env EnvRef, key tenant.WrappedKey, cursor string, e audit.Entry) error
	// ResealBatch returns up to limit versions of the environment after (secretID, version)
	// that are not sealed under keyID.
	ResealBatch(ctx context.Context, env EnvRef, keyID uuid.UUID, afterSecret string, afterVersion, limit int) ([]SealedVersion, error)
	// SaveReseal stores re-encrypted versions (and the secrets' latest copies), counts their
	// seals on keyID and saves the cursor and progress.
	SaveReseal(ctx context.Context, j Job, owner string, until time.Time, env EnvRef, keyID string, batch []SealedVersion, cursor string) error
	// AgedEnvironments lists environments whose current data key was made before the given
	// time and that no running reseal job covers.
	AgedEnvironments(ctx context.Context, before time.Time, limit int) ([]EnvRef, error)
	// RetireKeys deletes the environment's data keys other than keep, after checking that no
	// stored value names them; it returns the ids deleted.
	RetireKeys(ctx context.Context, env EnvRef, keep string, e func(retired []string) audit.Entry) ([]string, error)
}

// Progress is told about a job's progress after every batch.
type Progress func(j Job)

// Rotator runs rotation jobs. Any number of processes may run one: a lease makes sure only
// one works on a job at a time, and a process that dies leaves a lease that lapses.
type Rotator struct {
	store JobStore
	keys  *Keyring
	log   *slog.Logger
	owner string
	batch int
	lease time.Duration
	// maxAge rolls (and reseals) an environment whose data key is older, written to or not.
	maxAge time.Duration
	// wake tells Run a job was created here, so it need not wait for its next poll.
	wake chan struct{}
}

// RotatorOptions tune a Rotator; zero values take the defaults.
type RotatorOptions struct {
	Batch int           // items per transaction, default 1000
	Lease time.Duration // how long a claim lasts without progress, default 30s
	// MaxKeyAge, when positive, makes Run start a reseal of every environment whose data key
	// is older, so idle environments roll by age too (writes roll by age on their own).
	MaxKeyAge time.Duration
}

// NewRotator returns a Rotator whose leases carry a random owner id.
func NewRotator(store JobStore, keys *Keyring, log *slog.Logger, opts RotatorOptions) *Rotator {
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	return &Rotator{store: store, keys: keys, log: log, owner: uuid.NewString(), batch: opts.Batch, lease: opts.Lease, maxAge: opts.MaxKeyAge, wake: make(chan struct{}, 1)}
}

// StartRewrap creates a job that rewraps the data keys of tenantID ("" for every key under a
// platform KEK, and the platform keys) under target.
func (r *Rotator) StartRewrap(ctx context.Context, actor audit.Actor, tenantID, target string) (Job, error) {
	j, e := r.rewrapJob(actor, tenantID, target)
	return r.create(ctx, j, e)
}

// rewrapJob makes a rewrap job and its audit entry, not yet stored.
func (r *Rotator) rewrapJob(actor audit.Actor, tenantID, target string) (Job, audit.Entry) {
	j := r.newJob(actor, tenantID, JobRewrap)
	j.TargetKEK = target
	return j, actor.New(audit.ActionKeyJobStart, tenantID, "key_job", j.ID, "rewrap to "+target,
		map[string]any{"kind": j.Kind, "target_kek": target})
}

// wakeUp tells Run a job was created, so it need not wait for its next poll.
func (r *Rotator) wakeUp() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// StartReseal creates a job that rolls and reseals the environments of a tenant, or of one of
// its projects or environments.
func (r *Rotator) StartReseal(ctx context.Context, actor audit.Actor, sc tenant.Scope) (Job, error) {
	j := r.newJob(actor, sc.Tenant.ID, JobReseal)
	if sc.Project != nil {
		j.ProjectID = sc.Project.ID
	}
	if sc.Environment != nil {
		j.EnvironmentID = sc.Environment.ID
	}
	return r.create(ctx, j, actor.New(audit.ActionKeyJobStart, sc.Tenant.ID, "key_job", j.ID, sc.Path(),
		map[string]any{"kind": j.Kind}))
}

func (r *Rotator) create(ctx context.Context, j Job, e audit.Entry) (Job, error) {
	if err := r.store.CreateJob(ctx, j, e); err != nil {
		return Job{}, err
	}
	r.wakeUp()
	return r.store.Job(ctx, j.TenantID, j.ID)
}

func (r *Rotator) newJob(actor audit.Actor, tenantID, kind string) Job {
	now := time.Now().UTC()
	return Job{ID: uuid.NewString(), TenantID: tenantID, Kind: kind, State: JobRunning, CreatedBy: actor.ID, CreatedAt: now, UpdatedAt: now}
}

// Job returns a job of a tenant ("" for platform jobs).
func (r *Rotator) Job(ctx context.Context, tenantID, id string) (Job, error) {
	return r.store.Job(ctx, tenantID, id)
}

// Run works on jobs until ctx ends: it claims any job whose lease has lapsed (new, or left by a
// process that stopped) and runs it; between jobs it polls every interval.
func (r *Rotator) Run(ctx context.Context, interval time.Duration, progress Progress) {
	var swept time.Time
	for {
		if r.maxAge > 0 && time.Since(swept) > time.Hour {
			if err := r.SweepAged(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("key jobs: cannot look for aged data keys", "err", err)
			}
			swept = time.Now()
		}
		for {
			j, ok, err := r.store.ClaimJob(ctx, r.owner, time.Now().Add(r.lease))
			if err != nil || !ok {
				if err != nil && ctx.Err() == nil {
					r.log.Warn("key jobs: cannot claim a job", "err", err)
				}
				break
			}
			if err := r.run(ctx, j, progress); err != nil && ctx.Err() == nil {
				r.log.Error("key job stopped", "job", j.ID, "kind", j.Kind, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-time.After(interval):
		}
	}
}

// SweepAged starts a reseal job for every environment whose data key is older than the
// rotator's MaxKeyAge.
func (r *Rotator) SweepAged(ctx context.Context) error {
	envs, err := r.store.AgedEnvironments(ctx, time.Now().Add(-r.maxAge), 100)
	if err != nil {
		return err
	}
	for _, env := range envs {
		sc := tenant.Scope{Tenant: tenant.Tenant{ID: env.TenantID}, Project: &tenant.Project{ID: env.ProjectID}, Environment: &tenant.Environment{ID: env.ID}}
		j := r.newJob(audit.System, env.TenantID, JobReseal)
		j.ProjectID, j.EnvironmentID = env.ProjectID, env.ID
		if _, err := r.create(ctx, j, audit.System.New(audit.ActionKeyJobStart, sc.Tenant.ID, "key_job", j.ID, env.Path,
			map[string]any{"kind": j.Kind, "reason": "data key age"})); err != nil {
			return err
		}
	}
	return nil
}

// RunJob claims one job and runs it to the end in the calling goroutine; it is how the server's
// key subcommands run jobs in the foreground. A job another live process holds is refused.
func (r *Rotator) RunJob(ctx context.Context, j Job, progress Progress) (Job, error) {
	for {
		claimed, ok, err := r.store.ClaimJob(ctx, r.owner, time.Now().Add(r.lease))
		if err != nil {
			return j, err
		}
		if !ok {
			return r.store.Job(ctx, j.TenantID, j.ID)
		}
		err = r.run(ctx, claimed, progress)
		if claimed.ID == j.ID {
			if err != nil {
				return claimed, err
			}
			return r.store.Job(ctx, j.TenantID, j.ID)
		}
		if err != nil {
			return j, err
		}
	}
}

func (r *Rotator) run(ctx context.Context, j Job, progress Progress) error {
	r.log.Info("key job running", "job", j.ID, "kind", j.Kind, "done", j.Done)
	var err error
	switch j.Kind {
	case JobRewrap:
		err = r.rewrap(ctx, &j, progress)
	case JobReseal:
		err = r.reseal(ctx, &j, progress)
	default:
		err = fmt.Errorf("unknown job kind %q", j.Kind)
	}
	if err != nil {
		if ctx.Err() != nil || coffer.ErrorCode(err) == coffer.EUNAVAILABLE {
			// Stopped or a dependency is down: leave the job running, the lease lapses and
			// the job resumes from its checkpoint.
			return err
		}
		j.State, j.Error = JobFailed, coffer.ErrorMessage(err)
	} else {
		j.State = JobDone
	}
	if ferr := r.store.FinishJob(ctx, j, r.owner, audit.System.New(audit.ActionKeyJobFinish, j.TenantID, "key_job", j.ID, j.Kind,
		map[string]any{"kind": j.Kind, "state": j.State, "done": j.Done})); ferr != nil {
		return ferr
	}
	if progress != nil {
		progress(j)
	}
	r.log.Info("key job finished", "job", j.ID, "kind", j.Kind, "state", j.State, "done", j.Done)
	return err
}

// rewrap moves every data key in the job's scope under the target KEK in batches.
func (r *Rotator) rewrap(ctx context.Context, j *Job, progress Progress) error {
	target, tenantOwned, err := r.rewrapTarget(j)
	if err != nil {
		return err
	}
	for {
		refs, err := r.store.RewrapBatch(ctx, *j, r.batch)
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			break
		}
		out := make([]tenant.WrappedKey, len(refs))
		for i, ref := range refs {
			ec := EncryptionContext(ref.TenantID, ref.ProjectID, ref.EnvironmentID)
			nk, err := r.rewrapOne(ctx, ref.Key, target, tenantOwned, ec)
			if err != nil {
				return err
			}
			out[i] = nk
		}
		cursor := refs[len(refs)-1].Key.ID
		if err := r.store.SaveRewrap(ctx, *j, r.owner, time.Now().Add(r.lease), out, cursor); err != nil {
			return err
		}
		j.Cursor, j.Done = cursor, j.Done+int64(len(refs))
		if progress != nil {
			progress(*j)
		}
	}
	if j.TenantID == "" {
		err := r.store.RewrapPlatformKeys(ctx, target.KeyID(), func(wk tenant.WrappedKey) (tenant.WrappedKey, error) {
			return r.rewrapOne(ctx, wk, target, false, platformContext)
		})
		if err != nil {
			return err
		}
	}
	return r.store.RetireKEKs(ctx, r.keys.keks.Current().KeyID())
}

func (r *Rotator) rewrapTarget(j *Job) (crypto.KeyWrapper, bool, error) {
	keks := r.keys.keks
	if w, ok := keks.Loaded(j.TargetKEK); ok {
		return w, false, nil
	}
	if j.TenantID != "" {
		if w, ok := keks.Remote(j.TargetKEK); ok {
			return w, true, nil
		}
	}
	return nil, false, coffer.Errorf(coffer.EUNAVAILABLE, "the rewrap target key %s is not configured on this server", j.TargetKEK)
}

// rewrapOne unwraps wk with the KEK it names and wraps the same material under target.
func (r *Rotator) rewrapOne(ctx context.Context, wk tenant.WrappedKey, target crypto.KeyWrapper, tenantOwned bool, ec crypto.EncryptionContext) (tenant.WrappedKey, error) {
	w, err := r.keys.wrapperFor(wk)
	if err != nil {
		return tenant.WrappedKey{}, keyFailure(err, wk.TenantKEK, "the rewrap stopped")
	}
	material, err := w.UnwrapKey(ctx, wk.KEKID, wk.Wrapped, ec)
	if err != nil {
		return tenant.WrappedKey{}, keyFailure(err, wk.TenantKEK, "the rewrap stopped")
	}
	defer clear(material)
	blob, err := target.WrapKey(ctx, material, ec)
	if err != nil {
		return tenant.WrappedKey{}, keyFailure(err, tenantOwned, "the rewrap stopped")
	}
	nk := wk
	nk.KEKID, nk.Wrapped, nk.TenantKEK = target.KeyID(), blob, tenantOwned
	// The store replaces the row only if it still holds what was read.
	nk.PreviousKEKID = wk.KEKID
	return nk, nil
}

// resealCursor is a reseal job's checkpoint: the environment being resealed, its new key, and
// the last version re-encrypted.
type resealCursor struct {
	Env     string `json:"env"`
	Key     string `json:"key,omitempty"`
	Secret  string `json:"secret,omitempty"`
	Version int    `json:"version,omitempty"`
	Retired bool   `json:"retired,omitempty"`
}

func (c resealCursor) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// reseal visits each environment of the scope in id order: roll, re-encrypt, retire.
func (r *Rotator) reseal(ctx context.Context, j *Job, progress Progress) error {
	var cur resealCursor
	if j.Cursor != "" {
		if err := json.Unmarshal([]byte(j.Cursor), &cur); err != nil {
			return fmt.Errorf("job %s: bad cursor: %w", j.ID, err)
		}
	}
	after := ""
	if cur.Env != "" {
		after = cur.Env
		envs, err := r.store.JobEnvironments(ctx, *j, "", 0)
		if err != nil {
			return err
		}
		for _, env := range envs {
			if env.ID == cur.Env {
				if err := r.resealEnv(ctx, j, env, cur, progress); err != nil {
					return err
				}
				break
			}
		}
	}
	for {
		envs, err := r.store.JobEnvironments(ctx, *j, after, 100)
		if err != nil {
			return err
		}
		if len(envs) == 0 {
			return nil
		}
		for _, env := range envs {
			if err := r.resealEnv(ctx, j, env, resealCursor{Env: env.ID}, progress); err != nil {
				return err
			}
			after = env.ID
		}
	}
}

func (r *Rotator) resealEnv(ctx context.Context, j *Job, env EnvRef, cur resealCursor, progress Progress) error {
	if cur.Retired {
		return nil
	}
	if cur.Key == "" {
		wk, dk, err := r.keys.newKey(ctx, env.TenantID, env.ProjectID, env.ID)
		if err != nil {
			return err
		}
		cur.Key = wk.ID
		e := audit.System.New(audit.ActionKeyRoll, env.TenantID, "environment", env.ID, env.Path,
			map[string]any{"key": wk.ID, "kek": wk.KEKID, "job": j.ID})
		if err := r.store.RollForJob(ctx, *j, r.owner, time.Now().Add(r.lease), env, wk, cur.String(), e); err != nil {
			dk.Wipe()
			return err
		}
		r.keys.cache.Add(env.ID, dk)
		j.Cursor = cur.String()
	}
	newKey, err := r.keys.keyByID(ctx, env.TenantID, env.ProjectID, env.ID, cur.Key)
	if err != nil {
		return err
	}
	newID := newKey.ID()
	var (
		old   *crypto.DataKey
		plain []byte
		aad   []byte
		ad    []byte
	)
	defer func() { clear(plain[:cap(plain)]) }()
	// One batch is saved while the next is read and re-encrypted, on another connection.
	// Saves stay in order (each waits for the one before), so the committed checkpoint always
	// covers exactly the batches committed before it.
	var saving *pendingSave
	finish := func() error {
		if saving == nil {
			return nil
		}
		err := <-saving.done
		if err == nil {
			j.Cursor, j.Done = saving.cursor, j.Done+int64(saving.n)
			if progress != nil {
				progress(*j)
			}
		}
		saving = nil
		return err
	}
	defer func() { _ = finish() }()
	for {
		batch, err := r.store.ResealBatch(ctx, env, newID, cur.Secret, cur.Version, r.batch)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		for i := range batch {
			v := &batch[i]
			kid, err := crypto.KeyIDOf(v.Ciphertext)
			if err != nil {
				return coffer.Wrap(coffer.EINTERNAL, err, "a stored value is malformed")
			}
			if old == nil || old.ID() != kid {
				if old, err = r.keys.key(ctx, env.TenantID, env.ProjectID, env.ID, kid); err != nil {
					return err
				}
			}
			aad = appendAAD(aad[:0], env.TenantID, env.ProjectID, env.ID, v.Name, v.Version)
			plain, ad, err = old.OpenAppend(plain[:0], ad, v.Ciphertext, aad)
			if err != nil {
				return coffer.Wrap(coffer.EINTERNAL, err, "a stored value failed its integrity check during reseal")
			}
			if v.Ciphertext, err = newKey.Seal(plain, aad); err != nil {
				return err
			}
			clear(plain)
		}
		last := batch[len(batch)-1]
		cur.Secret, cur.Version = last.SecretID, last.Version
		if err := finish(); err != nil {
			return err
		}
		saving = &pendingSave{n: len(batch), cursor: cur.String(), done: make(chan error, 1)}
		go func(job Job, keyID string, ps *pendingSave) {
			ps.done <- r.store.SaveReseal(ctx, job, r.owner, time.Now().Add(r.lease), env, keyID, batch, ps.cursor)
		}(*j, cur.Key, saving)
	}
	if err := finish(); err != nil {
		return err
	}
	retired, err := r.store.RetireKeys(ctx, env, cur.Key, func(ids []string) audit.Entry {
		return audit.System.New(audit.ActionKeyRetire, env.TenantID, "environment", env.ID, env.Path,
			map[string]any{"retired_keys": ids, "key": cur.Key, "job": j.ID})
	})
	if err != nil {
		return err
	}
	for _, id := range retired {
		if kid, err := uuid.Parse(id); err == nil {
			r.keys.cache.Evict(env.ID, kid)
		}
	}
	return nil
}

// pendingSave is a reseal batch being saved in the background.
type pendingSave struct {
	n      int
	cursor string
	done   chan error
}

// ErrLeaseLost is returned by a batch when another process has taken the job over.
var ErrLeaseLost = errors.New("secrets: the job's lease was taken over by another process")
