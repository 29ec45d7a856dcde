package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
	"github.com/cofferhq/coffer/internal/envfile"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/tenant"
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
	resolve, ok := s.resolveParam(c)
	if !ok {
		return
	}
	if resolve && !opts.WithValues {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "resolve=true works on values: add include=values"))
		return
	}
	if at := c.Query("at"); at != "" {
		s.listSecretsAt(c, sc, at, opts)
		return
	}
	if f := c.Query("format"); f != "" {
		s.exportSecrets(c, sc, f, opts.WithValues, resolve)
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
	if resolve {
		// Resolved values need the whole page first: references are expanded across it.
		var page []secrets.Secret
		more, err = s.secrets.Reveal(c.Request.Context(), actor(c), sc, opts, func(sec *secrets.Secret, value []byte) {
			v := string(value)
			sec.Value = &v
			page = append(page, *sec)
		})
		if err == nil {
			err = s.resolve(c, sc, page)
		}
		for i := range page {
			if err == nil {
				render(&page[i], []byte(*page[i].Value), true)
			}
		}
	} else if opts.WithValues {
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
	resolve, ok := s.resolveParam(c)
	if !ok {
		return
	}
	sec, err := s.secrets.Get(c.Request.Context(), actor(c), sc, c.Param("name"), version)
	if err != nil {
		s.fail(c, err)
		return
	}
	if resolve {
		one := []secrets.Secret{sec}
		if err := s.resolve(c, sc, one); err != nil {
			s.fail(c, err)
			return
		}
		sec = one[0]
	}
	setETag(c, sec.Version)
	c.JSON(http.StatusOK, viewSecret(sec))
}

// resolveParam reads ?resolve=true|false.
func (s *Server) resolveParam(c *gin.Context) (bool, bool) {
	switch c.Query("resolve") {
	case "", "false":
		return false, true
	case "true":
		return true, true
	}
	s.fail(c, coffer.Errorf(coffer.EINVALID, "resolve must be true or false"))
	return false, false
}

// resolve expands the references in revealed secrets' values in place, with the caller's
// access to everything they name (audited as reveals).
func (s *Server) resolve(c *gin.Context, sc tenant.Scope, list []secrets.Secret) error {
	values := make(map[string]*string, len(list))
	for i := range list {
		values[list[i].Name] = list[i].Value
	}
	return s.secrets.Resolve(c.Request.Context(), actor(c), sc, s.tenants, values)
}

// parseAt reads a point in time.
func parseAt(v string) (time.Time, error) {
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, coffer.Errorf(coffer.EINVALID, "at must be an RFC 3339 time, such as 2026-11-29T12:00:00Z")
	}
	return at, nil
}

// listSecretsAt answers the environment as it was at a time, whole (not paged).
func (s *Server) listSecretsAt(c *gin.Context, sc tenant.Scope, v string, opts secrets.ListOptions) {
	if opts.IncludeDeleted || c.Query("format") != "" || c.Query("cursor") != "" {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "at takes only include=values"))
		return
	}
	at, err := parseAt(v)
	if err != nil {
		s.fail(c, err)
		return
	}
	list, err := s.secrets.ListAt(c.Request.Context(), actor(c), sc, at, opts.WithValues)
	if err != nil {
		s.fail(c, err)
		return
	}
	items := make([]secretView, len(list))
	for i := range list {
		items[i] = viewSecret(list[i])
	}
	c.JSON(http.StatusOK, gin.H{"at": at.UTC(), "items": items})
}

type rollbackEnvReq struct {
	At string `json:"at"`
}

// rollbackEnvironment puts the environment back as it was at a time, in one transaction.
func (s *Server) rollbackEnvironment(c *gin.Context) {
	var req rollbackEnvReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	at, err := parseAt(req.At)
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.secrets.RollbackTo(c.Request.Context(), actor(c), s.scope(c), at)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := viewResults(res)
	c.JSON(http.StatusOK, gin.H{"at": at.UTC(), "items": out})
}

// exportFormats are the files an environment can be read as, with their media types.
var exportFormats = map[string]struct {
	write     func([]envfile.Var) []byte
	mediaType string
}{
	"dotenv": {envfile.Dotenv, "text/plain; charset=utf-8"},
	"shell":  {envfile.Shell, "text/plain; charset=utf-8"},
	"json":   {envfile.JSON, "application/json; charset=utf-8"},
	"yaml":   {envfile.YAML, "application/yaml; charset=utf-8"},
}

// exportSecrets answers the whole environment (every page, each page's reveal audited) as one
// file in format. Formats carry values, so they need include=values; they are not paged.
func (s *Server) exportSecrets(c *gin.Context, sc tenant.Scope, format string, withValues, resolve bool) {
	f, ok := exportFormats[format]
	if !ok {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "format must be dotenv, shell, json or yaml"))
		return
	}
	if !withValues {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "a format holds values: ask for include=values&format=%s", format))
		return
	}
	var all []secrets.Secret
	opts := secrets.ListOptions{Limit: secrets.MaxBatch, WithValues: true}
	for {
		more, err := s.secrets.Reveal(c.Request.Context(), actor(c), sc, opts, func(sec *secrets.Secret, value []byte) {
			v := string(value)
			sec.Value = &v
			all = append(all, *sec)
			opts.After = sec.Name
		})
		if err != nil {
			s.fail(c, err)
			return
		}
		if !more {
			break
		}
	}
	if resolve {
		if err := s.resolve(c, sc, all); err != nil {
			s.fail(c, err)
			return
		}
	}
	vars := make([]envfile.Var, len(all))
	for i, sec := range all {
		vars[i] = envfile.Var{Name: sec.Name, Value: *sec.Value}
	}
	body := f.write(vars)
	defer clear(body)
	c.Header("Content-Disposition", `attachment; filename="`+sc.Environment.Slug+`.`+map[string]string{"dotenv": "env", "shell": "sh", "json": "json", "yaml": "yaml"}[format]+`"`)
	c.Data(http.StatusOK, f.mediaType, body)
}

// importSecrets writes a dotenv file's variables into the environment as one bulk write: all
// or nothing, new versions of the names it holds; names it does not hold are left alone.
func (s *Server) importSecrets(c *gin.Context) {
	if ct := c.ContentType(); ct != "text/plain" {
		s.fail(c, coffer.Errorf(coffer.EUNSUPPORTED, "send the dotenv file as text/plain"))
		return
	}
	src, err := io.ReadAll(c.Request.Body)
	if err != nil {
		s.fail(c, decodeErr(err))
		return
	}
	defer clear(src)
	vars, err := envfile.Parse(src)
	if err != nil {
		var se *envfile.SyntaxError
		if errors.As(err, &se) {
			s.fail(c, &coffer.Error{Code: coffer.EINVALID, Message: "the dotenv file cannot be read: " + se.Error(),
				Details: map[string]any{"line": se.Line}})
			return
		}
		s.fail(c, err)
		return
	}
	if len(vars) == 0 {
		s.fail(c, coffer.Errorf(coffer.EINVALID, "the file defines no variables"))
		return
	}
	changes := make([]secrets.Change, len(vars))
	for i, v := range vars {
		changes[i] = secrets.Change{Op: secrets.OpPut, Name: v.Name, Value: v.Value}
	}
	s.applyBulk(c, s.scope(c), changes)
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
	expect, err := precondition(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.secrets.Put(c.Request.Context(), actor(c), sc, c.Param("name"), *req.Value, req.Note, expect)
	if err != nil {
		s.fail(c, err)
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	setETag(c, res.Version)
	c.JSON(status, viewResult(res))
}

// setETag names the version a response shows or wrote, for a later If-Match.
func setETag(c *gin.Context, version int) {
	c.Header("ETag", `"`+strconv.Itoa(version)+`"`)
}

// precondition reads compare-and-set headers: If-Match: "<version>" (the secret must be at
// that version) or If-None-Match: * (it must not exist). Only one strong version is taken:
// a list or a weak tag is refused rather than guessed at.
func precondition(c *gin.Context) (*int, error) {
	match, noneMatch := c.GetHeader("If-Match"), c.GetHeader("If-None-Match")
	switch {
	case match != "" && noneMatch != "":
		return nil, coffer.Errorf(coffer.EBADREQUEST, "send If-Match or If-None-Match, not both")
	case noneMatch != "":
		if strings.TrimSpace(noneMatch) != "*" {
			return nil, coffer.Errorf(coffer.EBADREQUEST, `If-None-Match takes only *, to create a secret that does not exist`)
		}
		zero := 0
		return &zero, nil
	case match != "":
		tag := strings.TrimSpace(match)
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(tag, `"`), `"`))
		if err != nil || n < 1 || len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
			return nil, coffer.Errorf(coffer.EBADREQUEST, `If-Match takes one version as an ETag, such as "3"`)
		}
		return &n, nil
	}
	return nil, nil
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

type destroyReq struct {
	Versions []int `json:"versions"`
}

// destroySecretVersions erases versions of a secret for good; their metadata stays.
func (s *Server) destroySecretVersions(c *gin.Context) {
	var req destroyReq
	if err := decode(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	destroyed, err := s.secrets.Destroy(c.Request.Context(), actor(c), s.scope(c), c.Param("name"), req.Versions)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": c.Param("name"), "destroyed": destroyed})
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
	// ExpectedVersion is compare-and-set for this entry: 0 for "does not exist".
	ExpectedVersion *int `json:"expected_version"`
}

type bulkReq struct {
	Secrets []bulkChange `json:"secrets"`
}

// bulkSecrets applies many puts and deletes in one transaction: one bad entry writes none.
func (s *Server) bulkSecrets(c *gin.Context) {
	sc := s.scope(c)
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
			changes[i] = secrets.Change{Op: secrets.OpDelete, Name: b.Name, Expect: b.ExpectedVersion}
		case b.Value == nil:
			s.fail(c, coffer.Errorf(coffer.EINVALID, "secrets[%d]: value is required unless delete is true", i))
			return
		default:
			changes[i] = secrets.Change{Op: secrets.OpPut, Name: b.Name, Value: *b.Value, Note: b.Note, Expect: b.ExpectedVersion}
		}
	}
	s.applyBulk(c, sc, changes)
}

// applyBulk writes changes all or nothing and answers what each did.
func (s *Server) applyBulk(c *gin.Context, sc tenant.Scope, changes []secrets.Change) {
	res, err := s.secrets.Apply(c.Request.Context(), actor(c), sc, changes)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": viewResults(res)})
}
