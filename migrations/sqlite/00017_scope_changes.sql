-- +goose Up
-- Nothing to do on SQLite: the Postgres migration of this number adds a notification trigger
-- for other replicas, and an SQLite database has one server process, told in-process.
SELECT 1;

-- +goose Down
SELECT 1;
