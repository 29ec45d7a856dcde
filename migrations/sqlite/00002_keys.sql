-- +goose Up
-- One row per key-encryption key (KEK) this instance has adopted: a random value wrapped under
-- the KEK. At start the configured KEK must open its row; a KEK without a row is adopted only on
-- an empty database or when every KEK already in use is configured beside it.
CREATE TABLE key_checks (
    kek_id     TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at DATETIME NOT NULL
);

-- The platform data key seals instance-level secrets (OIDC client secrets, TOTP seeds, signing
-- keys) field by field. Like environment data keys, only its wrapped form is stored.
CREATE TABLE platform_keys (
    id          TEXT PRIMARY KEY,
    -- One platform key today; the unique slot makes creating it on first use race-free.
    slot        INTEGER NOT NULL DEFAULT 1 UNIQUE,
    kek_id      TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at  DATETIME NOT NULL
);

-- Tenant-owned KEKs (bring your own key). tenants.kek_id is the one new data keys of the tenant
-- are wrapped under; earlier ones stay here, usable for unwrapping, until a rewrap retires them.
ALTER TABLE tenants ADD COLUMN kek_id TEXT NULL;
CREATE TABLE tenant_keks (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kek_id     TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    retired_at DATETIME NULL,
    PRIMARY KEY (tenant_id, kek_id)
);

CREATE INDEX data_keys_kek ON data_keys (kek_id, id);

-- Rotation jobs: rewrap (data keys under another KEK) and reseal (values under an environment's
-- new data key). Progress is checkpointed in cursor, in the same transaction as each batch, so
-- a job killed at any point resumes where its last batch committed. A lease lets exactly one
-- process work on a job at a time.
CREATE TABLE key_jobs (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('rewrap', 'reseal')),
    project_id     TEXT NOT NULL DEFAULT '',
    environment_id TEXT NOT NULL DEFAULT '',
    target_kek     TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    cursor         TEXT NOT NULL DEFAULT '',
    done           INTEGER NOT NULL DEFAULT 0,
    total          INTEGER NOT NULL DEFAULT 0,
    error          TEXT NOT NULL DEFAULT '',
    created_by     TEXT NOT NULL DEFAULT '',
    lease_owner    TEXT NOT NULL DEFAULT '',
    lease_until    DATETIME NULL,
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL,
    finished_at    DATETIME NULL
);
CREATE INDEX key_jobs_tenant ON key_jobs (tenant_id, created_at);
CREATE INDEX key_jobs_state ON key_jobs (state);

-- +goose Down
DROP TABLE key_jobs;
DROP INDEX data_keys_kek;
DROP TABLE tenant_keks;
ALTER TABLE tenants DROP COLUMN kek_id;
DROP TABLE platform_keys;
DROP TABLE key_checks;
