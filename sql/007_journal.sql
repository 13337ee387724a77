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
{{template "changes_view" (dict "create" "CREATE OR REPLACE")}}

{{template "row_history_view" (dict "create" "CREATE OR REPLACE" "stmt" "pgundo.stmt_log" "change" "pgundo.change_log")}}

{{template "sessions_view" (dict "create" "CREATE OR REPLACE" "undo_state" true)}}

-- fold moves every committed journal row into stmt_log and change_log and
-- returns how many it moved. One INSERT per table for all of them; folds are
-- serialized by an advisory lock held to the end of the transaction, so that
-- a fold that waited sees, when it reads, what the one before it moved. A
-- journal row whose chunk was pruned is dropped (prune folds under its lock
-- first, so only a row committed after that could be one).
{{template "fold" (dict "create" "CREATE")}}
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

-- _stmt (the undo's own statements, see undo/apply_straight.go) writes stmt_log.
{{template "stmt_function" (dict "create" "CREATE OR REPLACE" "stmt" "pgundo.stmt_log")}}

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
{{template "seal" (dict "create" "CREATE OR REPLACE" "journal" true)}}

-- prune as in version 3 on the renamed log tables; it folds first, and again
-- under its lock, which now covers the journal too; and it forgets what
-- undos left (version 6's undo_scope and undo_left) with the statements.
{{template "prune" (dict "create" "CREATE OR REPLACE" "stmt" "pgundo.stmt_log" "journal" true "undo_left" true)}}

-- The history index holds the locations of change_log rows: _hist_entries
-- reads change_log, and refresh_history folds the journal first and indexes
-- the log tables only (a journal statement is indexed once folded).
{{template "hist_entries" (dict "create" "CREATE OR REPLACE" "change" "pgundo.change_log")}}

{{template "refresh_history" (dict "create" "CREATE OR REPLACE" "stmt" "pgundo.stmt_log" "journal" true)}}


