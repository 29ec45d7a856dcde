package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/audit"
)

func (a *cli) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "audit",
		Short:   "Check the audit chain",
		Example: "  coffer audit verify --file audit.jsonl --public-key coffer-audit.pub",
	}
	cmd.AddCommand(a.auditVerify())
	return cmd
}

func (a *cli) auditVerify() *cobra.Command {
	var file, keyFile string
	cmd := &cobra.Command{
		Use:   "verify --file EXPORT.jsonl --public-key KEY",
		Short: "Verify an audit export offline",
		Long: "Checks an audit export (GET /api/v1/tenants/{t}/audit/export) with nothing but the instance's verifier\n" +
			"key (GET /api/v1/audit/public-key): its hash chain, and every checkpoint's signature and Merkle root.\n" +
			"It uses no network and runs the same verifier as `coffer-server audit verify`. Exits 0 only if all\n" +
			"verifies, else 1 with the first entry that does not and why.",
		Example: "  curl -s https://coffer.example.com/api/v1/audit/public-key > key.txt\n" +
			"  curl -s -H \"Authorization: Bearer $TOKEN\" https://coffer.example.com/api/v1/tenants/acme/audit/export > audit.jsonl\n" +
			"  coffer audit verify --file audit.jsonl --public-key key.txt",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if file == "" || keyFile == "" {
				return fail(exitUsage, "give --file and --public-key")
			}
			vkey, err := a.readInput(keyFile)
			if err != nil {
				return err
			}
			f, err := os.Open(file)
			if err != nil {
				return fail(exitNoInput, "%s: cannot read it: %v", file, unwrapPath(err))
			}
			defer f.Close()
			v, err := audit.VerifyExport(f, string(vkey))
			if err != nil {
				// The key cannot be used, or the file cannot be read: nothing was verified.
				return fail(exitFailure, "audit verify: %v", err)
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"ok": v.OK, "entries": v.Entries, "checkpoints": v.Checkpoints,
					"first_bad_sequence": v.FirstBadSeq, "reason": v.Reason}); err != nil {
					return err
				}
			}
			if !v.OK {
				return fail(exitFailure, "%s does not verify: entry %d: %s", file, v.FirstBadSeq, v.Reason)
			}
			if !a.jsonOut {
				fmt.Fprintf(a.stdout, "OK: %d entries, %d checkpoints verified\n", v.Entries, v.Checkpoints)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the audit export (JSON lines)")
	cmd.Flags().StringVar(&keyFile, "public-key", "", "the instance's verifier key")
	return cmd
}
