package main

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

type runFlags struct {
	scope     scopeFlags
	noInherit bool
	only      []string
	// resolve asks the server to expand ${…} references in the values.
	resolve bool
	// watch restarts the command when the environment's secrets change (watch.go).
	watch      bool
	watchGrace time.Duration
	// fallback is the path of the encrypted copy used when the server is unreachable
	// (fallback.go); "" for none.
	fallback       string
	fallbackMaxAge time.Duration
}

func (a *cli) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- command [args…]",
		Short: "Run a command with an environment's secrets as environment variables",
		Long: "Reads the environment's secrets with their values in one request and runs the command with them\n" +
			"set over the inherited environment (--no-inherit: only them). Standard input, output and error are\n" +
			"the command's; SIGINT, SIGTERM and SIGHUP are passed on; coffer exits with the command's code.\n\n" +
			"--resolve expands ${…} references on the server. --watch follows the server's event stream and,\n" +
			"when the environment's secrets change, re-reads them and restarts the command (SIGTERM, then\n" +
			"SIGKILL after --watch-grace). --fallback PATH keeps an encrypted copy of the values (sealed with a\n" +
			"key derived from the token) and uses it, with a warning, only when the server is unreachable or\n" +
			"failing and the copy is no older than --fallback-max-age.",
		Example: "  coffer run --project web --env staging -- ./server\n" +
			"  coffer run -- npm start            # project and environment from .coffer.yaml\n" +
			"  coffer run --only DATABASE_URL -- psql\n" +
			"  coffer run --watch --fallback ~/.cache/coffer/web-prod -- ./server",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.watchGrace <= 0 {
				return fail(exitUsage, "--watch-grace must be positive")
			}
			if f.fallbackMaxAge <= 0 {
				return fail(exitUsage, "--fallback-max-age must be positive")
			}
			if err := a.resolveScope(&f.scope, true); err != nil {
				return err
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if f.watch {
				code, err := a.runWatch(cmd.Context(), c, &f, args)
				a.childCode = code
				return err
			}
			vars, err := a.readValues(cmd.Context(), c, &f)
			if err != nil {
				return err
			}
			code, err := runChild(args, childEnv(os.Environ(), vars, f), a.stdin, a.stdout, a.stderr)
			a.childCode = code
			return err
		},
	}
	addScopeFlags(cmd, &f.scope, true)
	cmd.Flags().BoolVar(&f.noInherit, "no-inherit", false, "start the command with only the secrets (and nothing of coffer's environment)")
	cmd.Flags().StringSliceVar(&f.only, "only", nil, "inject only these names (repeat or comma-separate)")
	cmd.Flags().BoolVar(&f.resolve, "resolve", false, "expand ${…} references in the values (on the server, with your access)")
	cmd.Flags().BoolVar(&f.watch, "watch", false, "restart the command when the environment's secrets change")
	cmd.Flags().DurationVar(&f.watchGrace, "watch-grace", 10*time.Second, "with --watch: how long a restarted command has to exit after SIGTERM before SIGKILL")
	cmd.Flags().StringVar(&f.fallback, "fallback", "", "keep an encrypted copy of the values in this file and use it when the server is unreachable")
	cmd.Flags().DurationVar(&f.fallbackMaxAge, "fallback-max-age", 24*time.Hour, "with --fallback: the oldest copy that may be used")
	return cmd
}

// readValues reads the values (one request) and keeps the fallback copy up to date; when
// the server is unreachable or failing, and only then, it answers from the copy.
func (a *cli) readValues(ctx context.Context, c *apiClient, f *runFlags) (map[string]string, error) {
	vars, err := fetchValues(ctx, c, &f.scope, f.resolve)
	if err == nil {
		a.keepFallback(c, f, vars, time.Now())
		return vars, nil
	}
	if f.fallback == "" || !unavailable(err) {
		return nil, exitOf(err)
	}
	return a.loadFallback(c, f, exitOf(err))
}

// unavailable reports whether err means the server could not answer (no answer, or 5xx):
// the only failures a fallback copy may stand in for. A refusal (401, 403, 404) never is.
func unavailable(err error) bool {
	var ee *exitError
	return errors.As(exitOf(err), &ee) && ee.code == exitUnavailable
}

// fetchValues reads the environment's secrets with values in one request (up to 1,000, the
// API's largest page; a larger environment is refused rather than cut short). resolve asks
// the server to expand references.
func fetchValues(ctx context.Context, c *apiClient, sc *scopeFlags, resolve bool) (map[string]string, error) {
	var body struct {
		Items []struct {
			Name  string  `json:"name"`
			Value *string `json:"value"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	q := url.Values{"include": {"values"}, "limit": {"1000"}}
	if resolve {
		q.Set("resolve", "true")
	}
	if err := c.do(ctx, "GET", sc.envPath("secrets"), q, nil, &body); err != nil {
		return nil, err
	}
	if body.NextCursor != "" {
		return nil, fail(exitDataErr, "the environment has more than 1,000 secrets; coffer run reads at most 1,000, in its one request")
	}
	vars := make(map[string]string, len(body.Items))
	for _, it := range body.Items {
		if it.Value != nil {
			vars[it.Name] = *it.Value
		}
	}
	return vars, nil
}

// injected is what of vars the command gets: all of them, or those named by --only.
func injected(vars map[string]string, only []string) map[string]string {
	if len(only) == 0 {
		return vars
	}
	out := make(map[string]string, len(only))
	for name, v := range vars {
		if slices.Contains(only, name) {
			out[name] = v
		}
	}
	return out
}

// sameInjection reports whether two reads give the command the same environment.
func sameInjection(old, new map[string]string, only []string) bool {
	return maps.Equal(injected(old, only), injected(new, only))
}

// childEnv is the command's environment: the inherited one (unless --no-inherit) with the
// secrets set over it (only those named by --only, if given).
func childEnv(inherited []string, vars map[string]string, f runFlags) []string {
	var out []string
	if !f.noInherit {
		for _, kv := range inherited {
			name, _, _ := strings.Cut(kv, "=")
			if _, ok := vars[name]; !ok || (len(f.only) > 0 && !slices.Contains(f.only, name)) {
				out = append(out, kv)
			}
		}
	}
	for name, v := range injected(vars, f.only) {
		out = append(out, name+"="+v)
	}
	return out
}

// child is a started command; done is closed once it has exited and code is set.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	code int
	err  error
}

// lookCommand finds the command to run (127 when there is none).
func lookCommand(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", &exitError{exitNotFoundCmd, err}
	}
	return path, nil
}

// startChild starts path with args[1:] and env on the given streams; a goroutine waits for
// it and closes done.
func startChild(path string, args, env []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, &exitError{exitCannotExec, err}
	}
	ch := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		ch.code, ch.err = exitStatus(cmd.Wait())
		close(ch.done)
	}()
	return ch, nil
}

// exitStatus is the exit code of a command that ended with err (128+n when signal n ended it).
func exitStatus(err error) (int, error) {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	if err != nil {
		return exitFailure, &exitError{exitFailure, err}
	}
	return 0, nil
}

// forwarded are the signals coffer passes on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// runChild runs the command with env, passing SIGINT, SIGTERM and SIGHUP on, and returns its
// exit code (128+n when a signal n ended it).
func runChild(args, env []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	path, err := lookCommand(args[0])
	if err != nil {
		return exitNotFoundCmd, err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	ch, err := startChild(path, args, env, stdin, stdout, stderr)
	if err != nil {
		return exitCannotExec, err
	}
	for {
		select {
		case s := <-sigs:
			_ = ch.cmd.Process.Signal(s)
		case <-ch.done:
			return ch.code, ch.err
		}
	}
}
