-- Version 14: a table whose date and time columns print the same whatever
-- the writer's TimeZone is no longer checked against it.
--
-- Of the date and time types only timestamptz (and its ranges and arrays)
-- prints by TimeZone: date, time, timestamp and interval carry no zone, and
-- timetz prints the offset it stores. Version 11's class 'time' read
-- TimeZone for all of them, and a writer outside UTC (a server's own zone,
-- or the zone a JDBC driver sends at connect) pinned TimeZone to UTC and put
-- it back on every statement on such a table, although no image changed by
-- it: about 42,000 instructions a statement (tpcb-like from a session in
-- Europe/Berlin, whose pgbench_history has a timestamp column). Such tables
-- are now of class 'local': two arguments (DateStyle, IntervalStyle), and
-- their capture reads and pins only those. A table with a timestamptz
-- column keeps the class 'time'. Instructions per tpcb-like transaction
-- (scripts/capture-instructions, PostgreSQL 15), version 13 -> 14: from a
-- session in Europe/Berlin 1,272,444 -> 1,229,235, now what a session in UTC
-- takes (1,230,067 -> 1,229,019); installed by a role that is not a
-- superuser, as on RDS: 1,370,081 -> 1,319,623. The branch costs the classes
-- tested after it one test (a one-row UPDATE of a float table 337,540 ->
-- 340,188).

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true "v11" true "v12" true "v13" true "local" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true "v11" true "v12" true "v13" true "local" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true "v11" true "v12" true "v13" true "local" true)}}

-- _args_cover: whether capture triggers with nargs arguments check every
-- output setting a table of output class cls (pgundo._output_class; NULL:
-- anything) depends on. The classes are nested (none, local, time, five,
-- six, all), each checked by more arguments than the one before; no
-- arguments check everything. _on_alter and status's staleness test (Go,
-- triggers.problemsQuery) both ask it, so that a class added later changes
-- this function alone.
CREATE FUNCTION pgundo._args_cover(nargs int, cls text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(nargs = 0
                    OR (nargs = 6 AND cls IS NOT NULL)
                    OR (nargs = 5 AND cls IN ('none', 'local', 'time', 'five'))
                    OR (nargs = 3 AND cls IN ('none', 'local', 'time'))
                    OR (nargs = 2 AND cls IN ('none', 'local'))
                    OR (nargs = 1 AND cls = 'none'), false)
$$;
REVOKE ALL ON FUNCTION pgundo._args_cover(int, text) FROM PUBLIC;

-- _on_alter as in version 13, asking _args_cover (which knows the class
-- 'local') whether the arguments a table keeps still cover its columns.
CREATE OR REPLACE FUNCTION pgundo._on_alter() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    k int;
    c text;
BEGIN
    FOR r IN
        SELECT DISTINCT p.relid::regclass AS rel
          FROM pg_event_trigger_ddl_commands() d
         CROSS JOIN LATERAL (SELECT t.relid FROM pg_partition_tree(d.objid) t UNION SELECT d.objid) p
         WHERE d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'pgundo_capture_insert')
    LOOP
        BEGIN
            PERFORM pgundo._reclass(r.rel);
        EXCEPTION WHEN insufficient_privilege THEN
            SELECT tgnargs INTO k FROM pg_trigger WHERE tgrelid = r.rel AND tgname = 'pgundo_capture_update';
            c := pgundo._output_class(r.rel);
            IF pgundo._args_cover(k, c) THEN
                RAISE WARNING 'pgundo: capture on % keeps checking more output settings than its columns need (%); run pgundo track % as a role that owns it for the faster check', r.rel, SQLERRM, r.rel;
            ELSE
                RAISE EXCEPTION 'pgundo: capture on % must check more output settings for its new column types, and pgundo''s owner % may not attach it again (%)', r.rel, current_user, SQLERRM
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = format('Grant the table''s owner to pgundo''s owner (GRANT %s TO %s), then run the ALTER TABLE again; or stop capturing it first (pgundo untrack %s).',
                                        quote_ident(pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = r.rel))), quote_ident(current_user), r.rel);
            END IF;
        END;
    END LOOP;
END $$;

{{template "output_class" (dict "create" "CREATE OR REPLACE" "six" true "five" true "local" true)}}

{{template "capture_args" (dict "create" "CREATE OR REPLACE" "six" true "five" true "local" true)}}

{{template "reclass" (dict "create" "CREATE OR REPLACE" "six" true "five" true "local" true)}}

-- Tables tracked before with a date or time column but no timestamptz get two
-- arguments now; three are exact for them too: a table busy for more than two
-- seconds keeps them (with a warning naming the command that updates them).
{{template "reclass_tracked" (dict "timeout" true)}}
