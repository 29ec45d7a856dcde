package store

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
)

// headCache remembers, per chain, the head this process last wrote or saw, so that a batch of
// reveals can be appended in one statement without first reading and locking the head: the
// statement moves the head only if it is still exactly what the cache says (sequence and
// hash), and inserts the entries only if it moved it. Anything else (another replica or a
// change wrote meanwhile, a transaction that wrote it rolled back) makes the statement do
// nothing, and the append takes the locking path, which is always right. The cache can be
// stale; it can never make a wrong entry.
type headCache struct {
	mu    sync.Mutex
	heads map[string]chainHead
}

func (c *headCache) get(chain string) (chainHead, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.heads[chain]
	return h, ok
}

func (c *headCache) put(chain string, h chainHead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heads == nil {
		c.heads = map[string]chainHead{}
	}
	if len(c.heads) > 100_000 {
		clear(c.heads)
	}
	c.heads[chain] = h
}

// oneChain reports the chain all entries belong to, if they share one.
func oneChain(entries []audit.Entry) (string, bool) {
	for _, e := range entries[1:] {
		if e.TenantID != entries[0].TenantID {
			return "", false
		}
	}
	return entries[0].TenantID, true
}

// appendFast appends entries of one chain after the cached head in a single statement on
// Postgres. done is false when the head was not where the cache said: nothing was written.
func (s *Store) appendFast(ctx context.Context, chain string, entries []audit.Entry) (done bool, err error) {
	head, ok := s.heads.get(chain)
	if !ok || head.Seq == 0 {
		return false, nil
	}
	rows, err := auditRows(entries)
	if err != nil {
		return false, err
	}
	var prev [32]byte
	if err := decodeHash(head.Hash, &prev); err != nil {
		return false, nil
	}
	at, seq := head.At, head.Seq
	for i := range rows {
		at = audit.ChainTime(time.Now(), at)
		seq++
		n := seq
		rows[i].OccurredAt, rows[i].Seq = at, &n
		c, err := rows[i].chained()
		if err != nil {
			return false, err
		}
		c.PrevHash = prev
		p := hex.EncodeToString(prev[:])
		h := c.Hash()
		hs := hex.EncodeToString(h[:])
		rows[i].PrevHash, rows[i].Hash = &p, &hs
		prev = h
	}
	next := chainHead{Seq: seq, Hash: *rows[len(rows)-1].Hash, At: at}
	var q strings.Builder
	q.WriteString(`WITH h AS (UPDATE audit_heads SET seq = ?, hash = ?, at = ? WHERE chain = ? AND seq = ? AND hash = ? RETURNING 1)
		INSERT INTO audit_entries (occurred_at, tenant_id, actor_type, actor_id, action, target_type, target_id, target,
		request_id, source_ip, metadata, client_request_id, seq, prev_hash, hash, principal_kind, user_agent, outcome)
		SELECT v.* FROM (VALUES `)
	args := make([]any, 0, 6+len(rows)*18)
	args = append(args, next.Seq, next.Hash, next.At, chain, head.Seq, head.Hash)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?::timestamptz,?::text,?::text,?::text,?::text,?::text,?::text,?::text,?::text,?::text,?::text,?::text,?::bigint,?::text,?::text,?::text,?::text,?::text)")
		args = append(args, r.OccurredAt, r.TenantID, r.ActorType, r.ActorID, r.Action, r.TargetType,
			r.TargetID, r.Target, r.RequestID, r.SourceIP, r.Metadata, r.ClientRequestID, r.Seq, r.PrevHash, r.Hash,
			r.PrincipalKind, r.UserAgent, r.Outcome)
	}
	q.WriteString(`) AS v WHERE EXISTS (SELECT 1 FROM h)`)
	res := s.db.WithContext(ctx).Exec(q.String(), args...)
	if res.Error != nil {
		return false, coffer.Wrap(coffer.EUNAVAILABLE, dbErr(res.Error), "the audit log could not record this change, so it was not made")
	}
	if res.RowsAffected != int64(len(rows)) {
		return false, nil
	}
	s.heads.put(chain, next)
	for i := range entries {
		if slot := entries[i].Receipt; slot != nil {
			slot.Set(audit.Receipt{Chain: chain, Seq: *rows[i].Seq, Hash: *rows[i].Hash})
		}
	}
	return true, nil
}

// learnHead caches a chain's head as the database has it now.
func (s *Store) learnHead(ctx context.Context, chain string) {
	var heads []chainHead
	if err := s.db.WithContext(ctx).Raw(`SELECT seq, hash, at FROM audit_heads WHERE chain = ?`, chain).Scan(&heads).Error; err == nil && len(heads) == 1 {
		s.heads.put(chain, heads[0])
	}
}
