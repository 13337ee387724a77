-- Version 11: capture checks only the output settings a table's rows depend on.
--
-- Every captured statement (but TRUNCATE's) began by checking six output
-- settings (pgundo._canonical: DateStyle, IntervalStyle, TimeZone,
-- extra_float_digits, bytea_output and lc_monetary, the last by printing two
-- amounts of money where lc_monetary is not C): about 39,000 of the 240,000
-- instructions capture added to a one-row UPDATE (DESIGN.md, "Capture cost"),
-- although most tables have no column whose text form any of them changes.
-- So:
--
--   * pgundo._output_class(rel) reads a table's column types, through
--     domains, arrays and ranges: 'none' when no output setting changes how
--     its rows print, 'time' when only DateStyle, IntervalStyle and TimeZone
--     can (date and time types), NULL when others may (floats, bytea, money,
--     xml, composite and unknown types: the full check).
--   * _attach gives the UPDATE, INSERT and DELETE capture triggers those
--     settings as arguments (pgundo._capture_args): ('none'), ('DateStyle',
--     'IntervalStyle', 'TimeZone'), or none. The capture functions test
--     TG_NARGS: 1 checks nothing, 3 checks those three, 0 checks all six,
--     as triggers attached before version 11 do until they are re-attached
--     (below).
--   * An ALTER TABLE that changes a captured table's class re-attaches its
--     triggers (event trigger pgundo_reclass, ENABLE ALWAYS so that DDL under
--     session_replication_role = replica fires it too). Without that event
--     trigger (pgundo installed without the right to create event triggers,
--     or it was disabled) _capture_args gives no arguments: the full check,
--     as before. pgundo status reports a trigger whose arguments claim fewer
--     settings than its table's columns need; pgundo track repairs it.
--   * The common path of each capture function tests one condition after
--     its journal INSERT instead of three (whether the journal took the
--     statement, whether settings were pinned).
--   * The capture functions of UPDATE, INSERT and DELETE have no SET
--     search_path clause (about 13,000 instructions a call): the common path
--     names every function, operator and type with its schema, and every
--     other branch sets pgundo's search_path first and puts the caller's
--     back before returning (see shared/capture.sql).
--
-- The capture function bodies are version 8's templates (sql/shared/capture.sql)
-- with "v11" set; _attach is shared/track.sql's.

-- _output_class: what the text form of rel's rows (ROW(r.*)::text) depends
-- on: 'none', 'time' or NULL (see above).
{{template "output_class" (dict "create" "CREATE")}}

-- _capture_args: the arguments of rel's UPDATE, INSERT and DELETE capture
-- triggers, as SQL: the settings capture must check (none: all of them).
{{template "capture_args" (dict "create" "CREATE")}}

-- _canonical and _canonical_time (the same for tables of class 'time') are
-- inlined into the capture functions' tests, which since this version run
-- with the caller's search_path: every operator and type is qualified.
CREATE OR REPLACE FUNCTION pgundo._canonical() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'UTC' OR pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'Etc/UTC')
       AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.!~~) '-%'
       AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.<>) '0'
       AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
       AND (pg_catalog.current_setting('lc_monetary') OPERATOR(pg_catalog.=) 'C' OR pg_catalog.current_setting('lc_monetary') OPERATOR(pg_catalog.=) 'POSIX'
            OR (CAST(CAST(1234567.5 AS pg_catalog.money) AS pg_catalog.text) OPERATOR(pg_catalog.=) '$1,234,567.50'
                AND CAST(CAST(OPERATOR(pg_catalog.-) 1234567.5 AS pg_catalog.money) AS pg_catalog.text) OPERATOR(pg_catalog.=) '-$1,234,567.50'))
$$;

CREATE FUNCTION pgundo._canonical_time() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'UTC' OR pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'Etc/UTC')
$$;
REVOKE ALL ON FUNCTION pgundo._output_class(regclass), pgundo._capture_args(regclass), pgundo._canonical_time() FROM PUBLIC;

{{template "attach" (dict "create" "CREATE OR REPLACE" "args" true)}}

-- _reclass re-attaches rel's capture triggers when their arguments are not
-- what _capture_args gives now, and says whether it did.
{{template "reclass" (dict "create" "CREATE")}}
REVOKE ALL ON FUNCTION pgundo._reclass(regclass) FROM PUBLIC;

-- _on_alter: after an ALTER TABLE, the captured tables it touched (and
-- their partitions) get the triggers their columns need.
CREATE FUNCTION pgundo._on_alter() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT p.relid::regclass AS rel
          FROM pg_event_trigger_ddl_commands() d
         CROSS JOIN LATERAL (SELECT t.relid FROM pg_partition_tree(d.objid) t UNION SELECT d.objid) p
         WHERE d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'pgundo_capture_insert')
    LOOP
        PERFORM pgundo._reclass(r.rel);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION pgundo._on_alter() FROM PUBLIC;

DO $$
BEGIN
    CREATE EVENT TRIGGER pgundo_reclass ON ddl_command_end
        WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION pgundo._on_alter();
    ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgundo: could not create event trigger pgundo_reclass (%); capture checks all output settings on every table', SQLERRM;
END $$;

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true "v11" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true "v11" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true "v11" true)}}

-- Tables tracked before version 11 get their arguments now; one whose
-- triggers the installing role may not replace (it does not own the table)
-- keeps the full check until pgundo track runs on it as its owner.
{{template "reclass_tracked"}}
