-- The journal, version 7: a one-row statement is logged as one row.
--
-- After version 5 a captured one-row UPDATE still cost about 41 µs of CPU
-- on top of the UPDATE's own 28 (DESIGN.md, "Capture cost"). Taken apart:
-- partition routing into two partitioned tables about 10 µs, their four
-- indexes about 8, writing two tables through one WITH about 8; one flat row
-- (the statement's columns and both images) into one unpartitioned,
-- unindexed table costs 15. Most OLTP statements change one row, so:
--
--   * A statement that changed exactly one row is written as one row of
--     pgundo.journal (no partitions, no indexes): its statement columns and
--     its old and new images. Bigger statements and TRUNCATE are written as
--     before, one statement row and a change row per row.
--   * The partitioned log tables are renamed pgundo.stmt_log and
--     pgundo.change_log, and pgundo.stmt and pgundo.change become views: the
--     log and the journal together. Every reader reads the views, so a
--     statement reads the same wherever it lies, and a statement moves from
--     the journal to the log atomically (pgundo.fold), never seen twice or
--     missed.
--   * pgundo.fold moves committed journal rows into the log in bulk, where
--     one INSERT ... SELECT writes thousands of rows for the cost of a few
--     one-row statements. pgundo's commands fold when they start (so the
--     journal stays small for the readers, which scan it whole), and so do
--     prune, seal and refresh_history.
--   * Statement ids still come from pgundo.stmt_id_seq, taken after the
--     writer holds ROW EXCLUSIVE on the table it writes (pgundo.journal or
--     pgundo.change_log): pgundo.seal and refresh_history list the
--     transactions holding it on either.
--
-- The functions placed with template actions are in shared/: the ones that
-- version 5 or earlier also wrote are defined once for both.

ALTER TABLE pgundo.stmt RENAME TO stmt_log;
ALTER TABLE pgundo.change RENAME TO change_log;
COMMENT ON TABLE pgundo.stmt_log IS 'One row per logged statement and table that changed rows and was folded from the journal or written directly (statements of more than one row); read pgundo.stmt, which includes the journal.';
COMMENT ON TABLE pgundo.change_log IS 'One row per changed row of the statements in pgundo.stmt_log; read pgundo.change, which includes the journal.';

CREATE TABLE pgundo.journal (
    id               bigint NOT NULL,
    xid              xid8 NOT NULL,
    at               timestamptz NOT NULL,
    relid            oid NOT NULL,
    op               "char" NOT NULL,
    session_id       text NOT NULL,
    schema_name      text NOT NULL,  -- text, not name: a name is 64 bytes
    table_name       text NOT NULL,
    role             text NOT NULL,
    application_name text,
    tag              text,
    old              text,
    new              text
);
-- No index and no constraint but NOT NULL: each would be paid by every
-- one-row statement. Readers scan it whole; pgundo.fold keeps it small.
ALTER TABLE pgundo.journal SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
COMMENT ON TABLE pgundo.journal IS 'Statements that changed one row, as written by capture (statement columns, old and new image), until pgundo.fold moves them into pgundo.stmt_log and pgundo.change_log.';
REVOKE ALL ON pgundo.journal FROM PUBLIC;

CREATE VIEW pgundo.stmt AS
SELECT id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag FROM pgundo.stmt_log
UNION ALL
SELECT id, session_id, xid, at, op, relid, schema_name::name, table_name::name, 1::bigint, role::name, application_name, tag FROM pgundo.journal;
COMMENT ON VIEW pgundo.stmt IS 'One row per statement and table that changed rows, numbered as their capture triggers fired (the log and the journal).';

CREATE VIEW pgundo.change AS
SELECT stmt_id, old, new FROM pgundo.change_log
UNION ALL
SELECT id, old, new FROM pgundo.journal;
COMMENT ON VIEW pgundo.change IS 'One row per changed row: old is the row before the statement (NULL for INSERT), new after it (NULL for DELETE and TRUNCATE), both as the row''s text form (the log and the journal).';
REVOKE ALL ON pgundo.stmt, pgundo.change FROM PUBLIC;

-- The views that read the log are re-created so that they read the views
-- above (a view refers to the table it was created on, which is now
-- stmt_log): row_history reads change_log, whose row locations the history
-- index holds.
CREATE OR REPLACE VIEW pgundo.changes AS
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

CREATE OR REPLACE VIEW pgundo.row_history AS
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
  JOIN pgundo.stmt_log st ON st.id = h.stmt_id
  JOIN pgundo.session s ON s.id = st.session_id
  JOIN pgundo.change_log c ON c.ctid = h.loc AND c.tableoid = h.part AND c.stmt_id = h.stmt_id
  LEFT JOIN pg_catalog.pg_class cl ON cl.oid = h.relid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace;

CREATE OR REPLACE VIEW pgundo.sessions AS
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
       (SELECT min(u.undo_session) FROM pgundo.undo u WHERE u.undone_session = s.id) AS undone_by,
       CASE
         WHEN NOT bool_or(d.stmt_id IS NOT NULL) THEN NULL
         WHEN bool_and(d.stmt_id IS NOT NULL)
              AND NOT EXISTS (SELECT FROM pgundo.undo_scope sc JOIN pgundo.undo_left l ON l.undo_session = sc.undo_session AND l.done_by IS NULL
                               JOIN pgundo.stmt x ON x.id = sc.stmt_id WHERE x.session_id = s.id) THEN 'undone'
         ELSE 'partly undone' END AS undo_state
  FROM pgundo.session s
  LEFT JOIN pgundo.stmt st ON st.session_id = s.id
  LEFT JOIN pgundo.undone d ON d.stmt_id = st.id
 GROUP BY s.id;

-- fold moves every committed journal row into stmt_log and change_log and
-- returns how many it moved. One INSERT per table for all of them; folds are
-- serialized by an advisory lock held to the end of the transaction, so that
-- a fold that waited sees, when it reads, what the one before it moved. A
-- journal row whose chunk was pruned is dropped (prune folds under its lock
-- first, so only a row committed after that could be one).
CREATE FUNCTION pgundo.fold() RETURNS bigint
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
          SELECT id, session_id, xid, at, op, relid, schema_name, table_name, 1, role, application_name, tag FROM k)
    INSERT INTO pgundo.change_log (stmt_id, old, new) SELECT id, old, new FROM k;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION pgundo.fold() IS 'Moves the journal''s committed one-row statements into the log tables (pgundo commands call it); returns the number moved.';
REVOKE ALL ON FUNCTION pgundo.fold() FROM PUBLIC;

-- _ensure_chunk as in version 5, on the renamed log tables (the chunks keep
-- their names, stmt_cK and change_cK).
{{template "ensure_chunk" (dict "create" "CREATE OR REPLACE" "q" "$f$" "parent" "t || '_log'" "drop_range" true)}}

-- The log's size now includes the journal.
CREATE OR REPLACE FUNCTION pgundo._log_bytes() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(pg_total_relation_size(p.relid)), 0)::bigint
      FROM (SELECT relid FROM pg_partition_tree('pgundo.change_log') UNION ALL SELECT relid FROM pg_partition_tree('pgundo.stmt_log')
            UNION ALL SELECT 'pgundo.journal'::regclass) p
$$;

CREATE OR REPLACE FUNCTION pgundo._change_rows() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
      FROM (SELECT relid FROM pg_partition_tree('pgundo.change_log') WHERE isleaf UNION ALL SELECT 'pgundo.journal'::regclass) p
      JOIN pg_class c ON c.oid = p.relid
$$;

-- _stmt (the undo's own statements, see undo/fast.go) writes stmt_log.
CREATE OR REPLACE FUNCTION pgundo._stmt(stmt_id bigint, op "char", relid oid, schema_name name, table_name name, nrows bigint)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag)
    VALUES (stmt_id, pgundo._session(), pg_current_xact_id(), statement_timestamp(), op, relid, schema_name, table_name, nrows,
            CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role') END,
            current_setting('application_name'), nullif(current_setting('pgundo.tag', true), ''))
$$;

-- The capture functions: a statement of one row goes to the journal, bigger
-- ones to the log tables as in version 5. The journal's INSERT runs first and
-- writes only when the transition table holds one row (a one-time test in
-- the same statement: counting first costs a statement of its own, about 4
-- µs); when it wrote nothing, the rows are counted for the other paths.
{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new")}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old")}}

-- UPDATE pairs old and new rows as in version 5 (see there): one row each
-- needs no pairing and goes to the journal. One old row has one new row, or
-- none (a cross-partition move whose insert a trigger skipped): then the
-- join is empty and the rows are counted as below. n and m stay NULL when
-- the journal was written.
{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true)}}

-- TRUNCATE as in version 5, into the log tables.
{{template "capture_truncate" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log")}}

-- _writers lists the transactions writing to the log now: those holding ROW
-- EXCLUSIVE on change_log or on the journal. Every writer takes it before
-- it numbers a statement.
CREATE FUNCTION pgundo._writers() RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(DISTINCT l.virtualtransaction), '{}')
      FROM pg_locks l
     WHERE l.locktype = 'relation' AND l.relation IN ('pgundo.change_log'::regclass, 'pgundo.journal'::regclass)
       AND l.mode = 'RowExclusiveLock'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
$$;
REVOKE ALL ON FUNCTION pgundo._writers() FROM PUBLIC;

-- seal as in version 3: it folds first (seals are digests of values, the
-- same in the journal and in the log; folding keeps the journal small where
-- seal runs from cron), and its marks list the journal's writers too.
CREATE OR REPLACE FUNCTION pgundo.seal() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    last  pgundo.seal;
    lo    bigint;
    cut   bigint;
    n     bigint := 0;
    total numeric;
    sid   bigint;
    seqv  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgundo.seal'));
    PERFORM pgundo.fold();
    SELECT * INTO last FROM pgundo.seal ORDER BY id DESC LIMIT 1;
    lo := coalesce(last.to_stmt, 0);
    SELECT max(m.seq_value) INTO cut FROM pgundo.seal_mark m
     WHERE NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (m.vxids));
    IF cut IS NOT NULL AND cut > lo THEN
        sid := coalesce(last.id, 0) + 1;
        INSERT INTO pgundo.seal_stmt (stmt_id, seal_id, digest) SELECT d.stmt_id, sid, d.digest FROM pgundo._stmt_digests(lo, cut) d;
        GET DIAGNOSTICS n = ROW_COUNT;
        SELECT coalesce(sum(s.digest), 0) INTO total FROM pgundo.seal_stmt s WHERE s.seal_id = sid;
        INSERT INTO pgundo.seal (id, from_stmt, to_stmt, stmts, total, prev_hash, hash)
        VALUES (sid, lo, cut, n, total, coalesce(last.hash, ''), pgundo._seal_hash(coalesce(last.hash, ''), lo, cut, n, total));
        DELETE FROM pgundo.seal_mark WHERE seq_value <= cut;
    END IF;
    -- The next cut: read the sequence first, then list the transactions
    -- writing to the log. Capture locks pgundo.change_log or pgundo.journal
    -- before it numbers a statement, so every statement numbered up to the value read belongs to
    -- a transaction that has ended or is in that list.
    seqv := (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq);
    INSERT INTO pgundo.seal_mark (seq_value, vxids)
    SELECT seqv, pgundo._writers()
     WHERE seqv > coalesce((SELECT max(seq_value) FROM pgundo.seal_mark), lo);
    RETURN n;
END $$;

-- prune as in version 3 on the renamed log tables; it folds first, and again
-- under its lock, which now covers the journal too; and it forgets what
-- undos left (version 6's undo_scope and undo_left) with the statements.
CREATE OR REPLACE FUNCTION pgundo.prune(before timestamptz) RETURNS SETOF pgundo.pruned
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur     bigint;
    k       bigint;
    r       pgundo.pruned;
    cands   pgundo.pruned[] := '{}';
    newest  timestamptz;
    kept    bigint;
BEGIN
    -- The re-check under lock below must see transactions that committed
    -- while prune waited for the lock: only READ COMMITTED does.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgundo.prune must run in a READ COMMITTED transaction, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM pgundo.fold();
    PERFORM pgundo.rotate();
    cur := (SELECT last_value FROM pgundo.stmt_id_seq) / pgundo._chunk_size();
    -- First, without locks: the closed chunks old enough, with their counts.
    FOR k IN SELECT substr(c.relname, 7)::bigint
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'pgundo.stmt_log'::regclass AND c.relname ~ '^stmt_c[0-9]+$'
              ORDER BY 1 LOOP
        EXIT WHEN k >= cur;
        EXECUTE format('SELECT max(at), count(*), coalesce(min(id), %s), coalesce(max(id), %s) FROM pgundo.%I',
                       k * pgundo._chunk_size(), k * pgundo._chunk_size(), 'stmt_c' || k)
           INTO r.newest, r.stmts, r.first_stmt, r.last_stmt;
        -- Chunks follow each other in time: stop at the first that is too new.
        EXIT WHEN r.newest >= before;
        EXECUTE format('SELECT count(*) FROM pgundo.%I', 'change_c' || k) INTO r.changes;
        r.bytes := pg_total_relation_size(format('pgundo.%I', 'stmt_c' || k)::regclass)
                 + pg_total_relation_size(format('pgundo.%I', 'change_c' || k)::regclass);
        r.at := now();
        r.before := before;
        r.chunk := k;
        cands := cands || r;
    END LOOP;
    IF cardinality(cands) = 0 THEN
        RETURN;
    END IF;
    -- Then under lock (writers to tracked tables wait until commit), re-check
    -- and drop: a transaction numbered in a chunk before the rotation may have
    -- committed since.
    LOCK TABLE pgundo.change_log, pgundo.stmt_log, pgundo.journal IN ACCESS EXCLUSIVE MODE;
    PERFORM pgundo.fold();
    FOREACH r IN ARRAY cands LOOP
        k := r.chunk;
        -- max(xid8) exists from PostgreSQL 14 on: go through bigint.
        EXECUTE format('SELECT max(at), max(xid::text::bigint)::text::xid8 FROM pgundo.%I', 'stmt_c' || k) INTO newest, r.max_xid;
        EXIT WHEN newest >= before;
        EXECUTE format('UPDATE pgundo.session SET pruned_at = now() WHERE pruned_at IS NULL AND id IN (SELECT session_id FROM pgundo.%I)', 'stmt_c' || k);
        EXECUTE format('DROP TABLE pgundo.%I, pgundo.%I', 'change_c' || k, 'stmt_c' || k);
        DELETE FROM pgundo.undone WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
        DELETE FROM pgundo.undo_scope WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
        DELETE FROM pgundo.seal_stmt WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
        INSERT INTO pgundo.pruned VALUES (r.*);
        RETURN NEXT r;
    END LOOP;
    -- Sessions with nothing left go, unless still connected (capture
    -- remembers, per connection, that its session row exists); those with
    -- changes left stay marked.
    DELETE FROM pgundo.session s WHERE s.pruned_at IS NOT NULL
       AND NOT EXISTS (SELECT FROM pgundo.stmt st WHERE st.session_id = s.id)
       AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = s.pid);
    -- Rows an undo left (skipped) go with the last of the statements it
    -- selected: a later undo could only take them with all of those.
    DELETE FROM pgundo.undo_left l
     WHERE NOT EXISTS (SELECT FROM pgundo.undo_scope sc WHERE sc.undo_session = l.undo_session);
    kept := (SELECT min(id) FROM pgundo.stmt);
    IF to_regprocedure('pgundo._hist_forget(bigint)') IS NOT NULL THEN
        EXECUTE 'SELECT pgundo._hist_forget($1)' USING coalesce(kept, (SELECT last_value FROM pgundo.stmt_id_seq));
    END IF;
END $$;

-- The history index holds the locations of change_log rows: _hist_entries
-- reads change_log, and refresh_history folds the journal first and indexes
-- the log tables only (a journal statement is indexed once folded).
CREATE OR REPLACE FUNCTION pgundo._hist_entries(rel oid, ids bigint[])
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
              FROM pgundo.change_log c
             WHERE c.stmt_id BETWEEN $2 AND $3
               AND c.stmt_id IN (SELECT u FROM unnest($1::bigint[]) u))
        SELECT $4::oid, ok, stmt_id, part, loc, (CASE WHEN ok = nk THEN 'b' ELSE 'o' END)::"char", CASE WHEN ok <> nk THEN nk END
          FROM c WHERE ok IS NOT NULL
        UNION ALL
        SELECT $4::oid, nk, stmt_id, part, loc, 'n'::"char", ok
          FROM c WHERE nk IS NOT NULL AND nk IS DISTINCT FROM ok$q$,
        ok, nk) USING ids, (SELECT min(u) FROM unnest(ids) u), (SELECT max(u) FROM unnest(ids) u), root;
END $$;

CREATE OR REPLACE FUNCTION pgundo.refresh_history() RETURNS bigint
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
    -- the log when it was made is still alive (capture locks pgundo.change_log or
    -- pgundo.journal before it numbers a statement, so this also covers a transaction that
    -- holds a statement id but no xid yet, such as a TRUNCATE that is its
    -- first write). Every statement id at or below it then belongs to a
    -- finished transaction, visible to the indexing below.
    SELECT max(m.seq_value) INTO mark_l FROM pgundo.hist_mark m
     WHERE m.snap_xmax <= pg_snapshot_xmin(snap)
       AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (m.vxids));
    -- Index the log tables, not the journal (the index holds change_log row
    -- locations): fold first. The fold reads after snap, so it moves every
    -- statement at or below mark_l.
    PERFORM pgundo.fold();
    -- A backlog larger than the index (the first refresh of a big log) is
    -- loaded without the index and the index built afterwards: one sort
    -- instead of millions of random B-tree inserts. Readers wait meanwhile.
    -- The threshold (1,000,000 change rows) can be set: pgundo.bulk_index_rows.
    SELECT coalesce(sum(st.rows), 0) > greatest(coalesce(nullif(current_setting('pgundo.bulk_index_rows', true), '')::bigint, 1000000),
                                                (SELECT reltuples FROM pg_class WHERE oid = 'pgundo.hist_key'::regclass))
      INTO bulk
      FROM pgundo.stmt_log st WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id);
    IF bulk THEN
        DROP INDEX pgundo.hist_key_idx;
    END IF;
    FOR r IN SELECT DISTINCT st.relid FROM pgundo.stmt_log st
              WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id) LOOP
        after := lo;
        LOOP
            -- Batches of statements in id order keep each read of
            -- pgundo.change to a narrow stmt_id range (its BRIN index).
            SELECT array_agg(b.id ORDER BY b.id) INTO ids
              FROM (SELECT st.id FROM pgundo.stmt_log st
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
        SELECT seqv, pg_snapshot_xmax(snap), pgundo._writers();
    END IF;
    UPDATE pgundo.hist_state SET done_below = lo, refreshed = clock_timestamp();
    RETURN total;
END $$;


