-- +goose Up
-- Service tokens are for machines (CI, apps): they belong to a project, reach a set of its
-- environments with read or read-write access, and expire. They act for no user, so deleting
-- the user who created one leaves it working until it expires or is revoked. Only a SHA-256
-- of the token is stored. environment_ids is the space-separated list of the environment ids
-- the token reaches, read with the token on every request, so that authorizing one takes no
-- second query; a deleted environment's id matches nothing.
CREATE TABLE service_tokens (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id      TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    display_prefix  TEXT NOT NULL,
    environment_ids TEXT NOT NULL,
    access          TEXT NOT NULL CHECK (access IN ('read', 'read-write')),
    created_by      TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    created_at      DATETIME NOT NULL,
    expires_at      DATETIME NOT NULL,
    last_used_at    DATETIME NULL,
    revoked_at      DATETIME NULL
);
CREATE INDEX service_tokens_project ON service_tokens (project_id, id);

-- +goose Down
DROP INDEX service_tokens_project;
DROP TABLE service_tokens;
