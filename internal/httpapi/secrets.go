package httpapi

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/secrets"
)

func (s *Server) listSecrets(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	opts := secrets.ListOptions{After: p.after, Limit: p.limit}
	switch c.Query("include") {
	case "":
	case "values":
		opts.WithValues = true
	case "deleted":
		opts.IncludeDeleted = true
	default:
		s.fail(c, coffer.Errorf(coffer.EINVALID, "include must be values or deleted"))
		return
	}
	buf := bufPool.Get().(*[]byte)
	body := append((*buf)[:0], `{"items":[`...)
	// Plaintext values pass through this buffer: clear it before anyone else can reuse it,
	// whether the page was sent or not.
	defer func() {
		clear(body)
		if cap(body) <= 1<<20 { // let the rare huge page go rather than pin it
			*buf = body[:0]
			bufPool.Put(buf)
		}
	}()
	var (
		more bool
		last string
		n    int
	)
	render := func(sec *secrets.Secret, value []byte, withValue bool) {
		if n > 0 {
			body = append(body, ',')
		}
		body = appendSecret(body, sec, value, withValue)
		last, n = sec.Name, n+1
	}
	if opts.WithValues {
		// Values are written straight from the decryption buffer into the page.
		more, err = s.secrets.Reveal(c.Request.Context(), actor(c), sc, opts, func(sec *secrets.Secret, value []byte) {
			render(sec, value, true)
		})
	} else {
		var list []secrets.Secret
		list, more, err = s.secrets.List(c.Request.Context(), sc, opts)
		for i := range list {
			render(&list[i], nil, false)
		}
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	next := ""
	if more {
		next = encodeCursor(last)
	}
	body = appendPageEnd(body, next)
	// A known length lets net/http send the page in one piece rather than chunked.
	c.Header("Content-Length", strconv.Itoa(len(body)))
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
}

func (s *Server) getSecret(c *gin.Context) {
	sc := s.scope(c)
	version := 0
	if v := c.Query("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(c, coffer.Errorf(coffer.EINVALID, "version must be a positive integer"))
			return
		}
		version = n
	}
	sec, err := s.secrets.Get(c.Request.Context(), actor(c), sc, c.Param("name"), version)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewSecret(sec))
}

type putSecretReq struct {
	Value *string `json:"value"`
	Note  string  `json:"note"`
}

func (s *Server) putSecret(c *gin.Context) {
	sc := s.scope(c)
	var req putSecretReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if req.Value == nil {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "value is required"))
		return
	}
	res, err := s.secrets.Put(c.Request.Context(), actor(c), sc, c.Param("name"), *req.Value, req.Note)
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	c.JSON(status, viewResult(res))
}

func (s *Server) deleteSecret(c *gin.Context) {
	sc := s.scope(c)
	if _, err := s.secrets.Delete(c.Request.Context(), actor(c), sc, c.Param("name")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) restoreSecret(c *gin.Context) {
	sc := s.scope(c)
	res, err := s.secrets.Restore(c.Request.Context(), actor(c), sc, c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewResult(res))
}

type rollbackReq struct {
	Version int `json:"version"`
}

func (s *Server) rollbackSecret(c *gin.Context) {
	sc := s.scope(c)
	var req rollbackReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.secrets.Rollback(c.Request.Context(), actor(c), sc, c.Param("name"), req.Version)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, viewResult(res))
}

func (s *Server) listVersions(c *gin.Context) {
	sc := s.scope(c)
	p, err := parsePage(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	before := 0
	if p.after != "" {
		if before, err = strconv.Atoi(p.after); err != nil {
			s.fail(c, coffer.Errorf(coffer.EINVALID, "cursor is not one this server issued"))
			return
		}
	}
	vs, err := s.secrets.Versions(c.Request.Context(), sc, c.Param("name"), before, p.fetch())
	if err != nil {
		s.fail(c, err)
		return
	}
	respondPage(c, p, vs, func(v secrets.Version) string { return strconv.Itoa(v.Version) }, viewVersion)
}

type bulkChange struct {
	Name   string  `json:"name"`
	Value  *string `json:"value"`
	Note   string  `json:"note"`
	Delete bool    `json:"delete"`
}

type bulkReq struct {
	Secrets []bulkChange `json:"secrets"`
}

// bulkSecrets applies many puts and deletes in one transaction: one bad entry writes none.
func (s *Server) bulkSecrets(c *gin.Context) {
	sc := s.scope(c)
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBulkBodyBytes)
	var req bulkReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	changes := make([]secrets.Change, len(req.Secrets))
	for i, b := range req.Secrets {
		switch {
		case b.Delete && b.Value != nil:
			s.fail(c, coffer.Errorf(coffer.EINVALID, "secrets[%d]: give either a value or delete, not both", i))
			return
		case b.Delete:
			changes[i] = secrets.Change{Op: secrets.OpDelete, Name: b.Name}
		case b.Value == nil:
			s.fail(c, coffer.Errorf(coffer.EINVALID, "secrets[%d]: value is required unless delete is true", i))
			return
		default:
			changes[i] = secrets.Change{Op: secrets.OpPut, Name: b.Name, Value: *b.Value, Note: b.Note}
		}
	}
	res, err := s.secrets.Apply(c.Request.Context(), actor(c), sc, changes)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := make([]resultView, len(res))
	for i, r := range res {
		out[i] = viewResult(r)
	}
	c.JSON(http.StatusOK, gin.H{"items": out})
}
