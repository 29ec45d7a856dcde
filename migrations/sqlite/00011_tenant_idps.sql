-- +goose Up
-- A tenant's own OpenID provider. Members link an account there to their user while signed
-- in, then sign in through it; with required set, their browser sessions reach the tenant
-- only when started that way. id is a random public id used in sign-in URLs, so that a URL
-- names no tenant slug. The client secret is sealed under the platform data key (purpose
-- oidc-client-secret, owner the tenant id), never stored in clear.
CREATE TABLE tenant_idps (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    id            TEXT NOT NULL UNIQUE,
    issuer        TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret BLOB NOT NULL,
    required      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    DATETIME NOT NULL,
    updated_at    DATETIME NOT NULL
);

-- A sign-in through a tenant's provider names it; a link names the signed-in user who asked
-- for it. Deleting the provider or the user ends such sign-ins in progress.
ALTER TABLE oidc_login_states ADD COLUMN idp_id TEXT NULL REFERENCES tenant_idps (id) ON DELETE CASCADE;
ALTER TABLE oidc_login_states ADD COLUMN link_user_id TEXT NULL REFERENCES users (id) ON DELETE CASCADE;

-- +goose Down
ALTER TABLE oidc_login_states DROP COLUMN link_user_id;
ALTER TABLE oidc_login_states DROP COLUMN idp_id;
DROP TABLE tenant_idps;
