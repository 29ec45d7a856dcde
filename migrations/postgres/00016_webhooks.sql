-- +goose Up
-- Webhooks (docs/webhooks.md). A project's admins register an HTTPS URL for chosen event types;
-- the dispatcher turns each matching row of the events table (00015) into a delivery, in one
-- transaction per webhook that also advances event_cursor (the last event id it has looked
-- at), so a restart neither loses nor repeats one. The signing secret is sealed under the
-- platform data key (purpose webhook-signing-secret, owner the webhook id). event_types is the
-- space-separated list of the event types it wants, or "*".
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    project_id   TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    event_types  TEXT NOT NULL,
    secret       BYTEA NOT NULL,
    created_by   TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    event_cursor BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX webhooks_project ON webhooks (project_id, created_at);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id);

-- One row per (webhook, event). payload is the signed body, built when the delivery is
-- created, so that it survives the event's retention. A claimed delivery has its
-- next_attempt_at moved past the claim's lease and claim set; the replica that claimed it
-- records the attempt only if claim still matches.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    event_at        TIMESTAMPTZ NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NULL,
    claim           TEXT NOT NULL DEFAULT '',
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at) WHERE status <> 'pending';

-- Every attempt: when, the receiver's status code (0 if none) or the error, how long it took.
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    status_code INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
