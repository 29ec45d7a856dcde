package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// KeyStore loads wrapped data keys and the key-encryption key a tenant chose.
type KeyStore interface {
	// DataKey returns a data key of one environment; ENOTFOUND-free: a missing key is an
	// internal error, because a stored value named it.
	DataKey(ctx context.Context, tenantID, envID, keyID string) (tenant.WrappedKey, error)
	// TenantKEK returns the tenant's own KEK id, or "" when the tenant uses the platform's.
	TenantKEK(ctx context.Context, tenantID string) (string, error)
}

// Keyring makes and opens environment data keys: it wraps new keys under the right
// key-encryption key (the tenant's own, else the platform's) and keeps unwrapped keys in a
// bounded cache so that a read unwraps at most once.
type Keyring struct {
	keks  *crypto.KEKSet
	cache *crypto.KeyCache
	store KeyStore
}

// NewKeyring returns a Keyring.
func NewKeyring(keks *crypto.KEKSet, cache *crypto.KeyCache, store KeyStore) *Keyring {
	return &Keyring{keks: keks, cache: cache, store: store}
}

// KEKs returns the key-encryption keys the keyring uses.
func (k *Keyring) KEKs() *crypto.KEKSet { return k.keks }

// Cache returns the data-key cache.
func (k *Keyring) Cache() *crypto.KeyCache { return k.cache }

// Forget drops the cached keys of deleted environments from this server's memory (other
// replicas drop theirs when the cache's age bound passes).
func (k *Keyring) Forget(envIDs ...string) {
	for _, id := range envIDs {
		k.cache.EvictOwner(id)
	}
}

// EncryptionContext names the environment a data key belongs to; the wrapper authenticates it,
// so a wrapped key moved to another environment cannot be unwrapped.
func EncryptionContext(tenantID, projectID, envID string) crypto.EncryptionContext {
	return crypto.EncryptionContext{"tenant": tenantID, "project": projectID, "environment": envID}
}

// NewEnvironmentKey creates a fresh data key for an environment and returns it wrapped.
func (k *Keyring) NewEnvironmentKey(ctx context.Context, tenantID, projectID, envID string) (tenant.WrappedKey, error) {
	wk, dk, err := k.newKey(ctx, tenantID, projectID, envID)
	if err != nil {
		return tenant.WrappedKey{}, err
	}
	dk.Wipe()
	return wk, nil
}

// newKey makes a data key for an environment under the tenant's KEK and returns it both
// wrapped and in clear.
func (k *Keyring) newKey(ctx context.Context, tenantID, projectID, envID string) (tenant.WrappedKey, *crypto.DataKey, error) {
	w, tenantOwned, err := k.tenantWrapper(ctx, tenantID)
	if err != nil {
		return tenant.WrappedKey{}, nil, err
	}
	ec := EncryptionContext(tenantID, projectID, envID)
	var (
		dk      *crypto.DataKey
		wrapped []byte
	)
	if g, ok := w.(crypto.DataKeyGenerator); ok {
		material, blob, err := g.GenerateDataKey(ctx, ec)
		if err != nil {
			return tenant.WrappedKey{}, nil, keyFailure(err, tenantOwned, "no data key was made")
		}
		dk, err = crypto.DataKeyFrom(uuid.New(), material)
		clear(material)
		if err != nil {
			return tenant.WrappedKey{}, nil, err
		}
		wrapped = blob
	} else {
		if dk, err = crypto.NewDataKey(); err != nil {
			return tenant.WrappedKey{}, nil, err
		}
		material := dk.Material()
		wrapped, err = w.WrapKey(ctx, material, ec)
		clear(material)
		if err != nil {
			dk.Wipe()
			return tenant.WrappedKey{}, nil, keyFailure(err, tenantOwned, "no data key was made")
		}
	}
	return tenant.WrappedKey{ID: dk.ID().String(), KEKID: w.KeyID(), Wrapped: wrapped, CreatedAt: time.Now().UTC(), TenantKEK: tenantOwned}, dk, nil
}

// tenantWrapper returns the KEK new data keys of a tenant are wrapped under.
func (k *Keyring) tenantWrapper(ctx context.Context, tenantID string) (crypto.KeyWrapper, bool, error) {
	kekID, err := k.store.TenantKEK(ctx, tenantID)
	if err != nil {
		return nil, false, err
	}
	if kekID == "" {
		return k.keks.Current(), false, nil
	}
	w, ok := k.keks.Remote(kekID)
	if !ok {
		return nil, true, keyFailure(crypto.Unavailable(kekID, "this server has no KMS configured", nil), true, "no data key was made")
	}
	return w, true, nil
}

// wrapperFor returns the KEK that opens wk. Only configured keys and keys the tenant
// registered are used: a KEK id read from the database is not trusted by itself.
func (k *Keyring) wrapperFor(wk tenant.WrappedKey) (crypto.KeyWrapper, error) {
	if w, ok := k.keks.Loaded(wk.KEKID); ok {
		return w, nil
	}
	if wk.TenantKEK {
		if w, ok := k.keks.Remote(wk.KEKID); ok {
			return w, nil
		}
		return nil, crypto.Unavailable(wk.KEKID, "this server has no KMS configured", nil)
	}
	return nil, crypto.Unavailable(wk.KEKID, "this key is not configured on this server", nil)
}

// Unwrap opens a stored data key of an environment, bypassing the cache (benchmarks seeding
// data use it).
func (k *Keyring) Unwrap(ctx context.Context, tenantID, projectID, envID string, wk tenant.WrappedKey) (*crypto.DataKey, error) {
	return k.unwrap(ctx, wk, EncryptionContext(tenantID, projectID, envID))
}

// unwrap opens any stored data key (an environment's, the platform's) under the context it was
// wrapped with, through the one KEK allowed to open it.
func (k *Keyring) unwrap(ctx context.Context, wk tenant.WrappedKey, ec crypto.EncryptionContext) (*crypto.DataKey, error) {
	id, err := uuid.Parse(wk.ID)
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "data key id is malformed")
	}
	w, err := k.wrapperFor(wk)
	if err != nil {
		return nil, keyFailure(err, wk.TenantKEK, "nothing was read or written")
	}
	material, err := w.UnwrapKey(ctx, wk.KEKID, wk.Wrapped, ec)
	if err != nil {
		return nil, keyFailure(err, wk.TenantKEK, "nothing was read or written")
	}
	defer clear(material)
	dk, err := crypto.DataKeyFrom(id, material)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", id, err)
	}
	return dk, nil
}

// keyByID is key for a key id as stored (in an environment row or a job's cursor).
func (k *Keyring) keyByID(ctx context.Context, tenantID, projectID, envID, keyID string) (*crypto.DataKey, error) {
	id, err := uuid.Parse(keyID)
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "data key id is malformed")
	}
	return k.key(ctx, tenantID, projectID, envID, id)
}

// key returns the unwrapped data key keyID of an environment, from the cache when it can.
func (k *Keyring) key(ctx context.Context, tenantID, projectID, envID string, keyID uuid.UUID) (*crypto.DataKey, error) {
	return k.cache.Get(ctx, envID, keyID, func(ctx context.Context) (*crypto.DataKey, error) {
		wk, err := k.store.DataKey(ctx, tenantID, envID, keyID.String())
		if err != nil {
			return nil, err
		}
		return k.Unwrap(ctx, tenantID, projectID, envID, wk)
	})
}

// keyFailure turns a key-encryption failure into the error a caller sees. An unavailable key
// is a 503 naming the problem; a tenant's own key is named (it is theirs), the platform's is
// not (its ARN names the operator's cloud account), but both are in the logged cause.
func keyFailure(err error, tenantOwned bool, consequence string) error {
	var ce *coffer.Error
	if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ke *crypto.KeyError
	if !errors.As(err, &ke) {
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the key service failed; "+consequence)
	}
	which := "the instance's key-encryption key"
	if tenantOwned {
		which = "the tenant's key-encryption key " + ke.KEKID
	}
	if errors.Is(err, crypto.ErrKeyIntegrity) {
		return coffer.Wrap(coffer.EINTERNAL, err, "a stored data key failed its integrity check under "+which+"; "+consequence)
	}
	return coffer.Wrap(coffer.EUNAVAILABLE, err, fmt.Sprintf("%s is unavailable (%s); %s", which, ke.Reason, consequence))
}
