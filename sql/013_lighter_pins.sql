-- Version 13: capture's slow paths start only what they run, and floats
-- are no longer checked against lc_monetary.
--
-- PL/pgSQL compiles every expression it evaluates again in each transaction
-- (all of it: the branches of a CASE and the right side of an OR that is
-- never reached included), and when the capture functions' owner is not a
-- superuser (as on RDS and Aurora, where the master user installs pgundo) it
-- checks the owner's right to call every function and operator in it, each
-- a catalog look-up. Measured with scripts/capture-instructions (PostgreSQL
-- 15, instructions per transaction; pgundo-rds: installed by a role that is
-- not a superuser, event triggers created; pgundo-noevt: the same without
-- event triggers):
--
--   * A table whose capture triggers have no arguments (every table of an
--     install without the event trigger pgundo_reclass) compiled
--     pgundo._canonical(), about twenty-five functions and operators, three
--     times a statement and set search_path with two PERFORMs, each an
--     executor. Now once, and search_path is set and put back by assignment.
--     One-row UPDATE, pgundo-noevt: 572,400 -> 448,750; tpcb-like
--     2,219,330 -> 1,723,111 (capture's own cost -32%).
--   * A writer outside UTC on a table with a date or time column compiled
--     the whole _canonical() in a CASE it never reached: each slow path
--     (pin_v13) now holds only its own class's tests. tpcb-like from a
--     session in Europe/Berlin: 1,309,617 -> 1,272,218 (pgundo-rds
--     1,424,902 -> 1,369,811).
--   * Money is the only type whose text form depends on lc_monetary, whose
--     test prints two amounts of money wherever lc_monetary is not C or
--     POSIX (en_US.UTF-8, C.UTF-8, ...). Floats, bytea, xml and geometric
--     types without money are now of class 'five' (five arguments, all the
--     settings but lc_monetary), and _canonical() and _canonical_time() test
--     the same settings with fewer functions and operators (= ANY of a
--     constant array; one money[] printed for the two amounts). One-row
--     UPDATE of a table with a float8 column: 363,794 -> 337,558
--     (pgundo-rds 400,565 -> 367,943).
--   * A statement that changed no row (an UPDATE or DELETE that matched
--     nothing, an INSERT ... ON CONFLICT DO NOTHING that conflicted) set
--     pgundo's search_path, counted both transition tables and put the
--     search_path back; it now stops at a qualified EXISTS test. Zero-row
--     UPDATE: 313,429 -> 245,907 (untracked 114,426; pgundo-rds 337,823 ->
--     268,474). Statements of many rows set search_path by assignment.
--
-- Tables of class 'none' (one argument) run what version 12 runs (one-row
-- UPDATE 317,276 -> 317,321). What is tested and pinned is what version 12
-- tests and pins, per table class.

CREATE OR REPLACE FUNCTION pgundo._canonical() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY ('{UTC,Etc/UTC}'::pg_catalog.text[])
       AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.=) ANY ('{1,2,3}'::pg_catalog.text[])
       AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
       AND (pg_catalog.current_setting('lc_monetary') OPERATOR(pg_catalog.=) ANY ('{C,POSIX}'::pg_catalog.text[])
            OR CAST(CAST('{1234567.5,-1234567.5}'::pg_catalog.numeric[] AS pg_catalog.money[]) AS pg_catalog.text)
               OPERATOR(pg_catalog.=) '{"$1,234,567.50","-$1,234,567.50"}')
$$;

CREATE OR REPLACE FUNCTION pgundo._canonical_time() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY ('{UTC,Etc/UTC}'::pg_catalog.text[])
$$;

-- _canonical_five: _canonical but lc_monetary, for the tables of class
-- 'five' (below).
CREATE FUNCTION pgundo._canonical_five() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
       AND pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY ('{UTC,Etc/UTC}'::pg_catalog.text[])
       AND pg_catalog.current_setting('extra_float_digits') OPERATOR(pg_catalog.=) ANY ('{1,2,3}'::pg_catalog.text[])
       AND pg_catalog.current_setting('bytea_output') OPERATOR(pg_catalog.=) 'hex'
$$;
REVOKE ALL ON FUNCTION pgundo._canonical_five() FROM PUBLIC;

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true "v11" true "v12" true "v13" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true "v11" true "v12" true "v13" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true "v11" true "v12" true "v13" true)}}

-- _on_alter and _on_ddl run as pgundo's owner (SECURITY DEFINER). Where that
-- owner is not a superuser (RDS and Aurora, or event triggers added later by
-- pgundo install) and does not own a tracked table, re-attaching its capture
-- failed the writer's ALTER TABLE with "must be owner of relation". Now a
-- change that leaves the triggers' arguments covering the new columns (they
-- check more settings than needed) passes with a warning; one that would make
-- capture inexact, or a new partition left without capture, is still refused,
-- with what to do.
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
            IF k = 0 OR (k = 6 AND c IS NOT NULL) OR (k = 5 AND c IN ('none', 'time', 'five'))
               OR (k = 3 AND c IN ('none', 'time')) OR (k = 1 AND c = 'none') THEN
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

CREATE OR REPLACE FUNCTION pgundo._on_ddl() RETURNS event_trigger
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
        BEGIN
            PERFORM pgundo._attach(r.rel);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pgundo: % is a partition of a tracked table, and pgundo''s owner % may not attach capture to it (%): its changes would not be logged', r.rel, current_user, SQLERRM
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Grant the partition''s owner to pgundo''s owner (GRANT %s TO %s), then run the statement again.',
                                    quote_ident(pg_get_userbyid((SELECT relowner FROM pg_class WHERE oid = r.rel))), quote_ident(current_user));
        END;
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

-- Output classes, version 13: money is the only type whose text form depends
-- on lc_monetary, and a table with floats, bytea, xml or geometric types but
-- no money is now of class 'five' (five arguments; lc_monetary, whose test
-- prints two amounts of money on a server whose lc_monetary is not C, is not
-- read for it).
{{template "output_class" (dict "create" "CREATE OR REPLACE" "six" true "five" true)}}

{{template "capture_args" (dict "create" "CREATE OR REPLACE" "six" true "five" true)}}

{{template "reclass" (dict "create" "CREATE OR REPLACE" "six" true "five" true)}}

-- Tables tracked before get the arguments of their class now (floats and the
-- like without money: five instead of six). Six arguments are exact for them
-- too: a table busy for more than two seconds keeps them (with a warning naming
-- the command that updates them).
{{template "reclass_tracked" (dict "timeout" true)}}
