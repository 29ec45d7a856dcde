package httpapi

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/tenant"
)

// recordDenied audits an authenticated caller's refused attempt on secrets (403, or 404 for
// what they may not see), with outcome denied: probing for secrets leaves a trace. Each
// principal records at most deniedPerMinute a minute, so refusals cannot flood the log. The
// answer is already decided; a failure to record is logged, not turned into another answer.
func (s *Server) recordDenied(c *gin.Context) {
	c.Next()
	status := c.Writer.Status()
	if (status != http.StatusForbidden && status != http.StatusNotFound) || !strings.Contains(c.FullPath(), "/secrets") || s.auditor == nil {
		return
	}
	if _, ok := c.Get(ctxPrincipal); !ok {
		return // not authenticated: a 401, never recorded per caller
	}
	a := actor(c)
	key := a.Type + ":" + a.ID
	if !s.deniedLimiter.allow(key) {
		return
	}
	s.deniedLimiter.spend(key)
	tenantID := "" // the instance chain: the caller could not see the tenant at all
	if sv, ok := c.Get(ctxScope); ok {
		tenantID = sv.(tenant.Scope).Tenant.ID
	}
	target := strings.TrimPrefix(c.Request.URL.Path, "/api/v1/tenants/")
	e := a.New(audit.ActionSecretDenied, tenantID, "secret", c.Param("name"), target,
		map[string]any{"method": c.Request.Method, "status": status})
	e.Outcome = audit.OutcomeDenied
	if err := s.auditor.Append(c.Request.Context(), e); err != nil {
		s.log.ErrorContext(c.Request.Context(), "a refused attempt could not be audited", "request_id", requestID(c), "err", err)
	}
}
