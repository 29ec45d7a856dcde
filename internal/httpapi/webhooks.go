package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/webhook"
)

type webhookView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedBy *string   `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

func viewWebhook(w webhook.Webhook) webhookView {
	v := webhookView{ID: w.ID, URL: w.URL, Events: w.Events, CreatedAt: w.CreatedAt}
	if w.CreatedBy != "" {
		v.CreatedBy = &w.CreatedBy
	}
	return v
}

type createWebhookReq struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

type createdWebhook struct {
	webhookView
	// SigningSecret is shown here only.
	SigningSecret string `json:"signing_secret"`
}

// createWebhook registers a project's webhook and shows its signing secret once.
func (s *Server) createWebhook(c *gin.Context) {
	var req createWebhookReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	w, secret, err := s.webhooks.Create(c.Request.Context(), actor(c), s.scope(c), webhook.CreateRequest{URL: req.URL, Events: req.Events})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, createdWebhook{webhookView: viewWebhook(w), SigningSecret: secret})
}

func (s *Server) listWebhooks(c *gin.Context) {
	ws, err := s.webhooks.List(c.Request.Context(), s.scope(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	items := make([]webhookView, len(ws))
	for i, w := range ws {
		items[i] = viewWebhook(w)
	}
	c.JSON(http.StatusOK, gin.H{"items": items})
}

func (s *Server) deleteWebhook(c *gin.Context) {
	if err := s.webhooks.Delete(c.Request.Context(), actor(c), s.scope(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type deliveryView struct {
	ID            string     `json:"id"`
	EventID       int64      `json:"event_id"`
	EventType     string     `json:"event_type"`
	EventAt       time.Time  `json:"event_at"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	LastStatus    *int       `json:"last_status_code"`
	LastError     string     `json:"last_error"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func viewDelivery(d webhook.Delivery) deliveryView {
	v := deliveryView{ID: d.ID, EventID: d.EventID, EventType: d.EventType, EventAt: d.EventAt, Status: d.Status,
		Attempts: d.Attempts, LastError: d.LastError, NextAttemptAt: d.NextAttemptAt, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.LastStatus != 0 {
		v.LastStatus = &d.LastStatus
	}
	return v
}

// listDeliveries lists a webhook's deliveries, newest event first; the cursor is an event id.
func (s *Server) listDeliveries(c *gin.Context) {
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var before int64
	if p.after != "" {
		if before, err = strconv.ParseInt(p.after, 10, 64); err != nil || before <= 0 {
			s.fail(c, coffer.Errorf(coffer.EINVALID, "cursor is not valid"))
			return
		}
	}
	ds, err := s.webhooks.Deliveries(c.Request.Context(), s.scope(c), c.Param("id"), before, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, ds, func(d webhook.Delivery) string { return strconv.FormatInt(d.EventID, 10) }, viewDelivery)
}
