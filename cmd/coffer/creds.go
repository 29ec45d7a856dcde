package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Where a token is kept.
const (
	storeKeychain = "keychain" // the OS keychain, through go-keyring
	storeFile     = "file"     // a 0600 file in the user's config directory
)

// keychainService names Coffer's items in the OS keychain; the item's user is the server.
const keychainService = "coffer"

// storedConfig is what `coffer login` remembers for later commands, in config.json of the
// user's config directory (0600). It never holds the token itself.
type storedConfig struct {
	Server string `json:"server,omitempty"`
	// Store is where the token is: storeKeychain or storeFile.
	Store     string     `json:"store,omitempty"`
	TokenID   string     `json:"token_id,omitempty"`
	User      string     `json:"user,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// configDir is $XDG_CONFIG_HOME/coffer (or the platform's equivalent).
func (a *cli) configDir() (string, error) {
	if d := a.getenv("COFFER_CONFIG_DIR"); d != "" {
		return d, nil
	}
	base := a.getenv("XDG_CONFIG_HOME")
	if base == "" {
		var err error
		if base, err = os.UserConfigDir(); err != nil {
			return "", fail(exitConfig, "no config directory: %v (set COFFER_CONFIG_DIR)", err)
		}
	}
	return filepath.Join(base, "coffer"), nil
}

func (a *cli) loadConfig() (storedConfig, error) {
	var c storedConfig
	dir, err := a.configDir()
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fail(exitConfig, "reading the stored sign-in: %v", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fail(exitConfig, "%s is not valid JSON: %v", filepath.Join(dir, "config.json"), err)
	}
	return c, nil
}

func (a *cli) saveConfig(c storedConfig) error {
	dir, err := a.configDir()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writePrivateFile(dir, "config.json", append(b, '\n'))
}

// writePrivateFile writes name in dir (created 0700) with mode 0600, through a temporary
// file renamed into place, so a crash leaves the old file or the new one.
func writePrivateFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// tokenFile is the file store's path for a server's token.
func (a *cli) tokenFile(server string) (string, error) {
	dir, err := a.configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "tokens", fileSafe(server)), nil
}

// fileSafe turns a server URL into a file name.
func fileSafe(server string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"))
}

// credentials are the server and token a command uses, and where the token came from.
type credentials struct {
	server, token string
	// source is "COFFER_TOKEN", "keychain" or the token file's path.
	source string
	config storedConfig
}

// credentials resolves the server and token: COFFER_SERVER and COFFER_TOKEN win; otherwise
// the stored sign-in's.
func (a *cli) credentials() (credentials, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return credentials{}, err
	}
	c := credentials{server: strings.TrimRight(a.getenv("COFFER_SERVER"), "/"), token: a.getenv("COFFER_TOKEN"), config: cfg}
	if c.server == "" {
		c.server = cfg.Server
	}
	if c.server == "" {
		return c, fail(exitConfig, "no server: run `coffer login --server https://coffer.example.com` or set COFFER_SERVER")
	}
	if err := checkServer(c.server); err != nil {
		return c, err
	}
	if c.token != "" {
		c.source = "COFFER_TOKEN"
		return c, nil
	}
	if cfg.Server != c.server || cfg.Store == "" {
		return c, fail(exitConfig, "not signed in to %s: run `coffer login` (or set COFFER_TOKEN)", c.server)
	}
	tok, where, err := a.readToken(cfg.Store, c.server)
	if err != nil {
		return c, err
	}
	c.token, c.source = tok, where
	return c, nil
}

// checkServer refuses a server address a token must not be sent to: anything but https://,
// except plain http:// to this machine (local development).
func checkServer(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fail(exitConfig, "the server address %q is not https://host[:port]", server)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fail(exitConfig, "refusing to send a token over plain HTTP to %s: use https://", u.Host)
	}
	return fail(exitConfig, "the server address %q is not https://host[:port]", server)
}

// readToken reads the stored token of server from store.
func (a *cli) readToken(store, server string) (token, where string, err error) {
	switch store {
	case storeKeychain:
		tok, err := systemKeychain.Get(keychainService, server)
		if err != nil {
			return "", "", fail(exitConfig, "the token for %s is not in the keychain (%v): run `coffer login`", server, err)
		}
		return tok, "keychain", nil
	case storeFile:
		path, err := a.tokenFile(server)
		if err != nil {
			return "", "", err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", "", fail(exitConfig, "the token for %s cannot be read from %s (%v): run `coffer login`", server, path, errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), path, nil
	}
	return "", "", fail(exitConfig, "unknown token store %q in the stored sign-in: run `coffer login`", store)
}

// client is an API client with the resolved credentials.
func (a *cli) client() (*apiClient, credentials, error) {
	c, err := a.credentials()
	if err != nil {
		return nil, c, err
	}
	return newAPIClient(c.server, c.token), c, nil
}

// describeStore says where a token is kept, for messages.
func describeStore(store, path string) string {
	if store == storeFile {
		return fmt.Sprintf("the file %s (mode 0600)", path)
	}
	return "the system keychain"
}
