package secrets

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// KeyStore loads wrapped data keys of one environment.
type KeyStore interface {
	DataKey(ctx context.Context, tenantID, envID, keyID string) (tenant.WrappedKey, error)
}

// Keyring makes and opens environment data keys: it wraps new keys with the key-encryption
// key and keeps unwrapped keys in a bounded cache so that a read unwraps at most once.
type Keyring struct {
	wrapper crypto.KeyWrapper
	cache   *crypto.KeyCache
	store   KeyStore
}

// NewKeyring returns a Keyring.
func NewKeyring(w crypto.KeyWrapper, cache *crypto.KeyCache, store KeyStore) *Keyring {
	return &Keyring{wrapper: w, cache: cache, store: store}
}

// encryptionContext names the environment a data key belongs to; the wrapper authenticates it,
// so a wrapped key moved to another environment cannot be unwrapped.
func encryptionContext(tenantID, projectID, envID string) crypto.EncryptionContext {
	return crypto.EncryptionContext{"tenant": tenantID, "project": projectID, "environment": envID}
}

// NewEnvironmentKey creates a fresh data key for an environment and returns it wrapped.
func (k *Keyring) NewEnvironmentKey(ctx context.Context, tenantID, projectID, envID string) (tenant.WrappedKey, error) {
	dk, err := crypto.NewDataKey()
	if err != nil {
		return tenant.WrappedKey{}, err
	}
	material := dk.Material()
	defer clear(material)
	dk.Wipe()
	wrapped, err := k.wrapper.WrapKey(ctx, material, encryptionContext(tenantID, projectID, envID))
	if err != nil {
		return tenant.WrappedKey{}, coffer.Wrap(coffer.EUNAVAILABLE, err, "the key service could not wrap a new data key")
	}
	return tenant.WrappedKey{ID: dk.ID().String(), KEKID: k.wrapper.KeyID(), Wrapped: wrapped, CreatedAt: time.Now().UTC()}, nil
}

// key returns the unwrapped data key keyID of an environment, from the cache when it can.
func (k *Keyring) key(ctx context.Context, tenantID, projectID, envID string, keyID uuid.UUID) (*crypto.DataKey, error) {
	return k.cache.Get(ctx, keyID, func(ctx context.Context) (*crypto.DataKey, error) {
		wk, err := k.store.DataKey(ctx, tenantID, envID, keyID.String())
		if err != nil {
			return nil, err
		}
		material, err := k.wrapper.UnwrapKey(ctx, wk.KEKID, wk.Wrapped, encryptionContext(tenantID, projectID, envID))
		if err != nil {
			return nil, coffer.Wrap(coffer.EUNAVAILABLE, err, "the key service could not unwrap the environment's data key")
		}
		defer clear(material)
		dk, err := crypto.DataKeyFrom(keyID, material)
		if err != nil {
			return nil, fmt.Errorf("data key %s: %w", keyID, err)
		}
		return dk, nil
	})
}
