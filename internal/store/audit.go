package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/cofferhq/coffer"

	"github.com/cofferhq/coffer/internal/audit"
)

type auditRow struct {
	ID         int64 `gorm:"primaryKey;autoIncrement"`
	OccurredAt time.Time
	TenantID   string
	ActorType  string
	ActorID    string
	Action     string
	TargetType string
	TargetID   string
	Target     string
	RequestID  string
	SourceIP   string `gorm:"column:source_ip"`
	Metadata   string
	// ClientRequestID is the client's own X-Request-ID, apart from the server's RequestID.
	ClientRequestID string
	// The chain (docs/audit-chain.md); nil on entries from before it.
	Seq           *int64
	PrevHash      *string
	Hash          *string
	PrincipalKind string
	UserAgent     string
	Outcome       string
}

func (auditRow) TableName() string { return "audit_entries" }

// chained is the row as the chain hashes it.
func (r *auditRow) chained() (audit.Chained, error) {
	c := audit.Chained{Chain: r.TenantID, OccurredAt: r.OccurredAt, PrincipalKind: r.PrincipalKind, ActorType: r.ActorType,
		ActorID: r.ActorID, Action: r.Action, TargetType: r.TargetType, TargetID: r.TargetID, Target: r.Target,
		RequestID: r.RequestID, ClientRequestID: r.ClientRequestID, SourceIP: r.SourceIP, UserAgent: r.UserAgent,
		Outcome: r.Outcome, Metadata: r.Metadata}
	if r.Seq != nil {
		c.Seq = *r.Seq
	}
	if r.PrevHash != nil {
		if err := decodeHash(*r.PrevHash, &c.PrevHash); err != nil {
			return c, err
		}
	}
	return c, nil
}

func decodeHash(s string, dst *[32]byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("not a SHA-256 in hex: %q", s)
	}
	copy(dst[:], b)
	return nil
}

func auditRows(entries []audit.Entry) ([]auditRow, error) {
	rows := make([]auditRow, len(entries))
	for i, e := range entries {
		meta := []byte("{}")
		if len(e.Metadata) > 0 {
			var err error
			if meta, err = json.Marshal(e.Metadata); err != nil {
				return nil, fmt.Errorf("encode audit metadata: %w", err)
			}
		}
		outcome := e.Outcome
		if outcome == "" {
			outcome = audit.OutcomeSuccess
		}
		rows[i] = auditRow{
			OccurredAt: e.Time, TenantID: e.TenantID, ActorType: e.Actor.Type, ActorID: e.Actor.ID,
			Action: e.Action, TargetType: e.TargetType, TargetID: e.TargetID, Target: e.Target,
			RequestID: e.Actor.RequestID, SourceIP: e.Actor.SourceIP, Metadata: string(meta), ClientRequestID: e.Actor.ClientRequestID,
			PrincipalKind: e.Actor.Kind, UserAgent: e.Actor.UserAgent, Outcome: outcome,
		}
	}
	return rows, nil
}

// chainHead is a chain's last entry as audit_heads records it.
type chainHead struct {
	Seq  int64
	Hash string
	At   time.Time
}

// appendAudit is the one writer of the audit log: every entry, from a change's transaction or
// from the reveal batcher, is written here, inside the caller's transaction, so that if it
// cannot be written the change it describes rolls back with it. Per chain (in a fixed order,
// so two writers never wait on each other's heads), it locks the head row, stamps the entries
// with the time under that lock, numbers and hashes them after the head, inserts them and
// moves the head.
func appendAudit(tx *gorm.DB, entries ...audit.Entry) error {
	if err := writeChained(tx, entries); err != nil {
		// Fail closed, and say why: the change is refused because it could not be recorded.
		if coffer.ErrorCode(err) == coffer.EUNAVAILABLE {
			return err
		}
		return coffer.Wrap(coffer.EUNAVAILABLE, err, "the audit log could not record this change, so it was not made")
	}
	return nil
}

func writeChained(tx *gorm.DB, entries []audit.Entry) error {
	rows, err := auditRows(entries)
	if err != nil {
		return err
	}
	byChain := map[string][]*auditRow{}
	for i := range rows {
		byChain[rows[i].TenantID] = append(byChain[rows[i].TenantID], &rows[i])
	}
	chains := make([]string, 0, len(byChain))
	for c := range byChain {
		chains = append(chains, c)
	}
	slices.Sort(chains)
	postgres := tx.Dialector.Name() == "postgres"
	now := time.Now()
	moves := make([]headMove, 0, len(chains))
	for _, chain := range chains {
		head, err := lockHead(tx, chain, postgres)
		if err != nil {
			return err
		}
		var prev [32]byte
		if head.Seq > 0 {
			if err := decodeHash(head.Hash, &prev); err != nil {
				return fmt.Errorf("audit head of chain %q: %w", chain, err)
			}
		}
		at := head.At
		for _, r := range byChain[chain] {
			at = audit.ChainTime(now, at)
			seq := head.Seq + 1
			r.OccurredAt, r.Seq = at, &seq
			c, err := r.chained()
			if err != nil {
				return err
			}
			c.PrevHash = prev
			p := hex.EncodeToString(prev[:])
			h := c.Hash()
			hs := hex.EncodeToString(h[:])
			r.PrevHash, r.Hash = &p, &hs
			prev, head.Seq, head.Hash = h, seq, hs
		}
		moves = append(moves, headMove{chain: chain, head: chainHead{Seq: head.Seq, Hash: head.Hash, At: at}})
	}
	if err := insertAuditRows(tx, rows, moves, postgres); err != nil {
		return err
	}
	var events []eventRow
	for i := range entries {
		if ev, ok := eventRowOf(&entries[i], *rows[i].Seq, rows[i].OccurredAt); ok {
			events = append(events, ev)
		}
	}
	if err := insertEvents(tx, events); err != nil {
		return err
	}
	if c, ok := tx.Statement.Context.Value(committedKey{}).(*committed); ok {
		for _, ev := range events {
			c.add(ev.TenantID)
		}
	}
	for i := range entries {
		if everyTenant[entries[i].Action] && entries[i].Outcome != audit.OutcomeDenied {
			if err := changed(tx, ""); err != nil {
				return err
			}
			break
		}
	}
	// Read receipts: only the writer knows each entry's place. Should the transaction then
	// fail to commit, the request fails with it, and no response names the entry.
	for i := range entries {
		if s := entries[i].Receipt; s != nil {
			s.Set(audit.Receipt{Chain: rows[i].TenantID, Seq: *rows[i].Seq, Hash: *rows[i].Hash})
		}
	}
	return nil
}

// headMove is where a chain's head goes once its entries are in.
type headMove struct {
	chain string
	head  chainHead
}

// lockHead returns a chain's head, locked for the rest of the transaction (Postgres; SQLite's
// write transaction is the lock), making it at the first entry of a chain.
func lockHead(tx *gorm.DB, chain string, postgres bool) (chainHead, error) {
	lock := ""
	if postgres {
		lock = " FOR UPDATE"
	}
	for range 2 {
		var heads []chainHead
		if err := tx.Raw(`SELECT seq, hash, at FROM audit_heads WHERE chain = ?`+lock, chain).Scan(&heads).Error; err != nil {
			return chainHead{}, err
		}
		if len(heads) == 1 {
			return heads[0], nil
		}
		// Two first writers of a chain may race here: the loser's insert does nothing, and
		// its second select waits for the winner's lock.
		if err := tx.Exec(`INSERT INTO audit_heads (chain, seq, hash, at) VALUES (?, 0, '', ?) ON CONFLICT (chain) DO NOTHING`,
			chain, time.Time{}.UTC()).Error; err != nil {
			return chainHead{}, err
		}
	}
	return chainHead{}, fmt.Errorf("audit head of chain %q cannot be made", chain)
}

// insertAuditRows writes the rows in one multi-row INSERT, written out directly (it runs for
// every batch of reveals, and gorm's reflection-driven Create cost more), and moves the heads.
// On Postgres the head updates ride in the same statement, as data-modifying WITH clauses, so
// a chained append costs one round trip more than an unchained one: the head's lock.
func insertAuditRows(tx *gorm.DB, rows []auditRow, moves []headMove, postgres bool) error {
	var q strings.Builder
	args := make([]any, 0, len(rows)*18+len(moves)*4)
	if postgres {
		for i, m := range moves {
			if i == 0 {
				q.WriteString("WITH ")
			} else {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "h%d AS (UPDATE audit_heads SET seq = ?, hash = ?, at = ? WHERE chain = ?)", i)
			args = append(args, m.head.Seq, m.head.Hash, m.head.At, m.chain)
		}
		q.WriteByte(' ')
	} else {
		for _, m := range moves {
			if err := tx.Exec(`UPDATE audit_heads SET seq = ?, hash = ?, at = ? WHERE chain = ?`, m.head.Seq, m.head.Hash, m.head.At, m.chain).Error; err != nil {
				return err
			}
		}
	}
	q.WriteString(`INSERT INTO audit_entries (occurred_at, tenant_id, actor_type, actor_id, action, target_type,
		target_id, target, request_id, source_ip, metadata, client_request_id, seq, prev_hash, hash, principal_kind,
		user_agent, outcome) VALUES `)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, r.OccurredAt, r.TenantID, r.ActorType, r.ActorID, r.Action, r.TargetType,
			r.TargetID, r.Target, r.RequestID, r.SourceIP, r.Metadata, r.ClientRequestID, r.Seq, r.PrevHash, r.Hash,
			r.PrincipalKind, r.UserAgent, r.Outcome)
	}
	return tx.Exec(q.String(), args...).Error
}

// AppendAudit implements audit.Appender: one transaction for a whole batch of reveal entries,
// so a batch costs one lock of each chain's head, one insert and one commit.
func (s *Store) AppendAudit(ctx context.Context, entries []audit.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	// A batch of one chain (the common case: reveals in one tenant) first tries the single
	// statement after the cached head (see headCache); otherwise, or when the head moved, the
	// locking path, after which the head is cached for the next batch.
	chain, single := oneChain(entries)
	fast := single && s.dialect == Postgres && !hasEvents(entries)
	if fast {
		if done, err := s.appendFast(ctx, chain, entries); err != nil || done {
			return err
		}
	}
	if err := s.tx(ctx, func(tx *gorm.DB) error { return appendAudit(tx, entries...) }); err != nil {
		return err
	}
	if fast {
		s.learnHead(ctx, chain)
	}
	return nil
}

// AuditEntries returns a tenant's audit entries in order, after the given id; for tests.
func (s *Store) AuditEntries(ctx context.Context, tenantID string, afterID int64, limit int) ([]audit.Entry, error) {
	var rows []auditRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND id > ?", tenantID, afterID).Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.Entry, len(rows))
	for i := range rows {
		st, err := rows[i].stored()
		if err != nil {
			return nil, err
		}
		out[i] = st.Entry
	}
	return out, nil
}

func (r *auditRow) stored() (audit.Stored, error) {
	var meta map[string]any
	if err := json.Unmarshal([]byte(r.Metadata), &meta); err != nil {
		return audit.Stored{}, fmt.Errorf("decode audit metadata of entry %d: %w", r.ID, err)
	}
	st := audit.Stored{Entry: audit.Entry{Time: r.OccurredAt, TenantID: r.TenantID,
		Actor: audit.Actor{Kind: r.PrincipalKind, Type: r.ActorType, ID: r.ActorID, RequestID: r.RequestID, SourceIP: r.SourceIP,
			ClientRequestID: r.ClientRequestID, UserAgent: r.UserAgent},
		Action: r.Action, TargetType: r.TargetType, TargetID: r.TargetID, Target: r.Target, Metadata: meta, Outcome: r.Outcome}}
	if r.Seq != nil {
		st.Seq = *r.Seq
	}
	if r.PrevHash != nil {
		st.PrevHash = *r.PrevHash
	}
	if r.Hash != nil {
		st.Hash = *r.Hash
	}
	return st, nil
}

// Entries implements audit.Log.
func (s *Store) Entries(ctx context.Context, chain string, f audit.Filter, afterSeq int64, limit int) ([]audit.Stored, error) {
	q := s.db.WithContext(ctx).Where("tenant_id = ? AND seq > ?", chain, afterSeq)
	if f.ActorID != "" {
		q = q.Where("actor_id = ?", f.ActorID)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.TargetID != "" {
		q = q.Where("target_id = ?", f.TargetID)
	}
	if f.Outcome != "" {
		q = q.Where("outcome = ?", f.Outcome)
	}
	if !f.From.IsZero() {
		q = q.Where("occurred_at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		q = q.Where("occurred_at < ?", f.To.UTC())
	}
	var rows []auditRow
	if err := q.Order("seq").Limit(limit).Find(&rows).Error; err != nil {
		return nil, dbErr(err)
	}
	out := make([]audit.Stored, len(rows))
	for i := range rows {
		st, err := rows[i].stored()
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// verifyPage is how many entries Verify reads at a time.
const verifyPage = 2000

// Verify implements audit.Log: the whole chain, in pages, then its head.
func (s *Store) Verify(ctx context.Context, chain string) (audit.Verification, error) {
	v := audit.NewVerifier()
	after := int64(0)
	db := s.db.WithContext(ctx)
	for {
		var rows []auditRow
		if err := db.Where("tenant_id = ? AND seq > ?", chain, after).Order("seq").Limit(verifyPage).Find(&rows).Error; err != nil {
			return audit.Verification{}, dbErr(err)
		}
		for i := range rows {
			c, err := rows[i].chained()
			if err != nil {
				return v.Broken(c.Seq, fmt.Sprintf("entry %d's previous hash is not a hash", c.Seq)), nil
			}
			hash := ""
			if rows[i].Hash != nil {
				hash = *rows[i].Hash
			}
			if !v.Add(c, hash) {
				return v.Finish(0, ""), nil
			}
			after = c.Seq
		}
		if len(rows) < verifyPage {
			break
		}
	}
	var heads []chainHead
	if err := db.Raw(`SELECT seq, hash, at FROM audit_heads WHERE chain = ?`, chain).Scan(&heads).Error; err != nil {
		return audit.Verification{}, dbErr(err)
	}
	if len(heads) == 0 {
		return v.Finish(0, ""), nil
	}
	return v.Finish(heads[0].Seq, heads[0].Hash), nil
}

var _ audit.Log = (*Store)(nil)
