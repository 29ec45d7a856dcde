package audit

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ExportLine is one line of an export (JSONL): an entry with every field its hash covers, in
// the hashed forms, or a checkpoint's signed note. Entries come first, in sequence order.
type ExportLine struct {
	Type string `json:"type"` // "entry" or "checkpoint"
	// Entry lines.
	Chain           string `json:"chain,omitempty"`
	Seq             int64  `json:"sequence,omitempty"`
	PrevHash        string `json:"prev_hash,omitempty"`
	Time            string `json:"time,omitempty"` // TimeLayout
	PrincipalKind   string `json:"principal_kind,omitempty"`
	ActorType       string `json:"actor_type,omitempty"`
	ActorID         string `json:"actor_id,omitempty"`
	Action          string `json:"action,omitempty"`
	TargetType      string `json:"target_type,omitempty"`
	TargetID        string `json:"target_id,omitempty"`
	Target          string `json:"target,omitempty"`
	RequestID       string `json:"request_id,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
	SourceIP        string `json:"source_ip,omitempty"`
	UserAgent       string `json:"user_agent,omitempty"`
	Outcome         string `json:"outcome,omitempty"`
	Metadata        string `json:"metadata,omitempty"` // the JSON text exactly as stored
	Hash            string `json:"hash,omitempty"`
	// Checkpoint lines.
	Note string `json:"note,omitempty"`
}

// Record is a chained entry as stored, with its stored hash.
type Record struct {
	Chained
	Hash string
}

// EntryLine is the export line of a stored entry.
func EntryLine(r Record) ExportLine {
	return ExportLine{Type: "entry", Chain: r.Chain, Seq: r.Seq, PrevHash: hex.EncodeToString(r.PrevHash[:]),
		Time: r.OccurredAt.UTC().Format(TimeLayout), PrincipalKind: r.PrincipalKind, ActorType: r.ActorType,
		ActorID: r.ActorID, Action: r.Action, TargetType: r.TargetType, TargetID: r.TargetID, Target: r.Target,
		RequestID: r.RequestID, ClientRequestID: r.ClientRequestID, SourceIP: r.SourceIP, UserAgent: r.UserAgent,
		Outcome: r.Outcome, Metadata: r.Metadata, Hash: r.Hash}
}

func (l *ExportLine) chained() (Chained, error) {
	prev, err := DecodeHash(l.PrevHash)
	if err != nil {
		return Chained{}, err
	}
	at, err := time.Parse(TimeLayout, l.Time)
	if err != nil || at.Format(TimeLayout) != l.Time {
		return Chained{}, fmt.Errorf("time %q is not in the hashed form", l.Time)
	}
	return Chained{Chain: l.Chain, Seq: l.Seq, PrevHash: prev, OccurredAt: at, PrincipalKind: l.PrincipalKind,
		ActorType: l.ActorType, ActorID: l.ActorID, Action: l.Action, TargetType: l.TargetType, TargetID: l.TargetID,
		Target: l.Target, RequestID: l.RequestID, ClientRequestID: l.ClientRequestID, SourceIP: l.SourceIP,
		UserAgent: l.UserAgent, Outcome: l.Outcome, Metadata: l.Metadata}, nil
}

// maxExportLine bounds one line of an export read back (an entry's metadata names every
// secret a listing revealed).
const maxExportLine = 16 << 20

// VerifyExport checks an export with nothing but the instance's verifier key: it recomputes
// the chain from its first entry, rebuilds the Merkle tree and checks every checkpoint's
// signature and root. An export with no checkpoint proves nothing and fails.
func VerifyExport(r io.Reader, vkey string) (Verification, error) {
	known, err := NewVerifiers(vkey)
	if err != nil {
		return Verification{}, err
	}
	v := NewVerifier()
	var tree Tree
	var notes []string
	chain, first := "", true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	for lineNo := 1; sc.Scan(); lineNo++ {
		var l ExportLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return v.Broken(v.next, fmt.Sprintf("line %d is not an export line: %v", lineNo, err)), nil
		}
		switch l.Type {
		case "entry":
			if len(notes) > 0 {
				return v.Broken(v.next, fmt.Sprintf("line %d: an entry after the checkpoints", lineNo)), nil
			}
			if first {
				chain, first = l.Chain, false
			} else if l.Chain != chain {
				return v.Broken(l.Seq, fmt.Sprintf("line %d: an entry of another chain", lineNo)), nil
			}
			c, err := l.chained()
			if err != nil {
				return v.Broken(l.Seq, fmt.Sprintf("line %d: %v", lineNo, err)), nil
			}
			if !v.Add(c, l.Hash) {
				return v.res, nil
			}
			h := c.Hash()
			if err := tree.Add(h); err != nil {
				return Verification{}, err
			}
		case "checkpoint":
			notes = append(notes, l.Note)
		default:
			return v.Broken(v.next, fmt.Sprintf("line %d: unknown line type %q", lineNo, l.Type)), nil
		}
	}
	if err := sc.Err(); err != nil {
		return v.Broken(v.next, fmt.Sprintf("the export cannot be read: %v", err)), nil
	}
	res := v.res
	tree.CheckCheckpoints(chain, notes, known, &res)
	if res.OK && len(notes) == 0 {
		res.OK, res.FirstBadSeq, res.Reason = false, 1, "the export has no checkpoint: nothing vouches for its entries"
	}
	return res, nil
}

// Proof is the inclusion proof of one entry in a checkpoint (GET …/audit/proof).
type Proof struct {
	Chain      string   `json:"chain"`
	Seq        int64    `json:"sequence"`
	EntryHash  string   `json:"entry_hash"`  // hex, as in the receipt
	RecordHash string   `json:"record_hash"` // base64 tlog.RecordHash of the entry hash
	Checkpoint string   `json:"checkpoint"`  // the signed note
	Hashes     []string `json:"proof"`       // base64 tlog.RecordProof
}

// Receipt is what a response that revealed values names: the entry that recorded it.
type Receipt struct {
	Chain string
	Seq   int64
	Hash  string
}

// String is the Coffer-Audit-Receipt header's form: <tenant id>/<sequence>/<hash hex>.
func (r Receipt) String() string { return r.Chain + "/" + strconv.FormatInt(r.Seq, 10) + "/" + r.Hash }

// ParseReceipt reads a Coffer-Audit-Receipt header.
func ParseReceipt(s string) (Receipt, error) {
	parts := strings.Split(strings.TrimSpace(s), "/")
	if len(parts) != 3 {
		return Receipt{}, errors.New("a receipt is <tenant id>/<sequence>/<entry hash>")
	}
	seq, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || seq < 1 {
		return Receipt{}, errors.New("the receipt's sequence is not a positive number")
	}
	if _, err := DecodeHash(parts[2]); err != nil {
		return Receipt{}, err
	}
	return Receipt{Chain: parts[0], Seq: seq, Hash: parts[2]}, nil
}

// VerifyReceipt checks, with nothing but the verifier key, that the entry a receipt names is
// in the log: the proof's checkpoint is signed by the key, names the receipt's chain, and the
// proof leads from the entry's record hash to its root.
func VerifyReceipt(receipt Receipt, p Proof, vkey string) error {
	known, err := NewVerifiers(vkey)
	if err != nil {
		return err
	}
	if p.Chain != receipt.Chain || p.Seq != receipt.Seq || p.EntryHash != receipt.Hash {
		return errors.New("the proof is for another entry than the receipt")
	}
	cp, err := OpenCheckpoint(p.Checkpoint, known)
	if err != nil {
		return err
	}
	if cp.Chain != receipt.Chain {
		return errors.New("the proof's checkpoint is of another chain")
	}
	if receipt.Seq > cp.Size {
		return errors.New("the entry is after the proof's checkpoint")
	}
	h, err := DecodeHash(receipt.Hash)
	if err != nil {
		return err
	}
	proof := make(tlog.RecordProof, len(p.Hashes))
	for i, s := range p.Hashes {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return errors.New("the proof holds something that is not a hash")
		}
		copy(proof[i][:], b)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, receipt.Seq-1, RecordHash(h)); err != nil {
		return fmt.Errorf("the entry is not in the checkpoint's tree: %w", err)
	}
	return nil
}
