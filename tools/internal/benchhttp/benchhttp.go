// Package benchhttp holds the small HTTP helpers the benchmark tools use to set up and check
// the server they measure (never for the measured load, which internal/loadgen drives).
package benchhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client keeps enough idle connections for set-up done by several workers at once (seeding
// thousands of environments): http.DefaultClient keeps two per host and would dial again for
// nearly every request, leaving thousands of sockets in TIME_WAIT.
var client = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}()

// Do sends one request with a JSON body (nil for none) and returns the answer read whole,
// giving up after timeout.
func Do(ctx context.Context, timeout time.Duration, method, url string, header http.Header, in []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(in))
	if err != nil {
		return nil, nil, err
	}
	req.Header = header.Clone()
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The URL holds no credential (the token travels in a header), so errors may quote it.
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp, body, nil
}

// Snippet keeps error bodies short; they are the server's JSON error, never a secret value.
func Snippet(b []byte) string {
	const limit = 300
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

// Call sends in as JSON and requires status want.
func Call(ctx context.Context, method, url string, header http.Header, in any, want int) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, body, err := Do(ctx, 30*time.Second, method, url, header, b)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, want, Snippet(body))
	}
	return nil
}
