// Command server runs Coffer. With no flags it serves on 127.0.0.1:8080 from ./coffer-data
// (embedded SQLite and a generated local master key); see README.md for every setting.
// "coffer-server keys status|rewrap|rotate" runs key operations with the same settings;
// "coffer-server audit verify" checks an audit export or a read receipt offline;
// "coffer-server healthcheck" exits 0 when the local server is ready (container health checks);
// "coffer-server version" prints the build.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cofferhq/coffer/internal/app"
)

// Set at link time: go build -ldflags "-X main.version=v1.2.3 -X main.commit=… -X main.date=…".
var version, commit, date string

func main() {
	app.TuneRuntime()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coffer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keys" {
		return app.RunKeys(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "audit" {
		return app.RunAudit(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return app.RunHealthcheck(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "version" {
		app.PrintVersion(stdout, app.Build{Version: version, Commit: commit, Date: date})
		return nil
	}
	cfg, err := app.ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, stderr)
	a, err := app.New(ctx, cfg, log, stdout, app.Options{})
	if err != nil {
		return err
	}
	return a.Serve(ctx)
}
