package httpapi

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/internal/secrets"
)

type environmentKeyView struct {
	Project       string    `json:"project"`
	Environment   string    `json:"environment"`
	DataKeyID     string    `json:"data_key_id"`
	CreatedAt     time.Time `json:"created_at"`
	AgeSeconds    int64     `json:"age_seconds"`
	SealCount     int64     `json:"seal_count"`
	DataKeys      int       `json:"data_keys"`
	RotationState string    `json:"rotation_state"`
}

type keyJobView struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Done       int64      `json:"done"`
	Total      int64      `json:"total"`
	Error      string     `json:"error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

type tenantKeysView struct {
	// KEK is "platform" or the ARN of the tenant's own KMS key. The platform key's id is not
	// shown: it names the operator's cloud account, not anything of the tenant's.
	KEK          string               `json:"kek"`
	Environments []environmentKeyView `json:"environments"`
	Jobs         []keyJobView         `json:"jobs"`
}

func viewKeyJob(j secrets.Job) keyJobView {
	return keyJobView{ID: j.ID, Kind: j.Kind, State: j.State, Done: j.Done, Total: j.Total, Error: j.Error,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt}
}

func (s *Server) getKeys(c *gin.Context) {
	st, err := s.keyAdmin.Status(c.Request.Context(), s.scope(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	v := tenantKeysView{KEK: "platform", Environments: []environmentKeyView{}, Jobs: []keyJobView{}}
	if st.TenantKEK != "" {
		v.KEK = st.TenantKEK
	}
	now := time.Now()
	for _, e := range st.Environments {
		state := "current"
		switch {
		case e.Stale > 0:
			state = "rewrap_pending"
		case e.Keys > 1:
			state = "reseal_pending"
		}
		v.Environments = append(v.Environments, environmentKeyView{Project: e.Project, Environment: e.Environment, DataKeyID: e.KeyID,
			CreatedAt: e.CreatedAt, AgeSeconds: int64(now.Sub(e.CreatedAt).Seconds()), SealCount: e.Seals, DataKeys: e.Keys, RotationState: state})
	}
	for _, j := range st.Jobs {
		v.Jobs = append(v.Jobs, viewKeyJob(j))
	}
	c.JSON(http.StatusOK, v)
}

type setKEKReq struct {
	KeyID string `json:"key_id"`
}

func (s *Server) setKEK(c *gin.Context) {
	var req setKEKReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.keyAdmin.SetTenantKEK(c.Request.Context(), actor(c), s.scope(c), req.KeyID)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"kek": req.KeyID, "job": viewKeyJob(j)})
}

type rotateReq struct {
	Project     string `json:"project"`
	Environment string `json:"environment"`
}

func (s *Server) rotateKeys(c *gin.Context) {
	var req rotateReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	j, err := s.keyAdmin.Rotate(c.Request.Context(), actor(c), s.scope(c), req.Project, req.Environment)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, viewKeyJob(j))
}

func (s *Server) getKeyJob(c *gin.Context) {
	j, err := s.keyAdmin.Job(c.Request.Context(), s.scope(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewKeyJob(j))
}
