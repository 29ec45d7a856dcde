package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiClient calls the Coffer REST API with a bearer token.
type apiClient struct {
	server string // scheme://host[:port], no trailing slash
	token  string
	hc     *http.Client
}

// requestTimeout bounds every API call (the event stream of `run --watch` is not one).
const requestTimeout = 30 * time.Second

func newAPIClient(server, token string) *apiClient {
	return &apiClient{server: strings.TrimRight(server, "/"), token: token, hc: &http.Client{Timeout: requestTimeout}}
}

// apiError is the server's error answer, in its one JSON shape.
type apiError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	Details   map[string]any
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// unreachableError is a request that got no answer.
type unreachableError struct {
	server string
	err    error
}

func (e *unreachableError) Error() string { return fmt.Sprintf("cannot reach %s: %v", e.server, e.err) }
func (e *unreachableError) Unwrap() error { return e.err }

// send makes one request and returns the response when its status is 2xx; any other status
// is read into an *apiError, and no answer at all is an *unreachableError. body, when not
// nil, is sent as JSON unless it is an io.Reader (sent as contentType). The caller closes
// the returned body.
func (c *apiClient) send(ctx context.Context, method, path string, query url.Values, body any, contentType string) (*http.Response, error) {
	u := c.server + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, contentType = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fail(exitConfig, "server address %q: %v", c.server, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "coffer-cli/"+version())
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &unreachableError{server: c.server, err: errors.Unwrap(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readAPIError(resp)
}

// readAPIError reads a failed answer (a request's, or a refused upgrade's) into an *apiError.
func readAPIError(resp *http.Response) *apiError {
	ae := &apiError{Status: resp.StatusCode, Code: "http_" + fmt.Sprint(resp.StatusCode), Message: http.StatusText(resp.StatusCode),
		RequestID: resp.Header.Get("X-Request-ID")}
	var eb struct {
		Error *struct {
			Code      string         `json:"code"`
			Message   string         `json:"message"`
			RequestID string         `json:"request_id"`
			Details   map[string]any `json:"details"`
		} `json:"error"`
	}
	if resp.Body != nil && json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb) == nil && eb.Error != nil {
		ae.Code, ae.Message, ae.Details = eb.Error.Code, eb.Error.Message, eb.Error.Details
		if eb.Error.RequestID != "" {
			ae.RequestID = eb.Error.RequestID
		}
	}
	return ae
}

// do makes a JSON request and decodes a JSON answer into out (when out is not nil).
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, query, in, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(out); err != nil {
		return fail(exitUnavailable, "%s answered %s %s with an unreadable body: %v", c.server, method, path, err)
	}
	return nil
}

// exitOf maps an error of the API to the exit code and one line for stderr. A refused token
// tells the user how to get a new one.
func exitOf(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	var ue *unreachableError
	if errors.As(err, &ue) {
		return &exitError{exitUnavailable, err}
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		return &exitError{exitFailure, err}
	}
	switch {
	case ae.Status == http.StatusUnauthorized:
		return &exitError{exitDenied, fmt.Errorf("%w; the token is expired, revoked or wrong: run `coffer login` (or set COFFER_TOKEN)", ae)}
	case ae.Status == http.StatusForbidden:
		return &exitError{exitDenied, ae}
	case ae.Status == http.StatusNotFound:
		return &exitError{exitNotFound, ae}
	case ae.Status == http.StatusConflict || ae.Status == http.StatusPreconditionFailed:
		return &exitError{exitConflict, ae}
	case ae.Status == http.StatusTooManyRequests:
		return &exitError{exitTempFail, ae}
	case ae.Status >= 500:
		return &exitError{exitUnavailable, ae}
	case ae.Status == http.StatusBadRequest || ae.Status == http.StatusUnprocessableEntity || ae.Status == http.StatusRequestEntityTooLarge:
		return &exitError{exitDataErr, ae}
	}
	return &exitError{exitFailure, ae}
}

// apiPath joins escaped path segments under /api/v1.
func apiPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func jsonDecode(r io.Reader, out any) error { return json.NewDecoder(r).Decode(out) }
