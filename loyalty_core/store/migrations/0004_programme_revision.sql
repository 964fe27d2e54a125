-- A revision on every programme that each change to it or to its levels raises, so that a process
-- may price writes with its in-memory copy of the programme and its levels: the statement that
-- locks the member reads the revision beside the member row, and a copy of another revision is
-- read again (loyalty_core.service.rules).
ALTER TABLE programme ADD COLUMN revision bigint NOT NULL DEFAULT 1;

CREATE FUNCTION programme_next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END $$;

CREATE TRIGGER programme_next_revision BEFORE UPDATE ON programme
    FOR EACH ROW EXECUTE FUNCTION programme_next_revision();

CREATE FUNCTION level_changes_programme_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE programme SET revision = revision + 1 WHERE programme_id = OLD.programme_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.programme_id <> OLD.programme_id) THEN
        UPDATE programme SET revision = revision + 1 WHERE programme_id = NEW.programme_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER level_changes_programme_revision AFTER INSERT OR UPDATE OR DELETE ON level
    FOR EACH ROW EXECUTE FUNCTION level_changes_programme_revision();
