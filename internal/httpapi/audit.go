package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

type auditActorView struct {
	Kind string `json:"kind"`
	Type string `json:"type"`
	ID   string `json:"id"`
}

type auditEntryView struct {
	Seq             int64          `json:"sequence"`
	Hash            string         `json:"hash"`
	PrevHash        string         `json:"prev_hash"`
	Time            time.Time      `json:"time"`
	Actor           auditActorView `json:"actor"`
	Action          string         `json:"action"`
	TargetType      string         `json:"target_type"`
	TargetID        string         `json:"target_id"`
	Target          string         `json:"target"`
	Outcome         string         `json:"outcome"`
	RequestID       string         `json:"request_id"`
	ClientRequestID string         `json:"client_request_id"`
	SourceIP        string         `json:"source_ip"`
	UserAgent       string         `json:"user_agent"`
	Metadata        map[string]any `json:"metadata"`
}

func viewAuditEntry(e audit.Stored) auditEntryView {
	return auditEntryView{Seq: e.Seq, Hash: e.Hash, PrevHash: e.PrevHash, Time: e.Time,
		Actor:  auditActorView{Kind: e.Actor.Kind, Type: e.Actor.Type, ID: e.Actor.ID},
		Action: e.Action, TargetType: e.TargetType, TargetID: e.TargetID, Target: e.Target, Outcome: e.Outcome,
		RequestID: e.Actor.RequestID, ClientRequestID: e.Actor.ClientRequestID, SourceIP: e.Actor.SourceIP,
		UserAgent: e.Actor.UserAgent, Metadata: e.Metadata}
}

// seqPage reads a page whose cursor is a sequence number (audit entries, checkpoints); on a
// bad request it has answered already.
func (s *Server) seqPage(c *gin.Context) (page, int64, bool) {
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return page{}, 0, false
	}
	after := int64(0)
	if p.after != "" {
		if after, err = strconv.ParseInt(p.after, 10, 64); err != nil || after < 0 {
			s.fail(c, coffer.Errorf(coffer.EINVALID, "cursor is not valid"))
			return page{}, 0, false
		}
	}
	return p, after, true
}

// listAudit lists the tenant's chain, oldest first, with filters; tenant owners and admins.
func (s *Server) listAudit(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	p, after, ok := s.seqPage(c)
	if !ok {
		return
	}
	f := audit.Filter{ActorID: c.Query("actor"), Action: c.Query("action"), TargetID: c.Query("target"), Outcome: c.Query("outcome")}
	for _, t := range []struct {
		param string
		dst   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := c.Query(t.param); v != "" {
			var err error
			if *t.dst, err = time.Parse(time.RFC3339Nano, v); err != nil {
				s.fail(c, coffer.Errorf(coffer.EINVALID, "%s must be an RFC 3339 time", t.param))
				return
			}
		}
	}
	if f.Outcome != "" && f.Outcome != audit.OutcomeSuccess && f.Outcome != audit.OutcomeDenied {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "outcome must be success or denied"))
		return
	}
	entries, err := s.auditLog.Entries(c.Request.Context(), sc.Tenant.ID, f, after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, entries, func(e audit.Stored) string { return strconv.FormatInt(e.Seq, 10) }, viewAuditEntry)
}

type verifyView struct {
	OK               bool   `json:"ok"`
	Entries          int64  `json:"entries"`
	Checkpoints      int    `json:"checkpoints"`
	FirstBadSequence *int64 `json:"first_bad_sequence"`
	Reason           string `json:"reason"`
}

// verifyAudit recomputes the tenant's chain and checks its head; tenant owners and admins.
func (s *Server) verifyAudit(c *gin.Context) {
	sc, ok := s.allowed(c, tenant.ViewAudit)
	if !ok {
		return
	}
	verify := s.auditLog.Verify
	if s.checkpoints != nil {
		verify = s.checkpoints.Verify // the chain, then its checkpoints and the sink
	}
	v, err := verify(c.Request.Context(), sc.Tenant.ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := verifyView{OK: v.OK, Entries: v.Entries, Checkpoints: v.Checkpoints, Reason: v.Reason}
	if !v.OK {
		out.FirstBadSequence = &v.FirstBadSeq
	}
	c.JSON(http.StatusOK, out)
}
