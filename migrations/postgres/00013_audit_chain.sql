-- +goose Up
-- The hash chain (docs/audit-chain.md): every entry from now on has its chain's next sequence
-- number, the previous entry's hash and its own. Entries already here keep no sequence and
-- stay outside the chain. audit_heads holds each chain's last sequence, hash and time; the
-- writer locks it, so a chain has one writer at a time.
ALTER TABLE audit_entries ADD COLUMN seq BIGINT NULL;
ALTER TABLE audit_entries ADD COLUMN prev_hash TEXT NULL;
ALTER TABLE audit_entries ADD COLUMN hash TEXT NULL;
ALTER TABLE audit_entries ADD COLUMN principal_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_entries ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_entries ADD COLUMN outcome TEXT NOT NULL DEFAULT 'success';
CREATE UNIQUE INDEX audit_entries_chain ON audit_entries (tenant_id, seq);

CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    at    TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE audit_heads;
DROP INDEX audit_entries_chain;
ALTER TABLE audit_entries DROP COLUMN outcome;
ALTER TABLE audit_entries DROP COLUMN user_agent;
ALTER TABLE audit_entries DROP COLUMN principal_kind;
ALTER TABLE audit_entries DROP COLUMN hash;
ALTER TABLE audit_entries DROP COLUMN prev_hash;
ALTER TABLE audit_entries DROP COLUMN seq;
