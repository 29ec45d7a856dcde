package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
)

type resetPage struct {
	Code    string
	Invalid bool
	Error   string
}

// issuePasswordReset makes a one-time link with which a user sets a new password; instance
// admins only. The link is in the answer once; only a hash of its code is kept.
func (s *Server) issuePasswordReset(c *gin.Context) {
	code, expires, err := s.local.svc.IssuePasswordReset(c.Request.Context(), actor(c), principal(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{
		"reset_url":  strings.TrimRight(s.cfg.BaseURL, "/") + "/password/reset?code=" + url.QueryEscape(code),
		"expires_at": expires,
	})
}

// resetForm shows the new-password form for a live link, or says the link is spent.
func (s *Server) resetForm(c *gin.Context) {
	code := c.Query("code")
	if err := s.local.svc.CheckPasswordReset(c.Request.Context(), code); err != nil {
		if coffer.ErrorCode(err) != coffer.ENOTFOUND {
			s.fail(c, err)
			return
		}
		s.render(c, http.StatusNotFound, "reset.html", resetPage{Invalid: true, Error: coffer.ErrorMessage(err)})
		return
	}
	s.render(c, http.StatusOK, "reset.html", resetPage{Code: code})
}

type resetReq struct {
	Code            string `json:"code" form:"code"`
	Password        string `json:"password" form:"password"`
	PasswordConfirm string `json:"-" form:"password_confirm"`
}

// resetSubmit spends a reset link and sets the new password; the user's sessions end. Unknown
// or spent codes count against the address like failed sign-ins.
func (s *Server) resetSubmit(c *gin.Context) {
	var req resetReq
	wantJSON, ok := s.bindPost(c, &req)
	if !ok {
		return
	}
	page := resetPage{Code: req.Code}
	client := c.ClientIP()
	if wait := s.local.clients.wait(client, time.Now()); wait > 0 {
		s.loginRefused(c, wantJSON, wait, "reset.html", page)
		return
	}
	if !wantJSON && req.Password != req.PasswordConfirm {
		page.Error = "the two passwords differ"
		s.render(c, http.StatusUnprocessableEntity, "reset.html", page)
		return
	}
	userID, err := s.local.svc.ResetPassword(c.Request.Context(), requestActor(c), req.Code, req.Password)
	if err != nil {
		switch coffer.ErrorCode(err) {
		case coffer.ENOTFOUND:
			s.local.clients.fail(client, time.Now())
			page = resetPage{Invalid: true}
		case coffer.EINVALID:
		default:
			s.fail(c, err)
			return
		}
		page.Error = coffer.ErrorMessage(err)
		s.loginFailed(c, wantJSON, err, "reset.html", page)
		return
	}
	s.log.InfoContext(c.Request.Context(), "password reset", "user", userID)
	// This browser may hold a session of the user, now ended; drop the dead cookie too.
	s.clearCookie(c, sessionCookie)
	if wantJSON {
		c.Status(http.StatusNoContent)
		return
	}
	s.render(c, http.StatusOK, "reset_done.html", nil)
}
