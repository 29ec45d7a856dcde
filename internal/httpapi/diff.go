package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
)

type diffEntryView struct {
	Name        string  `json:"name"`
	FromVersion *int    `json:"from_version"`
	ToVersion   *int    `json:"to_version"`
	FromValue   *string `json:"from_value,omitempty"`
	ToValue     *string `json:"to_value,omitempty"`
}

func viewDiffEntries(es []secrets.DiffEntry) []diffEntryView {
	out := make([]diffEntryView, len(es))
	for i, e := range es {
		out[i] = diffEntryView{Name: e.Name, FromValue: e.FromValue, ToValue: e.ToValue}
		if e.FromVersion > 0 {
			out[i].FromVersion = &es[i].FromVersion
		}
		if e.ToVersion > 0 {
			out[i].ToVersion = &es[i].ToVersion
		}
	}
	return out
}

// twoEnvironments resolves the from and to environments of a project-level request.
func (s *Server) twoEnvironments(c *gin.Context, from, to string) (tenant.Scope, tenant.Scope, bool) {
	if from == "" || to == "" {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "give both from and to environments"))
		return tenant.Scope{}, tenant.Scope{}, false
	}
	sc := s.scope(c)
	a, err := s.tenants.EnvironmentScope(c.Request.Context(), sc, from)
	if err != nil {
		s.fail(c, err)
		return tenant.Scope{}, tenant.Scope{}, false
	}
	b, err := s.tenants.EnvironmentScope(c.Request.Context(), sc, to)
	if err != nil {
		s.fail(c, err)
		return tenant.Scope{}, tenant.Scope{}, false
	}
	return a, b, true
}

// diffEnvironments compares two environments of the project.
func (s *Server) diffEnvironments(c *gin.Context) {
	withValues := false
	switch c.Query("include") {
	case "":
	case "values":
		withValues = true
	default:
		s.fail(c, coffer.Errorf(coffer.EINVALID, "include must be values"))
		return
	}
	from, to, ok := s.twoEnvironments(c, c.Query("from"), c.Query("to"))
	if !ok {
		return
	}
	d, err := s.secrets.Diff(c.Request.Context(), actor(c), from, to, withValues)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"from": from.Environment.Slug, "to": to.Environment.Slug,
		"only_in_from": viewDiffEntries(d.OnlyFrom), "only_in_to": viewDiffEntries(d.OnlyTo),
		"different": viewDiffEntries(d.Different), "same": d.Same})
}

type promoteReq struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Names []struct {
		Name        string `json:"name"`
		FromVersion int    `json:"from_version"`
		ToVersion   *int   `json:"to_version"` // null or 0: absent in to
	} `json:"names"`
}

// promoteSecrets copies chosen secrets from one environment to another, as the diff showed them.
func (s *Server) promoteSecrets(c *gin.Context) {
	var req promoteReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	from, to, ok := s.twoEnvironments(c, req.From, req.To)
	if !ok {
		return
	}
	items := make([]secrets.Promotion, len(req.Names))
	for i, n := range req.Names {
		items[i] = secrets.Promotion{Name: n.Name, FromVersion: n.FromVersion}
		if n.ToVersion != nil {
			items[i].ToVersion = *n.ToVersion
		}
	}
	res, err := s.secrets.Promote(c.Request.Context(), actor(c), from, to, items)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := viewResults(res)
	c.JSON(http.StatusOK, gin.H{"from": from.Environment.Slug, "to": to.Environment.Slug, "items": out})
}
