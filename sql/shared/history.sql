{{- /*
Shared templates of the read side: the row-history index and the views (see
shared/capture_v1.sql for how tern loads them). What a migration renders must
never change once it is released (sql/migrations_test.go). Parameters: create
is CREATE or CREATE OR REPLACE; stmt and change name the log tables
(pgundo.stmt and pgundo.change up to version 6, pgundo.stmt_log and
pgundo.change_log from 7 on); journal is set from version 7 on (the journal:
fold first, and the log's writers are pgundo._writers()).
*/ -}}

{{- /* hist_entries: pgundo._hist_entries (create, change). */ -}}
{{define "hist_entries"}}{{.create}} FUNCTION pgundo._hist_entries(rel oid, ids bigint[])
RETURNS TABLE (relid oid, key text, stmt_id bigint, part oid, loc tid, side "char", other_key text)
LANGUAGE plpgsql STABLE
-- The statement ids are new, so the planner's estimates for their range of
-- pgundo.change are stale; a nested loop over them would be quadratic.
SET enable_nestloop = off
{{template "pinned_output"}}
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
              FROM {{.change}} c
             WHERE c.stmt_id BETWEEN $2 AND $3
               AND c.stmt_id IN (SELECT u FROM unnest($1::bigint[]) u))
        SELECT $4::oid, ok, stmt_id, part, loc, (CASE WHEN ok = nk THEN 'b' ELSE 'o' END)::"char", CASE WHEN ok <> nk THEN nk END
          FROM c WHERE ok IS NOT NULL
        UNION ALL
        SELECT $4::oid, nk, stmt_id, part, loc, 'n'::"char", ok
          FROM c WHERE nk IS NOT NULL AND nk IS DISTINCT FROM ok$q$,
        ok, nk) USING ids, (SELECT min(u) FROM unnest(ids) u), (SELECT max(u) FROM unnest(ids) u), root;
END $$;{{end}}

{{- /* refresh_history: pgundo.refresh_history (create, stmt, journal). */ -}}
{{define "refresh_history"}}{{.create}} FUNCTION pgundo.refresh_history() RETURNS bigint
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
{{- if .journal}}
    -- the log when it was made is still alive (capture locks pgundo.change_log or
    -- pgundo.journal before it numbers a statement, so this also covers a transaction that
{{- else}}
    -- the log when it was made is still alive (capture locks pgundo.change
    -- before it numbers a statement, so this also covers a transaction that
{{- end}}
    -- holds a statement id but no xid yet, such as a TRUNCATE that is its
    -- first write). Every statement id at or below it then belongs to a
    -- finished transaction, visible to the indexing below.
    SELECT max(m.seq_value) INTO mark_l FROM pgundo.hist_mark m
     WHERE m.snap_xmax <= pg_snapshot_xmin(snap)
       AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (m.vxids));
{{- if .journal}}
    -- Index the log tables, not the journal (the index holds change_log row
    -- locations): fold first. The fold reads after snap, so it moves every
    -- statement at or below mark_l.
    PERFORM pgundo.fold();
{{- end}}
    -- A backlog larger than the index (the first refresh of a big log) is
    -- loaded without the index and the index built afterwards: one sort
    -- instead of millions of random B-tree inserts. Readers wait meanwhile.
    -- The threshold (1,000,000 change rows) can be set: pgundo.bulk_index_rows.
    SELECT coalesce(sum(st.rows), 0) > greatest(coalesce(nullif(current_setting('pgundo.bulk_index_rows', true), '')::bigint, 1000000),
                                                (SELECT reltuples FROM pg_class WHERE oid = 'pgundo.hist_key'::regclass))
      INTO bulk
      FROM {{.stmt}} st WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id);
    IF bulk THEN
        DROP INDEX pgundo.hist_key_idx;
    END IF;
    FOR r IN SELECT DISTINCT st.relid FROM {{.stmt}} st
              WHERE st.id > lo AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id) LOOP
        after := lo;
        LOOP
            -- Batches of statements in id order keep each read of
            -- pgundo.change to a narrow stmt_id range (its BRIN index).
            SELECT array_agg(b.id ORDER BY b.id) INTO ids
              FROM (SELECT st.id FROM {{.stmt}} st
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
{{- if .journal}}
        SELECT seqv, pg_snapshot_xmax(snap), pgundo._writers();
{{- else}}
        SELECT seqv, pg_snapshot_xmax(snap), coalesce(array_agg(l.virtualtransaction), '{}')
          FROM pg_locks l
         WHERE l.locktype = 'relation' AND l.relation = 'pgundo.change'::regclass AND l.mode = 'RowExclusiveLock'
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
{{- end}}
    END IF;
    UPDATE pgundo.hist_state SET done_below = lo, refreshed = clock_timestamp();
    RETURN total;
END $$;{{end}}

{{- /* change_context: the columns of the views changes and row_history from the session on. */ -}}
{{define "change_context"}}st.session_id,
       s.session_role AS login_user,
       st.role,
       st.application_name,
       s.client_addr,
       st.tag,
       c.old,
       c.new,
       pgundo._image_jsonb(st.relid, c.old) AS old_data,
       pgundo._image_jsonb(st.relid, c.new) AS new_data{{end}}

{{- /* changes_view: the view pgundo.changes (create; change_id from version 10: stmt_id is the change row's, so that a condition on it reaches pgundo.change's index). */ -}}
{{define "changes_view"}}{{.create}} VIEW pgundo.changes AS
SELECT {{if .change_id}}c.stmt_id{{else}}st.id{{end}} AS stmt_id,
       st.xid,
       st.at,
       CASE st.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END AS op,
       st.schema_name,
       st.table_name,
       st.relid,
       {{template "change_context"}}
  FROM pgundo.stmt st
  JOIN pgundo.change c ON c.stmt_id = st.id
  JOIN pgundo.session s ON s.id = st.session_id;{{end}}

{{- /* row_history_view: the view pgundo.row_history (create, stmt, change). */ -}}
{{define "row_history_view"}}{{.create}} VIEW pgundo.row_history AS
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
       {{template "change_context"}}
  FROM pgundo.hist_key h
  JOIN {{.stmt}} st ON st.id = h.stmt_id
  JOIN pgundo.session s ON s.id = st.session_id
  JOIN {{.change}} c ON c.ctid = h.loc AND c.tableoid = h.part AND c.stmt_id = h.stmt_id
  LEFT JOIN pg_catalog.pg_class cl ON cl.oid = h.relid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace;{{end}}

{{- /* sessions_view: the view pgundo.sessions (create); undo_state: with version 6's column undo_state. */ -}}
{{define "sessions_view"}}{{.create}} VIEW pgundo.sessions AS
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
       (SELECT min(u.undo_session) FROM pgundo.undo u WHERE u.undone_session = s.id) AS undone_by{{if .undo_state}},
       CASE
         WHEN NOT bool_or(d.stmt_id IS NOT NULL) THEN NULL
         WHEN bool_and(d.stmt_id IS NOT NULL)
              AND NOT EXISTS (SELECT FROM pgundo.undo_scope sc JOIN pgundo.undo_left l ON l.undo_session = sc.undo_session AND l.done_by IS NULL
                               JOIN pgundo.stmt x ON x.id = sc.stmt_id WHERE x.session_id = s.id) THEN 'undone'
         ELSE 'partly undone' END AS undo_state{{end}}
  FROM pgundo.session s
  LEFT JOIN pgundo.stmt st ON st.session_id = s.id
{{- if .undo_state}}
  LEFT JOIN pgundo.undone d ON d.stmt_id = st.id
{{- end}}
 GROUP BY s.id;{{end}}
