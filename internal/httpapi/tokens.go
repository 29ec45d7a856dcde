package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

func (s *Server) me(c *gin.Context) {
	p := principal(c)
	c.JSON(http.StatusOK, gin.H{"user": viewUser(p.User), "kind": p.Kind, "token_id": p.TokenID, "token_expires_at": p.TokenExpiresAt})
}

func (s *Server) listTokens(c *gin.Context) {
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	ts, err := s.auth.ListTokens(c.Request.Context(), principal(c), p.after, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ts, func(t auth.Token) string { return t.ID }, viewOwnToken)
}

// ownTokenView is a token as its owner sees it: with the token it was created with, since
// revoking that one revokes this one too.
type ownTokenView struct {
	tokenView
	ParentID *string `json:"parent_id"` // null for a root token (bootstrap, a user's first token)
}

func viewOwnToken(t auth.Token) ownTokenView {
	v := ownTokenView{tokenView: viewToken(t)}
	if t.ParentID != "" {
		v.ParentID = &t.ParentID
	}
	return v
}

type createTokenReq struct {
	Name string `json:"name"`
	// ExpiresInDays is optional; zero means the token does not expire.
	ExpiresInDays int `json:"expires_in_days"`
}

type createdToken struct {
	ownTokenView
	Token string `json:"token"`
}

// minting answers 429 once the caller has created too many credentials in a short time.
func (s *Server) minting(c *gin.Context) bool {
	id := principal(c).User.ID
	if !s.mintLimiter.allow(id) {
		s.fail(c, coffer.Errorf(coffer.ERATELIMITED, "too many credentials created; wait a minute"))
		return false
	}
	s.mintLimiter.spend(id)
	return true
}

// createToken mints a token with the caller's token as its parent. The 0..366 bound is the
// request's shape; that the new token may not outlive its parent is auth's rule, answered
// with 422 and the latest expiry allowed.
func (s *Server) createToken(c *gin.Context) {
	if !s.minting(c) {
		return
	}
	var req createTokenReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if req.ExpiresInDays < 0 || req.ExpiresInDays > 366 {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "expires_in_days must be from 0 (never) to 366"))
		return
	}
	t, secret, err := s.auth.CreateToken(c.Request.Context(), actor(c), principal(c), req.Name, time.Duration(req.ExpiresInDays)*24*time.Hour)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, createdToken{ownTokenView: viewOwnToken(t), Token: secret})
}

// revokeToken revokes the token and every token minted from it, transitively.
func (s *Server) revokeToken(c *gin.Context) {
	if err := s.auth.RevokeToken(c.Request.Context(), actor(c), principal(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) disableUser(c *gin.Context) { s.setUserDisabled(c, true) }

func (s *Server) enableUser(c *gin.Context) { s.setUserDisabled(c, false) }

func (s *Server) setUserDisabled(c *gin.Context, disabled bool) {
	if err := s.auth.SetUserDisabled(c.Request.Context(), actor(c), principal(c), c.Param("id"), disabled); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type createUserReq struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

func (s *Server) createUser(c *gin.Context) {
	if !s.minting(c) {
		return
	}
	var req createUserReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	u, secret, err := s.auth.CreateUser(c.Request.Context(), actor(c), principal(c), req.Email, req.Name)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"user": viewUser(u), "token": secret})
}
