-- pgundo capture on the hot path, version 5.
--
-- What a captured statement costs is mostly fixed overhead, not the rows it
-- writes: on a one-row UPDATE the version 4 capture took about 220 µs of CPU
-- where the UPDATE itself took 65. The capture functions below do the same
-- work with less overhead:
--
--   * No function-level SET clause but search_path. Each SET clause is a
--     setting saved, checked, set and restored on every call. The output
--     settings that a row's text form depends on (DateStyle, IntervalStyle,
--     TimeZone, extra_float_digits, bytea_output, lc_monetary) are checked
--     instead (pgundo._canonical, one inlined expression) and set for the
--     statement's capture only when they differ from what pgundo reads images
--     with (pgundo._pin / pgundo._unpin). xmloption does not change how a
--     value prints, so it is not pinned on the write side.
--   * No nested SECURITY DEFINER calls (pgundo._stmt, pgundo._session): the
--     statement row is written by the same SQL statement that writes the
--     change rows (a data-modifying WITH), which also takes the lock on both
--     log tables before the statement is numbered (see pgundo.seal).
--   * The session is registered once per connection (pgundo._register). Its
--     id used to be recomputed on every statement from pg_stat_get_activity,
--     which copies every backend's status on its first call in a transaction
--     (about 25 µs). Registration now keeps the backend's start time (the
--     id's first part; the pid is its second) as this connection's currval
--     of the private sequence pgundo.session_start, set with setval: only
--     pgundo's functions may set it, so a role cannot forge it (a setting
--     could be forged), and reading it back costs about a microsecond.
--   * A one-row UPDATE (most OLTP statements) pairs its old and new row
--     without the positional join; bigger ones join as before, with
--     work_mem raised for that statement only.
--
-- tern runs this file through text/template. The parts every capture function
-- repeats (guard, session_id, who, unpin, stmt_columns) are templates in
-- shared/capture.sql, and so is what another version writes again; they are
-- placed with template actions below. PL/pgSQL bodies hold no other double
-- braces.


-- pgundo.session_start is not a counter: _register sets this connection's
-- currval of it to the backend's start time (epoch seconds) with setval.
CREATE SEQUENCE pgundo.session_start MINVALUE 0;
REVOKE ALL ON SEQUENCE pgundo.session_start FROM PUBLIC;

-- _register registers this connection as a session and returns its id (the
-- backend's start time and pid in hex, as log_line_prefix %c prints them):
-- the session row, the start time as this connection's currval of
-- pgundo.session_start, and the setting pgundo.session as a mark that it did
-- (the mark alone proves nothing: the id always comes from currval and the
-- pid). The mark and the session row go with the transaction if it rolls
-- back; currval stays, and is set again next time. Where pgundo's owner may
-- not read this connection's start time (it lacks pg_read_all_stats; pgundo
-- install checks for it), the time of the registering statement stands in.
CREATE OR REPLACE FUNCTION pgundo._register() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a   record;
    sid text;
BEGIN
    SELECT s.pid, s.backend_start, s.client_addr, s.client_port, s.application_name INTO a
      FROM pg_stat_get_activity(pg_backend_pid()) s;
    IF a.backend_start IS NULL THEN
        a.pid := pg_backend_pid();
        a.backend_start := statement_timestamp();
        a.client_addr := inet_client_addr();
        a.client_port := inet_client_port();
        a.application_name := current_setting('application_name');
    END IF;
    sid := to_hex(floor(extract(epoch FROM a.backend_start))::bigint) || '.' || to_hex(a.pid);
    INSERT INTO pgundo.session (id, pid, backend_start, session_role, client_addr, client_port, application_name)
    VALUES (sid, a.pid, a.backend_start, session_user, a.client_addr, a.client_port, a.application_name)
    ON CONFLICT (id) DO NOTHING;
    PERFORM setval('pgundo.session_start', floor(extract(epoch FROM a.backend_start))::bigint, true);
    PERFORM set_config('pgundo.session', 'pgundo.session_start'::regclass::oid::text, false);
    RETURN sid;
END $$;

-- _session returns this connection's session id, registering it on first use.
CREATE OR REPLACE FUNCTION pgundo._session() RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT {{template "session_id"}}
$$;

-- CHECK constraints are parsed and compiled on every INSERT into the table
-- that has them (ExecConstraints), which a one-row statement pays each time.
-- The log's chunks keep no range CHECK once attached (tuple routing puts every
-- row in its chunk; the CHECK only let ATTACH PARTITION skip its scan), and
-- pgundo.stmt no CHECK on op (only pgundo's functions write it).
ALTER TABLE pgundo.stmt DROP CONSTRAINT IF EXISTS stmt_op_check;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.conrelid::regclass AS rel, c.conname
               FROM pg_constraint c
              WHERE c.contype = 'c' AND c.conname ~ '^(stmt|change)_c[0-9]+_range$'
                AND c.conrelid IN (SELECT relid FROM pg_partition_tree('pgundo.stmt') UNION ALL SELECT relid FROM pg_partition_tree('pgundo.change')) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
    END LOOP;
END $$;

-- _ensure_chunk as in version 1, but for dropping the range CHECK once the
-- chunk is attached.
{{template "ensure_chunk" (dict "create" "CREATE OR REPLACE" "q" "$f$" "parent" "t" "drop_range" true)}}

-- _canonical is true when every setting that a row's text form depends on
-- prints values as pgundo reads them back (readers pin DateStyle 'ISO, YMD',
-- IntervalStyle postgres, TimeZone UTC, extra_float_digits 3, bytea_output
-- hex, lc_monetary C): any ISO DateStyle prints year first, any positive
-- extra_float_digits prints the shortest exact form, and an lc_monetary that
-- prints a positive and a negative amount as C does prints every amount as C
-- does (PostgreSQL's money output uses only the locale's symbol, separators,
-- grouping, fraction digits and sign placement, all visible in those two).
-- A plain SQL function, so that it is inlined into the capture functions'
-- cached plans.
CREATE OR REPLACE FUNCTION pgundo._canonical() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('DateStyle') LIKE 'ISO%'
       AND pg_catalog.current_setting('IntervalStyle') = 'postgres'
       AND pg_catalog.current_setting('TimeZone') IN ('UTC', 'Etc/UTC')
       AND pg_catalog.current_setting('extra_float_digits') NOT LIKE '-%' AND pg_catalog.current_setting('extra_float_digits') <> '0'
       AND pg_catalog.current_setting('bytea_output') = 'hex'
       AND (pg_catalog.current_setting('lc_monetary') IN ('C', 'POSIX')
            OR (CAST(CAST(1234567.5 AS pg_catalog.money) AS pg_catalog.text) = '$1,234,567.50'
                AND CAST(CAST(-1234567.5 AS pg_catalog.money) AS pg_catalog.text) = '-$1,234,567.50'))
$$;

-- _pin sets, for the rest of the transaction, each output setting that
-- differs from what pgundo reads images with, and returns the names and
-- values that _unpin puts back right after the statement is logged (an error
-- in between rolls the settings back with the transaction or savepoint).
CREATE OR REPLACE FUNCTION pgundo._pin() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    was text[] := '{}';
BEGIN
    IF pg_catalog.current_setting('DateStyle') NOT LIKE 'ISO%' THEN
        was := was || ARRAY['DateStyle', pg_catalog.current_setting('DateStyle')];
        PERFORM pg_catalog.set_config('DateStyle', 'ISO, YMD', true);
    END IF;
    IF pg_catalog.current_setting('IntervalStyle') <> 'postgres' THEN
        was := was || ARRAY['IntervalStyle', pg_catalog.current_setting('IntervalStyle')];
        PERFORM pg_catalog.set_config('IntervalStyle', 'postgres', true);
    END IF;
    IF pg_catalog.current_setting('TimeZone') NOT IN ('UTC', 'Etc/UTC') THEN
        was := was || ARRAY['TimeZone', pg_catalog.current_setting('TimeZone')];
        PERFORM pg_catalog.set_config('TimeZone', 'UTC', true);
    END IF;
    IF pg_catalog.current_setting('extra_float_digits') LIKE '-%' OR pg_catalog.current_setting('extra_float_digits') = '0' THEN
        was := was || ARRAY['extra_float_digits', pg_catalog.current_setting('extra_float_digits')];
        PERFORM pg_catalog.set_config('extra_float_digits', '3', true);
    END IF;
    IF pg_catalog.current_setting('bytea_output') <> 'hex' THEN
        was := was || ARRAY['bytea_output', pg_catalog.current_setting('bytea_output')];
        PERFORM pg_catalog.set_config('bytea_output', 'hex', true);
    END IF;
    IF pg_catalog.current_setting('lc_monetary') NOT IN ('C', 'POSIX') THEN
        was := was || ARRAY['lc_monetary', pg_catalog.current_setting('lc_monetary')];
        PERFORM pg_catalog.set_config('lc_monetary', 'C', true);
    END IF;
    RETURN was;
END $$;

CREATE OR REPLACE FUNCTION pgundo._unpin(was text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(cardinality(was), 0) / 2 LOOP
        PERFORM pg_catalog.set_config(was[2 * i - 1], was[2 * i], true);
    END LOOP;
END $$;

-- The capture functions. Each numbers its statement and writes the statement
-- row and the change rows in one SQL statement, and nothing at all for a
-- statement that changed no row.

{{template "capture_one_side_v5" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new")}}

{{template "capture_one_side_v5" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old")}}

-- UPDATE pairs each old row with its new row by position: PostgreSQL appends a
-- row's old and new versions to the two transition tables together, so the
-- n-th old row and the n-th new row are one row's update (primary-key changes
-- and cross-partition moves included). The one exception is a cross-partition
-- move whose insert a BEFORE INSERT trigger on the destination skipped: its old
-- row has no new one. Then the counts differ and nothing is paired: every old
-- row and every new row is logged on its own ("this row out, that row in"),
-- which undo handles the same way (it nets images as multisets). A one-row
-- update needs no pairing; the positional join of bigger ones runs with
-- work_mem raised to 128MB for that statement (at the default 4MB, pairing
-- a million rows spilled about 460 MiB to temporary files).
{{template "capture_update" (dict "stmt" "pgundo.stmt" "change" "pgundo.change")}}

-- TRUNCATE has no transition table: a BEFORE TRUNCATE trigger copies the rows
-- it is about to remove. On a partitioned table it fires for every partition,
-- and ONLY keeps each partition's copy to its own rows. It takes the
-- transaction id before numbering, as every other capture does (a TRUNCATE
-- may be its transaction's first write; pgundo.seal relies on it).
{{template "capture_truncate" (dict "stmt" "pgundo.stmt" "change" "pgundo.change")}}

REVOKE ALL ON FUNCTION pgundo._register(), pgundo._session(), pgundo._canonical(), pgundo._pin(), pgundo._unpin(text[]) FROM PUBLIC;
