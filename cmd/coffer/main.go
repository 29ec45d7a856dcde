// Command coffer is Coffer's command-line client. This first part has `coffer run`: read an
// environment's secrets in one request and run a command with them as environment variables.
// The server and token come from COFFER_SERVER and COFFER_TOKEN (sign-in, keychain storage,
// repository defaults and the other commands of issue 18 are to come).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Exit codes (documented in README, CLI).
const (
	exitUsage       = 2  // bad flags or arguments
	exitUnavailable = 69 // the server could not be reached or answered 5xx (EX_UNAVAILABLE)
	exitDenied      = 77 // the server refused the token or the scope (EX_NOPERM)
)

// exitError carries the process exit code of a failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	code, err := execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "coffer:", err)
	}
	os.Exit(code)
}

// execute runs the command line and returns the process's exit code.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) (int, error) {
	root := &cobra.Command{Use: "coffer", Short: "Coffer's command-line client", SilenceUsage: true, SilenceErrors: true}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	childCode := 0
	root.AddCommand(runCommand(getenv, &childCode))
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code, ee.err
		}
		return exitUsage, err
	}
	return childCode, nil
}

type runFlags struct {
	tenant, project, env string
	noInherit            bool
	only                 []string
}

func runCommand(getenv func(string) string, childCode *int) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- command [args…]",
		Short: "Run a command with an environment's secrets as environment variables",
		Long: "Reads the environment's secrets with their values in one request and runs the command with them\n" +
			"set over the inherited environment (--no-inherit: only them). Standard input, output and error are\n" +
			"the command's; SIGINT, SIGTERM and SIGHUP are passed on; coffer exits with the command's code.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.project == "" || f.env == "" {
				return &exitError{exitUsage, errors.New("--project and --env are needed")}
			}
			server, token := strings.TrimRight(getenv("COFFER_SERVER"), "/"), getenv("COFFER_TOKEN")
			if server == "" || token == "" {
				return &exitError{exitUsage, errors.New("set COFFER_SERVER (https://coffer.example.com) and COFFER_TOKEN (a personal or service token)")}
			}
			vars, err := fetch(cmd.Context(), server, token, f)
			if err != nil {
				return err
			}
			code, err := runChild(args, childEnv(os.Environ(), vars, f), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			*childCode = code
			return err
		},
	}
	cmd.Flags().StringVar(&f.tenant, "tenant", "default", "tenant slug")
	cmd.Flags().StringVar(&f.project, "project", "", "project slug")
	cmd.Flags().StringVar(&f.env, "env", "", "environment slug")
	cmd.Flags().BoolVar(&f.noInherit, "no-inherit", false, "start the command with only the secrets (and nothing of coffer's environment)")
	cmd.Flags().StringSliceVar(&f.only, "only", nil, "inject only these names (repeat or comma-separate)")
	return cmd
}

// fetch reads the environment's secrets with values in one request (up to 1,000, the API's
// largest page; a larger environment is refused rather than cut short).
func fetch(ctx context.Context, server, token string, f runFlags) (map[string]string, error) {
	u := server + "/api/v1/tenants/" + url.PathEscape(f.tenant) + "/projects/" + url.PathEscape(f.project) +
		"/environments/" + url.PathEscape(f.env) + "/secrets?include=values&limit=1000"
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &exitError{exitUsage, fmt.Errorf("COFFER_SERVER: %w", err)}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "coffer-cli")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, &exitError{exitUnavailable, fmt.Errorf("cannot reach %s: %w", server, err)}
	}
	defer resp.Body.Close()
	var body struct {
		Items []struct {
			Name  string  `json:"name"`
			Value *string `json:"value"`
		} `json:"items"`
		NextCursor string `json:"next_cursor"`
		Error      *struct {
			Code, Message string
		} `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return nil, &exitError{exitUnavailable, fmt.Errorf("%s answered %s with no readable body", server, resp.Status)}
	}
	if resp.StatusCode != http.StatusOK {
		msg := resp.Status
		if body.Error != nil {
			msg = body.Error.Message
		}
		code := exitUnavailable
		if resp.StatusCode < 500 {
			code = exitDenied
		}
		return nil, &exitError{code, fmt.Errorf("%s: %s", resp.Status, msg)}
	}
	if body.NextCursor != "" {
		return nil, &exitError{exitUsage, errors.New("the environment has more than 1,000 secrets: use --only")}
	}
	vars := make(map[string]string, len(body.Items))
	for _, it := range body.Items {
		if it.Value != nil {
			vars[it.Name] = *it.Value
		}
	}
	return vars, nil
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
	for name, v := range vars {
		if len(f.only) == 0 || slices.Contains(f.only, name) {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// runChild runs the command with env, passing SIGINT, SIGTERM and SIGHUP on, and returns its
// exit code (128+n when a signal n ended it).
func runChild(args, env []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	path, err := exec.LookPath(args[0])
	if err != nil {
		return 127, &exitError{127, err}
	}
	child := exec.Command(path, args[1:]...)
	child.Env, child.Stdin, child.Stdout, child.Stderr = env, stdin, stdout, stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := child.Start(); err != nil {
		return 126, &exitError{126, err}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = child.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = child.Wait()
	close(done)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 1, &exitError{1, err}
	}
	return 0, nil
}
