package httpapi

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/tenant"
)

// invitationView is an invitation as shown to the tenant's owners and admins. The code is
// only ever in accept_url, once, in the answer to the create.
type invitationView struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	AcceptURL string    `json:"accept_url,omitempty"`
}

func viewInvitation(inv tenant.Invitation) invitationView {
	return invitationView{ID: inv.ID, Email: inv.Email, Role: string(inv.Role), ExpiresAt: inv.ExpiresAt}
}

type createInvitationReq struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

// createInvitation answers the same for an address that has an account, one that has none
// and one that is already a member: nothing is looked up.
func (s *Server) createInvitation(c *gin.Context) {
	sc := s.scope(c)
	var req createInvitationReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	email, err := normalizeEmail(req.Email)
	if err != nil {
		s.fail(c, err)
		return
	}
	inv, code, err := s.tenants.CreateInvitation(c.Request.Context(), actor(c), sc, email, tenant.Role(req.Role))
	if err != nil {
		s.fail(c, err)
		return
	}
	v := viewInvitation(inv)
	v.AcceptURL = strings.TrimRight(s.cfg.BaseURL, "/") + "/invitations/accept?code=" + url.QueryEscape(code)
	c.JSON(http.StatusCreated, v)
}

func (s *Server) listInvitations(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	invs, err := s.tenants.ListInvitations(c.Request.Context(), sc, p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, invs, func(inv tenant.Invitation) string { return inv.ID }, viewInvitation)
}

func (s *Server) revokeInvitation(c *gin.Context) {
	sc := s.scope(c)
	if err := s.tenants.RevokeInvitation(c.Request.Context(), actor(c), sc, c.Param("invitation")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type acceptInvitationReq struct {
	Code string `json:"code"`
}

type acceptedView struct {
	Tenant        tenantView `json:"tenant"`
	AlreadyMember bool       `json:"already_member"`
}

// acceptInvitation joins the caller to the inviting tenant. Every failure is the same 404.
func (s *Server) acceptInvitation(c *gin.Context) {
	var req acceptInvitationReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	p := principal(c)
	a, err := s.tenants.AcceptInvitation(c.Request.Context(), actor(c), p.User.ID, p.User.Email, req.Code)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, acceptedView{Tenant: viewTenant(a.Tenant, a.Role), AlreadyMember: a.AlreadyMember})
}

// invitationCodeRE is the shape of an invitation code (32 random bytes, base64url).
var invitationCodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

type invitationPage struct {
	Code      string
	AcceptAPI string
	// SignedIn is the signed-in user's e-mail, when there is a session; CSRF its form token.
	SignedIn string
	CSRF     string
	SignIn   string // where to sign in and come back
	// Accepted names the tenant joined, after the form was sent.
	Accepted string
	Error    string
}

// invitationPage is where an invitation link leads. A GET changes nothing: a signed-in
// visitor gets a button that accepts it, anyone else a link to sign in first (and the API call
// for scripts). The code is only echoed back when it has the right shape, and the page is not
// cached (secureHeaders).
func (s *Server) invitationPage(c *gin.Context) {
	code := c.Query("code")
	page := invitationPage{AcceptAPI: strings.TrimRight(s.cfg.BaseURL, "/") + "/api/v1/invitations/accept"}
	status := http.StatusNotFound
	if invitationCodeRE.MatchString(code) {
		page.Code, status = code, http.StatusOK
		page.SignIn = "/login?return_to=" + url.QueryEscape("/invitations/accept?code="+code)
		if p, ok := s.signedIn(c); ok {
			page.SignedIn, page.CSRF = p.User.Email, s.csrfToken(c)
		}
	}
	s.render(c, status, "invitation.html", page)
}

// invitationAcceptForm accepts an invitation for the signed-in user from the invitation page.
func (s *Server) invitationAcceptForm(c *gin.Context) {
	code := c.PostForm("code")
	p := principal(c)
	page := invitationPage{SignedIn: p.User.Email, CSRF: s.csrfToken(c)}
	a, err := s.tenants.AcceptInvitation(c.Request.Context(), actor(c), p.User.ID, p.User.Email, code)
	if err != nil {
		if coffer.ErrorCode(err) != coffer.ENOTFOUND {
			s.fail(c, err)
			return
		}
		page.Error = coffer.ErrorMessage(err)
		s.render(c, http.StatusNotFound, "invitation.html", page)
		return
	}
	page.Accepted = a.Tenant.Name
	s.render(c, http.StatusOK, "invitation.html", page)
}
