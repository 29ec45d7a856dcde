package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/crypto/awskms/kmstest"
)

// kmsServer is the KMS test server on a loopback port, holding the one key every server
// under test wraps its data keys with. It lives for the whole run: its keys exist only in
// its memory, and a server restarted on the same database must find the same key.
type kmsServer struct {
	*kmstest.Server
	url  string
	arn  string
	stop func()
}

// startKMS serves a new KMS test server and points the AWS SDK's credential chain of this
// process at static test credentials: the SDK reads them from the environment, and nothing
// of the developer's own AWS configuration (profiles, session tokens, the instance metadata
// service) must be used, or sent to a test server.
func startKMS() (*kmsServer, error) {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":         "AKIAKMSTEST",
		"AWS_SECRET_ACCESS_KEY":     "kmstest-secret-access-key",
		"AWS_REGION":                kmstest.DefaultRegion,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		if err := os.Unsetenv(k); err != nil {
			return nil, err
		}
	}

	srv := kmstest.New()
	arn := srv.CreateKey()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("KMS test server: %w", err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	return &kmsServer{
		Server: srv,
		url:    "http://" + ln.Addr().String(),
		arn:    arn,
		stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				slog.Warn("KMS test server stopped", "err", err)
			}
		},
	}, nil
}

// env is the server configuration that selects this KMS key.
func (k *kmsServer) env() map[string]string {
	return map[string]string{
		"COFFER_KMS":          "awskms",
		"COFFER_KMS_ENDPOINT": k.url,
		"COFFER_KMS_REGION":   kmstest.DefaultRegion,
		"COFFER_KMS_KEY_ID":   k.arn,
	}
}
