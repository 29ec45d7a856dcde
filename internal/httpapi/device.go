package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/auth"
)

// Device sign-in (coffer login): the client starts it and polls through the API; the user
// answers it on the /device page, signed in as for any page.

type deviceCodeReq struct {
	ClientName string `json:"client_name"`
	// ExpiresInDays is the lifetime of the token the sign-in yields (0: 30 days).
	ExpiresInDays int `json:"expires_in_days"`
}

type deviceCodeView struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// startDevice begins a device sign-in; limited per client address.
func (s *Server) startDevice(c *gin.Context) {
	ip := c.ClientIP()
	if !s.deviceStarts.allow(ip) {
		s.fail(c, coffer.Errorf(coffer.ERATELIMITED, "too many sign-ins started from this address; wait a minute"))
		return
	}
	s.deviceStarts.spend(ip)
	var req deviceCodeReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	a := requestActor(c)
	d, err := s.auth.StartDeviceAuthorization(c.Request.Context(), req.ClientName, a.SourceIP, a.UserAgent, req.ExpiresInDays)
	if err != nil {
		s.fail(c, err)
		return
	}
	uri := strings.TrimRight(s.cfg.BaseURL, "/") + "/device"
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, deviceCodeView{DeviceCode: d.DeviceCode, UserCode: d.UserCode, VerificationURI: uri,
		VerificationURIComplete: uri + "?code=" + d.UserCode, ExpiresIn: int(time.Until(d.ExpiresAt).Seconds()),
		Interval: int(d.Interval.Seconds())})
}

type deviceTokenReq struct {
	DeviceCode string `json:"device_code"`
}

type deviceTokenView struct {
	Token     string     `json:"token"`
	TokenID   string     `json:"token_id"`
	ExpiresAt *time.Time `json:"expires_at"`
	User      userView   `json:"user"`
}

// pollDevice answers a client's poll: 202 while the user has not answered, 429 when polled
// faster than the interval, 403 when denied, 410 when expired or already collected, and 200
// with the token (this once) when approved.
func (s *Server) pollDevice(c *gin.Context) {
	var req deviceTokenReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	d, tok, secret, err := s.auth.PollDeviceAuthorization(c.Request.Context(), requestActor(c), req.DeviceCode)
	if err != nil {
		s.fail(c, err)
		return
	}
	interval := int(auth.DevicePollInterval.Seconds())
	switch d.Status {
	case auth.DevicePending, auth.DeviceApproved:
		c.JSON(http.StatusAccepted, gin.H{"status": "authorization_pending", "interval": interval})
	case auth.DeviceSlowDown:
		s.fail(c, &coffer.Error{Code: coffer.ERATELIMITED, Message: "slow down: poll at most once per interval", Details: map[string]any{"interval": interval}})
	case auth.DeviceDenied:
		s.fail(c, coffer.Errorf(coffer.EFORBIDDEN, "the sign-in was denied"))
	case auth.DeviceRedeemed:
		if secret == "" {
			s.fail(c, coffer.Errorf(coffer.EGONE, "this sign-in's token was already collected"))
			return
		}
		c.JSON(http.StatusOK, deviceTokenView{Token: secret, TokenID: tok.ID, ExpiresAt: tok.ExpiresAt, User: viewUser(d.User)})
	default: // expired
		s.fail(c, coffer.Errorf(coffer.EGONE, "the sign-in expired before it was approved; start again"))
	}
}

type devicePage struct {
	Code     string
	User     string
	CSRF     string
	Device   *auth.DeviceAuthorization
	Answered string // "approved" or "denied"
	Error    string
}

// devicePageGet shows the code form, or, with ?code=, the sign-in waiting for that code with
// what the user needs to recognise it as theirs.
func (s *Server) devicePageGet(c *gin.Context) {
	p := principal(c)
	page := devicePage{User: p.User.Email, CSRF: s.csrfToken(c), Code: c.Query("code")}
	status := http.StatusOK
	if page.Code != "" {
		if !s.deviceLookup(c, p.User.ID) {
			return
		}
		d, err := s.auth.DeviceAuthorizationByCode(c.Request.Context(), page.Code)
		switch code := coffer.ErrorCode(err); {
		case err == nil:
			page.Device, page.Code = &d, normalizedCode(page.Code)
		case code == coffer.EINVALID || code == coffer.ENOTFOUND:
			page.Error, status = coffer.ErrorMessage(err), http.StatusNotFound
		default:
			s.fail(c, err)
			return
		}
	}
	c.Header("Cache-Control", "no-store")
	s.render(c, status, "device.html", page)
}

// devicePagePost approves or denies the sign-in with the posted code.
func (s *Server) devicePagePost(c *gin.Context) {
	p := principal(c)
	if !s.deviceLookup(c, p.User.ID) {
		return
	}
	code, approve := c.PostForm("code"), c.PostForm("decision") == "approve"
	page := devicePage{User: p.User.Email, CSRF: s.csrfToken(c), Code: code}
	d, err := s.auth.DecideDeviceAuthorization(c.Request.Context(), actor(c), p, code, approve)
	switch code := coffer.ErrorCode(err); {
	case err == nil:
		page.Device, page.Answered = &d, d.Status
		s.render(c, http.StatusOK, "device.html", page)
	case code == coffer.EINVALID || code == coffer.ENOTFOUND || code == coffer.ECONFLICT || code == coffer.EFORBIDDEN:
		page.Error = coffer.ErrorMessage(err)
		s.render(c, statusOf[code], "device.html", page)
	default:
		s.fail(c, err)
	}
}

// deviceLookup limits how many codes one user may try: a user code is short, and guessing
// one would approve someone else's client as this user.
func (s *Server) deviceLookup(c *gin.Context, userID string) bool {
	key := "device:" + userID
	if !s.authLimiter.allow(key) {
		s.fail(c, coffer.Errorf(coffer.ERATELIMITED, "too many codes tried; wait a minute"))
		return false
	}
	s.authLimiter.spend(key)
	return true
}

func normalizedCode(in string) string {
	code, _ := auth.NormalizeUserCode(in)
	return code
}
