package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// The dashboard's audit page: the tenant's chain newest first, with the API's filters
// (listAudit), its verification (verifyAudit), its checkpoints, the export and a read receipt
// lookup (revealedBy, Prove). Tenant owners and admins, as for the API.

const (
	// auditPageSize is how many entries the page shows at a time.
	auditPageSize = 50
	// auditScanWindows and auditMaxWindow bound the work of one page: the store lists a chain
	// oldest first, so the page reads backwards in windows of sequence numbers, and a sparse
	// filter stops after this many windows with an "older" link where it stopped.
	auditScanWindows = 8
	auditMaxWindow   = 2000
	// auditCheckpointsShown is how many of the latest checkpoints the page lists.
	auditCheckpointsShown = 10
	// formTime is how a datetime-local field sends a time (seconds optional): read as UTC.
	formTime = "2006-01-02T15:04:05"
)

// auditRow is an entry as the page shows it.
type auditRow struct {
	auditEntryView
	MetadataJSON string
}

func auditRowOf(e audit.Stored) auditRow {
	r := auditRow{auditEntryView: viewAuditEntry(e)}
	if len(e.Metadata) > 0 {
		if b, err := json.MarshalIndent(e.Metadata, "", "  "); err == nil {
			r.MetadataJSON = string(b)
		}
	}
	return r
}

// auditFilterForm is the filter form's fields as the user gave them.
type auditFilterForm struct{ Actor, Action, Target, Outcome, From, To string }

type auditReceipt struct {
	Sequence string // as typed, for the form
	Entry    *auditRow
	Revealed *revealedView // a reveal's names and versions
	Covered  bool          // a checkpoint covers the entry: its proof is available
	Proof    string        // the proof's API URL
	Error    string
}

type auditPage struct {
	Chrome          chrome
	TenantName      string
	Verification    audit.Verification
	Checkpoints     []checkpointView // the latest, newest first
	CheckpointCount int
	LatestNote      string
	HasCheckpoints  bool // the server signs checkpoints at all
	Export          string
	Receipt         auditReceipt
	Filter          auditFilterForm
	Filtered        bool
	Entries         []auditRow
	Older           string // the URL of the next older entries; "" at the start of the chain
	Error           string
}

func (s *Server) auditPage(c *gin.Context) {
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ViewAudit); err != nil {
		s.pageError(c, err)
		return
	}
	ctx := c.Request.Context()
	chain := sc.Tenant.ID
	status := http.StatusOK
	page := auditPage{TenantName: sc.Tenant.Name, HasCheckpoints: s.checkpoints != nil,
		Export: "/api/v1/tenants/" + sc.Tenant.Slug + "/audit/export"}

	// The chain's state: as GET …/audit/verify, then its checkpoints.
	verify := s.auditLog.Verify
	if s.checkpoints != nil {
		verify = s.checkpoints.Verify
	}
	v, err := verify(ctx, chain)
	if err != nil {
		s.pageError(c, err)
		return
	}
	page.Verification = v
	if s.checkpoints != nil {
		cps, err := s.checkpoints.List(ctx, chain)
		if err != nil {
			s.pageError(c, err)
			return
		}
		page.CheckpointCount = len(cps)
		if len(cps) > 0 {
			page.LatestNote = cps[len(cps)-1].Note
		}
		for i := len(cps) - 1; i >= 0 && len(page.Checkpoints) < auditCheckpointsShown; i-- {
			page.Checkpoints = append(page.Checkpoints, viewCheckpoint(cps[i]))
		}
	}

	// The read receipt lookup.
	if q := strings.TrimSpace(c.Query("receipt")); q != "" {
		page.Receipt, err = s.auditReceipt(ctx, sc, q)
		if err != nil {
			code := coffer.ErrorCode(err)
			if code != coffer.EINVALID && code != coffer.ENOTFOUND {
				s.pageError(c, err)
				return
			}
			page.Receipt.Error, status = coffer.ErrorMessage(err), statusOf[code]
		}
	}

	// The entries.
	f, form, before, err := auditFilterOf(c)
	page.Filter = form
	page.Filtered = f != (audit.Filter{})
	if err != nil {
		page.Error, status = coffer.ErrorMessage(err), http.StatusBadRequest
	} else {
		if before == 0 {
			if before, err = s.auditHead(ctx, chain); err != nil {
				s.pageError(c, err)
				return
			}
			before++
		}
		entries, older, err := s.auditNewestFirst(ctx, chain, f, before)
		if err != nil {
			s.pageError(c, err)
			return
		}
		for _, e := range entries {
			page.Entries = append(page.Entries, auditRowOf(e))
		}
		if older > 0 {
			q := url.Values{}
			for _, p := range []string{"actor", "action", "target", "outcome", "from", "to"} {
				if v := c.Query(p); v != "" {
					q.Set(p, v)
				}
			}
			q.Set("before", strconv.FormatInt(older, 10))
			page.Older = "/t/" + sc.Tenant.Slug + "/audit?" + q.Encode()
		}
	}

	if page.Chrome, err = s.frame(c, "Audit log · "+sc.Tenant.Name, sc.Tenant.Slug); err != nil {
		s.pageError(c, err)
		return
	}
	s.render(c, status, "dash_audit.html", page)
}

// auditFilterOf reads the page's filters, the same as listAudit's, and its cursor: before, the
// sequence number the page lists entries below (0 for the newest).
func auditFilterOf(c *gin.Context) (audit.Filter, auditFilterForm, int64, error) {
	form := auditFilterForm{Actor: c.Query("actor"), Action: c.Query("action"), Target: c.Query("target"), Outcome: c.Query("outcome"),
		From: c.Query("from"), To: c.Query("to")}
	f := audit.Filter{ActorID: form.Actor, Action: form.Action, TargetID: form.Target, Outcome: form.Outcome}
	for _, t := range []struct {
		name string
		in   *string
		dst  *time.Time
	}{{"from", &form.From, &f.From}, {"to", &form.To, &f.To}} {
		if *t.in == "" {
			continue
		}
		at, err := parseFormTime(*t.in)
		if err != nil {
			return f, form, 0, coffer.Errorf(coffer.EINVALID, "%s must be a time such as 2026-01-31T15:04 (UTC) or an RFC 3339 time", t.name)
		}
		*t.dst, *t.in = at, at.UTC().Format(formTime) // shown back in the field's own format
	}
	if f.Outcome != "" && f.Outcome != audit.OutcomeSuccess && f.Outcome != audit.OutcomeDenied {
		return f, form, 0, coffer.Errorf(coffer.EINVALID, "outcome must be success or denied")
	}
	var before int64
	if v := c.Query("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, form, 0, coffer.Errorf(coffer.EINVALID, "the page's position is not valid: start again from the newest entries")
		}
		before = n
	}
	return f, form, before, nil
}

// parseFormTime reads an RFC 3339 time or a datetime-local field's (taken as UTC).
func parseFormTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	for _, layout := range []string{formTime, "2006-01-02T15:04"} {
		if err == nil {
			break
		}
		t, err = time.Parse(layout, v)
	}
	return t, err
}

// auditHead is the chain's last sequence number (0 for none), found with a few indexed probes
// since the store lists entries oldest first; it holds with gaps in a damaged chain too.
func (s *Server) auditHead(ctx context.Context, chain string) (int64, error) {
	after := func(seq int64) (bool, error) {
		es, err := s.auditLog.Entries(ctx, chain, audit.Filter{}, seq, 1)
		return len(es) > 0, err
	}
	// lo is below the head, hi at or above it.
	lo, hi := int64(0), int64(1024)
	if ok, err := after(0); err != nil || !ok {
		return 0, err
	}
	for {
		ok, err := after(hi)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := after(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi, nil
}

// auditNewestFirst lists the entries matching f below sequence before, newest first, at most
// auditPageSize, and the cursor for older ones (0: there are none). It reads backwards in
// windows of sequence numbers, each one store call that returns every match in the window,
// and gives up after auditScanWindows windows, answering the cursor where it stopped.
func (s *Server) auditNewestFirst(ctx context.Context, chain string, f audit.Filter, before int64) ([]audit.Stored, int64, error) {
	var out []audit.Stored
	w := int64(auditPageSize + 1)
	for range auditScanWindows {
		if before <= 1 {
			return out, 0, nil
		}
		lo := max(0, before-1-w) // the window is lo+1 … before-1
		es, err := s.auditLog.Entries(ctx, chain, f, lo, int(before-1-lo))
		if err != nil {
			return nil, 0, err
		}
		es = slices.DeleteFunc(es, func(e audit.Stored) bool { return e.Seq >= before })
		slices.Reverse(es)
		out = append(out, es...)
		before = lo + 1
		if len(out) > auditPageSize {
			out = out[:auditPageSize]
			return out, out[len(out)-1].Seq, nil
		}
		w = min(w*4, auditMaxWindow)
	}
	if before <= 1 {
		return out, 0, nil
	}
	return out, before, nil
}

// auditReceipt looks up entry q: the entry, for a reveal what it revealed, and whether a
// checkpoint covers it.
func (s *Server) auditReceipt(ctx context.Context, sc tenant.Scope, q string) (auditReceipt, error) {
	r := auditReceipt{Sequence: q}
	seq, err := strconv.ParseInt(q, 10, 64)
	if err != nil || seq < 1 {
		return r, coffer.Errorf(coffer.EINVALID, "the sequence number must be a positive number")
	}
	es, err := s.auditLog.Entries(ctx, sc.Tenant.ID, audit.Filter{}, seq-1, 1)
	if err != nil {
		return r, err
	}
	if len(es) == 0 || es[0].Seq != seq {
		return r, coffer.Errorf(coffer.ENOTFOUND, "no audit entry %d", seq)
	}
	row := auditRowOf(es[0])
	r.Entry = &row
	if es[0].Action == audit.ActionSecretReveal {
		v, err := s.revealedBy(ctx, sc.Tenant.ID, seq)
		if err != nil {
			return r, err
		}
		r.Revealed = &v
	}
	if s.checkpoints != nil {
		_, err := s.checkpoints.Prove(ctx, sc.Tenant.ID, seq)
		switch {
		case err == nil:
			r.Covered = true
			r.Proof = "/api/v1/tenants/" + sc.Tenant.Slug + "/audit/proof?sequence=" + strconv.FormatInt(seq, 10)
		case coffer.ErrorCode(err) != coffer.ENOTFOUND:
			return r, err
		}
	}
	return r, nil
}
