package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

type totpPage struct {
	CSRF    string
	Enabled bool
	Secret  string
	URI     string
	Notice  string
	Error   string
}

type totpCodesPage struct {
	Codes []string
}

// accountTOTP shows the signed-in user's TOTP state: the seed to add to an authenticator app
// while it is not on, the form to turn it off once it is.
func (s *Server) accountTOTP(c *gin.Context) {
	p := principal(c)
	page, err := s.totpPage(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, "totp.html", page)
}

func (s *Server) totpPage(c *gin.Context, p auth.Principal) (totpPage, error) {
	en, err := s.local.svc.TOTPEnrolment(c.Request.Context(), p.User)
	if err != nil {
		return totpPage{}, err
	}
	return totpPage{CSRF: s.csrfToken(c), Enabled: en.Enabled, Secret: en.Secret, URI: en.URI}, nil
}

// confirmTOTP turns TOTP on with a first code and shows the recovery codes, once.
func (s *Server) confirmTOTP(c *gin.Context) {
	p := principal(c)
	account, client := accountKey(p.User.Email), c.ClientIP()
	if wait := s.local.wait(account, client); wait > 0 {
		s.totpPageError(c, p, wait, coffer.Errorf(coffer.ERATELIMITED, "too many wrong codes"))
		return
	}
	codes, err := s.local.svc.ConfirmTOTP(c.Request.Context(), requestActor(c), p.User, c.PostForm("code"))
	if err != nil {
		if errors.Is(err, auth.ErrBadCode) {
			s.local.failed(account, client)
		}
		s.totpPageError(c, p, 0, err)
		return
	}
	s.local.succeeded(account)
	s.render(c, http.StatusOK, "totp_codes.html", totpCodesPage{Codes: codes})
}

// disableTOTP turns TOTP off; it takes a current code, not just the session.
func (s *Server) disableTOTP(c *gin.Context) {
	p := principal(c)
	account, client := accountKey(p.User.Email), c.ClientIP()
	if wait := s.local.wait(account, client); wait > 0 {
		s.totpPageError(c, p, wait, coffer.Errorf(coffer.ERATELIMITED, "too many wrong codes"))
		return
	}
	if err := s.local.svc.DisableTOTP(c.Request.Context(), requestActor(c), p.User, c.PostForm("code")); err != nil {
		if errors.Is(err, auth.ErrBadCode) {
			s.local.failed(account, client)
		}
		s.totpPageError(c, p, 0, err)
		return
	}
	s.local.succeeded(account)
	page, err := s.totpPage(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	page.Notice = "Two-factor sign-in is off. Your recovery codes no longer work."
	s.render(c, http.StatusOK, "totp.html", page)
}

// totpPageError shows the TOTP page again with what went wrong; errors that are not the
// user's to fix get the usual error answer.
func (s *Server) totpPageError(c *gin.Context, p auth.Principal, wait time.Duration, err error) {
	switch coffer.ErrorCode(err) {
	case coffer.EUNAUTHORIZED, coffer.ECONFLICT, coffer.ERATELIMITED, coffer.EINVALID:
	default:
		s.fail(c, err)
		return
	}
	page, perr := s.totpPage(c, p)
	if perr != nil {
		s.fail(c, perr)
		return
	}
	if wait > 0 {
		s.loginRefused(c, false, wait, "totp.html", page)
		return
	}
	page.Error = coffer.ErrorMessage(err)
	s.loginFailed(c, false, err, "totp.html", page)
}
