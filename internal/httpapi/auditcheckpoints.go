package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// AuditCheckpoints makes, lists, verifies and proves against signed checkpoints
// (audit.Checkpointer).
type AuditCheckpoints interface {
	Make(ctx context.Context, chain string) (audit.Checkpoint, bool, error)
	List(ctx context.Context, chain string) ([]audit.Checkpoint, error)
	Page(ctx context.Context, chain string, afterSize int64, limit int) ([]audit.Checkpoint, error)
	Verify(ctx context.Context, chain string) (audit.Verification, error)
	PublicKey(ctx context.Context) (string, error)
	Prove(ctx context.Context, chain string, seq int64) (audit.Proof, error)
}

// AuditRecords reads a chain's entries as stored, for export (the store).
type AuditRecords interface {
	ChainRecords(ctx context.Context, chain string, afterSeq int64, limit int) ([]audit.Record, error)
	// RevealedAt lists what a compact reveal entry (audit.RevealedPage) names.
	RevealedAt(ctx context.Context, tenantID, envID string, rev int64, after string, count int) (audit.RevealedSet, error)
}

type checkpointView struct {
	TreeSize  int64     `json:"tree_size"`
	RootHash  string    `json:"root_hash"`
	StateRoot string    `json:"state_root"`
	Note      string    `json:"note"`
	CreatedAt time.Time `json:"created_at"`
}

func viewCheckpoint(cp audit.Checkpoint) checkpointView {
	return checkpointView{TreeSize: cp.Size, RootHash: base64.StdEncoding.EncodeToString(cp.Root[:]),
		StateRoot: base64.StdEncoding.EncodeToString(cp.State[:]), Note: cp.Note, CreatedAt: cp.CreatedAt}
}

// auditPublicKey serves the verifier key of every checkpoint, for anyone to check them with.
func (s *Server) auditPublicKey(c *gin.Context) {
	k, err := s.checkpoints.PublicKey(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(k+"\n"))
}

// makeCheckpoint signs a checkpoint of the tenant's chain now; 201 when one was made, 200
// with the latest when it already covers every entry. Tenant owners and admins.
func (s *Server) makeCheckpoint(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	cp, made, err := s.checkpoints.Make(c.Request.Context(), sc.Tenant.ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if made {
		status = http.StatusCreated
	}
	c.JSON(status, viewCheckpoint(cp))
}

// listCheckpoints lists the tenant's checkpoints, oldest first, a page at a time. Tenant
// owners and admins.
func (s *Server) listCheckpoints(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	p, after, ok := s.seqPage(c)
	if !ok {
		return
	}
	cps, err := s.checkpoints.Page(c.Request.Context(), sc.Tenant.ID, after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, cps, func(cp audit.Checkpoint) string { return strconv.FormatInt(cp.Size, 10) }, viewCheckpoint)
}

// sequenceParam reads ?sequence=n, an audit entry's sequence, or answers why it cannot.
func (s *Server) sequenceParam(c *gin.Context) (int64, bool) {
	seq, err := strconv.ParseInt(c.Query("sequence"), 10, 64)
	if err != nil || seq < 1 {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "sequence must be a positive number"))
		return 0, false
	}
	return seq, true
}

// auditProof proves that entry ?sequence=n is in the latest checkpoint.
func (s *Server) auditProof(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	seq, ok := s.sequenceParam(c)
	if !ok {
		return
	}
	p, err := s.checkpoints.Prove(c.Request.Context(), sc.Tenant.ID, seq)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

// revealedView answers which secret versions a reveal entry's read returned.
type revealedView struct {
	Sequence int64             `json:"sequence"`
	Target   string            `json:"target"`
	Revision *int64            `json:"revision"`
	After    string            `json:"after"`
	Secrets  audit.RevealedSet `json:"secrets"`
	Digest   string            `json:"digest,omitempty"`
	Verified bool              `json:"verified"`
	Reason   string            `json:"reason,omitempty"`
}

// auditRevealed lists the names and versions a reveal entry covers (revealedBy). Tenant
// owners and admins.
func (s *Server) auditRevealed(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	seq, ok := s.sequenceParam(c)
	if !ok {
		return
	}
	v, err := s.revealedBy(c.Request.Context(), sc.Tenant.ID, seq)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

// revealedBy lists the names and versions the reveal entry seq of the tenant's chain covers,
// for the API and the dashboard's receipt lookup alike. A reveal of a page of an environment
// is recorded compactly (audit.RevealedPage); its set is listed from the versions' history
// and checked against the entry's digest: Verified is false, with the reason, when the
// history no longer gives that set. ENOTFOUND for no such entry, EINVALID for one that is not
// a reveal.
func (s *Server) revealedBy(ctx context.Context, tenantID string, seq int64) (revealedView, error) {
	recs, err := s.auditRecords.ChainRecords(ctx, tenantID, seq-1, 1)
	if err != nil {
		return revealedView{}, err
	}
	if len(recs) == 0 || recs[0].Seq != seq {
		return revealedView{}, coffer.Errorf(coffer.ENOTFOUND, "no audit entry %d", seq)
	}
	e := recs[0].Chained
	var md struct {
		Secrets  json.RawMessage `json:"secrets"`
		Revision *int64          `json:"revision"`
		After    string          `json:"after"`
		Count    int             `json:"count"`
		Digest   string          `json:"digest"`
	}
	if e.Action != audit.ActionSecretReveal || json.Unmarshal([]byte(e.Metadata), &md) != nil {
		return revealedView{}, coffer.Errorf(coffer.EINVALID, "audit entry %d is not a reveal", seq)
	}
	v := revealedView{Sequence: seq, Target: e.Target, Revision: md.Revision, After: md.After}
	if md.Revision == nil { // the names are in the entry itself
		set, err := orderedSet(md.Secrets)
		if err != nil {
			return revealedView{}, coffer.Errorf(coffer.EINVALID, "audit entry %d is not a reveal", seq)
		}
		v.Secrets, v.Verified = set, true
		return v, nil
	}
	set, err := s.auditRecords.RevealedAt(ctx, tenantID, e.TargetID, *md.Revision, md.After, md.Count)
	if err != nil {
		return revealedView{}, err
	}
	d := audit.RevealedDigest(set)
	v.Secrets, v.Digest = set, md.Digest
	switch {
	case len(set) != md.Count:
		v.Reason = fmt.Sprintf("the history gives %d secrets where the entry counted %d (was the environment deleted?)", len(set), md.Count)
	case hex.EncodeToString(d[:]) != md.Digest:
		v.Reason = "the history's names and versions do not match the entry's digest"
	default:
		v.Verified = true
	}
	return v, nil
}

// orderedSet reads a verbose reveal entry's {"NAME":version,…} in the entry's order.
func orderedSet(raw json.RawMessage) (audit.RevealedSet, error) {
	var out audit.RevealedSet
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var version int
		if err := dec.Decode(&version); err != nil {
			return nil, err
		}
		out = append(out, audit.Revealed{Name: name, Version: version})
	}
	return out, nil
}

// exportPage is how many entries an export reads at a time; exportWriteTime is how long a
// whole export may take to send, past the server's usual write timeout.
const (
	exportPage      = 1000
	exportWriteTime = 15 * time.Minute
)

// exportAudit streams the tenant's chain as JSONL (audit.ExportLine): every entry, then every
// checkpoint. `coffer-server audit verify` checks it offline. Tenant owners and admins.
func (s *Server) exportAudit(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	chain := sc.Tenant.ID
	// The checkpoints first, so every entry they cover is in the export even while the chain
	// grows during it.
	cps, err := s.checkpoints.List(ctx, chain)
	if err != nil {
		s.fail(c, err)
		return
	}
	recs, err := s.auditRecords.ChainRecords(ctx, chain, 0, exportPage)
	if err != nil {
		s.fail(c, err)
		return
	}
	// A long chain takes longer to send than an ordinary answer; without a deadline it could
	// be cut short (and fail offline verification) by the server's write timeout.
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(exportWriteTime))
	c.Header("Content-Type", "application/x-ndjson; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="audit.jsonl"`)
	c.Status(http.StatusOK)
	w := bufio.NewWriter(c.Writer)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for {
		for _, r := range recs {
			if err := enc.Encode(audit.EntryLine(r)); err != nil {
				return // the client went away
			}
		}
		if len(recs) < exportPage {
			break
		}
		if recs, err = s.auditRecords.ChainRecords(ctx, chain, recs[len(recs)-1].Seq, exportPage); err != nil {
			// The status is sent; an export cut short fails offline verification.
			s.log.Error("audit export failed", "err", err)
			return
		}
	}
	for _, cp := range cps {
		if err := enc.Encode(audit.ExportLine{Type: "checkpoint", Note: cp.Note}); err != nil {
			return
		}
	}
	_ = w.Flush()
}
