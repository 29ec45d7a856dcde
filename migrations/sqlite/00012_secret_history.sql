-- +goose Up
-- Destroying a version erases its ciphertext for good (the column is emptied in place) and
-- keeps its metadata, marked destroyed: the history still shows that version N existed, who
-- wrote it and who destroyed it, but nothing can read or roll back to it.
ALTER TABLE secret_versions ADD COLUMN destroyed_at DATETIME NULL;
ALTER TABLE secret_versions ADD COLUMN destroyed_by TEXT NULL;

-- When each secret was deleted and restored, so that an environment can be read, and put
-- back, as it was at any time: versions say what each value was, these rows say whether the
-- secret existed. Secrets deleted before this migration get the deletion they have.
CREATE TABLE secret_deletions (
    secret_id   TEXT NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    deleted_at  DATETIME NOT NULL,
    restored_at DATETIME NULL,
    PRIMARY KEY (secret_id, deleted_at)
);
INSERT INTO secret_deletions (secret_id, deleted_at) SELECT id, deleted_at FROM secrets WHERE deleted_at IS NOT NULL;

-- +goose Down
DROP TABLE secret_deletions;
ALTER TABLE secret_versions DROP COLUMN destroyed_by;
ALTER TABLE secret_versions DROP COLUMN destroyed_at;
