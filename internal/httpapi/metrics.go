package httpapi

import (
	"time"

	"github.com/gin-gonic/gin"
)

// HTTPObserver records one answered request. route is the route template (c.FullPath(),
// such as /api/v1/tenants/:tenant/projects), "" when no route matched; never the URL, whose
// slugs and secret names must not become metric labels. *metrics.Metrics implements it.
type HTTPObserver interface {
	ObserveHTTP(route, method string, status int, d time.Duration)
}

// observe times every request that reaches the engine, 404 and 405 included, and reports
// it by route template and final status. It runs outermost, so a panic turned into a 500 by
// recoverPanic is recorded as that 500.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.metrics.ObserveHTTP(c.FullPath(), c.Request.Method, c.Writer.Status(), time.Since(start))
}
