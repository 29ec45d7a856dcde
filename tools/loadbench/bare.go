package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer/tools/internal/benchhttp"
	"github.com/cofferhq/coffer/tools/internal/benchserver"
)

// serveBareMode is the hidden first argument that makes this binary the bare gin server.
const serveBareMode = "-serve-bare"

// serveBare is the hidden bare-server mode: gin's router and the net/http server answering
// the read's path with the bytes of -body from memory, which is the floor any gin handler
// pays. It serves until SIGTERM.
func serveBare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadbench "+serveBareMode, flag.ContinueOnError)
	bodyFile := fs.String("body", "", "file holding the response body")
	contentType := fs.String("content-type", "application/json; charset=utf-8", "response Content-Type")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	path := fs.String("path", readPath, "path to answer, a gin route (:name matches any segment)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET(*path, func(c *gin.Context) { c.Data(http.StatusOK, *contentType, body) })
	hs := &http.Server{Addr: *listen, Handler: r, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.ListenAndServe() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// bareServer is the bare gin child process.
type bareServer struct {
	baseURL string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited closes
}

// startBare writes body to a file in dir and re-executes this program in the bare-server
// mode on a free port, answering route, and returns once it answers readPath with 200.
func startBare(ctx context.Context, self, dir string, body []byte, contentType, route string, stderr io.Writer) (*bareServer, error) {
	bodyFile := filepath.Join(dir, "body.json")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		return nil, err
	}
	addr, err := benchserver.FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, serveBareMode, "-body", bodyFile, "-content-type", contentType, "-listen", addr, "-path", route)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bare gin: %w", err)
	}
	b := &bareServer{baseURL: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _, err := benchhttp.Do(ctx, 2*time.Second, http.MethodGet, b.baseURL+readPath, nil, nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			return b, nil
		}
		select {
		case <-b.exited:
			return nil, fmt.Errorf("bare gin exited before it was ready: %v", b.waitErr)
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), b.stop())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("bare gin not ready within 30s (last: %v)", err), b.stop())
		}
	}
}

// stop sends SIGTERM and waits, killing the child if it lingers.
func (b *bareServer) stop() error {
	select {
	case <-b.exited:
		return nil
	default:
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal bare gin: %w", err)
	}
	select {
	case <-b.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return errors.New("bare gin did not stop within 15s of SIGTERM; killed it")
	}
}
