package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// The checkpoint side of the audit log (docs/audit-chain.md): each chain's Merkle tree
// (audit_tree_hashes), its signed checkpoints and the signing key. None of this is on the
// append path: the tree is extended from the entries when a checkpoint is made.

// ChainSize implements audit.CheckpointStore.
func (s *Store) ChainSize(ctx context.Context, chain string) (int64, error) {
	var seqs []int64
	if err := s.db.WithContext(ctx).Raw(`SELECT seq FROM audit_heads WHERE chain = ?`, chain).Scan(&seqs).Error; err != nil {
		return 0, dbErr(err)
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	return seqs[0], nil
}

// ChainRecords implements audit.CheckpointStore.
func (s *Store) ChainRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]audit.Record, error) {
	var rows []auditRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND seq > ?", chain, afterSeq).Order("seq").Limit(limit).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.Record, len(rows))
	for i := range rows {
		c, err := rows[i].chained()
		if err != nil {
			return nil, err
		}
		out[i].Chained = c
		if rows[i].Hash != nil {
			out[i].Hash = *rows[i].Hash
		}
	}
	return out, nil
}

// treeReader reads a chain's stored tree hashes, with those computed but not yet inserted
// (and those already read) kept in memory: extending the tree by many records then costs a
// few queries, not one per record.
type treeReader struct {
	db    *gorm.DB
	chain string
	known map[int64]tlog.Hash
}

type treeHashRow struct {
	Idx  int64
	Hash []byte
}

func (r *treeReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var missing []int64
	for _, x := range indexes {
		if _, ok := r.known[x]; !ok {
			missing = append(missing, x)
		}
	}
	if len(missing) > 0 {
		var rows []treeHashRow
		if err := r.db.Raw(`SELECT idx, hash FROM audit_tree_hashes WHERE chain = ? AND idx IN ?`, r.chain, missing).Scan(&rows).Error; err != nil {
			return nil, dbErr(err)
		}
		for _, row := range rows {
			if len(row.Hash) != tlog.HashSize {
				return nil, fmt.Errorf("audit tree hash %d of chain %q is not a hash", row.Idx, r.chain)
			}
			r.known[row.Idx] = tlog.Hash(row.Hash)
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := r.known[x]
		if !ok {
			return nil, fmt.Errorf("audit tree hash %d of chain %q is not stored", x, r.chain)
		}
		out[i] = h
	}
	return out, nil
}

// treeInsertBatch is how many tree hashes one INSERT carries.
const treeInsertBatch = 500

// ExtendTree implements audit.CheckpointStore. The stored tree only ever grows, in one
// transaction per extension; two extenders at once compute the same hashes, and the second
// one's inserts do nothing.
func (s *Store) ExtendTree(ctx context.Context, chain string, size int64) (tlog.Hash, error) {
	var root tlog.Hash
	err := s.tx(ctx, func(tx *gorm.DB) error {
		// Hashes are stored at indexes 0, 1, 2, … with none missing (each extension inserts the
		// next ones in one transaction), so their count is the highest index plus one: read
		// from the primary key's end, not by counting a table that only grows.
		var top *int64
		if err := tx.Raw(`SELECT MAX(idx) FROM audit_tree_hashes WHERE chain = ?`, chain).Scan(&top).Error; err != nil {
			return err
		}
		var count int64
		if top != nil {
			count = *top + 1
		}
		// The records already in the tree: the least n whose tree stores count hashes.
		lo, hi := int64(0), count
		for lo < hi {
			if mid := (lo + hi) / 2; tlog.StoredHashCount(mid) < count {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		n := lo
		if tlog.StoredHashCount(n) != count {
			return fmt.Errorf("audit tree of chain %q holds %d hashes, which no tree size has", chain, count)
		}
		r := &treeReader{db: tx, chain: chain, known: map[int64]tlog.Hash{}}
		var pending []tlog.Hash
		flush := func() error {
			if len(pending) == 0 {
				return nil
			}
			var q []byte
			q = append(q, `INSERT INTO audit_tree_hashes (chain, idx, hash) VALUES `...)
			args := make([]any, 0, 3*len(pending))
			first := count
			for i, h := range pending {
				if i > 0 {
					q = append(q, ',')
				}
				q = append(q, "(?,?,?)"...)
				args = append(args, chain, first+int64(i), h[:])
			}
			q = append(q, ` ON CONFLICT (chain, idx) DO NOTHING`...)
			if err := tx.Exec(string(q), args...).Error; err != nil {
				return err
			}
			count += int64(len(pending))
			pending = pending[:0]
			return nil
		}
		for n < size {
			// Only each entry's hash goes into the tree: read no more than that (a reveal's
			// entry carries kilobytes of metadata, and a minute's entries are many).
			var recs []struct {
				Seq  int64
				Hash string
			}
			if err := tx.Raw(`SELECT seq, hash FROM audit_entries WHERE tenant_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT 1000`,
				chain, n, size).Scan(&recs).Error; err != nil {
				return err
			}
			if len(recs) == 0 {
				return fmt.Errorf("audit chain %q has no entry %d", chain, n+1)
			}
			for _, rec := range recs {
				if rec.Seq != n+1 {
					return fmt.Errorf("audit chain %q has no entry %d", chain, n+1)
				}
				h, err := audit.DecodeHash(rec.Hash)
				if err != nil {
					return err
				}
				hs, err := tlog.StoredHashes(n, h[:], r)
				if err != nil {
					return err
				}
				base := tlog.StoredHashIndex(0, n)
				for i, x := range hs {
					r.known[base+int64(i)] = x
				}
				pending = append(pending, hs...)
				n++
				if len(pending) >= treeInsertBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		var err error
		root, err = tlog.TreeHash(size, r)
		return err
	})
	return root, err
}

// RecordProof implements audit.CheckpointStore.
func (s *Store) RecordProof(ctx context.Context, chain string, t, n int64) (tlog.RecordProof, error) {
	r := &treeReader{db: s.db.WithContext(ctx), chain: chain, known: map[int64]tlog.Hash{}}
	p, err := tlog.ProveRecord(t, n, r)
	if err != nil {
		return nil, coffer.Wrap(coffer.EINTERNAL, err, "the inclusion proof cannot be made")
	}
	return p, nil
}

// SecretStates implements audit.CheckpointStore; the instance chain has no secrets.
func (s *Store) SecretStates(ctx context.Context, chain string) ([]audit.SecretState, error) {
	if chain == "" {
		return nil, nil
	}
	var rows []struct {
		EnvironmentID string
		Name          string
		LatestVersion int64
		Deleted       bool
	}
	err := s.db.WithContext(ctx).Raw(`SELECT environment_id, name, latest_version, deleted_at IS NOT NULL AS deleted
		FROM secrets WHERE tenant_id = ?`, chain).Scan(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.SecretState, len(rows))
	for i, r := range rows {
		out[i] = audit.SecretState{EnvironmentID: r.EnvironmentID, Name: r.Name, LatestVersion: r.LatestVersion, Deleted: r.Deleted}
	}
	return out, nil
}

// ChangedAfter implements audit.CheckpointStore.
func (s *Store) ChangedAfter(ctx context.Context, chain string, seq int64, actions []string) (bool, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM audit_entries WHERE tenant_id = ? AND seq > ? AND action IN ?`,
		chain, seq, actions).Scan(&n).Error
	if err != nil {
		return false, dbErr(err)
	}
	return n > 0, nil
}

type checkpointRow struct {
	Chain     string
	TreeSize  int64
	RootHash  string
	StateRoot string
	Note      string
	CreatedAt time.Time
}

// AddCheckpoint implements audit.CheckpointStore.
func (s *Store) AddCheckpoint(ctx context.Context, cp audit.Checkpoint) (bool, error) {
	res := s.db.WithContext(ctx).Exec(`INSERT INTO audit_checkpoints (chain, tree_size, root_hash, state_root, note, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chain, tree_size) DO NOTHING`,
		cp.Chain, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), base64.StdEncoding.EncodeToString(cp.State[:]),
		cp.Note, cp.CreatedAt.UTC())
	if res.Error != nil {
		return false, dbErr(res.Error)
	}
	return res.RowsAffected == 1, nil
}

// Checkpoints implements audit.CheckpointStore. Root and state are read from the note's body
// (unverified here: Verify checks the signature).
func (s *Store) Checkpoints(ctx context.Context, chain string) ([]audit.Checkpoint, error) {
	return s.CheckpointsAfter(ctx, chain, 0, 0)
}

// CheckpointsAfter implements audit.CheckpointStore: a page of checkpoints larger than
// afterSize (every one when limit is 0).
func (s *Store) CheckpointsAfter(ctx context.Context, chain string, afterSize int64, limit int) ([]audit.Checkpoint, error) {
	q := `SELECT chain, tree_size, root_hash, state_root, note, created_at
		FROM audit_checkpoints WHERE chain = ? AND tree_size > ? ORDER BY tree_size`
	args := []any{chain, afterSize}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	var rows []checkpointRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.Checkpoint, len(rows))
	for i, r := range rows {
		cp := audit.Checkpoint{Chain: r.Chain, Size: r.TreeSize, Note: r.Note, CreatedAt: r.CreatedAt.UTC()}
		if b, err := base64.StdEncoding.DecodeString(r.RootHash); err == nil && len(b) == 32 {
			copy(cp.Root[:], b)
		}
		if b, err := base64.StdEncoding.DecodeString(r.StateRoot); err == nil && len(b) == 32 {
			copy(cp.State[:], b)
		}
		out[i] = cp
	}
	return out, nil
}

// GrownChains implements audit.CheckpointStore.
func (s *Store) GrownChains(ctx context.Context) ([]string, error) {
	var chains []string
	err := s.db.WithContext(ctx).Raw(`SELECT h.chain FROM audit_heads h WHERE h.seq > COALESCE(
		(SELECT MAX(c.tree_size) FROM audit_checkpoints c WHERE c.chain = h.chain), 0) ORDER BY h.chain`).Scan(&chains).Error
	return chains, dbErr(err)
}

// Chains implements audit.CheckpointStore.
func (s *Store) Chains(ctx context.Context) ([]string, error) {
	var chains []string
	err := s.db.WithContext(ctx).Raw(`SELECT chain FROM audit_heads ORDER BY chain`).Scan(&chains).Error
	return chains, dbErr(err)
}

// signingKeyID is the one row of audit_signing_keys.
const signingKeyID = "instance"

// SigningKey implements audit.CheckpointStore.
func (s *Store) SigningKey(ctx context.Context) (string, []byte, error) {
	var rows []struct {
		Verifier string
		Sealed   []byte
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT verifier, sealed FROM audit_signing_keys WHERE id = ?`, signingKeyID).Scan(&rows).Error; err != nil {
		return "", nil, dbErr(err)
	}
	if len(rows) == 0 {
		return "", nil, coffer.Errorf(coffer.ENOTFOUND, "no audit signing key")
	}
	return rows[0].Verifier, rows[0].Sealed, nil
}

// PutSigningKey implements audit.CheckpointStore.
func (s *Store) PutSigningKey(ctx context.Context, verifier string, sealed []byte) error {
	return dbErr(s.db.WithContext(ctx).Exec(`INSERT INTO audit_signing_keys (id, verifier, sealed, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`, signingKeyID, verifier, sealed, time.Now().UTC()).Error)
}

// HasCheckpoints implements audit.CheckpointStore.
func (s *Store) HasCheckpoints(ctx context.Context) (bool, error) {
	var n int64
	if err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM audit_checkpoints LIMIT 1) x`).Scan(&n).Error; err != nil {
		return false, dbErr(err)
	}
	return n > 0, nil
}

var _ audit.CheckpointStore = (*Store)(nil)
