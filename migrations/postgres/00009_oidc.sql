-- +goose Up
-- OIDC sign-in. A login in progress is a row keyed by a SHA-256 of its state, holding what the
-- callback needs (nonce, PKCE verifier, where to go back to); the callback deletes it, so a
-- state works once, and it is dead after expires_at whatever happens.
CREATE TABLE oidc_login_states (
    state_hash TEXT PRIMARY KEY,
    nonce      TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_login_states_expiry ON oidc_login_states (expires_at);

-- A user signs in through an OpenID provider by (issuer, subject), never by e-mail: the e-mail
-- is kept only as it was when the identity was linked.
CREATE TABLE user_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- +goose Down
DROP INDEX user_identities_user;
DROP TABLE user_identities;
DROP INDEX oidc_login_states_expiry;
DROP TABLE oidc_login_states;
