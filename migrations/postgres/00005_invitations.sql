-- +goose Up
-- Invitations replace adding tenant members by e-mail, which told any admin whether an address
-- had an account. Only a SHA-256 of the one-time code is kept, like API tokens. An invitation
-- is pending until it is accepted, revoked or expires; accepted_at is set by one conditional
-- UPDATE so that a code is used once.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    code_hash   TEXT NOT NULL UNIQUE,
    created_by  TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ NULL,
    accepted_by TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    revoked_at  TIMESTAMPTZ NULL
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, id);

-- +goose Down
DROP INDEX invitations_tenant;
DROP TABLE invitations;
