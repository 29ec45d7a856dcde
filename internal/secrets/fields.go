package secrets

import (
	"context"

	"github.com/google/uuid"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/tenant"
)

// platformContext binds the platform data key to its purpose: it can never be presented as an
// environment's data key, whose context names a tenant, project and environment.
var platformContext = crypto.EncryptionContext{"purpose": "coffer platform key"}

// platformOwner is the cache owner of the platform data key.
const platformOwner = "platform"

// fieldLabel versions the additional-data layout of sealed fields.
const fieldLabel = "coffer/field/v1"

// PlatformKeyStore holds the platform data key.
type PlatformKeyStore interface {
	// PlatformKey returns the platform data key, creating it with create on first use.
	PlatformKey(ctx context.Context, create func(ctx context.Context) (tenant.WrappedKey, error)) (tenant.WrappedKey, error)
}

// Fields seals instance-level secrets (OIDC client secrets, TOTP seeds, signing keys) under the
// platform data key, which the platform key-encryption key wraps like any environment's key, so
// nothing of the kind is stored in clear. The purpose and owner of a field are its additional
// data: a sealed TOTP seed copied to another user, or into a client-secret column, fails to open.
type Fields struct {
	keys  *Keyring
	store PlatformKeyStore
}

// NewFields returns a Fields.
func NewFields(keys *Keyring, store PlatformKeyStore) *Fields {
	return &Fields{keys: keys, store: store}
}

// Seal encrypts plaintext for (purpose, owner).
func (f *Fields) Seal(ctx context.Context, purpose, owner string, plaintext []byte) ([]byte, error) {
	k, err := f.key(ctx)
	if err != nil {
		return nil, err
	}
	return k.Seal(plaintext, crypto.AAD(fieldLabel, purpose, owner))
}

// Open decrypts a field sealed for (purpose, owner).
func (f *Fields) Open(ctx context.Context, purpose, owner string, sealed []byte) ([]byte, error) {
	k, err := f.key(ctx)
	if err != nil {
		return nil, err
	}
	plain, err := k.Open(sealed, crypto.AAD(fieldLabel, purpose, owner))
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "a sealed field failed its integrity check")
	}
	return plain, nil
}

func (f *Fields) key(ctx context.Context) (*crypto.DataKey, error) {
	wk, err := f.store.PlatformKey(ctx, func(ctx context.Context) (tenant.WrappedKey, error) {
		dk, err := crypto.NewDataKey()
		if err != nil {
			return tenant.WrappedKey{}, err
		}
		m := dk.Material()
		dk.Wipe()
		defer clear(m)
		cur := f.keys.keks.Current()
		blob, err := cur.WrapKey(ctx, m, platformContext)
		if err != nil {
			return tenant.WrappedKey{}, keyFailure(err, false, "nothing was sealed")
		}
		return tenant.WrappedKey{ID: dk.ID().String(), KEKID: cur.KeyID(), Wrapped: blob}, nil
	})
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(wk.ID)
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "platform key id is malformed")
	}
	return f.keys.cache.Get(ctx, platformOwner, id, func(ctx context.Context) (*crypto.DataKey, error) {
		return f.keys.unwrap(ctx, wk, platformContext)
	})
}
