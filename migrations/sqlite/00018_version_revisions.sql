-- +goose Up
-- Each change to an environment's secrets moves the environment's revision (00001); these
-- columns record the revision at which each version was written and each deletion began and
-- ended, so that the set of versions an environment held at any revision can be listed. A
-- reveal's audit entry names that revision, the page and a digest of the names and versions
-- it returned, instead of every name (docs/audit-chain.md). Rows from before this migration
-- have NULL: they predate every revision a new entry can name, and count as revision 0.
ALTER TABLE secret_versions ADD COLUMN revision BIGINT NULL;
ALTER TABLE secret_deletions ADD COLUMN deleted_revision BIGINT NULL;
ALTER TABLE secret_deletions ADD COLUMN restored_revision BIGINT NULL;

-- +goose Down
ALTER TABLE secret_deletions DROP COLUMN restored_revision;
ALTER TABLE secret_deletions DROP COLUMN deleted_revision;
ALTER TABLE secret_versions DROP COLUMN revision;
