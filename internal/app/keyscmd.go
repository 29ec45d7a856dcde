package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/secrets"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/tenant"
)

const keysUsage = `usage: coffer-server keys <command> [flags]

Commands (they read the same settings as the server: flags or COFFER_* variables):
  status                         key-encryption keys, data keys per KEK, running jobs
  rewrap                         rewrap every platform data key under the configured KEK
  rotate -tenant T [-project P [-environment E]]
                                 give environments new data keys and re-encrypt their values

A job runs in the foreground and resumes from its checkpoint if interrupted; a server
running at the same time takes turns through the job's lease.
`

// RunKeys runs a key subcommand. args are what follows "keys".
func RunKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, keysUsage)
		if len(args) == 0 {
			return errors.New("keys: a command is required")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "status", "rewrap", "rotate":
	default:
		fmt.Fprint(stderr, keysUsage)
		return fmt.Errorf("keys: unknown command %q", cmd)
	}
	var tenantSlug, projectSlug, envSlug string
	var serverArgs []string
	if cmd == "rotate" {
		fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.StringVar(&tenantSlug, "tenant", "", "tenant slug (required)")
		fs.StringVar(&projectSlug, "project", "", "limit to one project")
		fs.StringVar(&envSlug, "environment", "", "limit to one environment of the project")
		// Server settings may follow after "--".
		if err := fs.Parse(rest); err != nil {
			return err
		}
		serverArgs = fs.Args()
		if tenantSlug == "" {
			return errors.New("keys rotate: -tenant is required")
		}
	} else {
		serverArgs = rest
	}
	cfg, err := ParseConfig(serverArgs, getenv, stderr)
	if err != nil {
		return err
	}
	log := NewLogger(cfg, stderr)
	st, err := store.Open(ctx, store.Options{URL: cfg.DatabaseURL, SQLitePath: filepath.Join(cfg.DataDir, "coffer.db"), MaxConns: 4})
	if err != nil {
		return err
	}
	defer st.Close()
	a := &App{cfg: cfg, log: log, Store: st}
	if err := a.migrate(ctx); err != nil {
		return err
	}
	keyring, _, err := openKeyring(ctx, cfg, st, log, nil, Options{})
	if err != nil {
		return err
	}
	rot := secrets.NewRotator(st, keyring, log, secrets.RotatorOptions{Batch: cfg.KeyJobBatch})
	switch cmd {
	case "status":
		return keysStatus(ctx, st, keyring, stdout)
	case "rewrap":
		j, err := ensureRewrap(ctx, st, rot, keyring.KEKs().Current().KeyID())
		if err != nil {
			return err
		}
		return runInForeground(ctx, rot, j, stdout)
	case "rotate":
		t, err := st.TenantBySlug(ctx, tenantSlug)
		if err != nil {
			return err
		}
		sc := tenant.Scope{Tenant: t}
		if projectSlug != "" {
			if sc, err = st.ResolveScope(ctx, t.ID, projectSlug, envSlug); err != nil {
				return err
			}
			sc.Tenant = t
		} else if envSlug != "" {
			return errors.New("keys rotate: -environment needs -project")
		}
		j, err := rot.StartReseal(ctx, audit.Actor{Type: "operator", ID: "coffer-server keys"}, sc)
		if err != nil {
			return err
		}
		return runInForeground(ctx, rot, j, stdout)
	}
	return nil
}

func keysStatus(ctx context.Context, st *store.Store, keyring *secrets.Keyring, w io.Writer) error {
	usage, err := st.KEKUsage(ctx)
	if err != nil {
		return err
	}
	ids := keyring.KEKs().IDs()
	fmt.Fprintf(w, "current key-encryption key: %s\n", ids[0])
	for _, id := range ids[1:] {
		fmt.Fprintf(w, "previous (unwrap only):     %s\n", id)
	}
	fmt.Fprintln(w, "data keys by key-encryption key:")
	keks := make([]string, 0, len(usage))
	for id := range usage {
		keks = append(keks, id)
	}
	sort.Strings(keks)
	for _, id := range keks {
		fmt.Fprintf(w, "  %-60s %d\n", id, usage[id])
	}
	if j, ok, err := st.RunningJob(ctx, "", secrets.JobRewrap); err != nil {
		return err
	} else if ok {
		fmt.Fprintf(w, "running platform rewrap job %s: %d/%d\n", j.ID, j.Done, j.Total)
	}
	return nil
}

// runInForeground runs a job to its end, with a progress bar on a terminal and a line per
// batch otherwise.
func runInForeground(ctx context.Context, rot *secrets.Rotator, j secrets.Job, w io.Writer) error {
	var progress secrets.Progress
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		bar := progressbar.NewOptions64(max(j.Total, 1), progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(j.Kind), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		progress = func(j secrets.Job) { _ = bar.Set64(j.Done) }
		defer func() { _ = bar.Finish() }()
	} else {
		progress = func(j secrets.Job) { fmt.Fprintf(w, "%s %s: %d/%d %s\n", j.Kind, j.ID, j.Done, j.Total, j.State) }
	}
	done, err := rot.RunJob(ctx, j, progress)
	if err != nil {
		return fmt.Errorf("%s job %s stopped at %d/%d (run the command again to resume): %w", j.Kind, j.ID, done.Done, done.Total, err)
	}
	fmt.Fprintf(w, "%s job %s: %s, %d/%d\n", done.Kind, done.ID, done.State, done.Done, done.Total)
	if done.State != secrets.JobDone {
		return fmt.Errorf("%s job %s is %s: %s", done.Kind, done.ID, done.State, done.Error)
	}
	return nil
}
