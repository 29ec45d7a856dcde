package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// forEachDialectWithSink runs fn against a fresh server on each database, with an audit sink
// in a directory of its own and no background checkpoints (tests make them on demand).
func forEachDialectWithSink(t *testing.T, fn func(t *testing.T, s *server, sink string)) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			sink := filepath.Join(t.TempDir(), "sink")
			fn(t, start(t, d, map[string]string{"COFFER_AUDIT_SINK": sink, "COFFER_AUDIT_CHECKPOINT_INTERVAL": "24h"}), sink)
		})
	}
}

// grow writes and reads new secrets named prefix_i until the default tenant's chain has n
// entries or more (after chainWork, which makes the project).
func (s *server) grow(prefix string, n int64) {
	s.t.Helper()
	for i := 0; ; i++ {
		name := fmt.Sprintf("%s_%d", prefix, i)
		s.must(http.StatusCreated, "PUT", envPath+"development/secrets/"+name, s.owner, map[string]string{"value": "v"})
		s.must(http.StatusOK, "GET", envPath+"development/secrets/"+name, s.owner, nil)
		size, err := s.app.Store.ChainSize(context.Background(), s.tenantID())
		if err != nil {
			s.t.Fatal(err)
		}
		if size >= n {
			return
		}
	}
}

// checkpoint makes a checkpoint of the default tenant's chain and returns its tree size.
func (s *server) checkpoint() int64 {
	s.t.Helper()
	r := s.must(http.StatusCreated, "POST", auditPath+"/checkpoints", s.owner, nil)
	return int64(r.body["tree_size"].(float64))
}

// publicKey fetches the verifier key as anyone can, without credentials.
func (s *server) publicKey() string {
	s.t.Helper()
	r := s.must(http.StatusOK, "GET", "/api/v1/audit/public-key", "", nil)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		s.t.Fatalf("public key served as %q", r.header.Get("Content-Type"))
	}
	return string(r.raw)
}

// tamperWith runs statements with arguments on the audit tables as someone with database
// access would, the append-only triggers of tables out of the way.
func (s *server) tamperWith(tables []string, stmts ...func(exec func(q string, args ...any))) {
	s.t.Helper()
	db := s.rawDB()
	run := func(q string, args ...any) {
		s.t.Helper()
		if _, err := db.Exec(s.q(q), args...); err != nil {
			s.t.Fatalf("%s: %v", q, err)
		}
	}
	for _, tb := range tables {
		if s.dialect == "postgres" {
			run(`ALTER TABLE ` + tb + ` DISABLE TRIGGER USER`)
		} else {
			run(`DROP TRIGGER IF EXISTS ` + tb + `_no_update`)
			run(`DROP TRIGGER IF EXISTS ` + tb + `_no_delete`)
		}
	}
	for _, st := range stmts {
		st(run)
	}
	if s.dialect == "postgres" {
		for _, tb := range tables {
			run(`ALTER TABLE ` + tb + ` ENABLE TRIGGER USER`)
		}
	}
}

// rewriteTail rewrites the chain from entry after+1 on, as an attacker who knows the encoding
// would: one entry changed, every hash after it and the head recomputed, so the chain alone
// still verifies.
func (s *server) rewriteTail(after int64) {
	s.t.Helper()
	tn := s.tenantID()
	recs, err := s.app.Store.ChainRecords(context.Background(), tn, 0, 100000)
	if err != nil {
		s.t.Fatal(err)
	}
	s.tamperWith([]string{"audit_entries"}, func(exec func(string, ...any)) {
		prev := [32]byte{}
		for _, r := range recs {
			c := r.Chained
			if c.Seq <= after {
				h, err := audit.DecodeHash(r.Hash)
				if err != nil {
					s.t.Fatal(err)
				}
				prev = h
				continue
			}
			if c.Seq == after+2 {
				c.Target = "nothing/to/see/here"
			}
			c.PrevHash = prev
			prev = c.Hash()
			exec(`UPDATE audit_entries SET target = ?, prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?`,
				c.Target, hex.EncodeToString(c.PrevHash[:]), hex.EncodeToString(prev[:]), tn, c.Seq)
		}
		exec(`UPDATE audit_heads SET hash = ? WHERE chain = ?`, hex.EncodeToString(prev[:]), tn)
	})
}

func TestAuditCheckpointMadeListedAndSigned(t *testing.T) {
	forEachDialectWithSink(t, func(t *testing.T, s *server, sink string) {
		s.chainWork(10)
		size := s.checkpoint()
		if size < 10 {
			t.Fatalf("checkpoint of %d entries, want 10 or more", size)
		}
		// Nothing new: the latest is answered, not a second one.
		again := s.must(http.StatusOK, "POST", auditPath+"/checkpoints", s.owner, nil)
		list := s.must(http.StatusOK, "GET", auditPath+"/checkpoints", s.owner, nil)
		items := list.items()
		if len(items) != 1 || items[0]["note"] != again.body["note"] || items[0]["tree_size"] != float64(size) {
			t.Fatalf("checkpoints: %s", list.raw)
		}
		s.grow("G", size+2)
		second := s.checkpoint()
		page := s.must(http.StatusOK, "GET", auditPath+"/checkpoints?limit=1", s.owner, nil)
		next := s.must(http.StatusOK, "GET", auditPath+"/checkpoints?limit=1&cursor="+str(page.body["next_cursor"]), s.owner, nil)
		if len(page.items()) != 1 || len(next.items()) != 1 || next.items()[0]["tree_size"] != float64(second) || next.body["next_cursor"] != nil {
			t.Fatalf("pages of checkpoints: %s then %s", page.raw, next.raw)
		}
		// The note verifies with the public key alone, and names the chain, size and root.
		vkey := s.publicKey()
		known, err := audit.NewVerifiers(vkey)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := audit.OpenCheckpoint(str(items[0]["note"]), known)
		if err != nil || cp.Chain != s.tenantID() || cp.Size != size {
			t.Fatalf("checkpoint %+v: %v", cp, err)
		}
		if !strings.HasPrefix(str(items[0]["note"]), audit.Origin(s.tenantID())+"\n") {
			t.Fatalf("note does not start with its origin: %q", items[0]["note"])
		}
		v := s.verifyAudit()
		if v.body["ok"] != true || v.body["checkpoints"] != float64(2) {
			t.Fatalf("verify: %s", v.raw)
		}
		// The sink has the same note, in a file only the server's user can read.
		files, err := os.ReadDir(sink)
		if err != nil || len(files) != 1 {
			t.Fatalf("sink: %v %v", files, err)
		}
		fi, _ := files[0].Info()
		di, _ := os.Stat(sink)
		if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Fatalf("sink modes: file %v, directory %v", fi.Mode(), di.Mode())
		}
		data, _ := os.ReadFile(filepath.Join(sink, files[0].Name()))
		if notes, err := audit.SplitNotes(data); err != nil || len(notes) != 2 || notes[0] != str(items[0]["note"]) {
			t.Fatalf("sink holds %q: %v", data, err)
		}
		// Members may neither make nor list checkpoints.
		kim := s.newUser("kim@example.com")
		s.join(s.owner, "default", kim, "kim@example.com", "member")
		for _, m := range []string{"GET", "POST"} {
			if r := s.call(m, auditPath+"/checkpoints", kim, nil); r.status != http.StatusForbidden {
				t.Fatalf("a member, %s checkpoints: %d", m, r.status)
			}
		}
		// The signing key is stored sealed: its private half is nowhere in clear.
		db := s.rawDB()
		var verifier string
		var sealed []byte
		if err := db.QueryRow(`SELECT verifier, sealed FROM audit_signing_keys`).Scan(&verifier, &sealed); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(verifier) != strings.TrimSpace(vkey) || bytes.Contains(sealed, []byte("PRIVATE+KEY")) || len(sealed) < 64 {
			t.Fatalf("signing key row: verifier %q, sealed %q", verifier, sealed)
		}
		// Proofs need a positive sequence.
		for _, q := range []string{"", "?sequence=0", "?sequence=x", "?sequence=-3"} {
			if r := s.call("GET", auditPath+"/proof"+q, s.owner, nil); r.status != http.StatusUnprocessableEntity {
				t.Errorf("proof%s: %d %s", q, r.status, r.raw)
			}
		}
		if r := s.call("GET", auditPath+"/proof?sequence=100000", s.owner, nil); r.status != http.StatusNotFound {
			t.Errorf("proof of an entry past the checkpoint: %d %s", r.status, r.raw)
		}
		// The checkpoint tables are append-only.
		for _, q := range []string{`UPDATE audit_checkpoints SET note = 'x'`, `DELETE FROM audit_checkpoints`,
			`UPDATE audit_tree_hashes SET idx = idx + 1`, `DELETE FROM audit_tree_hashes`} {
			if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v, want refused", q, err)
			}
		}
		if s.dialect == "postgres" {
			if _, err := db.Exec(`TRUNCATE audit_checkpoints`); err == nil {
				t.Error("TRUNCATE audit_checkpoints was allowed")
			}
		}
	})
}

func TestAuditCheckpointSignedWithAnotherKeyFails(t *testing.T) {
	forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
		s.chainWork(10)
		first := s.checkpoint()
		s.grow("G", first+10)
		size, err := s.app.Store.ChainSize(context.Background(), s.tenantID())
		if err != nil {
			t.Fatal(err)
		}
		skey, _, err := note.GenerateKey(rand.Reader, audit.SigningKeyName)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := audit.SignCheckpoint(signer, s.tenantID(), size, [32]byte{1}, [32]byte{2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.rawDB().Exec(s.q(`INSERT INTO audit_checkpoints (chain, tree_size, root_hash, state_root, note, created_at)
			VALUES (?, ?, '', '', ?, CURRENT_TIMESTAMP)`), s.tenantID(), size, forged.Note); err != nil {
			t.Fatal(err)
		}
		v := s.verifyAudit()
		if v.body["ok"] != false || v.body["first_bad_sequence"] != float64(first+1) || !strings.Contains(str(v.body["reason"]), "signature") {
			t.Fatalf("verify with a forged checkpoint: %s", v.raw)
		}
	})
}

// TestAuditCheckpointTamper: what the chain alone cannot see, the checkpoints, the sink and
// the state root do.
func TestAuditCheckpointTamper(t *testing.T) {
	t.Run("rewrite the tail with recomputed hashes", func(t *testing.T) {
		forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
			s.chainWork(10)
			first := s.checkpoint()
			s.grow("G", first+15)
			s.checkpoint()
			s.rewriteTail(first)
			if v, err := s.app.Store.Verify(context.Background(), s.tenantID()); err != nil || !v.OK {
				t.Fatalf("the rewritten chain should verify on its own: %+v %v", v, err)
			}
			v := s.verifyAudit()
			if v.body["ok"] != false || v.body["first_bad_sequence"] != float64(first+1) {
				t.Fatalf("verify after rewriting the tail: %s, want first bad %d", v.raw, first+1)
			}
		})
	})
	t.Run("rewrite the tail and the database's checkpoints", func(t *testing.T) {
		forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
			s.chainWork(10)
			first := s.checkpoint()
			s.grow("G", first+15)
			second := s.checkpoint()
			s.rewriteTail(first)
			tn := s.tenantID()
			// The attacker removes the checkpoint that no longer matches.
			s.tamperWith([]string{"audit_checkpoints"}, func(exec func(string, ...any)) {
				exec(`DELETE FROM audit_checkpoints WHERE chain = ? AND tree_size = ?`, tn, second)
			})
			v := s.verifyAudit()
			if v.body["ok"] != false || v.body["first_bad_sequence"] != float64(first+1) || !strings.Contains(str(v.body["reason"]), "sink") {
				t.Fatalf("verify after rewriting the tail and the checkpoints: %s, want first bad %d", v.raw, first+1)
			}
		})
	})
	t.Run("delete the last entries, the head and the checkpoints", func(t *testing.T) {
		forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
			s.chainWork(10)
			first := s.checkpoint()
			s.grow("G", first+10)
			second := s.checkpoint()
			tn := s.tenantID()
			keep := first + 3
			recs, err := s.app.Store.ChainRecords(context.Background(), tn, keep-1, 1)
			if err != nil || len(recs) != 1 {
				t.Fatal(recs, err)
			}
			s.tamperWith([]string{"audit_entries", "audit_checkpoints"}, func(exec func(string, ...any)) {
				exec(`DELETE FROM audit_entries WHERE tenant_id = ? AND seq > ?`, tn, keep)
				exec(`UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?`, keep, recs[0].Hash, tn)
				exec(`DELETE FROM audit_checkpoints WHERE chain = ? AND tree_size = ?`, tn, second)
			})
			v := s.verifyAudit()
			if v.body["ok"] != false || v.body["first_bad_sequence"] != float64(first+1) || !strings.Contains(str(v.body["reason"]), "sink") {
				t.Fatalf("verify after cutting the tail: %s, want first bad %d", v.raw, first+1)
			}
		})
	})
	t.Run("restore an older copy of the secrets", func(t *testing.T) {
		forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
			s.chainWork(6)
			s.must(http.StatusOK, "PUT", envPath+"development/secrets/S_0", s.owner, map[string]string{"value": "newer"})
			size := s.checkpoint()
			// Reads after the checkpoint change no secret: the state is still compared.
			s.must(http.StatusOK, "GET", envPath+"development/secrets/S_0", s.owner, nil)
			if v := s.verifyAudit(); v.body["ok"] != true {
				t.Fatalf("verify before the restore: %s", v.raw)
			}
			if _, err := s.rawDB().Exec(s.q(`UPDATE secrets SET latest_version = 1 WHERE name = 'S_0' AND tenant_id = ?`), s.tenantID()); err != nil {
				t.Fatal(err)
			}
			v := s.verifyAudit()
			if v.body["ok"] != false || v.body["first_bad_sequence"] != float64(size) || !strings.Contains(str(v.body["reason"]), "restored") {
				t.Fatalf("verify after restoring secrets: %s", v.raw)
			}
		})
	})
}

func TestAuditExportVerifiesOffline(t *testing.T) {
	forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
		s.chainWork(12)
		first := s.checkpoint()
		s.grow("G", first+10)
		s.checkpoint()
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "key.txt")
		if err := os.WriteFile(keyFile, []byte(s.publicKey()), 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.must(http.StatusOK, "GET", auditPath+"/export", s.owner, nil)
		if n := bytes.Count(r.raw, []byte(`"type":"checkpoint"`)); n != 2 {
			t.Fatalf("export has %d checkpoints: %s", n, r.raw)
		}
		verify := func(data []byte) (string, error) {
			t.Helper()
			f := filepath.Join(dir, "export.jsonl")
			if err := os.WriteFile(f, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := app.RunAudit([]string{"verify", "--file", f, "--public-key", keyFile}, &out, io.Discard)
			return out.String(), err
		}
		if out, err := verify(r.raw); err != nil {
			t.Fatalf("export does not verify offline: %v: %s", err, out)
		}
		// One byte changed, anywhere that matters, and it fails.
		for _, c := range []struct {
			at  string
			off int
		}{{`"action":"secret.wr`, 0}, {`"actor_id":"`, 0}, {"\\n— " + audit.SigningKeyName + " ", 8}} {
			at := c.at
			i := bytes.Index(r.raw, []byte(at))
			if i < 0 {
				t.Fatalf("export has no %s", at)
			}
			bad := bytes.Clone(r.raw)
			bad[i+len(at)+c.off] ^= 0x01
			if out, err := verify(bad); !errors.Is(err, app.ErrNotVerified) {
				t.Errorf("byte after %s changed: %v %s", at, err, out)
			}
		}
		// Without checkpoints an export proves nothing.
		entriesOnly := r.raw[:bytes.Index(r.raw, []byte(`{"type":"checkpoint"`))]
		if _, err := verify(entriesOnly); !errors.Is(err, app.ErrNotVerified) {
			t.Errorf("an export without checkpoints verified: %v", err)
		}
	})
}

// TestAuditReadReceiptProofVerifiesOffline: a read receipt, and the proof of its entry in a
// later checkpoint, verify with nothing but the public key.
func TestAuditReadReceiptProofVerifiesOffline(t *testing.T) {
	forEachDialectWithSink(t, func(t *testing.T, s *server, _ string) {
		s.chainWork(10)
		// Every response that reveals values names its entry; others name none.
		for _, path := range []string{"development/secrets/S_1", "development/secrets?include=values", "development/secrets?include=values&format=dotenv"} {
			r := s.must(http.StatusOK, "GET", envPath+path, s.owner, nil)
			rc, err := audit.ParseReceipt(r.header.Get("Coffer-Audit-Receipt"))
			if err != nil || rc.Chain != s.tenantID() {
				t.Fatalf("GET %s: receipt %q: %v", path, r.header.Get("Coffer-Audit-Receipt"), err)
			}
			e := s.must(http.StatusOK, "GET", auditPath+"?action=secret.reveal&limit=100", s.owner, nil).items()
			found := false
			for _, it := range e {
				found = found || (it["sequence"] == float64(rc.Seq) && it["hash"] == rc.Hash)
			}
			if !found {
				t.Fatalf("GET %s: receipt %v names no reveal entry", path, rc)
			}
		}
		if r := s.must(http.StatusOK, "GET", envPath+"development/secrets", s.owner, nil); r.header.Get("Coffer-Audit-Receipt") != "" {
			t.Fatalf("a listing without values has a receipt: %q", r.header.Get("Coffer-Audit-Receipt"))
		}
		got := s.must(http.StatusOK, "GET", envPath+"development/secrets/S_2", s.owner, nil)
		receipt := got.header.Get("Coffer-Audit-Receipt")
		rc, err := audit.ParseReceipt(receipt)
		if err != nil {
			t.Fatal(err)
		}
		seq := rc.Seq
		reveals := []map[string]any{{"hash": rc.Hash}}
		// Not covered by a checkpoint yet.
		if r := s.call("GET", auditPath+fmt.Sprintf("/proof?sequence=%d", seq), s.owner, nil); r.status != http.StatusNotFound {
			t.Fatalf("proof before any checkpoint: %d %s", r.status, r.raw)
		}
		first := s.checkpoint()
		s.grow("G", first+10)
		s.checkpoint()
		p := s.must(http.StatusOK, "GET", auditPath+fmt.Sprintf("/proof?sequence=%d", seq), s.owner, nil)
		dir := t.TempDir()
		keyFile, proofFile := filepath.Join(dir, "key.txt"), filepath.Join(dir, "proof.json")
		if err := os.WriteFile(keyFile, []byte(s.publicKey()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(proofFile, p.raw, 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := app.RunAudit([]string{"verify", "--receipt", receipt, "--proof", proofFile, "--public-key", keyFile}, &out, io.Discard); err != nil {
			t.Fatalf("receipt does not verify: %v %s", err, out.String())
		}
		// A receipt for another entry, or a proof whose hashes were changed, fails.
		other := fmt.Sprintf("%s/%d/%s", s.tenantID(), seq-1, reveals[0]["hash"])
		if err := app.RunAudit([]string{"verify", "--receipt", other, "--proof", proofFile, "--public-key", keyFile}, io.Discard, io.Discard); !errors.Is(err, app.ErrNotVerified) {
			t.Fatalf("another receipt verified: %v", err)
		}
		var proof audit.Proof
		if err := json.Unmarshal(p.raw, &proof); err != nil || len(proof.Hashes) == 0 {
			t.Fatalf("proof: %s %v", p.raw, err)
		}
		proof.Hashes[0] = proof.RecordHash
		r, _ := audit.ParseReceipt(receipt)
		if err := audit.VerifyReceipt(r, proof, s.publicKey()); err == nil {
			t.Fatal("a changed proof verified")
		}
	})
}

// TestAuditCheckpointsInBackground: chains that grew are checkpointed on their own, into the
// database and the sink.
func TestAuditCheckpointsInBackground(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			sink := filepath.Join(t.TempDir(), "sink")
			s := start(t, d, map[string]string{"COFFER_AUDIT_SINK": sink, "COFFER_AUDIT_CHECKPOINT_INTERVAL": "1s"})
			s.newUser("kim@example.com") // an instance-chain entry
			s.chainWork(4)
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, err := os.Stat(filepath.Join(sink, "instance.checkpoints")); err != nil {
					if time.Now().After(deadline) {
						t.Fatalf("instance chain not in the sink after 20s: %v", err)
					}
					time.Sleep(200 * time.Millisecond)
					continue
				}
				size, err := s.app.Store.ChainSize(context.Background(), s.tenantID())
				if err != nil {
					t.Fatal(err)
				}
				items := s.must(http.StatusOK, "GET", auditPath+"/checkpoints", s.owner, nil).items()
				if n := len(items); n > 0 && items[n-1]["tree_size"] == float64(size) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no checkpoint of %d entries after 20s: %v", size, items)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if v := s.verifyAudit(); v.body["ok"] != true {
				t.Fatalf("verify: %s", v.raw)
			}
		})
	}
}

// TestAuditVerifiedInBackground: a chain broken behind the server's back is found by the
// background verifier, logged with its first bad sequence and counted in the metrics.
func TestAuditVerifiedInBackground(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(d, func(t *testing.T) {
			s := start(t, d, map[string]string{"COFFER_AUDIT_VERIFY_INTERVAL": "1s", "COFFER_METRICS_LISTEN": "127.0.0.1:0"})
			s.chainWork(10)
			s.tamper(fmt.Sprintf(`UPDATE audit_entries SET target = 'elsewhere' WHERE tenant_id = '%s' AND seq = 7`, s.tenantID()))
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(s.logs.String(), "audit chain failed verification") {
				if time.Now().After(deadline) {
					t.Fatal("no verification failure logged after 20s")
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !strings.Contains(s.logs.String(), "first_bad_sequence=7") {
				t.Errorf("the failure does not name sequence 7")
			}
			res, err := http.Get("http://" + s.app.MetricsAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !strings.Contains(string(body), "coffer_audit_chains_failing 1") {
				t.Errorf("metrics lack coffer_audit_chains_failing 1")
			}
		})
	}
}

// TestAuditSigningKeyNeverReplaced: a database that lost its signing key (and the checkpoints
// it signed) gets no new key while the sink holds checkpoints, and verify says why.
func TestAuditSigningKeyNeverReplaced(t *testing.T) {
	forEachDialectWithSink(t, func(t *testing.T, s *server, sink string) {
		s.chainWork(6)
		s.checkpoint()
		tn := s.tenantID()
		s.tamperWith([]string{"audit_checkpoints"}, func(exec func(string, ...any)) {
			exec(`DELETE FROM audit_checkpoints WHERE chain = ?`, tn)
			exec(`DELETE FROM audit_signing_keys`)
		})
		// A restarted server has no key in memory either.
		s2 := startOn(t, s.dialect, s.dbURL, s.dataDir, map[string]string{"COFFER_AUDIT_SINK": sink, "COFFER_AUDIT_CHECKPOINT_INTERVAL": "24h"})
		s2.owner = s.owner
		v := s2.verifyAudit()
		if v.body["ok"] != false || !strings.Contains(str(v.body["reason"]), "signing key is missing") {
			t.Fatalf("verify without the key: %s", v.raw)
		}
		if r := s2.call("POST", auditPath+"/checkpoints", s.owner, nil); r.status != http.StatusInternalServerError {
			t.Fatalf("checkpoint without the key: %d %s", r.status, r.raw)
		}
		var n int
		if err := s.rawDB().QueryRow(`SELECT COUNT(*) FROM audit_signing_keys`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("a new signing key was made: %d %v", n, err)
		}
	})
}
