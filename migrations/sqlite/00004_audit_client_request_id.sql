-- +goose Up
-- The request id is always the server's; an id a client sent is kept apart, under its own name,
-- so nothing the audit log correlates on is chosen by the caller.
ALTER TABLE audit_entries ADD COLUMN client_request_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE audit_entries DROP COLUMN client_request_id;
