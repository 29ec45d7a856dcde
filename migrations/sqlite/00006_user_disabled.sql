-- +goose Up
-- An instance admin can disable a user: every token of theirs stops at the next request (the
-- token lookup joins the user row), without revoking anything, so enabling them again restores
-- exactly what they had.
ALTER TABLE users ADD COLUMN disabled_at DATETIME NULL;

-- +goose Down
ALTER TABLE users DROP COLUMN disabled_at;
