package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Timeouts of the metrics listener. A scrape is one small GET; nothing legitimate needs more.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	// shutdownTimeout bounds how long a cancelled Server waits for scrapes in flight.
	shutdownTimeout = 5 * time.Second
)

// Server is the metrics listener, kept apart from the API's so that it can be bound to a
// private interface (and is off unless configured). It serves GET /metrics and, with
// Options.Profiling, Go's profiles under /debug/pprof/; nothing else.
type Server struct {
	addr string
	done chan struct{}
	err  error // written by run before done is closed
}

// Serve binds addr ("127.0.0.1:0" picks a free port) and serves the registry at /metrics
// until ctx ends. The bind happens before Serve returns, so a bad address is reported here.
// Serve starts one goroutine, which it owns through the returned Server: it exits after
// ctx ends and the listener has shut down, or when serving fails; Wait reports which. A nil
// log discards.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	if m.profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s := &Server{addr: ln.Addr().String(), done: make(chan struct{})}
	log.InfoContext(ctx, "metrics listening", "addr", s.addr)
	go s.run(ctx, srv, ln, log)
	return s, nil
}

// Addr is the address the listener is bound to, with the port the system chose for ":0".
func (s *Server) Addr() string { return s.addr }

// Wait blocks until the listener has stopped. It returns nil after a shutdown caused by
// ctx, and the error otherwise.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// run serves until ctx ends or serving fails. The inner goroutine only runs srv.Serve and
// always ends once the server is shut down or closed, which run does before it returns.
func (s *Server) run(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) {
	defer close(s.done)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		// Serve only returns early on a listener failure; close any open scrapes too.
		_ = srv.Close()
		s.err = fmt.Errorf("metrics: serve: %w", err)
		log.Error("metrics listener failed", "err", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			log.Warn("metrics listener did not shut down cleanly", "err", err)
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: serve: %w", err)
		}
		log.Info("metrics listener stopped", "addr", s.addr)
	}
}
