-- +goose Up
-- Signed checkpoints of the audit chains (docs/audit-chain.md). audit_tree_hashes holds each
-- chain's Merkle tree (golang.org/x/mod/sumdb/tlog stored hashes), extended from the entries
-- when a checkpoint is made, so inclusion proofs read it rather than the whole chain.
-- audit_checkpoints holds every signed checkpoint. Both are append-only, like audit_entries.
CREATE TABLE audit_tree_hashes (
    chain TEXT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (chain, idx)
);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    tree_size  BIGINT NOT NULL,
    root_hash  TEXT NOT NULL,
    state_root TEXT NOT NULL,
    note       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain, tree_size)
);

-- The instance's checkpoint signing key: the verifier key in clear, the signer key sealed
-- under the platform data key (purpose audit-signing-key, owner instance).
CREATE TABLE audit_signing_keys (
    id         TEXT PRIMARY KEY,
    verifier   TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- Reuses audit_entries' refusal (00001_core.sql).
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_tree_hashes_no_update_delete BEFORE UPDATE OR DELETE ON audit_tree_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only();
CREATE TRIGGER audit_tree_hashes_no_truncate BEFORE TRUNCATE ON audit_tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only();

-- +goose Down
DROP TABLE audit_signing_keys;
DROP TABLE audit_checkpoints;
DROP TABLE audit_tree_hashes;
