package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
)

// statusOf is the one table from error codes to HTTP status.
var statusOf = map[string]int{
	coffer.EBADREQUEST:    http.StatusBadRequest,
	coffer.EINVALID:       http.StatusUnprocessableEntity,
	coffer.EUNAUTHORIZED:  http.StatusUnauthorized,
	coffer.EFORBIDDEN:     http.StatusForbidden,
	coffer.ENOTFOUND:      http.StatusNotFound,
	coffer.EROUTENOTFOUND: http.StatusNotFound,
	coffer.EMETHOD:        http.StatusMethodNotAllowed,
	coffer.ECONFLICT:      http.StatusConflict,
	coffer.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	coffer.EUNSUPPORTED:   http.StatusUnsupportedMediaType,
	coffer.ERATELIMITED:   http.StatusTooManyRequests,
	coffer.EPRECONDITION:  http.StatusPreconditionFailed,
	coffer.EGONE:          http.StatusGone,
	coffer.EUNAVAILABLE:   http.StatusServiceUnavailable,
	coffer.EINTERNAL:      http.StatusInternalServerError,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	RequestID string         `json:"request_id"`
	Details   map[string]any `json:"details,omitempty"`
}

// fail writes err in the one error shape. Internal and unavailable errors are logged with
// their cause; callers only ever see the safe message.
func (s *Server) fail(c *gin.Context, err error) {
	code := coffer.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status, code = http.StatusInternalServerError, coffer.EINTERNAL
	}
	if errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil {
		// The client went away; nothing failed on our side.
		s.log.InfoContext(c.Request.Context(), "request cancelled by the client", "request_id", requestID(c), "route", c.FullPath())
	} else if status >= 500 {
		s.log.ErrorContext(c.Request.Context(), "request failed", "request_id", requestID(c), "route", c.FullPath(), "code", code, "err", err)
	}
	if code == coffer.EUNAUTHORIZED {
		c.Header("WWW-Authenticate", `Bearer realm="coffer"`)
	}
	if code == coffer.EUNAVAILABLE {
		c.Header("Retry-After", "5")
	}
	detail := errorDetail{Code: code, Message: coffer.ErrorMessage(err), RequestID: requestID(c)}
	var ce *coffer.Error
	if errors.As(err, &ce) {
		detail.Details = ce.Details
	}
	c.AbortWithStatusJSON(status, errorBody{Error: detail})
}

// decode reads one JSON object into dst: unknown fields, trailing data, wrong types and
// oversized bodies are refused before anything is changed.
func decode(c *gin.Context, dst any) error {
	if ct := c.ContentType(); ct != "application/json" {
		return coffer.Errorf(coffer.EUNSUPPORTED, "send the body as application/json")
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeErr(err)
		}
		return coffer.Errorf(coffer.EBADREQUEST, "the body must hold exactly one JSON object")
	}
	return nil
}

func decodeErr(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return coffer.Errorf(coffer.ETOOLARGE, "the body is larger than %d bytes", maxErr.Limit)
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return coffer.Errorf(coffer.EBADREQUEST, "the body is not valid JSON")
	case errors.Is(err, io.EOF):
		return coffer.Errorf(coffer.EBADREQUEST, "the body is empty")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return coffer.Errorf(coffer.EBADREQUEST, "the body must be a JSON object")
		}
		return coffer.Errorf(coffer.EBADREQUEST, "field %s must be of type %s", field, typeErr.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The field name comes from the client; it is quoted by encoding/json and holds no
		// value, so naming it back is safe and helpful.
		return coffer.Errorf(coffer.EBADREQUEST, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return coffer.Errorf(coffer.EBADREQUEST, "the body could not be read")
}
