package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type loginFlags struct {
	server     string
	store      string
	tokenStdin bool
	days       int
}

func (a *cli) loginCommand() *cobra.Command {
	var f loginFlags
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in through the browser and keep a personal token",
		Long: "Starts a device sign-in: open the printed address, sign in as usual, check that the page shows the\n" +
			"same code, and approve. coffer then receives a personal token of its own that expires (30 days by\n" +
			"default) and keeps it in the system keychain. Where there is no usable keychain (headless Linux,\n" +
			"WSL, containers) it says so before the sign-in starts and, with your consent (a prompt, --store file\n" +
			"or COFFER_TOKEN_STORE=file), keeps the token in a file readable only by you in the config directory.\n" +
			"The choice is remembered for later commands. COFFER_SERVER and COFFER_TOKEN still win over it.",
		Example: "  coffer login --server https://coffer.example.com\n" +
			"  coffer login --store file                       # no keychain here\n" +
			"  echo \"$TOKEN\" | coffer login --token-stdin      # scripts: keep a token you already have",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.login(cmd.Context(), f) },
	}
	cmd.Flags().StringVar(&f.server, "server", "", "the Coffer server (https://coffer.example.com); default: the last one signed in to")
	cmd.Flags().StringVar(&f.store, "store", "", "where to keep the token: keychain or file (default: the remembered choice, else keychain)")
	cmd.Flags().BoolVar(&f.tokenStdin, "token-stdin", false, "read a token from standard input instead of signing in through the browser")
	cmd.Flags().IntVar(&f.days, "expires-in-days", 30, "lifetime of the token the sign-in yields (1 to 90 days)")
	return cmd
}

func (a *cli) login(ctx context.Context, f loginFlags) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	server := strings.TrimRight(a.getenv("COFFER_SERVER"), "/")
	if server == "" {
		server = strings.TrimRight(f.server, "/")
	}
	if server == "" {
		server = cfg.Server
	}
	if server == "" {
		return fail(exitUsage, "which server? pass --server https://coffer.example.com (or set COFFER_SERVER)")
	}
	if err := checkServer(server); err != nil {
		return err
	}
	if a.getenv("COFFER_TOKEN") != "" {
		a.warn("COFFER_TOKEN is set: later commands use it, not the token this sign-in keeps")
	}
	store, err := a.chooseStore(f.store, cfg)
	if err != nil {
		return err
	}

	var res signedIn
	if f.tokenStdin {
		res, err = a.tokenFromStdin(ctx, server)
	} else {
		res, err = a.deviceSignIn(ctx, server, f.days)
	}
	if err != nil {
		return err
	}

	// The token exists now: it is kept somewhere whatever happens below.
	where, err := a.keepToken(&store, server, res.token)
	if err != nil {
		return err
	}
	cfg = storedConfig{Server: server, Store: store, TokenID: res.tokenID, User: res.user, ExpiresAt: res.expiresAt}
	if err := a.saveConfig(cfg); err != nil {
		return fail(exitConfig, "the token is kept in %s, but the sign-in could not be recorded: %v", where, err)
	}
	if a.jsonOut {
		return a.printJSON(map[string]any{"server": server, "user": res.user, "token_id": res.tokenID, "expires_at": res.expiresAt, "store": store, "stored_in": where})
	}
	exp := "never expires"
	if res.expiresAt != nil {
		exp = "expires " + res.expiresAt.Local().Format("2006-01-02 15:04 MST")
	}
	fmt.Fprintf(a.stderr, "Signed in to %s as %s. The token %s and is kept in %s.\n", server, res.user, exp, where)
	return nil
}

// chooseStore picks the token store before any sign-in starts: the flag, else
// COFFER_TOKEN_STORE, else the remembered choice, else the keychain. A keychain that fails
// its probe is said in one line; the file is then used only with consent.
func (a *cli) chooseStore(flag string, cfg storedConfig) (string, error) {
	store, explicit := flag, flag != ""
	if store == "" {
		store, explicit = a.getenv("COFFER_TOKEN_STORE"), a.getenv("COFFER_TOKEN_STORE") != ""
	}
	if store == "" {
		store = cfg.Store
	}
	if store == "" {
		store = storeKeychain
	}
	switch store {
	case storeFile:
		return storeFile, nil
	case storeKeychain:
	default:
		return "", fail(exitUsage, "--store must be keychain or file, not %q", store)
	}
	err := probeKeychain()
	if err == nil {
		return storeKeychain, nil
	}
	path, perr := a.tokenFile("…")
	if perr == nil {
		path = filepath.Dir(path)
	}
	a.warn("the system keychain cannot be used here (%v)", oneLine(err))
	if explicit {
		return "", fail(exitConfig, "--store keychain was asked for; use --store file to keep the token in %s instead", path)
	}
	if ok, err := a.askConsent(fmt.Sprintf("Keep the token in a file readable only by you, in %s? [y/N] ", path)); err != nil || !ok {
		if err != nil {
			return "", err
		}
		return "", fail(exitConfig, "no token store: pass --store file or set COFFER_TOKEN_STORE=file to keep the token in %s", path)
	}
	return storeFile, nil
}

// probeKeychain writes, reads back and deletes an item, so an unusable keychain is found
// before the sign-in, not after it.
func probeKeychain() error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	item, value := "probe-"+hex.EncodeToString(b[:]), hex.EncodeToString(b[:])
	if err := systemKeychain.Set(keychainService, item, value); err != nil {
		return err
	}
	got, err := systemKeychain.Get(keychainService, item)
	_ = systemKeychain.Delete(keychainService, item)
	if err != nil {
		return err
	}
	if got != value {
		return errors.New("it returned something else than was written")
	}
	return nil
}

// askConsent asks a yes/no question on a terminal; without one the answer is no.
func (a *cli) askConsent(question string) (bool, error) {
	if !a.stdinIsTerminal() {
		return false, nil
	}
	fmt.Fprint(a.stderr, question)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

// keepToken stores the token in *store; if the keychain refuses it even though it passed
// the probe, the token goes to the file instead (and *store says so): a token just obtained
// is never dropped.
func (a *cli) keepToken(store *string, server, token string) (string, error) {
	path, err := a.tokenFile(server)
	if err != nil {
		return "", err
	}
	if *store == storeKeychain {
		err := systemKeychain.Set(keychainService, server, token)
		if err == nil {
			_ = os.Remove(path) // an older file copy
			return describeStore(storeKeychain, ""), nil
		}
		a.warn("the keychain refused the token (%v); keeping it in %s (mode 0600) instead", oneLine(err), path)
		*store = storeFile
	}
	if err := writePrivateFile(filepath.Dir(path), filepath.Base(path), []byte(token+"\n")); err != nil {
		return "", fail(exitConfig, "the token could not be kept in %s: %v; it was not lost: revoke it on the account page and sign in again", path, err)
	}
	_ = systemKeychain.Delete(keychainService, server)
	return describeStore(storeFile, path), nil
}

type signedIn struct {
	token, tokenID, user string
	expiresAt            *time.Time
}

// tokenFromStdin reads a token and checks it with the server before keeping it.
func (a *cli) tokenFromStdin(ctx context.Context, server string) (signedIn, error) {
	b, err := io.ReadAll(io.LimitReader(a.stdin, 4096))
	if err != nil {
		return signedIn{}, fail(exitNoInput, "reading the token from standard input: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return signedIn{}, fail(exitUsage, "--token-stdin: standard input held no token")
	}
	me, err := fetchMe(ctx, newAPIClient(server, tok))
	if err != nil {
		return signedIn{}, exitOf(err)
	}
	return signedIn{token: tok, tokenID: me.TokenID, user: me.User.Email, expiresAt: me.TokenExpiresAt}, nil
}

// deviceSignIn runs the device authorization: start, show the address and code, poll.
func (a *cli) deviceSignIn(ctx context.Context, server string, days int) (signedIn, error) {
	c := newAPIClient(server, "")
	host, _ := os.Hostname()
	if host == "" {
		host = "an unnamed host"
	}
	var start struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	if err := c.do(ctx, http.MethodPost, apiPath("device", "code"), nil,
		map[string]any{"client_name": "coffer CLI on " + host, "expires_in_days": days}, &start); err != nil {
		return signedIn{}, exitOf(err)
	}
	fmt.Fprintf(a.stderr, "To sign in, open\n\n    %s\n\nand check that the page shows the code %s, then approve. Waiting (up to %d minutes; Ctrl-C stops)…\n",
		start.VerificationURIComplete, a.bold(start.UserCode), (start.ExpiresIn+59)/60)
	interval := time.Duration(max(start.Interval, 1)) * time.Second
	deadline := time.Now().Add(time.Duration(start.ExpiresIn) * time.Second)
	for {
		select {
		case <-ctx.Done():
			return signedIn{}, fail(exitFailure, "sign-in stopped")
		case <-time.After(interval):
		}
		var got struct {
			Token     string     `json:"token"`
			TokenID   string     `json:"token_id"`
			ExpiresAt *time.Time `json:"expires_at"`
			User      struct {
				Email string `json:"email"`
			} `json:"user"`
		}
		resp, err := c.send(ctx, http.MethodPost, apiPath("device", "token"), nil, map[string]string{"device_code": start.DeviceCode}, "")
		var ae *apiError
		var ue *unreachableError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
			interval += 2 * time.Second
			continue
		case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
			return signedIn{}, fail(exitDenied, "the sign-in was denied in the browser")
		case errors.As(err, &ae) && ae.Status == http.StatusGone:
			return signedIn{}, fail(exitDenied, "the sign-in expired before it was approved: run `coffer login` again")
		case errors.As(err, &ue) && time.Now().Before(deadline):
			continue // the server may be restarting; the code lives on
		case err != nil:
			return signedIn{}, exitOf(err)
		}
		status := resp.StatusCode
		err = decodeBody(resp, &got)
		if err != nil {
			return signedIn{}, fail(exitUnavailable, "%s answered the sign-in with an unreadable body: %v", server, err)
		}
		if status == http.StatusOK && got.Token != "" {
			return signedIn{token: got.Token, tokenID: got.TokenID, user: got.User.Email, expiresAt: got.ExpiresAt}, nil
		}
	}
}

// me is GET /api/v1/me.
type me struct {
	User struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"user"`
	Kind           string     `json:"kind"`
	TokenID        string     `json:"token_id"`
	TokenExpiresAt *time.Time `json:"token_expires_at"`
}

func fetchMe(ctx context.Context, c *apiClient) (me, error) {
	var m me
	return m, c.do(ctx, http.MethodGet, apiPath("me"), nil, nil, &m)
}

func (a *cli) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "whoami",
		Short:   "Show the server, the user, the token's expiry and where the token is kept",
		Example: "  coffer whoami\n  coffer whoami --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cr, err := a.client()
			if err != nil {
				return err
			}
			m, err := fetchMe(cmd.Context(), c)
			if err != nil {
				return exitOf(err)
			}
			where := cr.source
			if where != "COFFER_TOKEN" && where != "keychain" {
				where = "file " + where
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"server": cr.server, "user": m.User, "kind": m.Kind, "token_id": m.TokenID,
					"expires_at": m.TokenExpiresAt, "stored_in": where})
			}
			exp := "never"
			if m.TokenExpiresAt != nil {
				exp = m.TokenExpiresAt.Local().Format("2006-01-02 15:04 MST")
				if left := time.Until(*m.TokenExpiresAt); left < 72*time.Hour {
					exp += a.yellow(fmt.Sprintf(" (in %s: run `coffer login` soon)", left.Round(time.Minute)))
				}
			}
			return a.table([][]string{{"SERVER", "USER", "TOKEN", "EXPIRES", "STORED IN"},
				{cr.server, m.User.Email, m.Kind, exp, where}})
		},
	}
}

func (a *cli) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke the stored token on the server and delete it here",
		Long: "Revokes the signed-in token on the server (and every token it created), then deletes it from the\n" +
			"keychain or file. If the server cannot be reached the token is kept, so that it can still be revoked:\n" +
			"try again, or revoke it on the account page.",
		Example: "  coffer logout",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.getenv("COFFER_TOKEN") != "" {
				return fail(exitUsage, "COFFER_TOKEN is set: logout ends the stored sign-in only; unset COFFER_TOKEN first")
			}
			c, cr, err := a.client()
			if err != nil {
				return err
			}
			m, err := fetchMe(cmd.Context(), c)
			var ae *apiError
			switch {
			case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
				// Already expired or revoked: only the local copy is left.
			case err != nil:
				return exitOf(err)
			default:
				if err := c.do(cmd.Context(), http.MethodDelete, apiPath("tokens", m.TokenID), nil, nil, nil); err != nil {
					return exitOf(err)
				}
			}
			if err := a.forgetToken(cr.server, cr.config); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Signed out of %s: the token is revoked and deleted here.\n", cr.server)
			return nil
		},
	}
}

// forgetToken deletes the server's token from both stores and the sign-in from the config,
// keeping the server and the store choice.
func (a *cli) forgetToken(server string, cfg storedConfig) error {
	if err := systemKeychain.Delete(keychainService, server); err != nil && cfg.Store == storeKeychain && !isNotFound(err) {
		return fail(exitConfig, "the token is revoked, but deleting it from the keychain failed: %v", err)
	}
	path, err := a.tokenFile(server)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(exitConfig, "the token is revoked, but deleting %s failed: %v", path, err)
	}
	cfg.TokenID, cfg.User, cfg.ExpiresAt = "", "", nil
	return a.saveConfig(cfg)
}

func decodeBody(resp *http.Response, out any) error {
	defer resp.Body.Close()
	return jsonDecode(io.LimitReader(resp.Body, 1<<20), out)
}

// oneLine keeps an error's text on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
