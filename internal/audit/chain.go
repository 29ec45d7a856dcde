package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// ChainVersion names the encoding below; it is the first field of every hashed entry, so a
// later encoding can never be confused with this one. docs/audit-chain.md specifies it.
const ChainVersion = "coffer-audit-v1"

// ZeroHash is the prev_hash of the first entry of a chain.
var ZeroHash = [32]byte{}

// Outcomes of an audited action.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
)

// Chained is an entry as the chain hashes it: every stored field, in the stored form.
type Chained struct {
	Chain           string // the tenant id; "" for the instance chain
	Seq             int64  // 1, 2, 3, … within the chain
	PrevHash        [32]byte
	OccurredAt      time.Time // kept to the microsecond, UTC
	PrincipalKind   string
	ActorType       string
	ActorID         string
	Action          string
	TargetType      string
	TargetID        string
	Target          string
	RequestID       string
	ClientRequestID string
	SourceIP        string
	UserAgent       string
	Outcome         string
	Metadata        string // the JSON text exactly as stored
}

// TimeLayout is how OccurredAt is written in the hashed encoding: UTC, always six fractional
// digits (both databases keep microseconds).
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Encode is the canonical encoding of an entry: each field, in the order below, as a 4-byte
// big-endian length followed by its UTF-8 bytes. Numbers are decimal, the previous hash is
// lowercase hex. Its SHA-256 is the entry's hash.
func (c *Chained) Encode() []byte {
	fields := [...]string{
		ChainVersion,
		c.Chain,
		strconv.FormatInt(c.Seq, 10),
		hex.EncodeToString(c.PrevHash[:]),
		c.OccurredAt.UTC().Format(TimeLayout),
		c.PrincipalKind,
		c.ActorType,
		c.ActorID,
		c.Action,
		c.TargetType,
		c.TargetID,
		c.Target,
		c.RequestID,
		c.ClientRequestID,
		c.SourceIP,
		c.UserAgent,
		c.Outcome,
		c.Metadata,
	}
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// Hash is the entry's hash: SHA-256 of its encoding, which includes the previous hash.
func (c *Chained) Hash() [32]byte { return sha256.Sum256(c.Encode()) }

// ChainTime is the time an entry is stamped with when it joins the chain: now, kept to the
// microsecond, and never before the chain's last entry, so that sequence and time agree.
func ChainTime(now, last time.Time) time.Time {
	t := now.UTC().Truncate(time.Microsecond)
	if t.Before(last) {
		return last
	}
	return t
}

// Verification is what checking a chain found.
type Verification struct {
	OK      bool
	Entries int64
	// FirstBadSeq is the first sequence number that does not verify (0 when OK).
	FirstBadSeq int64
	Reason      string
	// Checkpoints is how many signed checkpoints of the chain verified (checkpoint.go).
	Checkpoints int
}

// Verifier checks a chain's entries, fed in sequence order.
type Verifier struct {
	next int64
	prev [32]byte
	res  Verification
}

// NewVerifier starts checking a chain from its first entry.
func NewVerifier() *Verifier { return &Verifier{next: 1, res: Verification{OK: true}} }

func (v *Verifier) fail(seq int64, reason string) bool {
	v.res.OK, v.res.FirstBadSeq, v.res.Reason = false, seq, reason
	return false
}

// Add checks the next stored entry: c as stored (its PrevHash included) and its stored hash.
// It reports false once the chain is broken; later entries are not looked at.
func (v *Verifier) Add(c Chained, stored string) bool {
	if !v.res.OK {
		return false
	}
	switch {
	case c.Seq > v.next:
		return v.fail(v.next, fmt.Sprintf("entry %d is missing", v.next))
	case c.Seq < v.next:
		return v.fail(c.Seq, fmt.Sprintf("entry %d appears twice", c.Seq))
	case c.PrevHash != v.prev:
		return v.fail(c.Seq, fmt.Sprintf("entry %d does not follow entry %d: its previous hash differs", c.Seq, c.Seq-1))
	}
	h := c.Hash()
	if hex.EncodeToString(h[:]) != stored {
		return v.fail(c.Seq, fmt.Sprintf("entry %d was changed: its contents do not match its hash", c.Seq))
	}
	v.prev, v.next = h, v.next+1
	v.res.Entries++
	return true
}

// Broken ends a check at seq, for an entry that could not even be read as one.
func (v *Verifier) Broken(seq int64, reason string) Verification {
	if v.res.OK {
		v.fail(seq, reason)
	}
	return v.res
}

// Finish checks the chain's head against the last entry seen: a head further on means entries
// were removed from the end.
func (v *Verifier) Finish(headSeq int64, headHash string) Verification {
	if !v.res.OK {
		return v.res
	}
	last := v.next - 1
	switch {
	case headSeq > last:
		v.fail(last+1, fmt.Sprintf("the log ends at entry %d but its head names entry %d: entries were removed from the end", last, headSeq))
	case headSeq < last:
		v.fail(headSeq+1, fmt.Sprintf("entries after %d are not recorded in the head", headSeq))
	case last > 0 && headHash != hex.EncodeToString(v.prev[:]):
		v.fail(last, fmt.Sprintf("the head does not name entry %d's hash", last))
	}
	return v.res
}

// Stored is an entry as read back from the log, with its place in the chain.
type Stored struct {
	Entry
	Seq      int64
	PrevHash string
	Hash     string
}

// Filter narrows a listing of a chain's entries; empty fields match everything.
type Filter struct {
	ActorID  string
	Action   string
	TargetID string
	Outcome  string
	From, To time.Time // occurred at or after From, before To
}

// Log reads and verifies chains.
type Log interface {
	// Entries lists a chain's entries matching f, in sequence order, after afterSeq.
	Entries(ctx context.Context, chain string, f Filter, afterSeq int64, limit int) ([]Stored, error)
	// Verify recomputes a whole chain and checks its head.
	Verify(ctx context.Context, chain string) (Verification, error)
}
