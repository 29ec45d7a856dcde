// Command kmstest serves the in-memory KMS test server on a local port, so scripts and
// docker-compose can point COFFER_KMS_ENDPOINT at it:
//
//	go run ./internal/crypto/awskms/kmstest/cmd -listen 127.0.0.1:4599 -create-key -alias coffer
//
// With -create-key it prints the new key's ARN as the first line on stdout. Keys live in memory
// and are lost when it exits, except one made with -import-key-id from KMSTEST_KEY_MATERIAL,
// which a restart with the same material recreates (docker-compose.yml uses that). It checks only that requests are SigV4-shaped, so it must never be
// reachable from outside a developer's machine or a test network.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kmstest:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. It is main without the process: a test can run it on port 0.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kmstest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4599", "address to listen on")
	createKey := fs.Bool("create-key", false, "create a symmetric key at start-up and print its ARN")
	importID := fs.String("import-key-id", "", "create a symmetric key with this UUID and the material in $KMSTEST_KEY_MATERIAL, so that restarts keep it (local development)")
	alias := fs.String("alias", "", "with -create-key, also point this alias (e.g. coffer) at the key")
	region := fs.String("region", kmstest.DefaultRegion, "region named in ARNs")
	account := fs.String("account", kmstest.DefaultAccount, "account named in ARNs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *alias != "" && !*createKey && *importID == "" {
		return errors.New("-alias needs -create-key or -import-key-id")
	}
	if *createKey && *importID != "" {
		return errors.New("use -create-key or -import-key-id, not both")
	}

	srv := kmstest.New(kmstest.WithRegion(*region), kmstest.WithAccount(*account))
	var arn string
	switch {
	case *createKey:
		arn = srv.CreateKey()
	case *importID != "":
		// From the environment, not a flag: flags show in process listings.
		material, err := hex.DecodeString(os.Getenv("KMSTEST_KEY_MATERIAL"))
		if err != nil || len(material) != 32 {
			return errors.New("-import-key-id needs KMSTEST_KEY_MATERIAL: 64 hex digits (openssl rand -hex 32)")
		}
		arn, err = srv.ImportKey(*importID, material)
		clear(material)
		if err != nil {
			return fmt.Errorf("import key: %w", err)
		}
	}
	if arn != "" {
		if *alias != "" {
			name := *alias
			if !strings.HasPrefix(name, "alias/") {
				name = "alias/" + name
			}
			if err := srv.CreateAlias(name, arn); err != nil {
				return fmt.Errorf("create alias: %w", err)
			}
			fmt.Fprintf(stderr, "kmstest: %s points at %s\n", name, arn)
		}
		fmt.Fprintln(stdout, arn)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(stderr, "kmstest: serving KMS on http://%s (region %s, account %s; keys in memory only)\n", ln.Addr(), *region, *account)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
