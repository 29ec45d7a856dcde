package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testKey(t *testing.T) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, SigningKeyName)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

// testChain builds n chained entries of chain and their tree.
func testChain(t *testing.T, chain string, n int) ([]Record, *Tree) {
	t.Helper()
	var recs []Record
	var tree Tree
	prev := ZeroHash
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i := 1; i <= n; i++ {
		c := Chained{Chain: chain, Seq: int64(i), PrevHash: prev, OccurredAt: at, ActorType: "user", ActorID: "u",
			Action: ActionSecretReveal, Outcome: OutcomeSuccess, Metadata: `{"secrets":{"A":1}}`}
		h := c.Hash()
		recs = append(recs, Record{Chained: c, Hash: hex.EncodeToString(h[:])})
		if err := tree.Add(h); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	return recs, &tree
}

func export(t *testing.T, recs []Record, notes ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range recs {
		if err := enc.Encode(EntryLine(r)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range notes {
		if err := enc.Encode(ExportLine{Type: "checkpoint", Note: n}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestAuditCheckpointRoundTripAndExport(t *testing.T) {
	signer, vkey := testKey(t)
	recs, tree := testChain(t, "t1", 9)
	var notes []string
	for _, size := range []int64{4, 9} {
		root, err := tlog.TreeHash(size, tree)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := SignCheckpoint(signer, "t1", size, root, StateRoot(nil))
		if err != nil {
			t.Fatal(err)
		}
		notes = append(notes, cp.Note)
	}
	known, _ := NewVerifiers(vkey)
	cp, err := OpenCheckpoint(notes[1], known)
	if err != nil || cp.Chain != "t1" || cp.Size != 9 {
		t.Fatalf("open: %+v %v", cp, err)
	}
	v, err := VerifyExport(bytes.NewReader(export(t, recs, notes...)), vkey)
	if err != nil || !v.OK || v.Entries != 9 || v.Checkpoints != 2 {
		t.Fatalf("export: %+v %v", v, err)
	}
	// Another key, or checkpoints out of order, or a shortened chain: each fails.
	_, other := testKey(t)
	if v, _ := VerifyExport(bytes.NewReader(export(t, recs, notes...)), other); v.OK || v.FirstBadSeq != 1 {
		t.Errorf("another key: %+v", v)
	}
	if v, _ := VerifyExport(bytes.NewReader(export(t, recs, notes[1], notes[0])), vkey); v.OK || v.FirstBadSeq != 10 {
		t.Errorf("out of order: %+v", v)
	}
	if v, _ := VerifyExport(bytes.NewReader(export(t, recs[:7], notes...)), vkey); v.OK || v.FirstBadSeq != 5 {
		t.Errorf("cut short: %+v", v)
	}
	// The sink's file format reads back.
	var file []byte
	for _, n := range notes {
		file = append(file, n+"\n"...)
	}
	got, err := SplitNotes(file)
	if err != nil || len(got) != 2 || got[0] != notes[0] || got[1] != notes[1] {
		t.Fatalf("split notes: %q %v", got, err)
	}
	if _, err := SplitNotes(file[:len(file)-1]); err == nil {
		t.Error("a truncated sink file read as whole")
	}
}

func TestAuditStateRootIsOrderFree(t *testing.T) {
	a := []SecretState{{"e1", "A", 1, false}, {"e1", "B", 2, true}}
	b := []SecretState{a[1], a[0]}
	if StateRoot(a) != StateRoot(b) {
		t.Fatal("state root depends on order")
	}
	a[0].LatestVersion = 2
	if StateRoot(a) == StateRoot(b) {
		t.Fatal("state root ignores versions")
	}
}

func TestAuditParseReceipt(t *testing.T) {
	h := strings.Repeat("ab", 32)
	r, err := ParseReceipt("t1/7/" + h)
	if err != nil || r.Chain != "t1" || r.Seq != 7 || r.String() != "t1/7/"+h {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "t1/7", "t1/0/" + h, "t1/x/" + h, "t1/7/" + strings.ToUpper(h), "t1/7/abc"} {
		if _, err := ParseReceipt(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
