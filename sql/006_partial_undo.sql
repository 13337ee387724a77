-- What an undo left undone, version 6.
--
-- pgundo.undone records, per statement, which undo undid it. An undo of one
-- transaction (--tx) marks only that transaction's statements, so a later
-- undo of the session undoes the rest. An undo with --on-conflict skip
-- (or merge) leaves some rows as they are: those rows are kept here, as the
-- images before the sessions (old) and as the sessions left them (new), so
-- that a later undo of the same changes undoes exactly them, together with
-- whatever statements are still not undone. undo_scope lists the statements
-- that undo selected: a later undo takes an undo's left rows only when it
-- selects all of those statements (the rows may come from any of them), and
-- refuses when it selects only some.
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

CREATE TABLE pgundo.undo_left (
    undo_session text NOT NULL,
    relid        oid NOT NULL,
    old          text,
    new          text,
    done_by      text
);
CREATE INDEX undo_left_undo_session_idx ON pgundo.undo_left (undo_session) WHERE done_by IS NULL;
COMMENT ON TABLE pgundo.undo_left IS 'Rows an undo left as they were (skipped conflicts): relid is the tracked table, old the row before the undone sessions, new as they left it; done_by is the later undo that undid them.';

CREATE TABLE pgundo.undo_scope (
    undo_session text NOT NULL,
    stmt_id      bigint NOT NULL,
    PRIMARY KEY (undo_session, stmt_id)
);
CREATE INDEX undo_scope_stmt_idx ON pgundo.undo_scope (stmt_id);
COMMENT ON TABLE pgundo.undo_scope IS 'The statements selected by each undo that left rows in pgundo.undo_left.';

REVOKE ALL ON pgundo.undo_left, pgundo.undo_scope FROM PUBLIC;

-- pgundo.sessions gains undo_state: 'undone' when every statement of the
-- session is undone and no row of it was left, 'partly undone' when some
-- are, NULL when nothing is (written out here, not a function: the view's
-- readers, such as an auditor role, may not call pgundo's functions).
{{template "sessions_view" (dict "create" "CREATE OR REPLACE" "undo_state" true)}}
COMMENT ON VIEW pgundo.sessions IS 'One row per recorded session (connection): who, from where, when, how many row changes in which tables, and undo links (undo_state: undone, partly undone, or NULL).';
