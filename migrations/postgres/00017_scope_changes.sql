-- +goose Up
-- Replicas cache what a credential resolves to for a tenant's routes, including the
-- environment's revision (the key of the listing cache). Every change to an environment's
-- revision (a secret written, a data key rolled, values resealed) tells every replica, through
-- the coffer_changes channel, which tenant's cached scopes to drop; changes that store an
-- event are told through coffer_events (00015) already. The notification is delivered when
-- (and only if) the transaction commits, and Postgres folds repeats within one transaction.
-- +goose StatementBegin
CREATE FUNCTION coffer_changes_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('coffer_changes', NEW.tenant_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
CREATE TRIGGER environments_revision_notify AFTER UPDATE OF revision ON environments
    FOR EACH ROW EXECUTE FUNCTION coffer_changes_notify();

-- +goose Down
DROP TRIGGER environments_revision_notify ON environments;
DROP FUNCTION coffer_changes_notify();
