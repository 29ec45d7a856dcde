// Command dex runs Dex's OpenID provider as a library for Coffer's OIDC sign-in tests: in-memory
// storage, one static client, one static password user and the local password connector. It
// lives in its own module so Dex's dependencies stay out of Coffer's go.mod.
//
// The first line on stdout is the issuer URL, printed once the listener is bound, so a test can
// start it with -listen 127.0.0.1:0 and read where it went.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dexidp/dex/server"
	"github.com/dexidp/dex/server/connectors"
	"github.com/dexidp/dex/server/signer"
	"github.com/dexidp/dex/storage"
	"github.com/dexidp/dex/storage/memory"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dex:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, issuer                       string
	clientID, clientSecret, redirectURIs string
	email, password, username, userID    string
}

func run() error {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback address to listen on")
	flag.StringVar(&o.issuer, "issuer", "", "issuer URL (default: http://<bound address>/dex)")
	flag.StringVar(&o.clientID, "client-id", "coffer", "static client id")
	flag.StringVar(&o.clientSecret, "client-secret", "", "static client secret (required)")
	flag.StringVar(&o.redirectURIs, "redirect-uri", "", "comma-separated redirect URIs of the client (required)")
	flag.StringVar(&o.email, "email", "admin@example.com", "email of the static password user")
	flag.StringVar(&o.password, "password", "", "password of the static user, bcrypt-hashed at start (required)")
	flag.StringVar(&o.username, "username", "admin", "username of the static user")
	flag.StringVar(&o.userID, "user-id", "08a8684b-db88-4b73-90a9-3cd1661f5466", "user id (subject) of the static user")
	flag.Parse()
	if o.clientSecret == "" || o.redirectURIs == "" || o.password == "" {
		return errors.New("-client-secret, -redirect-uri and -password are required")
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if o.issuer == "" {
		o.issuer = "http://" + ln.Addr().String() + "/dex"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	handler, err := newServer(ctx, o, logger)
	if err != nil {
		return err
	}

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Println(o.issuer)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func newServer(ctx context.Context, o options, logger *slog.Logger) (*server.Server, error) {
	// Cost 10 is the least Dex's password connector accepts.
	hash, err := bcrypt.GenerateFromPassword([]byte(o.password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}

	var s storage.Storage = memory.New(logger)
	s = storage.WithStaticClients(s, []storage.Client{{
		ID:           o.clientID,
		Secret:       o.clientSecret,
		RedirectURIs: strings.Split(o.redirectURIs, ","),
		Name:         "Coffer",
	}})
	s = storage.WithStaticPasswords(s, []storage.Password{{
		Email:    o.email,
		Hash:     hash,
		Username: o.username,
		UserID:   o.userID,
	}}, logger)
	// What Dex's enablePasswordDB setting does: the local connector, backed by the passwords.
	s = storage.WithStaticConnectors(s, []storage.Connector{{
		ID:   connectors.LocalConnector,
		Name: "Email",
		Type: connectors.LocalConnector,
	}})

	now := func() time.Time { return time.Now().UTC() }
	idTokensValidFor := time.Hour
	local := signer.LocalConfig{KeysRotationPeriod: "6h"}
	sig, err := local.Open(ctx, s, idTokensValidFor, now, logger)
	if err != nil {
		return nil, fmt.Errorf("open signer: %w", err)
	}

	srv, err := server.NewServer(ctx, server.Config{
		Issuer:             o.issuer,
		Storage:            s,
		SkipApprovalScreen: true,
		IDTokensValidFor:   idTokensValidFor,
		Now:                now,
		Logger:             logger,
		Signer:             sig,
	})
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	return srv, nil
}
