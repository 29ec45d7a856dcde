-- +goose Up
-- Device sign-ins in progress (coffer login): only SHA-256 hashes of the device code (the
-- client's) and of the user code (typed or followed by the user) are kept. The token a client
-- collects is minted when it collects it; token_id names it. Rows are forgotten a day after
-- they expire.
CREATE TABLE device_authorizations (
    id               TEXT PRIMARY KEY,
    device_code_hash TEXT NOT NULL UNIQUE,
    user_code_hash   TEXT NOT NULL UNIQUE,
    client_name      TEXT NOT NULL,
    source_ip        TEXT NOT NULL,
    user_agent       TEXT NOT NULL,
    token_days       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    user_id          TEXT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_id         TEXT NULL,
    created_at       DATETIME NOT NULL,
    expires_at       DATETIME NOT NULL,
    decided_at       DATETIME NULL,
    last_polled_at   DATETIME NULL
);
CREATE INDEX device_authorizations_expiry ON device_authorizations (expires_at);

-- +goose Down
DROP INDEX device_authorizations_expiry;
DROP TABLE device_authorizations;
