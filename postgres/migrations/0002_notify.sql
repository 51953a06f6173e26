-- 0002: tell every process sharing the database about each committed write
-- of a connection that changes its generation (or creates or deletes it),
-- with NOTIFY: the keeper's coherence across replicas (docs/design.md, "The
-- PostgreSQL store"). A notification is sent on commit only, and not at all
-- for a write that rolls back. Writes of the lease alone (the UPDATE's WHEN)
-- call nothing.
--
-- The channel is per schema, so that stores in different schemas of one
-- database do not hear each other: "tokenkeeper_" and the first 16 hex
-- digits of the MD5 of the schema's name (a channel name is at most 63
-- bytes). The payload is "<op> <generation> <created_at, unix microseconds>
-- <id>", op "u" for a write and "d" for a delete; an id is at most 128
-- bytes, far below the payload's limit of 8000.

CREATE FUNCTION tokenkeeper_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	op text := 'u';
BEGIN
	IF TG_OP = 'DELETE' THEN
		r := OLD;
		op := 'd';
	ELSE
		r := NEW;
	END IF;
	PERFORM pg_notify(
		'tokenkeeper_' || left(md5(TG_TABLE_SCHEMA), 16),
		op || ' ' || r.generation || ' ' ||
			-- Whole seconds, then the microseconds within the second: exact on
			-- every version (before 14, extract returns a double, and epoch *
			-- 1e6 may be off by one microsecond).
			CASE WHEN isfinite(r.created_at)
				THEN extract(epoch FROM date_trunc('second', r.created_at))::bigint * 1000000
					+ extract(microseconds FROM r.created_at)::bigint % 1000000
				ELSE 0 END
			|| ' ' || r.id);
	RETURN NULL;
END
$$;

CREATE TRIGGER connections_notify_write
	AFTER INSERT OR DELETE ON connections
	FOR EACH ROW EXECUTE FUNCTION tokenkeeper_notify_change();

CREATE TRIGGER connections_notify_update
	AFTER UPDATE ON connections
	FOR EACH ROW
	WHEN (OLD.generation IS DISTINCT FROM NEW.generation OR OLD.created_at IS DISTINCT FROM NEW.created_at)
	EXECUTE FUNCTION tokenkeeper_notify_change();
