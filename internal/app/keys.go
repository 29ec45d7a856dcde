package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/crypto"
	"github.com/cofferhq/coffer/internal/crypto/awskms"
	"github.com/cofferhq/coffer/internal/crypto/localkey"
	"github.com/cofferhq/coffer/internal/metrics"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store"
)

// keyCheckContext binds key-check records to their purpose, so a check blob can never be
// presented as a data key or the other way round.
var keyCheckContext = crypto.EncryptionContext{"purpose": "coffer key check"}

// KeyObserver receives every KMS call (metrics); nil means none.
type KeyObserver func(op string, err error, d time.Duration)

// openKeys loads the key-encryption keys the configuration names and runs the startup key
// check against the database:
//   - the current KEK must open its key-check record;
//   - a KEK without a record is adopted only on an empty database, or when every KEK the
//     database already uses is configured beside it (a deliberate rotation, which the
//     returned rotate flag then asks the caller to finish with a rewrap);
//   - a missing local key file is generated only on an empty database.
//
// Nothing is written unless the check passes.
func openKeys(ctx context.Context, cfg Config, st *store.Store, log *slog.Logger, observe KeyObserver) (keks *crypto.KEKSet, rotate bool, err error) {
	state, err := st.KeyState(ctx)
	if err != nil {
		return nil, false, err
	}
	current, previous, remote, err := loadKEKs(ctx, cfg, state, log, observe)
	if err != nil {
		return nil, false, err
	}
	keks = crypto.NewKEKSet(current, previous, remote)
	rotate, err = checkKeys(ctx, cfg, st, state, keks, log)
	if err != nil {
		return nil, false, err
	}
	return keks, rotate, nil
}

// loadKEKs builds the current KEK and the previous (unwrap-only) ones from the configuration.
func loadKEKs(ctx context.Context, cfg Config, state store.KeyState, log *slog.Logger, observe KeyObserver) (current crypto.KeyWrapper, previous []crypto.KeyWrapper, remote func(string) crypto.KeyWrapper, err error) {
	for i, k := range cfg.PreviousMasterKeys {
		w, err := localkey.FromBase64(k)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("COFFER_PREVIOUS_MASTER_KEYS entry %d: %w", i+1, err)
		}
		previous = append(previous, w)
	}
	if cfg.KMS == "local" {
		current, err = loadLocalKey(cfg, state, log)
		return current, previous, nil, err
	}

	client, err := awskms.NewClient(ctx, awskms.Config{Region: cfg.KMSRegion, Endpoint: cfg.KMSEndpoint})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("AWS KMS client: %w", err)
	}
	opts := awskms.Options{Observe: observe}
	kms, err := awskms.New(ctx, client, cfg.KMSKeyID, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("COFFER_KMS_KEY_ID %s cannot be used: %w", cfg.KMSKeyID, err)
	}
	for _, id := range cfg.KMSPreviousKeyIDs {
		w, err := awskms.New(ctx, client, id, opts)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("COFFER_KMS_PREVIOUS_KEY_IDS entry %s cannot be used: %w", id, err)
		}
		previous = append(previous, w)
	}
	// Moving from the local key to KMS: the local key, where it is configured, keeps opening
	// the data keys wrapped under it until the rewrap has moved them. It is never created here.
	if cfg.MasterKey != "" {
		w, err := localkey.FromBase64(cfg.MasterKey)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("COFFER_MASTER_KEY: %w", err)
		}
		previous = append(previous, w)
	} else if w, err := localkey.Load(cfg.MasterKeyFile); err == nil {
		previous = append(previous, w)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, err
	}
	return kms, previous, func(arn string) crypto.KeyWrapper { return kms.WithKey(arn) }, nil
}

// loadLocalKey loads the local master key: COFFER_MASTER_KEY, else the key file, which is
// created only for an empty database and only where that is a safe default.
func loadLocalKey(cfg Config, state store.KeyState, log *slog.Logger) (crypto.KeyWrapper, error) {
	if cfg.MasterKey != "" {
		w, err := localkey.FromBase64(cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("COFFER_MASTER_KEY: %w", err)
		}
		return w, nil
	}
	w, err := localkey.Load(cfg.MasterKeyFile)
	if err == nil {
		return w, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if !state.Empty() {
		return nil, fmt.Errorf("the master key file %s is missing, but this database holds data wrapped under %s: "+
			"restore the file from your backup (or set COFFER_MASTER_KEY); Coffer never generates a new key over existing data",
			cfg.MasterKeyFile, strings.Join(usedKEKs(state), ", "))
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	if !isLoopback(host) && !cfg.Dev {
		return nil, fmt.Errorf("refusing to generate a master key for a server on %s: provide COFFER_MASTER_KEY or an existing key file (or set COFFER_DEV=true)", cfg.Listen)
	}
	w, created, err := localkey.LoadOrCreate(cfg.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("generated a new local master key; back it up: without it no secret can be decrypted", "file", cfg.MasterKeyFile)
	}
	return w, nil
}

// usedKEKs lists the KEKs the database depends on: those with a check record and those that
// wrap keys.
func usedKEKs(state store.KeyState) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range state.Checks {
		if !seen[c.KEKID] {
			seen[c.KEKID] = true
			out = append(out, c.KEKID)
		}
	}
	for _, id := range state.InUse {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// checkKeys is the startup key check (see openKeys).
func checkKeys(ctx context.Context, cfg Config, st *store.Store, state store.KeyState, keks *crypto.KEKSet, log *slog.Logger) (rotate bool, err error) {
	checks := make(map[string][]byte, len(state.Checks))
	for _, c := range state.Checks {
		checks[c.KEKID] = c.Wrapped
	}
	current := keks.Current()
	if blob, ok := checks[current.KeyID()]; ok {
		if _, err := current.UnwrapKey(ctx, current.KeyID(), blob, keyCheckContext); err != nil {
			return false, fmt.Errorf("the configured key-encryption key %s does not open its key-check record: %w", current.KeyID(), err)
		}
		// Configured previous keys must be the right ones too, or a rewrap would fail midway.
		for _, id := range keks.IDs()[1:] {
			if err := proveKEK(ctx, st, keks, id, checks[id]); err != nil {
				return false, err
			}
		}
		return pendingRewrap(state, current.KeyID()), nil
	}
	if state.Empty() {
		if err := addCheck(ctx, st, current); err != nil {
			return false, err
		}
		log.Info("adopted the key-encryption key for this new database", "kek", current.KeyID())
		return false, nil
	}
	var missing []string
	for _, id := range usedKEKs(state) {
		if _, ok := keks.Loaded(id); !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return false, wrongKeyError(cfg, current.KeyID(), missing)
	}
	for _, id := range usedKEKs(state) {
		if err := proveKEK(ctx, st, keks, id, checks[id]); err != nil {
			return false, err
		}
	}
	// Every key the data depends on is configured and proven, so the current key is either
	// the one the data already uses (a database from before key-check records) or a
	// deliberate rotation to a new key.
	if err := addCheck(ctx, st, current); err != nil {
		return false, err
	}
	rotate = pendingRewrap(state, current.KeyID())
	if rotate {
		log.Warn("adopted a new key-encryption key; data keys under the previous keys are being rewrapped to it",
			"kek", current.KeyID(), "previous", strings.Join(usedKEKs(state), ","))
	}
	return rotate, nil
}

// pendingRewrap reports whether data keys are wrapped under a KEK other than current.
func pendingRewrap(state store.KeyState, current string) bool {
	for _, id := range state.InUse {
		if id != current {
			return true
		}
	}
	return false
}

// proveKEK checks that a configured KEK is the key the database knows by its id: it opens the
// key's check record, or (for a database from before check records) one of its data keys, and
// records a check for it.
func proveKEK(ctx context.Context, st *store.Store, keks *crypto.KEKSet, id string, check []byte) error {
	w, ok := keks.Loaded(id)
	if !ok {
		return nil
	}
	if check != nil {
		if _, err := w.UnwrapKey(ctx, id, check, keyCheckContext); err != nil {
			return fmt.Errorf("the configured key-encryption key %s does not open its key-check record: %w", id, err)
		}
		return nil
	}
	tenantID, projectID, envID, wk, err := st.SampleDataKey(ctx, id)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		// Configured but wrapping nothing here (a key file left behind after the move to KMS,
		// say): recording it would make every later rotation demand a key nothing needs.
		return nil
	}
	if err != nil {
		return err
	}
	m, err := w.UnwrapKey(ctx, id, wk.Wrapped, secrets.EncryptionContext(tenantID, projectID, envID))
	if err != nil {
		return fmt.Errorf("the configured key-encryption key %s does not open the data keys wrapped under it: %w", id, err)
	}
	clear(m)
	return addCheck(ctx, st, w)
}

func addCheck(ctx context.Context, st *store.Store, w crypto.KeyWrapper) error {
	m, err := crypto.RandomKey()
	if err != nil {
		return err
	}
	defer clear(m)
	blob, err := w.WrapKey(ctx, m, keyCheckContext)
	if err != nil {
		return fmt.Errorf("write the key-check record of %s: %w", w.KeyID(), err)
	}
	return st.AddKeyCheck(ctx, w.KeyID(), blob)
}

// wrongKeyError explains a configured KEK the database does not know, and how to fix it.
func wrongKeyError(cfg Config, current string, missing []string) error {
	var where, keep string
	if cfg.KMS == "local" {
		where = "the configured master key (COFFER_MASTER_KEY or " + cfg.MasterKeyFile + ")"
		keep = "COFFER_PREVIOUS_MASTER_KEYS"
	} else {
		where = "COFFER_KMS_KEY_ID"
		keep = "COFFER_KMS_PREVIOUS_KEY_IDS (or the old master key for a move from the local key)"
	}
	return fmt.Errorf("%s is key-encryption key %s, but this database's data is wrapped under %s, which is not configured: "+
		"if the configured key is wrong, configure the right one; to rotate to it, also configure the old key in %s and Coffer rewraps every data key",
		where, current, strings.Join(missing, ", "), keep)
}

// openKeyring runs the startup key check and builds the keyring over the KEKs it loaded.
func openKeyring(ctx context.Context, cfg Config, st *store.Store, log *slog.Logger, observe KeyObserver, opts Options) (*secrets.Keyring, bool, error) {
	keks, rotate, err := openKeys(ctx, cfg, st, log, observe)
	if err != nil {
		return nil, false, err
	}
	cacheOpts := crypto.CacheOptions{MaxEntries: cfg.KeyCacheSize}
	if opts.DisableKeyCache {
		cacheOpts.Disabled = true
	}
	return secrets.NewKeyring(keks, crypto.NewKeyCache(cacheOpts), st), rotate, nil
}

// ensureRewrap returns the running platform rewrap job, starting one if there is none.
func ensureRewrap(ctx context.Context, st *store.Store, r *secrets.Rotator, target string) (secrets.Job, error) {
	j, ok, err := st.RunningJob(ctx, "", secrets.JobRewrap)
	if err != nil {
		return secrets.Job{}, err
	}
	if ok && j.TargetKEK == target {
		return j, nil
	}
	j, err = r.StartRewrap(ctx, audit.System, "", target)
	if coffer.ErrorCode(err) == coffer.ECONFLICT {
		// Another replica started it, or a rewrap to an earlier key is still running: that
		// one finishes first, and this replica's next start rewraps what it left.
		if j, ok, rerr := st.RunningJob(ctx, "", secrets.JobRewrap); rerr == nil && ok {
			return j, nil
		}
	}
	return j, err
}

// classifyKeyError names the outcome of a KMS call for metrics.
func classifyKeyError(err error) string {
	switch {
	case err == nil:
		return metrics.OutcomeOK
	case errors.Is(err, crypto.ErrKeyIntegrity):
		return metrics.OutcomeIntegrity
	case errors.Is(err, crypto.ErrKeyUnavailable):
		return metrics.OutcomeUnavailable
	}
	return metrics.OutcomeError
}
