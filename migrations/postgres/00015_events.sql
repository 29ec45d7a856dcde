-- +goose Up
-- The event outbox (docs/events.md). The one audit writer inserts a row here in the same
-- transaction as the change it records, with id = the audit chain sequence of that entry: ids
-- of a tenant increase and commit in order (the chain head's lock is held to commit), so a
-- reader that remembers the last id it saw never misses one. Rows carry identifiers and names,
-- never values. tenant_id is '' for instance-level changes (session and personal-token
-- revocations), which the stream uses only to recheck its subscribers. Retention deletes rows
-- older than 7 days or beyond the newest 1,000,000 of a tenant.
CREATE TABLE events (
    tenant_id      TEXT NOT NULL,
    id             BIGINT NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
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

-- Every replica LISTENs on coffer_events; the notification carries only "<tenant>:<id>" and is
-- delivered when (and only if) the inserting transaction commits.
-- +goose StatementBegin
CREATE FUNCTION coffer_events_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('coffer_events', NEW.tenant_id || ':' || NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION coffer_events_notify();

-- +goose Down
DROP TRIGGER events_notify ON events;
DROP FUNCTION coffer_events_notify();
DROP TABLE events;
