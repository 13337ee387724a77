-- Version 12: a lighter journal INSERT (the one-row statement's capture), and
-- TimeZone pinned inline.
--
-- Three changes to what every captured statement runs, each measured with
-- scripts/capture-instructions (PostgreSQL 15, instructions of a one-row
-- UPDATE of a tracked pgbench_accounts, or of a tpcb-like transaction):
--
--   * The journal INSERT took its images from a join of the transition
--     tables, tested for one row (NOT EXISTS ... OFFSET 1) and capped by
--     LIMIT 1, which kept the planner's estimate of the join small (without
--     it, an UPDATE of a few thousand rows planned its journal INSERT past
--     jit_above_cost). Its plan was a Limit over a Subquery Scan over a
--     Result over a Nested Loop of two scans, each node projecting the
--     thirteen columns, and starting the executor on it, for every
--     statement, was about half of capture's cost. It now has no FROM: the
--     images are scalar subqueries, written when the statement changed
--     exactly one row (EXISTS and NOT EXISTS ... OFFSET 1; an UPDATE has no
--     more new rows than old ones), and the columns are listed in the
--     journal's order and cast to its types, so the plan is a single Result
--     (with the tests as init plans) under the Insert. Its estimate grows by
--     0.05 a row of the statement (the image subqueries), past the default
--     jit_above_cost at about two million rows, where compiling it takes
--     milliseconds of a statement of seconds. About 25,600 instructions
--     less per one-row UPDATE.
--   * A one-row statement's journal row held
--     nullif(current_setting('pgundo.tag', true), ''), written since version
--     11 as a schema-qualified CASE: two reads of the setting and a
--     comparison. A tag that was set and then reset in a session reads back
--     as '' rather than NULL; the journal now keeps that '', and its two
--     readers, the view pgundo.stmt and pgundo.fold, turn it into NULL: every
--     reader sees the tag as before, and the log tables never hold ''.
--     Statements of more than one row (written straight into
--     pgundo.stmt_log, once per statement) write NULL as before. About 4,100
--     instructions less per one-row UPDATE.
--   * A writer whose TimeZone is not UTC (a server's own zone, or what a
--     JDBC driver sends: the JVM's) had every statement on a table with a
--     date or time column (or the full check) go through pgundo._pin and
--     _unpin, after setting search_path: 214,000 instructions more per
--     statement, more than all the rest of capture. TimeZone is now pinned
--     inline (set_config into a local, put back after the statement is
--     logged); _pin is called only for the other settings. A tpcb-like
--     transaction from a session in Europe/Berlin (pgbench_history has a
--     timestamp): 1,453,000 -> 1,315,000 instructions; the tests on the
--     common paths are as in version 11, so a UTC session pays nothing for it.
--
-- The capture functions are version 11's templates (sql/shared/capture.sql)
-- with "v12" set, which places the template journal_insert.

CREATE OR REPLACE VIEW pgundo.stmt AS
SELECT id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag FROM pgundo.stmt_log
UNION ALL
SELECT id, session_id, xid, at, op, relid, schema_name::name, table_name::name, 1::bigint, role::name, application_name, nullif(tag, '') FROM pgundo.journal;

-- fold as in version 7 (shared/log.sql), the tag's '' made NULL.
{{template "fold" (dict "create" "CREATE OR REPLACE" "v12" true)}}

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true "v11" true "v12" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true "v11" true "v12" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true "v11" true "v12" true)}}

-- Output classes, version 12. Since version 11 the capture functions run with
-- the writer's search_path unless they pin a setting, and a reg* value
-- (regclass, regtype, ...) prints by search_path: a table with such a column
-- and a writer whose output settings were pgundo's got images such as
-- (1,orders) instead of (1,public.orders), which do not read back (or read
-- as another table) under pgundo's search_path. _output_class now tells
-- 'six' (types whose text form depends on the six output settings and
-- nothing else: floats, bytea, money, xml, geometric types; six arguments)
-- from NULL (what may depend on anything: reg* types, composites, types
-- pgundo does not know; no arguments), and capture sets pgundo's
-- search_path before writing the images of a table whose triggers have no
-- arguments (tables tracked before version 11, and every table where the
-- event trigger pgundo_reclass is missing, included).
{{template "output_class" (dict "create" "CREATE OR REPLACE" "six" true)}}

{{template "capture_args" (dict "create" "CREATE OR REPLACE" "six" true)}}

{{template "reclass" (dict "create" "CREATE OR REPLACE" "six" true)}}

-- Tables tracked before get the arguments of their class now (floats and the
-- like: six instead of none).
{{template "reclass_tracked"}}
