package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/cofferhq/coffer"
)

// CheckpointStore is what the checkpointer needs of the database. The store implements it.
type CheckpointStore interface {
	Log
	// ChainSize is the chain's number of entries, from its head.
	ChainSize(ctx context.Context, chain string) (int64, error)
	// ChainRecords lists entries as stored, in sequence order, after afterSeq.
	ChainRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]Record, error)
	// ExtendTree adds the records of entries up to size to the stored tree and returns its
	// root at size.
	ExtendTree(ctx context.Context, chain string, size int64) (tlog.Hash, error)
	// RecordProof proves record n in the stored tree of size t.
	RecordProof(ctx context.Context, chain string, t, n int64) (tlog.RecordProof, error)
	// SecretStates lists every secret of a tenant for the state root.
	SecretStates(ctx context.Context, chain string) ([]SecretState, error)
	// ChangedAfter reports whether an entry with one of actions follows seq.
	ChangedAfter(ctx context.Context, chain string, seq int64, actions []string) (bool, error)
	// AddCheckpoint stores a checkpoint; false if one of that size already was.
	AddCheckpoint(ctx context.Context, cp Checkpoint) (bool, error)
	// Checkpoints lists a chain's checkpoints by tree size.
	Checkpoints(ctx context.Context, chain string) ([]Checkpoint, error)
	// CheckpointsAfter lists those larger than afterSize, at most limit.
	CheckpointsAfter(ctx context.Context, chain string, afterSize int64, limit int) ([]Checkpoint, error)
	// GrownChains lists the chains with entries after their last checkpoint.
	GrownChains(ctx context.Context) ([]string, error)
	// Chains lists every chain.
	Chains(ctx context.Context) ([]string, error)
	// SigningKey returns the verifier key and sealed signer key; coffer.ENOTFOUND if none.
	SigningKey(ctx context.Context) (verifier string, sealed []byte, err error)
	// PutSigningKey stores the key unless one already is; the caller reads it back.
	PutSigningKey(ctx context.Context, verifier string, sealed []byte) error
	// HasCheckpoints reports whether any chain has a checkpoint.
	HasCheckpoints(ctx context.Context) (bool, error)
}

// Sealer seals the signing key (secrets.Fields).
type Sealer interface {
	Seal(ctx context.Context, purpose, owner string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, purpose, owner string, sealed []byte) ([]byte, error)
}

// Checkpointer makes, lists and verifies signed checkpoints, and copies each to the sink.
type Checkpointer struct {
	store  CheckpointStore
	sealer Sealer
	sink   *DirSink // nil: no sink

	// mu serialises making checkpoints in this process and guards unsunk: checkpoints
	// stored but not yet in the sink (it failed), retried first.
	mu     sync.Mutex
	unsunk []Checkpoint

	// keyMu guards the loaded key.
	keyMu    sync.Mutex
	signer   note.Signer
	verifier string

	// failing are the chains whose last background verification failed.
	failMu  sync.Mutex
	failing map[string]bool
}

// NewCheckpointer returns a Checkpointer; sink may be nil.
func NewCheckpointer(store CheckpointStore, sealer Sealer, sink *DirSink) *Checkpointer {
	return &Checkpointer{store: store, sealer: sealer, sink: sink}
}

// key loads the signing key, making it on first need. A database that already holds
// checkpoints but no key gets no new key: that would start a second, silent key history.
func (c *Checkpointer) key(ctx context.Context) (note.Signer, string, error) {
	return c.loadKey(ctx, true)
}

// loadKey is key; without create, a missing key is ENOTFOUND.
func (c *Checkpointer) loadKey(ctx context.Context, create bool) (note.Signer, string, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if c.signer != nil {
		return c.signer, c.verifier, nil
	}
	vkey, sealed, err := c.store.SigningKey(ctx)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND && create {
		has, herr := c.store.HasCheckpoints(ctx)
		if herr == nil && !has && c.sink != nil {
			has, herr = c.sink.HasAny()
		}
		if herr != nil {
			return nil, "", herr
		}
		if has {
			return nil, "", coffer.Errorf(coffer.EINTERNAL, "the audit signing key is missing but checkpoints exist; restore the key")
		}
		skey, vk, gerr := note.GenerateKey(rand.Reader, SigningKeyName)
		if gerr != nil {
			return nil, "", fmt.Errorf("generate audit signing key: %w", gerr)
		}
		s, serr := c.sealer.Seal(ctx, SigningKeyPurpose, SigningKeyOwner, []byte(skey))
		if serr != nil {
			return nil, "", serr
		}
		if err := c.store.PutSigningKey(ctx, vk, s); err != nil {
			return nil, "", err
		}
		// Another replica may have won: use whatever is stored.
		vkey, sealed, err = c.store.SigningKey(ctx)
	}
	if err != nil {
		return nil, "", err
	}
	skey, err := c.sealer.Open(ctx, SigningKeyPurpose, SigningKeyOwner, sealed)
	if err != nil {
		return nil, "", err
	}
	defer clear(skey)
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		return nil, "", coffer.Wrap(coffer.EINTERNAL, err, "the audit signing key is not usable")
	}
	// The verifier key is stored in clear: one swapped for another key's would have every
	// check made against it.
	if !keyPair(signer, vkey) {
		return nil, "", coffer.Errorf(coffer.EINTERNAL, "the stored audit verifier key does not belong to the signing key")
	}
	c.signer, c.verifier = signer, vkey
	return signer, vkey, nil
}

// keyPair reports whether vkey verifies what signer signs.
func keyPair(signer note.Signer, vkey string) bool {
	known, err := NewVerifiers(vkey)
	if err != nil {
		return false
	}
	msg, err := note.Sign(&note.Note{Text: "coffer audit key check\n"}, signer)
	if err != nil {
		return false
	}
	_, err = note.Open(msg, known)
	return err == nil
}

// PublicKey is the verifier key of the instance's checkpoints, in note format.
func (c *Checkpointer) PublicKey(ctx context.Context) (string, error) {
	_, v, err := c.key(ctx)
	return v, err
}

// Make signs a checkpoint of the chain as it is now, unless the latest already covers every
// entry; made says which. Secrets are read after the head, so a change that lands in between
// is in the state but its entry after the checkpoint: verify then skips the state comparison
// rather than raising a false alarm.
func (c *Checkpointer) Make(ctx context.Context, chain string) (cp Checkpoint, made bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	signer, _, err := c.key(ctx)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if err := c.flushSink(); err != nil {
		return Checkpoint{}, false, err
	}
	size, err := c.store.ChainSize(ctx, chain)
	if err != nil {
		return Checkpoint{}, false, err
	}
	cps, err := c.store.Checkpoints(ctx, chain)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if n := len(cps); n > 0 && cps[n-1].Size >= size {
		return cps[n-1], false, nil
	}
	if size == 0 {
		return Checkpoint{}, false, coffer.Errorf(coffer.ECONFLICT, "the audit log has no entries to checkpoint")
	}
	root, err := c.store.ExtendTree(ctx, chain, size)
	if err != nil {
		return Checkpoint{}, false, err
	}
	states, err := c.store.SecretStates(ctx, chain)
	if err != nil {
		return Checkpoint{}, false, err
	}
	cp, err = SignCheckpoint(signer, chain, size, root, StateRoot(states))
	if err != nil {
		return Checkpoint{}, false, err
	}
	cp.CreatedAt = time.Now().UTC()
	inserted, err := c.store.AddCheckpoint(ctx, cp)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if !inserted { // another replica signed this size first
		cps, err := c.store.Checkpoints(ctx, chain)
		if err != nil || len(cps) == 0 {
			return Checkpoint{}, false, errors.Join(err, errors.New("audit checkpoint vanished"))
		}
		return cps[len(cps)-1], false, nil
	}
	// The database first: a sink copy the database lacks would read as a rewritten database.
	c.unsunk = append(c.unsunk, cp)
	if err := c.flushSink(); err != nil {
		return Checkpoint{}, false, err
	}
	return cp, true, nil
}

// flushSink appends the checkpoints the sink does not have yet, oldest first.
func (c *Checkpointer) flushSink() error {
	if c.sink == nil {
		c.unsunk = nil
		return nil
	}
	for len(c.unsunk) > 0 {
		cp := c.unsunk[0]
		if err := c.sink.Append(cp.Chain, cp.Note); err != nil {
			return coffer.Wrap(coffer.EUNAVAILABLE, err, "the checkpoint was stored but the audit sink could not record it; it is retried with the next one")
		}
		c.unsunk = c.unsunk[1:]
	}
	return nil
}

// List lists a chain's checkpoints, oldest first.
func (c *Checkpointer) List(ctx context.Context, chain string) ([]Checkpoint, error) {
	return c.store.Checkpoints(ctx, chain)
}

// Page lists a chain's checkpoints larger than afterSize, oldest first, at most limit.
func (c *Checkpointer) Page(ctx context.Context, chain string, afterSize int64, limit int) ([]Checkpoint, error) {
	return c.store.CheckpointsAfter(ctx, chain, afterSize, limit)
}

// Verify recomputes the chain (Log.Verify), then checks every checkpoint against a tree
// rebuilt from the entries, against the sink's copies, and the latest checkpoint's state root
// against the secrets as they are, when no secret changed since.
func (c *Checkpointer) Verify(ctx context.Context, chain string) (Verification, error) {
	v, err := c.store.Verify(ctx, chain)
	if err != nil || !v.OK {
		return v, err
	}
	cps, err := c.store.Checkpoints(ctx, chain)
	if err != nil {
		return Verification{}, err
	}
	var sinkNotes []string
	if c.sink != nil {
		if sinkNotes, err = c.sink.Read(chain); err != nil {
			return Verification{}, coffer.Wrap(coffer.EUNAVAILABLE, err, "the audit sink cannot be read")
		}
	}
	if len(cps) == 0 && len(sinkNotes) == 0 {
		return v, nil
	}
	_, vkey, err := c.loadKey(ctx, false)
	if coffer.ErrorCode(err) == coffer.ENOTFOUND {
		// Checkpoints without the key that signed them: the database lost or dropped it.
		v.OK, v.FirstBadSeq, v.Reason = false, 1, "checkpoints exist but the audit signing key is missing from the database"
		return v, nil
	}
	if err != nil {
		return Verification{}, err
	}
	known, err := NewVerifiers(vkey)
	if err != nil {
		return Verification{}, err
	}
	var tree Tree
	for after := int64(0); ; {
		recs, err := c.store.ChainRecords(ctx, chain, after, 2000)
		if err != nil {
			return Verification{}, err
		}
		for _, r := range recs {
			h, err := DecodeHash(r.Hash)
			if err != nil {
				return Verification{}, err
			}
			if err := tree.Add(h); err != nil {
				return Verification{}, err
			}
			after = r.Seq
		}
		if len(recs) < 2000 {
			break
		}
	}
	notes := make([]string, len(cps))
	for i, cp := range cps {
		notes[i] = cp.Note
	}
	good := tree.CheckCheckpoints(chain, notes, known, &v)
	if !v.OK {
		return v, nil
	}
	// The sink: every checkpoint there must be in the database, word for word.
	bySize := make(map[int64]string, len(cps))
	for _, cp := range cps {
		bySize[cp.Size] = cp.Note
	}
	for _, msg := range sinkNotes {
		scp, err := OpenCheckpoint(msg, known)
		if err == nil && scp.Chain != chain {
			err = errors.New("names another chain")
		}
		reason := ""
		switch {
		case err != nil:
			reason = fmt.Sprintf("a checkpoint in the sink does not verify: %v", err)
		case scp.Size > tree.Size():
			reason = fmt.Sprintf("the sink holds a checkpoint of %d entries but the log has %d: the database was rewritten or restored", scp.Size, tree.Size())
		case bySize[scp.Size] == "":
			reason = fmt.Sprintf("the sink's checkpoint of %d entries is missing from the database: the database was rewritten or restored", scp.Size)
		case bySize[scp.Size] != msg:
			reason = fmt.Sprintf("the sink's checkpoint of %d entries differs from the database's: the database was rewritten", scp.Size)
		}
		if reason != "" {
			v.OK, v.Reason, v.FirstBadSeq = false, reason, goodBefore(good, scp.Size)+1
			return v, nil
		}
	}
	if len(good) == 0 {
		return v, nil
	}
	latest := good[len(good)-1]
	// Secrets before entries: a change committing in between shows up as a later entry.
	states, err := c.store.SecretStates(ctx, chain)
	if err != nil {
		return Verification{}, err
	}
	changed, err := c.store.ChangedAfter(ctx, chain, latest.Size, SecretChangingActions)
	if err != nil {
		return Verification{}, err
	}
	if !changed && StateRoot(states) != latest.State {
		v.OK, v.FirstBadSeq = false, latest.Size
		v.Reason = fmt.Sprintf("the secrets differ from those checkpoint of %d entries commits to, and no change was logged since: an older copy was restored", latest.Size)
	}
	return v, nil
}

// goodBefore is the size of the last good checkpoint before size, 0 if none.
func goodBefore(good []Checkpoint, size int64) int64 {
	last := int64(0)
	for _, g := range good {
		if g.Size < size {
			last = g.Size
		}
	}
	return last
}

// Prove returns the inclusion proof of entry seq in the chain's latest checkpoint.
func (c *Checkpointer) Prove(ctx context.Context, chain string, seq int64) (Proof, error) {
	cps, err := c.store.Checkpoints(ctx, chain)
	if err != nil {
		return Proof{}, err
	}
	if len(cps) == 0 || cps[len(cps)-1].Size < seq {
		return Proof{}, coffer.Errorf(coffer.ENOTFOUND, "no checkpoint covers that entry yet")
	}
	cp := cps[len(cps)-1]
	recs, err := c.store.ChainRecords(ctx, chain, seq-1, 1)
	if err != nil {
		return Proof{}, err
	}
	if len(recs) != 1 || recs[0].Seq != seq {
		return Proof{}, coffer.Errorf(coffer.ENOTFOUND, "no such entry")
	}
	h, err := DecodeHash(recs[0].Hash)
	if err != nil {
		return Proof{}, err
	}
	p, err := c.store.RecordProof(ctx, chain, cp.Size, seq-1)
	if err != nil {
		return Proof{}, err
	}
	rh := RecordHash(h)
	out := Proof{Chain: chain, Seq: seq, EntryHash: recs[0].Hash, RecordHash: base64.StdEncoding.EncodeToString(rh[:]),
		Checkpoint: cp.Note, Hashes: make([]string, len(p))}
	for i, x := range p {
		out.Hashes[i] = base64.StdEncoding.EncodeToString(x[:])
	}
	return out, nil
}

// everyChain runs fn on each chain list returns, every interval, until ctx ends; a failure to
// list is logged as what and retried at the next tick.
func everyChain(ctx context.Context, interval time.Duration, log *slog.Logger, what string,
	list func(context.Context) ([]string, error), fn func(chain string)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		chains, err := list(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Error(what+": cannot list chains", "err", err)
			}
			continue
		}
		for _, ch := range chains {
			fn(ch)
		}
	}
}

// Run makes a checkpoint of every chain that grew, every interval, until ctx ends. A failure
// is logged and retried at the next tick.
func (c *Checkpointer) Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	everyChain(ctx, interval, log, "audit checkpoints", c.store.GrownChains, func(ch string) {
		if _, _, err := c.Make(ctx, ch); err != nil && ctx.Err() == nil {
			log.Error("audit checkpoint failed", "chain", Origin(ch), "err", err)
		}
	})
}

// RunVerifier verifies every chain every interval until ctx ends, logging each failure with
// its first bad sequence; Failing counts the chains whose last verification failed.
func (c *Checkpointer) RunVerifier(ctx context.Context, interval time.Duration, log *slog.Logger) {
	everyChain(ctx, interval, log, "audit verification", c.store.Chains, func(ch string) {
		v, err := c.Verify(ctx, ch)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("audit verification could not run", "chain", Origin(ch), "err", err)
			}
			return
		}
		c.failMu.Lock()
		if c.failing == nil {
			c.failing = map[string]bool{}
		}
		if v.OK {
			delete(c.failing, ch)
		} else {
			c.failing[ch] = true
		}
		c.failMu.Unlock()
		if !v.OK {
			log.Error("audit chain failed verification", "chain", Origin(ch), "first_bad_sequence", v.FirstBadSeq, "reason", v.Reason)
		}
	})
}

// Failing is the number of chains whose last background verification failed.
func (c *Checkpointer) Failing() int {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	return len(c.failing)
}

// DirSink keeps a copy of every checkpoint outside the database: one file per chain in a
// directory the database role cannot write, each note followed by an empty line.
type DirSink struct {
	Dir string
	mu  sync.Mutex
}

// safeChain is what a chain name may be to become a file name as it is (tenant ids).
var safeChain = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func (s *DirSink) path(chain string) string {
	name := "instance"
	if chain != "" {
		name = "tenant-" + chain
		if !safeChain.MatchString(chain) {
			name = "tenant-x" + base64.RawURLEncoding.EncodeToString([]byte(chain))
		}
	}
	return filepath.Join(s.Dir, name+".checkpoints")
}

// Append adds a checkpoint note to the chain's file and syncs it.
func (s *DirSink) Append(chain, msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path(chain), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(msg + "\n"); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// HasAny reports whether the sink holds any checkpoint file.
func (s *DirSink) HasAny() (bool, error) {
	m, err := filepath.Glob(filepath.Join(s.Dir, "*.checkpoints"))
	return len(m) > 0, err
}

// Read returns the notes of the chain's file, oldest first; none if there is no file.
func (s *DirSink) Read(chain string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.path(chain))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return SplitNotes(data)
}
