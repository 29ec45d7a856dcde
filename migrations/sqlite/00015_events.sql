-- +goose Up
-- The event outbox; see the Postgres migration of the same number. SQLite has one process,
-- whose in-process bus announces new rows after commit.
CREATE TABLE events (
    tenant_id      TEXT NOT NULL,
    id             INTEGER NOT NULL,
    occurred_at    DATETIME NOT NULL,
    type           TEXT NOT NULL,
    project_id     TEXT NOT NULL DEFAULT '',
    environment_id TEXT NOT NULL DEFAULT '',
    name           TEXT NOT NULL DEFAULT '',
    version        INTEGER NOT NULL DEFAULT 0,
    actor_type     TEXT NOT NULL DEFAULT '',
    actor_id       TEXT NOT NULL DEFAULT '',
    target_type    TEXT NOT NULL DEFAULT '',
    target_id      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_occurred_at ON events (occurred_at);

-- +goose Down
DROP TABLE events;
