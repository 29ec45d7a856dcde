package main

// This file is `coffer run --fallback PATH`: an encrypted copy of the last values read, used
// when — and only when — the server cannot answer.
//
// The copy is one JSON object (written 0600, through a temporary file renamed into place):
//
//	{
//	  "format": "coffer-fallback", "version": 1,
//	  "server": "https://coffer.example.com", "tenant": "acme", "project": "web",
//	  "environment": "production", "resolved": false,
//	  "fetched_at": "2026-11-30T07:00:00.123456789Z",
//	  "salt": "<base64, 32 random bytes, new for every write>",
//	  "nonce": "<base64, 12 random bytes, new for every write>",
//	  "ciphertext": "<base64, AES-256-GCM of the JSON object {name: value}, with its tag>"
//	}
//
// The key is HKDF-SHA256(secret = the API token, salt, info = "coffer fallback v1" followed
// by the server, tenant, project and environment, each length-prefixed), 32 bytes. The
// additional data is the format, version, server, tenant, project, environment, the resolved
// flag and fetched_at (as Unix nanoseconds), each length-prefixed: the header is readable
// without the token (to say whose copy it is), but a copy moved to another scope, with its
// fetch time moved forward, or opened with another token fails to decrypt. The age that
// decides whether a copy may be used is therefore the authenticated one. A new token (after
// `coffer login`) cannot open an older copy: the next good read replaces it.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	fallbackFormat  = "coffer-fallback"
	fallbackVersion = 1
)

// fallbackFile is the copy on disk.
type fallbackFile struct {
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	Server      string    `json:"server"`
	Tenant      string    `json:"tenant"`
	Project     string    `json:"project"`
	Environment string    `json:"environment"`
	Resolved    bool      `json:"resolved"`
	FetchedAt   time.Time `json:"fetched_at"`
	Salt        []byte    `json:"salt"`
	Nonce       []byte    `json:"nonce"`
	Ciphertext  []byte    `json:"ciphertext"`
}

// lengthPrefixed encodes fields unambiguously: each as a 4-byte big-endian length and its bytes.
func lengthPrefixed(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// key derives the copy's AES-256 key from the token, bound to the server and scope.
func (h *fallbackFile) key(token string) ([]byte, error) {
	info := "coffer fallback v1" + string(lengthPrefixed(h.Server, h.Tenant, h.Project, h.Environment))
	return hkdf.Key(sha256.New, []byte(token), h.Salt, info, 32)
}

// aad is the additional data: everything in the header but the salt, nonce and ciphertext.
func (h *fallbackFile) aad() []byte {
	return lengthPrefixed(h.Format, strconv.Itoa(h.Version), h.Server, h.Tenant, h.Project, h.Environment,
		strconv.FormatBool(h.Resolved), strconv.FormatInt(h.FetchedAt.UnixNano(), 10))
}

func (h *fallbackFile) aead(token string) (cipher.AEAD, error) {
	k, err := h.key(token)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// fallbackHeader is the header a copy of this run's scope must have.
func fallbackHeader(c *apiClient, f *runFlags) fallbackFile {
	return fallbackFile{Format: fallbackFormat, Version: fallbackVersion, Server: c.server,
		Tenant: f.scope.tenant, Project: f.scope.project, Environment: f.scope.env, Resolved: f.resolve}
}

// sealFallback encrypts vars, read at fetchedAt, into a copy's bytes.
func sealFallback(token string, h fallbackFile, vars map[string]string, fetchedAt time.Time) ([]byte, error) {
	h.FetchedAt = fetchedAt.UTC().Round(0)
	h.Salt, h.Nonce = make([]byte, 32), make([]byte, 12)
	if _, err := rand.Read(h.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(h.Nonce); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(vars)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	g, err := h.aead(token)
	if err != nil {
		return nil, err
	}
	h.Ciphertext = g.Seal(nil, h.Nonce, plain, h.aad())
	return json.MarshalIndent(h, "", "  ")
}

// errFallbackOpen is a copy that does not decrypt: another token, or a changed file.
var errFallbackOpen = errors.New("it cannot be decrypted with this token (it was written with another token, or changed)")

// openFallback decrypts a copy whose header must be want's (server and scope); it returns
// the values and their authenticated fetch time.
func openFallback(token string, want fallbackFile, data []byte) (map[string]string, time.Time, error) {
	var h fallbackFile
	if err := json.Unmarshal(data, &h); err != nil || h.Format != fallbackFormat {
		return nil, time.Time{}, errors.New("it is not a coffer fallback copy")
	}
	if h.Version != fallbackVersion {
		return nil, time.Time{}, fmt.Errorf("its format version %d is not one this coffer reads (%d)", h.Version, fallbackVersion)
	}
	if h.Server != want.Server || h.Tenant != want.Tenant || h.Project != want.Project || h.Environment != want.Environment {
		return nil, time.Time{}, fmt.Errorf("it holds %s/%s/%s of %s, not %s/%s/%s of %s",
			h.Tenant, h.Project, h.Environment, h.Server, want.Tenant, want.Project, want.Environment, want.Server)
	}
	if h.Resolved != want.Resolved {
		return nil, time.Time{}, fmt.Errorf("it holds values read with resolve=%t, not %t", h.Resolved, want.Resolved)
	}
	if len(h.Salt) != 32 || len(h.Nonce) != 12 {
		return nil, time.Time{}, errFallbackOpen
	}
	g, err := h.aead(token)
	if err != nil {
		return nil, time.Time{}, err
	}
	plain, err := g.Open(nil, h.Nonce, h.Ciphertext, h.aad())
	if err != nil {
		return nil, time.Time{}, errFallbackOpen
	}
	defer clear(plain)
	var vars map[string]string
	if err := json.Unmarshal(plain, &vars); err != nil {
		return nil, time.Time{}, fmt.Errorf("its values are not readable: %w", err)
	}
	return vars, h.FetchedAt, nil
}

// keepFallback writes the copy after a good read (with --fallback). A copy that cannot be
// written is worth a warning, not a failed run.
func (a *cli) keepFallback(c *apiClient, f *runFlags, vars map[string]string, fetchedAt time.Time) {
	if f.fallback == "" {
		return
	}
	data, err := sealFallback(c.token, fallbackHeader(c, f), vars, fetchedAt)
	if err == nil {
		err = writePrivateFile(filepath.Dir(f.fallback), filepath.Base(f.fallback), data)
	}
	if err != nil {
		a.warn("could not write the fallback copy %s: %v", f.fallback, err)
	}
}

// loadFallback answers from the copy when the server could not (cause, an exit error of
// exitUnavailable): only a copy of this server and scope, that this token opens, and no
// older than --fallback-max-age. Any refusal keeps exit code 69 and names cause.
func (a *cli) loadFallback(c *apiClient, f *runFlags, cause error) (map[string]string, error) {
	data, err := os.ReadFile(f.fallback)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fail(exitUnavailable, "%v; and there is no fallback copy at %s yet", cause, f.fallback)
	}
	if err != nil {
		return nil, fail(exitUnavailable, "%v; and the fallback copy cannot be read: %v", cause, err)
	}
	vars, fetchedAt, err := openFallback(c.token, fallbackHeader(c, f), data)
	if err != nil {
		return nil, fail(exitUnavailable, "%v; and the fallback copy %s cannot be used: %v", cause, f.fallback, err)
	}
	age := max(time.Since(fetchedAt), 0)
	if age > f.fallbackMaxAge {
		return nil, fail(exitUnavailable, "%v; and the fallback copy %s is %s old, older than --fallback-max-age %s: not using it",
			cause, f.fallback, roundAge(age), f.fallbackMaxAge)
	}
	a.warn("%v; using the fallback copy %s read %s ago", cause, f.fallback, roundAge(age))
	return vars, nil
}

// roundAge is an age for people: milliseconds under a second, else seconds.
func roundAge(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
