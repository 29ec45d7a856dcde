package httpapi

import "github.com/gin-gonic/gin"

// tenantPages adds the dashboard's tenant-wide pages (audit log, tokens) to ts, the group of
// /t/:tenant routes behind pageScope.
func (s *Server) tenantPages(ts *gin.RouterGroup) {
	ts.GET("/audit", s.auditPage)
	ts.GET("/tokens", s.tokensPage)
	ts.POST("/tokens/:id/revoke", s.revokeTokenPage)
	s.memberPages(ts)
	s.adminPages(ts)
}
