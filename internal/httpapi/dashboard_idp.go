package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
	"github.com/cofferhq/coffer/internal/tenant"
)

// idpOwner is the tenant of a provider form, once the caller may manage its provider (owners,
// decided before the form is read, as the API does). It answers the 404 page when the server
// was built without tenant providers (route-table tests), as idpsOn does for the API.
func (s *Server) idpOwner(c *gin.Context) (tenant.Scope, bool) {
	if s.idps == nil {
		s.pageError(c, coffer.Errorf(coffer.ENOTFOUND, "identity providers are not available"))
		return tenant.Scope{}, false
	}
	sc := s.scope(c)
	if err := tenant.Authorize(sc, tenant.ManageIdentityProvider); err != nil {
		s.pageError(c, err)
		return sc, false
	}
	return sc, true
}

// putIdPPage sets or replaces the tenant's own provider from the settings page, as
// PUT /api/v1/tenants/:tenant/idp. An empty client secret keeps the stored one; the secret
// is never shown back, not even next to a refused form.
func (s *Server) putIdPPage(c *gin.Context) {
	sc, ok := s.idpOwner(c)
	if !ok {
		return
	}
	in := auth.IdPSettings{Issuer: c.PostForm("issuer"), ClientID: c.PostForm("client_id"),
		ClientSecret: c.PostForm("client_secret"), Required: c.PostForm("required") == "on"}
	if _, _, err := s.idps.Put(c.Request.Context(), actor(c), sc, in); err != nil {
		s.formError(c, err, func(status int, problem string) {
			s.renderSettings(c, status, settingsPage{IdPError: problem, Issuer: in.Issuer, ClientID: in.ClientID, Required: in.Required, idpSent: true})
		})
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/settings?idp_saved=1")
}

// deleteIdPPage removes the tenant's own provider, as DELETE /api/v1/tenants/:tenant/idp.
func (s *Server) deleteIdPPage(c *gin.Context) {
	sc, ok := s.idpOwner(c)
	if !ok {
		return
	}
	if err := s.idps.Delete(c.Request.Context(), actor(c), sc); err != nil {
		s.pageError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/t/"+sc.Tenant.Slug+"/settings?idp_removed=1")
}
