-- +goose Up
-- Signed checkpoints of the audit chains (docs/audit-chain.md). audit_tree_hashes holds each
-- chain's Merkle tree (golang.org/x/mod/sumdb/tlog stored hashes), extended from the entries
-- when a checkpoint is made, so inclusion proofs read it rather than the whole chain.
-- audit_checkpoints holds every signed checkpoint. Both are append-only, like audit_entries.
CREATE TABLE audit_tree_hashes (
    chain TEXT NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (chain, idx)
);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    tree_size  INTEGER NOT NULL,
    root_hash  TEXT NOT NULL,
    state_root TEXT NOT NULL,
    note       TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (chain, tree_size)
);

-- The instance's checkpoint signing key: the verifier key in clear, the signer key sealed
-- under the platform data key (purpose audit-signing-key, owner instance).
CREATE TABLE audit_signing_keys (
    id         TEXT PRIMARY KEY,
    verifier   TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    created_at DATETIME NOT NULL
);

-- +goose StatementBegin
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_tree_hashes_no_update BEFORE UPDATE ON audit_tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_hashes is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_tree_hashes_no_delete BEFORE DELETE ON audit_tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_hashes is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_signing_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_tree_hashes;
