package httpapi

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/auth"
)

type tokensPage struct {
	Chrome     chrome
	TenantName string
	Items      []auth.TenantToken
	Flash      string
}

// tokensPage lists every live token that can reach the tenant, each with a revoke form; the
// service decides who may see them, as for GET …/tokens.
func (s *Server) tokensPage(c *gin.Context) {
	sc := s.scope(c)
	ts, err := s.auth.ListTenantTokens(c.Request.Context(), sc)
	if err != nil {
		s.pageError(c, err)
		return
	}
	ch, err := s.frame(c, "Tokens · "+sc.Tenant.Name, sc.Tenant.Slug)
	if err != nil {
		s.pageError(c, err)
		return
	}
	var flash string
	if n := c.Query("revoked"); n != "" {
		flash = "Revoked " + n + "."
	}
	s.render(c, http.StatusOK, "dash_tokens.html", tokensPage{Chrome: ch, TenantName: sc.Tenant.Name, Items: ts, Flash: flash})
}

// revokeTokenPage is a tokens page's revoke form: the token is refused from its next request
// on (auth.Service.RevokeTenantToken, as DELETE …/tokens/:id).
func (s *Server) revokeTokenPage(c *gin.Context) {
	sc := s.scope(c)
	ctx := c.Request.Context()
	id := c.Param("id")
	// The flash names the token as the server knows it, not as the form said.
	what := "the token"
	if ts, err := s.auth.ListTenantTokens(ctx, sc); err == nil {
		if i := slices.IndexFunc(ts, func(t auth.TenantToken) bool { return t.ID == id }); i >= 0 {
			what = ts[i].Name + " (" + ts[i].DisplayPrefix + "…)"
		}
	}
	if err := s.auth.RevokeTenantToken(ctx, actor(c), sc, id); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/tokens?revoked="+url.QueryEscape(what))
}
