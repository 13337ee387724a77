-- Version 12: capture writes the tag into the journal as it reads it.
--
-- A one-row statement's journal row held
-- nullif(current_setting('pgundo.tag', true), ''): written schema-qualified
-- (version 11), that is a CASE, two reads of the setting and a comparison,
-- about 4,100 of the 346,000 instructions of a one-row UPDATE of a tracked
-- pgbench_accounts (scripts/capture-instructions, PostgreSQL 15). A tag that
-- was set and then reset in a session reads back as '' rather than NULL; the
-- journal now keeps that '', and its two readers, the view pgundo.stmt and
-- pgundo.fold, turn it into NULL: every reader sees the tag as before, and
-- the log tables never hold ''. Statements of more than one row (written
-- straight into pgundo.stmt_log, once per statement) write NULL as before.
--
-- The capture functions are version 11's templates (sql/shared/capture.sql)
-- with "v12" set.

CREATE OR REPLACE VIEW pgundo.stmt AS
SELECT id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag FROM pgundo.stmt_log
UNION ALL
SELECT id, session_id, xid, at, op, relid, schema_name::name, table_name::name, 1::bigint, role::name, application_name, nullif(tag, '') FROM pgundo.journal;

-- fold as in version 7, the tag's '' made NULL.
CREATE OR REPLACE FUNCTION pgundo.fold() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pgundo.journal) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pgundo.fold'));
    WITH j AS (DELETE FROM pgundo.journal RETURNING *),
    k AS (SELECT * FROM j WHERE NOT EXISTS (SELECT FROM pgundo.pruned p WHERE p.chunk = j.id / pgundo._chunk_size())),
    s AS (INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag)
          SELECT id, session_id, xid, at, op, relid, schema_name, table_name, 1, role, application_name, nullif(tag, '') FROM k)
    INSERT INTO pgundo.change_log (stmt_id, old, new) SELECT id, old, new FROM k;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true "v11" true "v12" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true "v11" true "v12" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true "v11" true "v12" true)}}
