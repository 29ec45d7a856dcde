package app

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cofferhq/coffer/internal/audit"
)

const auditUsage = `usage: coffer-server audit verify --public-key key.txt (--file export.jsonl | --receipt R --proof proof.json)

Checks, with no database and no network, either an audit export (GET …/audit/export): its
hash chain and every checkpoint's signature and Merkle root; or a read receipt
(Coffer-Audit-Receipt) against its inclusion proof (GET …/audit/proof). The public key is the
instance's verifier key (GET /api/v1/audit/public-key). Exit status 0 only if all verifies.
`

// ErrNotVerified is returned when what was checked does not verify.
var ErrNotVerified = errors.New("audit: does not verify")

// RunAudit runs an audit subcommand. args are what follows "audit".
func RunAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit: the command is verify")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "an audit export (JSONL)")
	keyFile := fs.String("public-key", "", "the instance's verifier key (note format)")
	receipt := fs.String("receipt", "", "a Coffer-Audit-Receipt header value")
	proofFile := fs.String("proof", "", "the receipt's inclusion proof (JSON)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 || *keyFile == "" || (*file == "") == (*receipt == "") || (*receipt == "") != (*proofFile == "") {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit verify: give --public-key and either --file or --receipt with --proof")
	}
	vkey, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if *receipt != "" {
		return verifyReceiptFile(*receipt, *proofFile, string(vkey), stdout)
	}
	f, err := os.Open(*file)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	v, err := audit.VerifyExport(f, string(vkey))
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if !v.OK {
		fmt.Fprintf(stdout, "FAILED at entry %d: %s\n", v.FirstBadSeq, v.Reason)
		return ErrNotVerified
	}
	fmt.Fprintf(stdout, "OK: %d entries, %d checkpoints verified\n", v.Entries, v.Checkpoints)
	return nil
}

func verifyReceiptFile(receipt, proofFile, vkey string, stdout io.Writer) error {
	r, err := audit.ParseReceipt(receipt)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	data, err := os.ReadFile(proofFile)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	var p audit.Proof
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("audit verify: the proof is not JSON: %w", err)
	}
	if err := audit.VerifyReceipt(r, p, vkey); err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return ErrNotVerified
	}
	fmt.Fprintf(stdout, "OK: entry %d is in the checkpoint of %s\n", r.Seq, audit.Origin(r.Chain))
	return nil
}
