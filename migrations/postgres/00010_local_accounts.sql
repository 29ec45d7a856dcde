-- +goose Up
-- Local accounts. Passwords live in their own table, not on users, so that no query reading
-- users picks up a hash by accident; the hash is Argon2id, encoded with its salt and cost.
CREATE TABLE user_passwords (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A TOTP seed, sealed under the platform data key (never in clear). confirmed_at is NULL while
-- an enrolment waits for its first code. last_step is the last RFC 6238 time step accepted: a
-- code is taken only for a later step, so each code works once.
CREATE TABLE user_totp (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_seed  BYTEA NOT NULL,
    confirmed_at TIMESTAMPTZ NULL,
    last_step    BIGINT NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL
);

-- Recovery codes: only SHA-256 of each is stored; used_at spends one.
CREATE TABLE totp_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    TIMESTAMPTZ NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- A login whose password was right and whose second factor is owed; the browser holds the
-- secret in a cookie, the table only its hash. Rows live five minutes.
CREATE TABLE login_challenges (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    return_to  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_challenges_user ON login_challenges (user_id);

-- One-time password reset links issued by an instance admin: only SHA-256 of the code.
CREATE TABLE password_resets (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL UNIQUE,
    created_by TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ NULL
);
CREATE INDEX password_resets_user ON password_resets (user_id);

-- +goose Down
DROP TABLE password_resets;
DROP TABLE login_challenges;
DROP TABLE totp_recovery_codes;
DROP TABLE user_totp;
DROP TABLE user_passwords;
