package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
)

const (
	projectPath = "/api/v1/tenants/default/projects"
	envPath     = projectPath + "/web/environments/development"
	secretsPath = envPath + "/secrets"
	valuesQuery = "?include=values"
)

// createProject creates the project web, which comes with a development environment.
func createProject(ctx context.Context, s *server) error {
	return s.call(ctx, http.MethodPost, projectPath, map[string]string{"slug": "web", "name": "Web"}, http.StatusCreated, nil)
}

// secretName is the i-th secret's name; names sort in the order they are numbered.
func secretName(i int) string { return fmt.Sprintf("SECRET_%04d", i) }

// randomValue is a realistic value: 40 to 64 characters of URL-safe base64, as API keys and
// passwords tend to be.
func randomValue() (string, error) {
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:])[:40+mrand.IntN(25)], nil
}

// writeVersion writes one new version of secrets 0..len(values)-1 in a single bulk request
// through the service, which seals each value under the environment's data key.
func writeVersion(ctx context.Context, s *server, values []string) error {
	type entry struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	entries := make([]entry, len(values))
	for i, v := range values {
		entries[i] = entry{Name: secretName(i), Value: v}
	}
	return s.call(ctx, http.MethodPatch, secretsPath, map[string]any{"secrets": entries}, http.StatusOK, nil)
}

// newValues makes n random values.
func newValues(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		v, err := randomValue()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// checkLatest reads the environment's values once, all in one page, and requires exactly
// want (want[i] is secret i's latest value): the load then measures the real read.
func checkLatest(ctx context.Context, s *server, want []string) error {
	var page struct {
		Items []struct {
			Name  string  `json:"name"`
			Value *string `json:"value"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	path := secretsPath + valuesQuery + "&limit=" + strconv.Itoa(len(want))
	if err := s.call(ctx, http.MethodGet, path, nil, http.StatusOK, &page); err != nil {
		return err
	}
	if len(page.Items) != len(want) || page.NextCursor != "" {
		return fmt.Errorf("read %d secrets (next cursor %q), want all %d in one page", len(page.Items), page.NextCursor, len(want))
	}
	for i, it := range page.Items {
		if it.Name != secretName(i) || it.Value == nil || *it.Value != want[i] {
			return fmt.Errorf("secret %s: value missing or not the one written", it.Name)
		}
	}
	return nil
}

// checkVersion reads one secret at one version and requires the value written then.
func checkVersion(ctx context.Context, s *server, secret, version int, want string) error {
	var got struct {
		Version int     `json:"version"`
		Value   *string `json:"value"`
	}
	path := secretsPath + "/" + secretName(secret) + "?version=" + strconv.Itoa(version)
	if err := s.call(ctx, http.MethodGet, path, nil, http.StatusOK, &got); err != nil {
		return err
	}
	if got.Version != version || got.Value == nil || *got.Value != want {
		return fmt.Errorf("secret %s version %d: value missing or not the one written", secretName(secret), version)
	}
	return nil
}
