package secrets

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// EnvironmentKey is the key state of one environment, as a tenant owner sees it.
type EnvironmentKey struct {
	Project     string // slugs
	Environment string
	KeyID       string // the current data key
	KEKID       string // the KEK it is wrapped under
	CreatedAt   time.Time
	Seals       int64 // values sealed by the current data key
	Keys        int   // data keys the environment holds (older ones until a reseal retires them)
	Stale       int   // data keys not yet under the tenant's KEK (until a rewrap moves them)
}

// TenantKeys is a tenant's key status.
type TenantKeys struct {
	// TenantKEK is the tenant's own KEK, "" when it uses the platform's.
	TenantKEK    string
	Environments []EnvironmentKey
	Jobs         []Job // running jobs
}

// KeyAdminStore holds what tenant key administration reads and changes.
type KeyAdminStore interface {
	TenantKeys(ctx context.Context, tenantID, platformKEK string) (TenantKeys, error)
	// SetTenantKEK sets the tenant's KEK and creates the rewrap job in one transaction.
	SetTenantKEK(ctx context.Context, tenantID, kekID string, e audit.Entry, job Job, jobEntry audit.Entry) error
	// ResolveScope finds a project (and environment) of the tenant by slugs; ENOTFOUND if absent.
	ResolveScope(ctx context.Context, tenantID, projectSlug, envSlug string) (tenant.Scope, error)
}

// KeyAdmin lets tenant owners see their keys, bring their own KMS key and rotate. Only owners:
// keys decide who can ever read the tenant's data.
type KeyAdmin struct {
	store KeyAdminStore
	keys  *Keyring
	rot   *Rotator
}

// NewKeyAdmin returns a KeyAdmin.
func NewKeyAdmin(store KeyAdminStore, keys *Keyring, rot *Rotator) *KeyAdmin {
	return &KeyAdmin{store: store, keys: keys, rot: rot}
}

func ownerOnly(sc tenant.Scope) error { return tenant.Authorize(sc, tenant.ManageKeys) }

// Status returns the tenant's key status.
func (a *KeyAdmin) Status(ctx context.Context, sc tenant.Scope) (TenantKeys, error) {
	if err := ownerOnly(sc); err != nil {
		return TenantKeys{}, err
	}
	return a.store.TenantKeys(ctx, sc.Tenant.ID, a.keys.keks.Current().KeyID())
}

// SetTenantKEK makes the tenant's own KMS key the one its data keys are wrapped under: new keys
// at once, existing ones by the rewrap job it starts. The key must be usable now: a test wrap
// and unwrap under the tenant's context proves Coffer has access before anything depends on it.
func (a *KeyAdmin) SetTenantKEK(ctx context.Context, actor audit.Actor, sc tenant.Scope, keyID string) (Job, error) {
	if err := ownerOnly(sc); err != nil {
		return Job{}, err
	}
	keyID = strings.TrimSpace(keyID)
	if !strings.HasPrefix(keyID, "arn:") || !strings.Contains(keyID, ":key/") || len(keyID) > 2048 {
		return Job{}, coffer.Errorf(coffer.EINVALID, "key_id must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>)")
	}
	if _, platform := a.keys.keks.Loaded(keyID); platform {
		// The tenant would hold the power to disable the instance's own key.
		return Job{}, coffer.Errorf(coffer.EINVALID, "that key is one of the instance's key-encryption keys; use a key of your own")
	}
	w, ok := a.keys.keks.Remote(keyID)
	if !ok {
		return Job{}, coffer.Errorf(coffer.ECONFLICT, "this instance has no KMS configured, so it cannot use a tenant's own key")
	}
	if err := proveKey(ctx, w, sc.Tenant.ID); err != nil {
		return Job{}, err
	}
	e := actor.New(audit.ActionTenantKEKSet, sc.Tenant.ID, "tenant", sc.Tenant.ID, sc.Tenant.Slug, map[string]any{"kek": keyID})
	j, je := a.rot.rewrapJob(actor, sc.Tenant.ID, keyID)
	if err := a.store.SetTenantKEK(ctx, sc.Tenant.ID, keyID, e, j, je); err != nil {
		return Job{}, err
	}
	a.rot.wakeUp()
	return a.rot.Job(ctx, sc.Tenant.ID, j.ID)
}

// keyOwnerCanFix lists the reasons a key is unusable that its owner fixes in KMS (422);
// anything else (throttling, outage) is the key service being unavailable (503).
var keyOwnerCanFix = map[string]bool{
	"access denied": true, "disabled": true, "not found": true,
	"pending deletion or invalid state": true, "not a symmetric encryption key": true,
}

// proveKey wraps and unwraps a throwaway key under w, bound to the tenant.
func proveKey(ctx context.Context, w crypto.KeyWrapper, tenantID string) error {
	m, err := crypto.RandomKey()
	if err != nil {
		return err
	}
	defer clear(m)
	ec := crypto.EncryptionContext{"tenant": tenantID, "purpose": "coffer key check"}
	blob, err := w.WrapKey(ctx, m, ec)
	if err == nil {
		var back []byte
		back, err = w.UnwrapKey(ctx, w.KeyID(), blob, ec)
		clear(back)
	}
	var ke *crypto.KeyError
	if errors.As(err, &ke) && (errors.Is(err, crypto.ErrKeyIntegrity) || keyOwnerCanFix[ke.Reason]) {
		return coffer.Wrap(coffer.EINVALID, err, "Coffer cannot use this key ("+ke.Reason+
			"): grant it Encrypt, Decrypt and GenerateDataKey on the key, and check the key is enabled")
	}
	if err != nil {
		return keyFailure(err, true, "the key was not set")
	}
	return nil
}

// Rotate starts a roll-and-reseal job for the tenant, or one project or environment of it
// (named by slugs).
func (a *KeyAdmin) Rotate(ctx context.Context, actor audit.Actor, sc tenant.Scope, projectSlug, envSlug string) (Job, error) {
	if err := ownerOnly(sc); err != nil {
		return Job{}, err
	}
	if envSlug != "" && projectSlug == "" {
		return Job{}, coffer.Errorf(coffer.EINVALID, "an environment is named within a project: give project too")
	}
	if projectSlug != "" {
		resolved, err := a.store.ResolveScope(ctx, sc.Tenant.ID, projectSlug, envSlug)
		if err != nil {
			return Job{}, err
		}
		resolved.Tenant, resolved.Role = sc.Tenant, sc.Role
		sc = resolved
	}
	return a.rot.StartReseal(ctx, actor, sc)
}

// Job returns one of the tenant's key jobs.
func (a *KeyAdmin) Job(ctx context.Context, sc tenant.Scope, id string) (Job, error) {
	if err := ownerOnly(sc); err != nil {
		return Job{}, err
	}
	return a.rot.Job(ctx, sc.Tenant.ID, id)
}
