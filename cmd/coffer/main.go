// Command coffer is Coffer's command-line client: sign in (device authorization, token kept
// in the OS keychain or a 0600 file), run a command with an environment's secrets, and
// manage secrets, tokens and the audit chain from the terminal. README.md, "CLI", lists the
// commands and the exit codes.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes (documented in README, CLI). The sysexits.h numbers are used where one fits.
const (
	exitFailure     = 1  // any other failure
	exitUsage       = 2  // bad flags or arguments
	exitConflict    = 3  // a compare-and-set or state conflict (409, 412)
	exitNotFound    = 4  // no such tenant, project, environment or secret, or no access (404)
	exitDataErr     = 65 // input refused: a malformed file (with its line), or 400/413/422 (EX_DATAERR)
	exitNoInput     = 66 // an input file cannot be read (EX_NOINPUT)
	exitUnavailable = 69 // the server could not be reached or answered 5xx (EX_UNAVAILABLE)
	exitTempFail    = 75 // rate limited: try again later (EX_TEMPFAIL)
	exitDenied      = 77 // the token was refused (401: expired, revoked) or lacks the permission (403) (EX_NOPERM)
	exitConfig      = 78 // not signed in, no server configured, no usable token store (EX_CONFIG)
	exitCannotExec  = 126
	exitNotFoundCmd = 127
)

// exitError carries the process exit code of a failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// fail is an exitError from a message.
func fail(code int, format string, args ...any) error {
	return &exitError{code, fmt.Errorf(format, args...)}
}

func main() {
	code, err := execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "coffer:", err)
	}
	os.Exit(code)
}

// cli is one invocation: its streams, its environment and the options every command shares.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// jsonOut is --json: read commands print JSON on stdout instead of text.
	jsonOut bool
	// childCode is the exit code of a command `coffer run` ran.
	childCode int
}

// execute runs the command line and returns the process's exit code.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) (int, error) {
	a := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Coffer's command-line client",
		Long:          "coffer signs in to a Coffer server, runs commands with an environment's secrets, and manages secrets,\ntokens and the audit chain. COFFER_SERVER and COFFER_TOKEN, when set, win over the stored sign-in.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "print JSON on stdout (read commands)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{exitUsage, err} })
	a.addCommands(root)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code, ee.err
		}
		return exitUsage, err
	}
	return a.childCode, nil
}

// addCommands registers every command; each lives in its own file.
func (a *cli) addCommands(root *cobra.Command) {
	root.AddCommand(a.runCommand(), a.setupCommand(), a.versionCommand(), a.loginCommand(), a.whoamiCommand(), a.logoutCommand(), a.secretsCommand(), a.importCommand(), a.exportCommand(), a.diffCommand(), a.promoteCommand(), a.tokensCommand(), a.auditCommand())
}
