-- +goose Up
-- Browser sessions are server-side: the cookie holds 32 random bytes and only their SHA-256 is
-- stored, like API tokens, so a copy of the database signs no one in. A session ends at
-- expires_at (absolute timeout) or when last_seen_at is older than the idle timeout, and
-- logging out deletes the row. Deleting a user deletes their sessions.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    method       TEXT NOT NULL,
    user_agent   TEXT NOT NULL,
    source_ip    TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, id);

-- +goose Down
DROP TABLE sessions;
