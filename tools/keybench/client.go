package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// The client process: this binary re-executed with -client as its first argument. It drives
// one load with internal/loadgen and reports on stdout as JSON lines: {"event":"start"} just
// before the load begins, then {"event":"result",…} with the loadgen.Result.
const (
	clientFlag = "-client"
	// clientEnv marks the client process, for a test binary (whose own flags come first).
	clientEnv = "COFFER_KEYBENCH_CLIENT"
	// clientTokenEnv carries the bearer token: an argument would show in ps.
	clientTokenEnv = "COFFER_KEYBENCH_TOKEN"
)

// clientEvent is one line of the client's stdout.
type clientEvent struct {
	Event  string          `json:"event"` // "start" or "result"
	Result *loadgen.Result `json:"result,omitempty"`
	// Error is loadgen's error, which never quotes the URL or headers.
	Error string `json:"error,omitempty"`
}

// errStdinClosed ends a load run with -until-eof: the parent closed our stdin.
var errStdinClosed = errors.New("stdin closed")

func clientMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runClient(ctx, args, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keybench client:", err)
		return 1
	}
	return 0
}

func runClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keybench -client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "URL to GET (its credential comes from "+clientTokenEnv+")")
	conns := fs.Int("connections", 64, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured load first")
	untilEOF := fs.Bool("until-eof", false, "measure until stdin closes instead of for -duration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := loadgen.Options{
		URL:         *url,
		Header:      http.Header{"Authorization": {"Bearer " + os.Getenv(clientTokenEnv)}},
		Connections: *conns,
		Duration:    *duration,
		Warmup:      *warmup,
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if *untilEOF {
		opts.Duration = 24 * time.Hour
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			cancel(errStdinClosed)
		}()
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(clientEvent{Event: "start"}); err != nil {
		return err
	}
	res, err := loadgen.Run(ctx, opts)
	if err != nil && res.Requests > 0 && errors.Is(context.Cause(ctx), errStdinClosed) {
		err = nil // the end the parent asked for
	}
	ev := clientEvent{Event: "result", Result: &res}
	if err != nil {
		ev.Error = err.Error()
	}
	return enc.Encode(ev)
}

// clientProc is a running client process.
type clientProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	dec     *json.Decoder
	started time.Time // when the client reported it was starting the load
}

// load describes one client run.
type load struct {
	path        string // path and query on the server
	connections int
	duration    time.Duration // 0: until finish is called
	warmup      time.Duration
}

// startClient starts a client process against s and waits until it begins its load.
func startClient(ctx context.Context, s *server, l load, stderr io.Writer) (*clientProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to run its client: %w", err)
	}
	args := []string{clientFlag, "-url", s.baseURL + l.path, "-connections", strconv.Itoa(l.connections),
		"-warmup", l.warmup.String()}
	if l.duration > 0 {
		args = append(args, "-duration", l.duration.String())
	} else {
		args = append(args, "-until-eof")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), clientEnv+"=1", clientTokenEnv+"="+bearer(s.header))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the client process: %w", err)
	}
	c := &clientProc{cmd: cmd, stdin: stdin, dec: json.NewDecoder(stdout)}
	var ev clientEvent
	if err := c.dec.Decode(&ev); err != nil || ev.Event != "start" {
		_ = stdin.Close()
		werr := cmd.Wait()
		return nil, fmt.Errorf("the client process did not start its load (%v; exit: %v)", err, werr)
	}
	c.started = time.Now()
	return c, nil
}

// finish ends a client started without a duration (and waits for one with a duration),
// returning what it measured.
func (c *clientProc) finish() (loadgen.Result, error) {
	_ = c.stdin.Close()
	var ev clientEvent
	derr := c.dec.Decode(&ev)
	werr := c.cmd.Wait()
	switch {
	case derr != nil:
		return loadgen.Result{}, fmt.Errorf("the client process gave no result (%v; exit: %v)", derr, werr)
	case werr != nil:
		return loadgen.Result{}, fmt.Errorf("client process: %w", werr)
	case ev.Result == nil:
		return loadgen.Result{}, errors.New("the client process gave no result")
	case ev.Error != "":
		return *ev.Result, errors.New(ev.Error)
	}
	return *ev.Result, nil
}

func bearer(h http.Header) string {
	const prefix = "Bearer "
	v := h.Get("Authorization")
	if len(v) < len(prefix) {
		return ""
	}
	return v[len(prefix):]
}
