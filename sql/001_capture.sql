-- pgundo capture schema, version 1.
--
-- Layout: one row per connection that changed a tracked table (session), one row
-- per statement and table that changed rows (stmt), one row per changed row
-- (change). A row image is the row's own text form (tbl::text), written with
-- pinned output settings, so that text::tbl restores every value exactly.
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

CREATE SCHEMA IF NOT EXISTS pgundo;
REVOKE ALL ON SCHEMA pgundo FROM PUBLIC;

CREATE TABLE pgundo.tracked (
    relid       oid PRIMARY KEY,
    schema_name name NOT NULL,
    table_name  name NOT NULL,
    tracked_at  timestamptz NOT NULL DEFAULT now(),
    tracked_by  name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE pgundo.tracked IS 'Tables whose changes pgundo captures (a partitioned table covers its partitions).';

CREATE TABLE pgundo.session (
    id               text PRIMARY KEY,
    pid              int NOT NULL,
    backend_start    timestamptz NOT NULL,
    session_role     name NOT NULL,
    client_addr      inet,
    client_port      int,
    application_name text,
    first_change_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    pruned_at        timestamptz
);
COMMENT ON TABLE pgundo.session IS 'One row per database connection that changed a tracked table; id is PostgreSQL''s own session id (log_line_prefix %c): hex backend start epoch, dot, hex pid. pruned_at: when pgundo prune removed some of its changes (it can no longer be undone).';

CREATE SEQUENCE pgundo.stmt_id_seq;

-- The log is partitioned into chunks of statement ids, so that retention
-- (pgundo prune) drops whole chunks instead of deleting rows. Chunk k holds
-- statement ids [k * 2^40, (k + 1) * 2^40); pgundo.rotate() closes the
-- current chunk by moving the id sequence to the start of the next one, so a
-- chunk spans the time between two rotations (prune rotates first).
CREATE TABLE pgundo.stmt (
    id               bigint NOT NULL,
    session_id       text NOT NULL,
    xid              xid8 NOT NULL,
    at               timestamptz NOT NULL,
    op               "char" NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
    relid            oid NOT NULL,
    schema_name      name NOT NULL,
    table_name       name NOT NULL,
    rows             bigint NOT NULL,
    role             name NOT NULL,
    application_name text,
    tag              text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX stmt_session_idx ON pgundo.stmt (session_id);
CREATE INDEX stmt_at_idx ON pgundo.stmt USING brin (at);
COMMENT ON TABLE pgundo.stmt IS 'One row per statement and table that changed rows, numbered as their capture triggers fired.';

CREATE TABLE pgundo.change (
    stmt_id bigint NOT NULL,
    old     text,
    new     text
) PARTITION BY RANGE (stmt_id);
CREATE INDEX change_stmt_idx ON pgundo.change USING brin (stmt_id);
COMMENT ON TABLE pgundo.change IS 'One row per changed row: old is the row before the statement (NULL for INSERT), new after it (NULL for DELETE and TRUNCATE), both as the row''s text form.';

-- _chunk_size is the number of statement ids per log chunk (2^40: a chunk
-- cannot fill up between rotations).
CREATE FUNCTION pgundo._chunk_size() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 1099511627776::bigint';

-- _ensure_chunk creates chunk k's partitions of stmt and change if missing.
-- Each is created on its own with a CHECK constraint matching its range and
-- then attached, which takes only a SHARE UPDATE EXCLUSIVE lock on the log
-- tables: capture (ROW EXCLUSIVE) goes on meanwhile.
{{template "ensure_chunk" (dict "create" "CREATE" "q" "$$" "parent" "t")}}

SELECT pgundo._ensure_chunk(0);
SELECT pgundo._ensure_chunk(1);

-- _log_bytes is the on-disk size of pgundo.stmt and pgundo.change with all
-- their chunks, indexes and TOAST (pg_total_relation_size of a partitioned
-- table alone is 0). _change_rows is the planner's estimate of change rows.
CREATE FUNCTION pgundo._log_bytes() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(pg_total_relation_size(p.relid)), 0)::bigint
      FROM (SELECT relid FROM pg_partition_tree('pgundo.change') UNION ALL SELECT relid FROM pg_partition_tree('pgundo.stmt')) p
$$;

CREATE FUNCTION pgundo._change_rows() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
      FROM pg_partition_tree('pgundo.change') p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf
$$;

-- rotate closes the current chunk: the id sequence moves to the start of the
-- next chunk, and the chunk after it is created, so capture always has a
-- chunk ahead. Statements already numbered still land in the chunk they were
-- numbered in. setval is not transactional: the sequence only moves into a
-- chunk that already existed when this transaction started (a rotation
-- rolled back must not leave capture pointing at a chunk that is gone); if
-- the next chunk is missing, rotate creates it and moves nothing (returns
-- NULL). Returns the first id of the new chunk.
CREATE FUNCTION pgundo.rotate() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur bigint := (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq);
    k   bigint := cur / pgundo._chunk_size() + 1;
BEGIN
    -- The current chunk must exist (it does, unless a rotation was rolled
    -- back after moving the sequence); and the sequence moves at most once
    -- per transaction: a second move could go into a chunk this transaction
    -- created, gone if it rolls back.
    PERFORM pgundo._ensure_chunk(cur / pgundo._chunk_size());
    IF current_setting('pgundo.rotated', true) = 'on' THEN
        PERFORM pgundo._ensure_chunk(k);
        RETURN NULL;
    END IF;
    IF to_regclass(format('pgundo.%I', 'stmt_c' || k)) IS NULL OR to_regclass(format('pgundo.%I', 'change_c' || k)) IS NULL THEN
        PERFORM pgundo._ensure_chunk(k);
        PERFORM pgundo._ensure_chunk(k + 1);
        RETURN NULL;
    END IF;
    PERFORM pgundo._ensure_chunk(k + 1);
    PERFORM set_config('pgundo.rotated', 'on', true);
    PERFORM setval('pgundo.stmt_id_seq', k * pgundo._chunk_size(), false);
    RETURN k * pgundo._chunk_size();
END $$;

CREATE TABLE pgundo.undo (
    undo_session   text NOT NULL,
    undone_session text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (undone_session, undo_session)
);
CREATE INDEX undo_undo_session_idx ON pgundo.undo (undo_session);
COMMENT ON TABLE pgundo.undo IS 'Which session undid which (written by pgundo undo in its own transaction).';

CREATE TABLE pgundo.undone (
    stmt_id      bigint PRIMARY KEY,
    undo_session text NOT NULL
);
COMMENT ON TABLE pgundo.undone IS 'Statements already undone, and by which session: an undo of them again is refused.';

-- shape records each captured table's columns, from the statement id after
-- which they applied: undo compares them with the table's columns now and
-- names what was dropped, added or retyped since capture.
CREATE TABLE pgundo.shape (
    relid      oid NOT NULL,
    since_stmt bigint NOT NULL,
    columns    name[] NOT NULL,
    types      text[] NOT NULL,
    PRIMARY KEY (relid, since_stmt)
);

CREATE FUNCTION pgundo._record_shape(rel regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols name[];
    typs text[];
BEGIN
    SELECT coalesce(array_agg(a.attname ORDER BY a.attnum), '{}'), coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum), '{}')
      INTO cols, typs
      FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
    IF EXISTS (SELECT FROM pgundo.shape s WHERE s.relid = rel
                 AND s.since_stmt = (SELECT max(since_stmt) FROM pgundo.shape WHERE relid = rel)
                 AND s.columns = cols AND s.types = typs) THEN
        RETURN;
    END IF;
    INSERT INTO pgundo.shape (relid, since_stmt, columns, types)
    VALUES (rel, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pgundo.stmt_id_seq), cols, typs)
    ON CONFLICT (relid, since_stmt) DO UPDATE SET columns = EXCLUDED.columns, types = EXCLUDED.types;
END $$;

-- _session returns this connection's session id, registering the session on
-- first use. The id is computed from the backend's pid and start time on every
-- call (pg_stat_get_activity for one pid costs well under a microsecond), so a
-- forged setting cannot change it; the setting only remembers that the session
-- is registered. set_config is undone with the transaction that registered
-- the session, so the remembered flag and the table agree.
CREATE FUNCTION pgundo._session() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a   record;
    sid text;
BEGIN
    SELECT s.pid, s.backend_start, s.client_addr, s.client_port, s.application_name INTO a
      FROM pg_stat_get_activity(pg_backend_pid()) s;
    IF a.backend_start IS NULL THEN
        -- pgundo's owner may not read this connection's start time (it
        -- lacks pg_read_all_stats; pgundo install checks for it). Never
        -- fail the application's write for it: fall back to the time of the
        -- connection's first captured change, remembered for the connection.
        sid := current_setting('pgundo.session', true);
        IF sid LIKE '%.' || to_hex(pg_backend_pid()) THEN
            RETURN sid;
        END IF;
        a.pid := pg_backend_pid();
        a.backend_start := statement_timestamp();
    END IF;
    sid := to_hex(floor(extract(epoch FROM a.backend_start))::bigint) || '.' || to_hex(a.pid);
    IF current_setting('pgundo.session', true) IS NOT DISTINCT FROM sid THEN
        RETURN sid;
    END IF;
    INSERT INTO pgundo.session (id, pid, backend_start, session_role, client_addr, client_port, application_name)
    VALUES (sid, a.pid, a.backend_start, session_user, a.client_addr, a.client_port, a.application_name)
    ON CONFLICT (id) DO NOTHING;
    PERFORM set_config('pgundo.session', sid, false);
    RETURN sid;
END $$;

-- Every capture function takes the lock its INSERT into pgundo.change takes
-- anyway before it numbers its statement: so any transaction holding a
-- statement id up to the sequence's value shows in pg_locks, which is how
-- pgundo.seal knows, without waiting for unrelated transactions, when every
-- statement up to a value is final.

-- _stmt records one captured statement.
{{template "stmt_function" (dict "create" "CREATE" "stmt" "pgundo.stmt")}}

-- The AFTER statement triggers write one change row per transition row, in one
-- INSERT ... SELECT. Output settings are pinned so that text forms parse back
-- exactly whatever the writer's session settings are.
{{template "capture_one_side_v1" (dict "create" "CREATE" "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new")}}

{{template "capture_one_side_v1" (dict "create" "CREATE" "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old")}}

-- UPDATE pairs each old row with its new row by position: PostgreSQL appends a
-- row's old and new versions to the two transition tables together, so the
-- n-th old row and the n-th new row are one row's update (primary-key changes
-- and cross-partition moves included). The one exception is a cross-partition
-- move whose insert a BEFORE INSERT trigger on the destination skipped: its old
-- row has no new one. Then the counts differ and nothing is paired: every old
-- row and every new row is logged on its own ("this row out, that row in"),
-- which undo handles the same way (it nets images as multisets). work_mem is
-- raised for the pairing join.
{{template "capture_update_v1" (dict "create" "CREATE")}}

-- TRUNCATE has no transition table: a BEFORE TRUNCATE trigger copies the rows
-- it is about to remove. On a partitioned table it fires for every partition,
-- and ONLY keeps each partition's copy to its own rows.
{{template "capture_head_v1" (dict "create" "CREATE" "name" "truncate")}}
    -- A TRUNCATE may not have a transaction id yet: take it before the
    -- statement id, as every other capture does (pgundo.seal relies on it).
    PERFORM pg_current_xact_id();
    LOCK TABLE ONLY pgundo.change IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    EXECUTE format('INSERT INTO pgundo.change (stmt_id, old) SELECT $1, ROW(r.*)::text FROM ONLY %s r', TG_RELID::regclass)
      USING sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    {{template "stmt_v1" "T"}}
END $$;

-- _diff renders a row change column by column, for pgundo show: a JSON
-- array of [column, old, new] in column order: primary-key columns and
-- changed columns, or all columns when all_columns. NULL when an image no
-- longer reads as the table's row type.
CREATE FUNCTION pgundo._diff(rel oid, old text, new text, all_columns boolean) RETURNS json
LANGUAGE plpgsql STABLE
{{template "pinned_output"}}
AS $$
DECLARE
    r json;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = rel) THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
        SELECT json_agg(json_build_array(coalesce(o.key, n.key), o.value, n.value) ORDER BY coalesce(o.ord, n.ord))
          FROM json_each_text(row_to_json($1::%1$s)) WITH ORDINALITY o (key, value, ord)
          FULL JOIN json_each_text(row_to_json($2::%1$s)) WITH ORDINALITY n (key, value, ord) ON o.key = n.key
         WHERE $3 OR o.value IS DISTINCT FROM n.value OR o.key = ANY ($4)$q$, rel::regclass)
      INTO r USING old, new, all_columns,
           ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = pg_partition_root(rel) AND i.indisprimary
                  UNION ALL
                 SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = rel AND i.indisprimary AND pg_partition_root(rel) IS NULL);
    RETURN coalesce(r, '[]');
EXCEPTION WHEN data_exception OR undefined_column OR undefined_table OR datatype_mismatch THEN
    RETURN NULL;
END $$;

-- _attach puts the capture triggers on one table (ENABLE ALWAYS, so they also
-- fire under session_replication_role = replica). Idempotent.
{{template "attach" (dict "create" "CREATE")}}

CREATE FUNCTION pgundo._detach(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
BEGIN
    FOREACH t IN ARRAY ARRAY['pgundo_capture_insert', 'pgundo_capture_update',
                              'pgundo_capture_delete', 'pgundo_capture_truncate']::name[] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', t, rel);
    END LOOP;
END $$;

-- track starts capture on a table: on a partitioned table, on it and on every
-- partition at any depth (statement triggers fire only for the table a
-- statement names). Refuses what cannot be tracked, naming it.
CREATE FUNCTION pgundo.track(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    part regclass;
BEGIN
    SELECT cl.relkind, cl.relpersistence, cl.relispartition, n.nspname INTO c
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = rel;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % does not exist', rel USING ERRCODE = 'undefined_table';
    END IF;
    IF c.nspname = 'pgundo' THEN
        RAISE EXCEPTION '% is one of pgundo''s own tables and cannot be tracked', rel USING ERRCODE = 'wrong_object_type';
    END IF;
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is a %, not a table; only tables can be tracked', rel,
            CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                           WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'relation of kind ' || c.relkind::text END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF c.relpersistence = 't' THEN
        RAISE EXCEPTION '% is a temporary table; only permanent tables can be tracked', rel USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT c.relispartition AND EXISTS (SELECT FROM pg_inherits WHERE inhrelid = rel OR inhparent = rel) AND c.relkind = 'r' THEN
        RAISE EXCEPTION '% is part of a table inheritance tree (INHERITS); pgundo tracks plain and partitioned tables only: a statement on an inheritance parent also changes its children, which statement-level capture cannot attribute', rel
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF c.relispartition THEN
        RAISE EXCEPTION '% is a partition of %; track the partitioned table instead (it covers every partition)',
            rel, pg_partition_root(rel)
            USING ERRCODE = 'wrong_object_type';
    END IF;
    FOR part IN SELECT t.relid FROM pg_partition_tree(rel) t UNION SELECT rel LOOP
        PERFORM pgundo._attach(part);
        PERFORM pgundo._record_shape(part);
    END LOOP;
    INSERT INTO pgundo.tracked (relid, schema_name, table_name)
    SELECT rel, n.nspname, cl.relname FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = rel
    ON CONFLICT (relid) DO NOTHING;
END $$;

CREATE FUNCTION pgundo.untrack(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT t.relid FROM pg_partition_tree(rel) t UNION SELECT rel LOOP
        PERFORM pgundo._detach(part);
    END LOOP;
    DELETE FROM pgundo.tracked WHERE relid = rel;
END $$;

-- The event trigger keeps capture whole across DDL: a partition created in or
-- attached to a tracked partitioned table gets the capture triggers, and a
-- dropped tracked table leaves the tracked list.
CREATE FUNCTION pgundo._on_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT p.relid::regclass AS rel
          FROM pg_event_trigger_ddl_commands() d
          JOIN pg_class cl ON cl.oid = d.objid AND d.classid = 'pg_class'::regclass
         CROSS JOIN LATERAL (
               SELECT t.relid FROM pg_partition_tree(d.objid) t
               UNION SELECT d.objid) p
         WHERE cl.relkind IN ('r', 'p')
           AND EXISTS (SELECT FROM pgundo.tracked tr
                        WHERE tr.relid IN (SELECT a.relid FROM pg_partition_ancestors(p.relid) a))
           AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'pgundo_capture_insert')
    LOOP
        PERFORM pgundo._attach(r.rel);
    END LOOP;
    -- Column changes on captured tables: record the new shape.
    FOR r IN
        SELECT DISTINCT d.objid::regclass AS rel
          FROM pg_event_trigger_ddl_commands() d
         WHERE d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = d.objid AND tgname = 'pgundo_capture_insert')
    LOOP
        PERFORM pgundo._record_shape(r.rel);
    END LOOP;
END $$;

CREATE FUNCTION pgundo._on_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgundo.tracked
     WHERE relid IN (SELECT objid FROM pg_event_trigger_dropped_objects() WHERE classid = 'pg_class'::regclass AND objsubid = 0);
END $$;

-- Event triggers need superuser (rds_superuser and cloudsqlsuperuser may also
-- create them). Without them capture works; pgundo status then flags new
-- partitions that lack capture.
DO $$
BEGIN
    CREATE EVENT TRIGGER pgundo_ddl ON ddl_command_end
        WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION pgundo._on_ddl();
    CREATE EVENT TRIGGER pgundo_drop ON sql_drop
        WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION pgundo._on_drop();
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgundo: could not create event triggers (%); partitions created later must be tracked by running pgundo track on their parent again', SQLERRM;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA pgundo FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgundo FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgundo FROM PUBLIC;
