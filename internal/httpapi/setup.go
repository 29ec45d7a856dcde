package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// Setup holds the one-time setup code this process printed. Only its hash is kept; it is
// spent by the first successful setup, and the database's own once-only guard stops a second
// setup through another replica's code.
type Setup struct {
	mu   sync.Mutex
	hash [32]byte
	live bool
}

// NewSetup returns a Setup with a fresh code, and the code to print.
func NewSetup() (*Setup, string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", err
	}
	code := base64.RawURLEncoding.EncodeToString(b[:])
	return &Setup{hash: sha256.Sum256([]byte(code)), live: true}, code, nil
}

// check reports whether code is this process's live setup code, in constant time.
func (st *Setup) check(code string) bool {
	if st == nil {
		return false
	}
	h := sha256.Sum256([]byte(code))
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.live && subtle.ConstantTimeCompare(h[:], st.hash[:]) == 1
}

func (st *Setup) spend() {
	st.mu.Lock()
	st.live = false
	st.mu.Unlock()
}

func (s *Server) render(c *gin.Context, status int, view string, data any) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := s.views.ExecuteTemplate(c.Writer, view, data); err != nil {
		s.log.ErrorContext(c.Request.Context(), "render page", "view", view, "err", err)
	}
}

type indexPage struct {
	NeedsSetup bool
	BaseURL    string
	// SignedIn is the signed-in user's e-mail, if any; CSRF their session's form token.
	SignedIn, CSRF string
}

func (s *Server) index(c *gin.Context) {
	needs, err := s.auth.Bootstrapped(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	page := indexPage{NeedsSetup: !needs, BaseURL: s.cfg.BaseURL}
	if p, ok := s.signedIn(c); ok {
		page.SignedIn, page.CSRF = p.User.Email, s.csrfToken(c)
	}
	s.render(c, http.StatusOK, "index.html", page)
}

type setupPage struct {
	Code  string
	Error string
	// LocalLogin shows the password field: the owner signs in with it.
	LocalLogin bool
}

func (s *Server) setupForm(c *gin.Context) {
	code := c.Query("code")
	if !s.setup.check(code) {
		s.render(c, http.StatusNotFound, "setup_closed.html", nil)
		return
	}
	s.render(c, http.StatusOK, "setup.html", setupPage{Code: code, LocalLogin: s.local != nil})
}

type setupReq struct {
	Code       string `json:"code" form:"code"`
	Email      string `json:"email" form:"email"`
	Name       string `json:"name" form:"name"`
	TenantSlug string `json:"tenant_slug" form:"tenant_slug"`
	TenantName string `json:"tenant_name" form:"tenant_name"`
	Password   string `json:"password" form:"password"`
}

// setupSubmit creates the first owner. It answers JSON to JSON requests (scripts) and a page
// to the browser form.
func (s *Server) setupSubmit(c *gin.Context) {
	var req setupReq
	wantJSON, ok := s.bindPost(c, &req)
	if !ok {
		return
	}
	if !s.setup.check(req.Code) {
		if !s.authLimiter.allow(c.ClientIP()) {
			s.fail(c, coffer.Errorf(coffer.ERATELIMITED, "too many failed attempts from this address; wait a minute"))
			return
		}
		s.authLimiter.spend(c.ClientIP())
		if wantJSON {
			s.fail(c, coffer.Errorf(coffer.ENOTFOUND, "setup is closed or the code is not valid"))
			return
		}
		s.render(c, http.StatusNotFound, "setup_closed.html", nil)
		return
	}
	if err := s.setupPasswordError(req.Password, !wantJSON); err != nil {
		if !wantJSON {
			s.render(c, http.StatusUnprocessableEntity, "setup.html", setupPage{Code: req.Code, Error: coffer.ErrorMessage(err), LocalLogin: s.local != nil})
			return
		}
		s.fail(c, err)
		return
	}
	u, token, err := s.auth.Bootstrap(c.Request.Context(), auth.BootstrapRequest{
		Email: req.Email, Name: req.Name, TenantSlug: req.TenantSlug, TenantName: req.TenantName,
	})
	if err != nil {
		if !wantJSON && coffer.ErrorCode(err) == coffer.EINVALID {
			s.render(c, http.StatusUnprocessableEntity, "setup.html", setupPage{Code: req.Code, Error: coffer.ErrorMessage(err), LocalLogin: s.local != nil})
			return
		}
		if coffer.ErrorCode(err) == coffer.ECONFLICT {
			s.setup.spend()
		}
		s.fail(c, err)
		return
	}
	s.setup.spend()
	s.log.InfoContext(c.Request.Context(), "instance set up", "user", u.ID, "tenant", req.TenantSlug)
	passwordSet := s.setupOwner(c, u, req.Password, !wantJSON)
	if wantJSON {
		c.JSON(http.StatusCreated, gin.H{"user": viewUser(u), "tenant": req.TenantSlug, "token": token, "password_set": passwordSet})
		return
	}
	s.render(c, http.StatusCreated, "setup_done.html", struct{ Token, TenantSlug, BaseURL string }{token, req.TenantSlug, s.cfg.BaseURL})
}
