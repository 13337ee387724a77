-- pgundo history schema, version 2: the row-history index and the views for
-- other tools.
--
-- Finding one row's changes in a log of millions must not scan the log, but
-- capture must stay cheap: an index on the log computed at write time (a key
-- column, an expression or GIN index on pgundo.change) would add a per-row
-- index insert to every tracked write. So the key index is built lazily, on
-- the read side: pgundo.refresh_history() indexes the change rows logged since
-- its last run, by table and primary-key value, set-based, one INSERT ...
-- SELECT per table. pgundo history, pgundo asof and the pgundo.row_history
-- view read it; the history commands refresh it first, so they see the whole
-- log, and a refresh after N new changes costs about as much as reading them
-- once.
--
-- Out-of-order commits: statement ids are handed out before commit, so a
-- watermark on ids alone could pass over a transaction still in progress.
-- hist_stmt marks each indexed statement above the watermark, and the
-- watermark (hist_state.done_below) only advances to a sequence value read
-- before a snapshot whose xmax is at or below the oldest running transaction
-- now (hist_mark), so every statement at or below it belongs to a finished
-- transaction and is indexed.
--
-- tern runs this file through text/template: keep double braces out of it.

CREATE TABLE pgundo.hist_key (
    relid     oid NOT NULL,     -- the table (the root of a partitioned table)
    key       text NOT NULL,    -- primary-key value: the column's text form, or ROW(k1, k2, ...)::text
    stmt_id   bigint NOT NULL,
    part      oid NOT NULL,     -- tableoid of the change row
    loc       tid NOT NULL,     -- ctid of the change row
    side      "char" NOT NULL CHECK (side IN ('b', 'o', 'n')), -- which images have this key: both, old only, new only
    other_key text              -- the other image's key when it differs (a primary-key change)
);
CREATE INDEX hist_key_idx ON pgundo.hist_key (relid, key, stmt_id);
COMMENT ON TABLE pgundo.hist_key IS 'Row-history index: one row per change row and primary-key value of its images, built by pgundo.refresh_history().';

CREATE TABLE pgundo.hist_stmt (
    stmt_id    bigint PRIMARY KEY,
    unreadable boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE pgundo.hist_stmt IS 'Statements above hist_state.done_below that refresh_history() has indexed (unreadable: images no longer read as the table''s row type).';

CREATE TABLE pgundo.hist_state (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    done_below bigint NOT NULL DEFAULT 0,
    refreshed  timestamptz
);
INSERT INTO pgundo.hist_state DEFAULT VALUES;
COMMENT ON TABLE pgundo.hist_state IS 'Every statement with id <= done_below is indexed in hist_key (or belongs to a transaction that rolled back).';

CREATE TABLE pgundo.hist_mark (
    seq_value bigint NOT NULL,
    snap_xmax xid8 NOT NULL,
    vxids     text[] NOT NULL DEFAULT '{}'  -- transactions writing the log when the mark was made
);
COMMENT ON TABLE pgundo.hist_mark IS 'refresh_history() runs: the statement sequence value read before a snapshot with this xmax.';

CREATE TABLE pgundo.hist_skipped (
    stmt_id bigint PRIMARY KEY,
    relid   oid NOT NULL,
    reason  text NOT NULL
);
COMMENT ON TABLE pgundo.hist_skipped IS 'Statements whose images could not be read as their table''s row type when indexed (columns changed since capture).';

-- _hist_key_expr returns the SQL expression for the primary-key value of the
-- row in composite expression v of table root: the column's text form for a
-- one-column key, ROW(...)::text for more. NULL when root has no primary key.
CREATE FUNCTION pgundo._hist_key_expr(root oid, v text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN count(*) = 1 THEN format('(%s).%I::text', v, min(a.attname))
                WHEN count(*) > 1 THEN format('ROW(%s)::text', string_agg(format('(%s).%I', v, a.attname), ', ' ORDER BY k.ord))
           END
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = root AND i.indisprimary
$$;

-- _hist_entries returns the row-history index entries of the change rows of
-- the given statements of one table (rel, as logged: a partition or a plain
-- table): one per primary-key value of their images. None when the table
-- was dropped or has no primary key. It fails (data_exception and the like)
-- when an image no longer reads as the table's row type.
CREATE FUNCTION pgundo._hist_entries(rel oid, ids bigint[])
RETURNS TABLE (relid oid, key text, stmt_id bigint, part oid, loc tid, side "char", other_key text)
LANGUAGE plpgsql STABLE
-- The statement ids are new, so the planner's estimates for their range of
-- pgundo.change are stale; a nested loop over them would be quadratic.
SET enable_nestloop = off
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
AS $$
DECLARE
    root oid;
    ok   text;
    nk   text;
BEGIN
    IF cardinality(ids) IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = rel AND relkind IN ('r', 'p')) THEN
        RETURN;
    END IF;
    root := coalesce(pg_partition_root(rel), rel);
    -- The root's primary key; a partitioned table without one is keyed by
    -- its partitions' own primary keys.
    ok := coalesce(pgundo._hist_key_expr(root, format('c.old::%s', rel::regclass)), pgundo._hist_key_expr(rel, format('c.old::%s', rel::regclass)));
    nk := coalesce(pgundo._hist_key_expr(root, format('c.new::%s', rel::regclass)), pgundo._hist_key_expr(rel, format('c.new::%s', rel::regclass)));
    IF ok IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH c AS MATERIALIZED (
            SELECT c.stmt_id, c.tableoid AS part, c.ctid AS loc,
                   CASE WHEN c.old IS NOT NULL THEN %1$s END AS ok,
                   CASE WHEN c.new IS NOT NULL THEN %2$s END AS nk
              FROM pgundo.change c
             WHERE c.stmt_id BETWEEN $2 AND $3
               AND c.stmt_id IN (SELECT u FROM unnest($1::bigint[]) u))
        SELECT $4::oid, ok, stmt_id, part, loc, (CASE WHEN ok = nk THEN 'b' ELSE 'o' END)::"char", CASE WHEN ok <> nk THEN nk END
          FROM c WHERE ok IS NOT NULL
        UNION ALL
        SELECT $4::oid, nk, stmt_id, part, loc, 'n'::"char", ok
          FROM c WHERE nk IS NOT NULL AND nk IS DISTINCT FROM ok$q$,
        ok, nk) USING ids, (SELECT min(u) FROM unnest(ids) u), (SELECT max(u) FROM unnest(ids) u), root;
END $$;

-- _hist_index indexes the given statements of one table and marks them
-- indexed. Returns the number of index entries added.
CREATE FUNCTION pgundo._hist_index(rel oid, ids bigint[]) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO pgundo.hist_stmt (stmt_id) SELECT DISTINCT u FROM unnest(ids) u;
    INSERT INTO pgundo.hist_key (relid, key, stmt_id, part, loc, side, other_key)
    SELECT * FROM pgundo._hist_entries(rel, ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- refresh_history brings the row-history index up to date with the log and
-- returns the number of index entries it added. It is cheap when little was
-- logged since the last refresh. Concurrent calls queue on one lock. A
-- statement whose images no longer read as its table's row type (columns
-- dropped or retyped since capture) is recorded in hist_skipped instead.
CREATE FUNCTION pgundo.refresh_history() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET maintenance_work_mem = '256MB' SET jit = off
AS $$
DECLARE
    lo     bigint;
    seqv   bigint;
    snap   pg_snapshot;
    r      record;
    ids    bigint[];
    one    bigint;
    after  bigint;
    total  bigint := 0;
    mark_l bigint;
    bulk   boolean;
BEGIN
    SELECT done_below INTO lo FROM pgundo.hist_state FOR UPDATE;
    -- The sequence value is read before the snapshots of the statements below.
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO seqv FROM pgundo.stmt_id_seq;
    snap := pg_current_snapshot();
    -- The newest earlier mark whose transactions have all ended by now,
    -- before the snapshots that index: its xmax is at or below the oldest
    -- transaction running, and none of the transactions that were writing
    -- the log when it was made is still alive (capture locks pgundo.change
    -- before it numbers a statement, so this also covers a transaction that
    -- holds a statement id but no xid yet, such as a TRUNCATE that is its
    -- first write). Every statement id at or below it then belongs to a
    -- finished transaction, visible to the indexing below.
    SELECT max(m.seq_value) INTO mark_l FROM pgundo.hist_mark m
     WHERE m.snap_xmax <= pg_snapshot_xmin(snap)
       AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (m.vxids));
    -- A backlog larger than the index (the first refresh of a big log) is
    -- loaded without the index and the index built afterwards: one sort
    -- instead of millions of random B-tree inserts. Readers wait meanwhile.
    -- The threshold (1,000,000 change rows) can be set: pgundo.bulk_index_rows.
    SELECT coalesce(sum(st.rows), 0) > greatest(coalesce(nullif(current_setting('pgundo.bulk_index_rows', true), '')::bigint, 1000000),
                                                (SELECT reltuples FROM pg_class WHERE oid = 'pgundo.hist_key'::regclass))
      INTO bulk
      FROM pgundo.stmt st WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id);
    IF bulk THEN
        DROP INDEX pgundo.hist_key_idx;
    END IF;
    FOR r IN SELECT DISTINCT st.relid FROM pgundo.stmt st
              WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id) LOOP
        after := lo;
        LOOP
            -- Batches of statements in id order keep each read of
            -- pgundo.change to a narrow stmt_id range (its BRIN index).
            SELECT array_agg(b.id ORDER BY b.id) INTO ids
              FROM (SELECT st.id FROM pgundo.stmt st
                     WHERE st.relid = r.relid AND st.id > after
                       AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id)
                     ORDER BY st.id LIMIT 20000) b;
            EXIT WHEN ids IS NULL;
            after := ids[cardinality(ids)];
            BEGIN
                total := total + pgundo._hist_index(r.relid, ids);
            EXCEPTION WHEN data_exception OR undefined_column OR undefined_table OR datatype_mismatch
                       OR undefined_object OR wrong_object_type THEN
                -- Some image no longer reads as the table's row type: index
                -- statement by statement, recording the ones that fail.
                FOREACH one IN ARRAY ids LOOP
                    BEGIN
                        total := total + pgundo._hist_index(r.relid, ARRAY[one]);
                    EXCEPTION WHEN data_exception OR undefined_column OR undefined_table OR datatype_mismatch
                               OR undefined_object OR wrong_object_type THEN
                        INSERT INTO pgundo.hist_stmt (stmt_id, unreadable) VALUES (one, true) ON CONFLICT DO NOTHING;
                        INSERT INTO pgundo.hist_skipped (stmt_id, relid, reason) VALUES (one, r.relid, SQLERRM) ON CONFLICT DO NOTHING;
                    END;
                END LOOP;
            END;
        END LOOP;
    END LOOP;
    IF bulk THEN
        CREATE INDEX hist_key_idx ON pgundo.hist_key (relid, key, stmt_id);
    END IF;
    -- Advance the watermark to the mark found usable before indexing.
    IF mark_l IS NOT NULL AND mark_l > lo THEN
        lo := mark_l;
        DELETE FROM pgundo.hist_mark WHERE seq_value <= lo;
        DELETE FROM pgundo.hist_stmt WHERE stmt_id <= lo AND NOT unreadable;
    END IF;
    -- Under REPEATABLE READ the snapshot predates the sequence read: no mark.
    IF current_setting('transaction_isolation') = 'read committed' THEN
        INSERT INTO pgundo.hist_mark (seq_value, snap_xmax, vxids)
        SELECT seqv, pg_snapshot_xmax(snap), coalesce(array_agg(l.virtualtransaction), '{}')
          FROM pg_locks l
         WHERE l.locktype = 'relation' AND l.relation = 'pgundo.change'::regclass AND l.mode = 'RowExclusiveLock'
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    END IF;
    UPDATE pgundo.hist_state SET done_below = lo, refreshed = clock_timestamp();
    RETURN total;
END $$;
COMMENT ON FUNCTION pgundo.refresh_history() IS 'Brings pgundo.row_history (the row-history index) up to date with the log; returns the number of index entries added.';

-- _hist_forget drops index entries of statements with ids below before (for
-- retention: call it with the first statement id kept).
CREATE FUNCTION pgundo._hist_forget(before bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM pgundo.hist_key WHERE stmt_id < before;
    DELETE FROM pgundo.hist_skipped WHERE stmt_id < before;
    DELETE FROM pgundo.hist_stmt WHERE stmt_id < before;
$$;

-- _image_jsonb reads a row image as table rel's row type and returns it as
-- jsonb, for the views (convenient, not exact: json formatting and float -0
-- are lost; the text images are exact). NULL when the image no longer reads
-- as the table's row type.
CREATE FUNCTION pgundo._image_jsonb(rel oid, image text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
AS $$
DECLARE
    r jsonb;
BEGIN
    IF image IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = rel) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT to_jsonb($1::%s)', rel::regclass) INTO r USING image;
    RETURN r;
EXCEPTION WHEN data_exception OR undefined_column OR undefined_table OR datatype_mismatch
           OR invalid_text_representation OR undefined_object OR wrong_object_type THEN
    RETURN NULL;
END $$;

CREATE VIEW pgundo.changes AS
SELECT st.id AS stmt_id,
       st.xid,
       st.at,
       CASE st.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END AS op,
       st.schema_name,
       st.table_name,
       st.relid,
       st.session_id,
       s.session_role AS login_user,
       st.role,
       st.application_name,
       s.client_addr,
       st.tag,
       c.old,
       c.new,
       pgundo._image_jsonb(st.relid, c.old) AS old_data,
       pgundo._image_jsonb(st.relid, c.new) AS new_data
  FROM pgundo.stmt st
  JOIN pgundo.change c ON c.stmt_id = st.id
  JOIN pgundo.session s ON s.id = st.session_id;
COMMENT ON VIEW pgundo.changes IS 'Every logged row change with its table and session context. old/new are the exact row images (text form, restorable with ::table); old_data/new_data the same as jsonb, for convenience.';

CREATE VIEW pgundo.row_history AS
SELECT h.relid,
       coalesce(n.nspname, st.schema_name) AS schema_name,
       coalesce(cl.relname, st.table_name) AS table_name,
       h.key,
       CASE h.side WHEN 'n' THEN h.other_key END AS previous_key,
       CASE h.side WHEN 'o' THEN h.other_key END AS next_key,
       st.id AS stmt_id,
       st.xid,
       st.at,
       CASE st.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END AS op,
       st.session_id,
       s.session_role AS login_user,
       st.role,
       st.application_name,
       s.client_addr,
       st.tag,
       c.old,
       c.new,
       pgundo._image_jsonb(st.relid, c.old) AS old_data,
       pgundo._image_jsonb(st.relid, c.new) AS new_data
  FROM pgundo.hist_key h
  JOIN pgundo.stmt st ON st.id = h.stmt_id
  JOIN pgundo.session s ON s.id = st.session_id
  JOIN pgundo.change c ON c.ctid = h.loc AND c.tableoid = h.part AND c.stmt_id = h.stmt_id
  LEFT JOIN pg_catalog.pg_class cl ON cl.oid = h.relid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace;
COMMENT ON VIEW pgundo.row_history IS 'Every change of every row of tables with a primary key, by table and key (the key column''s text form, or ROW(k1, k2)::text). previous_key: the row had that key before this change; next_key: it has that key after it. Covers the log up to the last SELECT pgundo.refresh_history() (pgundo history runs it).';

CREATE VIEW pgundo.sessions AS
SELECT s.id,
       s.session_role AS login_user,
       s.application_name,
       s.client_addr,
       s.client_port,
       s.pid,
       s.backend_start,
       min(st.at) AS first_change_at,
       max(st.at) AS last_change_at,
       coalesce(sum(st.rows), 0)::bigint AS changes,
       count(DISTINCT st.xid) AS transactions,
       array_agg(DISTINCT quote_ident(st.schema_name) || '.' || quote_ident(st.table_name)) FILTER (WHERE st.id IS NOT NULL) AS tables,
       array_agg(DISTINCT st.role) FILTER (WHERE st.id IS NOT NULL) AS roles,
       array_agg(DISTINCT st.tag) FILTER (WHERE st.tag IS NOT NULL) AS tags,
       (SELECT min(u.undone_session) FROM pgundo.undo u WHERE u.undo_session = s.id) AS undo_of,
       (SELECT min(u.undo_session) FROM pgundo.undo u WHERE u.undone_session = s.id) AS undone_by
  FROM pgundo.session s
  LEFT JOIN pgundo.stmt st ON st.session_id = s.id
 GROUP BY s.id;
COMMENT ON VIEW pgundo.sessions IS 'One row per recorded session (connection): who, from where, when, how many row changes in which tables, and undo links.';

REVOKE ALL ON pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_state, pgundo.hist_mark, pgundo.hist_skipped,
              pgundo.changes, pgundo.row_history, pgundo.sessions FROM PUBLIC;
REVOKE ALL ON FUNCTION pgundo._hist_key_expr(oid, text), pgundo._hist_entries(oid, bigint[]), pgundo._hist_index(oid, bigint[]),
                       pgundo.refresh_history(), pgundo._hist_forget(bigint), pgundo._image_jsonb(oid, text) FROM PUBLIC;
