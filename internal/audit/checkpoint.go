package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoints (docs/audit-chain.md): each chain's entries are the records of a Merkle tree
// (golang.org/x/mod/sumdb/tlog): record n is entry n+1, and its record hash is
// tlog.RecordHash of the entry's 32-byte hash. A checkpoint is a signed note (C2SP
// signed-note) whose text is a C2SP tlog-checkpoint body plus one extension line naming the
// state root.

// SigningKeyName is the name of the instance's checkpoint signing key in its notes.
const SigningKeyName = "coffer-audit"

// SigningKeyPurpose and SigningKeyOwner seal the signing key (secrets.Fields).
const (
	SigningKeyPurpose = "audit-signing-key"
	SigningKeyOwner   = "instance"
)

// Origin names a chain in its checkpoints: "coffer/<tenant id>", "coffer/instance" for "".
func Origin(chain string) string {
	if chain == "" {
		return "coffer/instance"
	}
	return "coffer/" + chain
}

// Checkpoint is a signed statement of a chain's size, Merkle root and secrets' state.
type Checkpoint struct {
	Chain     string
	Size      int64
	Root      tlog.Hash
	State     [32]byte
	Note      string // the signed note, as signed
	CreatedAt time.Time
}

// CheckpointBody is the text a checkpoint signs.
func CheckpointBody(chain string, size int64, root tlog.Hash, state [32]byte) string {
	return fmt.Sprintf("%s\n%d\n%s\nstate %s\n", Origin(chain), size,
		base64.StdEncoding.EncodeToString(root[:]), base64.StdEncoding.EncodeToString(state[:]))
}

// SignCheckpoint signs a checkpoint's body.
func SignCheckpoint(s note.Signer, chain string, size int64, root tlog.Hash, state [32]byte) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: CheckpointBody(chain, size, root, state)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign audit checkpoint: %w", err)
	}
	return Checkpoint{Chain: chain, Size: size, Root: root, State: state, Note: string(msg)}, nil
}

// OpenCheckpoint checks a checkpoint note's signature against known and reads its body. It
// takes the chain from the origin line, so a caller must compare it with the chain it expects.
func OpenCheckpoint(msg string, known note.Verifiers) (Checkpoint, error) {
	n, err := note.Open([]byte(msg), known)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature does not verify: %w", err)
	}
	cp, err := parseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	cp.Note = msg
	return cp, nil
}

func parseCheckpointBody(text string) (Checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	bad := errors.New("checkpoint body is not in the expected form")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "coffer/") || !strings.HasPrefix(lines[3], "state ") {
		return Checkpoint{}, bad
	}
	var cp Checkpoint
	cp.Chain = strings.TrimPrefix(lines[0], "coffer/")
	if cp.Chain == "instance" {
		cp.Chain = ""
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, bad
	}
	cp.Size = size
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, bad
	}
	copy(cp.Root[:], root)
	state, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[3], "state "))
	if err != nil || len(state) != 32 {
		return Checkpoint{}, bad
	}
	copy(cp.State[:], state)
	return cp, nil
}

// NewVerifiers reads a verifier key (note format) into the set note.Open takes.
func NewVerifiers(vkey string) (note.Verifiers, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("not a verifier key: %w", err)
	}
	return note.VerifierList(v), nil
}

// SecretState is one secret as the state root commits to it.
type SecretState struct {
	EnvironmentID string
	Name          string
	LatestVersion int64
	Deleted       bool
}

// StateRoot is SHA-256 over the sorted lines "<environment id> <name> <latest version>
// <deleted 0|1>\n" of every secret of a tenant: restoring an older copy of the secrets
// changes it even when the log is untouched.
func StateRoot(secrets []SecretState) [32]byte {
	lines := make([]string, len(secrets))
	for i, s := range secrets {
		d := "0"
		if s.Deleted {
			d = "1"
		}
		lines[i] = s.EnvironmentID + " " + s.Name + " " + strconv.FormatInt(s.LatestVersion, 10) + " " + d + "\n"
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// SecretChanging reports whether an action can change what the state root commits to: a
// checkpoint's state is compared with the current one only if none came after it.
func SecretChanging(action string) bool {
	switch action {
	case ActionSecretWrite, ActionSecretDelete, ActionSecretRestore, ActionSecretRollback, ActionSecretDestroy,
		ActionSecretPromote, ActionEnvironmentDelete, ActionProjectDelete, ActionTenantDelete:
		return true
	}
	return false
}

// SecretChangingActions lists the actions SecretChanging accepts, for queries.
var SecretChangingActions = []string{ActionSecretWrite, ActionSecretDelete, ActionSecretRestore, ActionSecretRollback,
	ActionSecretDestroy, ActionSecretPromote, ActionEnvironmentDelete, ActionProjectDelete, ActionTenantDelete}

// Tree is a chain's Merkle tree held in memory, built from its entries' hashes: verification
// recomputes it rather than trusting the stored one.
type Tree struct {
	stored []tlog.Hash
	n      int64
}

// Add appends the next entry's hash as a record.
func (t *Tree) Add(entryHash [32]byte) error {
	hs, err := tlog.StoredHashes(t.n, entryHash[:], t)
	if err != nil {
		return err
	}
	t.stored = append(t.stored, hs...)
	t.n++
	return nil
}

// Size is the number of records.
func (t *Tree) Size() int64 { return t.n }

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("tree hash %d is not stored", x)
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

// CheckCheckpoints checks a chain's checkpoints, in tree-size order, against the tree of its
// entries: each signature, that each root is the tree's at that size, and that each is
// consistent with the one before. The first failure is recorded in v; first bad sequence is
// the first after the last good checkpoint. It returns the checkpoints that verified.
func (t *Tree) CheckCheckpoints(chain string, notes []string, known note.Verifiers, v *Verification) []Checkpoint {
	var good []Checkpoint
	lastGood := int64(0)
	fail := func(reason string) []Checkpoint {
		if v.OK {
			v.OK, v.FirstBadSeq, v.Reason = false, lastGood+1, reason
		}
		return good
	}
	for i, msg := range notes {
		cp, err := OpenCheckpoint(msg, known)
		if err != nil {
			return fail(fmt.Sprintf("checkpoint %d: %v", i+1, err))
		}
		if cp.Chain != chain {
			return fail(fmt.Sprintf("checkpoint %d names another chain", i+1))
		}
		if cp.Size > t.n {
			return fail(fmt.Sprintf("checkpoint %d covers %d entries but the log has %d: entries were removed", i+1, cp.Size, t.n))
		}
		root, err := tlog.TreeHash(cp.Size, t)
		if err != nil {
			return fail(fmt.Sprintf("checkpoint %d: %v", i+1, err))
		}
		if root != cp.Root {
			return fail(fmt.Sprintf("checkpoint %d of %d entries does not match the log: entries were rewritten", i+1, cp.Size))
		}
		if len(good) > 0 {
			prev := good[len(good)-1]
			if cp.Size < prev.Size {
				return fail(fmt.Sprintf("checkpoint %d is older than the one before it", i+1))
			}
			p, err := tlog.ProveTree(cp.Size, prev.Size, t)
			if err == nil {
				err = tlog.CheckTree(p, cp.Size, cp.Root, prev.Size, prev.Root)
			}
			if err != nil {
				return fail(fmt.Sprintf("checkpoint %d is not consistent with the one before it: %v", i+1, err))
			}
		}
		good = append(good, cp)
		lastGood = cp.Size
		v.Checkpoints++
	}
	return good
}

// RecordHash is the tree's record hash of an entry with this hash.
func RecordHash(entryHash [32]byte) tlog.Hash { return tlog.RecordHash(entryHash[:]) }

// DecodeHash reads an entry hash written as 64 hex digits.
func DecodeHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != s {
		return h, fmt.Errorf("not a SHA-256 in lowercase hex: %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// SplitNotes reads the notes a sink file holds: each note followed by one empty line. A note
// has one empty line of its own, between its text and its signatures.
func SplitNotes(data []byte) ([]string, error) {
	var notes []string
	var cur bytes.Buffer
	inSigs := false
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, errors.New("the sink file ends in the middle of a line")
		}
		line := data[:i+1]
		data = data[i+1:]
		if len(line) == 1 {
			if inSigs {
				notes = append(notes, cur.String())
				cur.Reset()
				inSigs = false
				continue
			}
			if cur.Len() == 0 {
				return nil, errors.New("the sink file has an empty note")
			}
			inSigs = true
		}
		cur.Write(line)
	}
	if cur.Len() > 0 {
		return nil, errors.New("the sink file ends in the middle of a note")
	}
	return notes, nil
}
