-- +goose Up
-- The token that minted a token (POST /api/v1/tokens with a token); NULL for a root token
-- (bootstrap, a user's first token). A child never outlives its parent and is revoked with
-- it, so revocation walks this column down; the index keeps each step an index lookup. There
-- is no ON DELETE action: tokens are revoked, not deleted (deleting their user removes all of
-- them at once), and a parent must not vanish from under live children.
ALTER TABLE api_tokens ADD COLUMN parent_id TEXT NULL REFERENCES api_tokens (id);
CREATE INDEX api_tokens_parent ON api_tokens (parent_id);

-- +goose Down
DROP INDEX api_tokens_parent;
ALTER TABLE api_tokens DROP COLUMN parent_id;
