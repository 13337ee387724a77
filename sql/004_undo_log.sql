-- pgundo undo's own log, version 4.
--
-- An undo that puts rows back straight from the log (undo's fast path)
-- already holds both images of every row it writes: the row as the sessions
-- left it (checked under lock before the write) and as it was before them
-- (checked after). It logs its statements itself, from those images, instead
-- of having capture print every row it wrote a second time and pair the
-- images up again: capture would write the same rows.
--
-- To keep capture from logging such a statement twice, the undo inserts its
-- own transaction id and the table it writes into pgundo.quiet (only
-- pgundo's owner can) and sets pgundo.quiet = 'on' around the statements it
-- logs itself; it deletes the row again right after them. Capture skips a
-- statement only when both hold for the table the statement names: the
-- setting alone, which any session can set, costs it one index probe and
-- changes nothing, and a write to another tracked table that those
-- statements cause (a CHECK constraint calling a function that writes, say)
-- is still captured.
--
-- tern runs this file through text/template: keep double braces out of it.

CREATE TABLE pgundo.quiet (
    xid   xid8 NOT NULL,
    relid oid NOT NULL,
    PRIMARY KEY (xid, relid)
);
COMMENT ON TABLE pgundo.quiet IS 'Transactions of undos in progress that log their own statements (pgundo undo fast path); empty at rest.';
REVOKE ALL ON pgundo.quiet FROM PUBLIC;

-- The capture functions of 001, unchanged but for the check at the top.

CREATE OR REPLACE FUNCTION pgundo.capture_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
AS $$
DECLARE
    sid bigint;
    n   bigint;
BEGIN
    IF current_setting('pgundo.quiet', true) = 'on' THEN
        IF EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
            RETURN NULL;  -- an undo logs this statement itself
        END IF;
    END IF;
    LOCK TABLE ONLY pgundo.change IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    INSERT INTO pgundo.change (stmt_id, new) SELECT sid, ROW(r.*)::text FROM pgundo_new r;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pgundo._stmt(sid, 'I', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION pgundo.capture_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
AS $$
DECLARE
    sid bigint;
    n   bigint;
BEGIN
    IF current_setting('pgundo.quiet', true) = 'on' THEN
        IF EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
            RETURN NULL;  -- an undo logs this statement itself
        END IF;
    END IF;
    LOCK TABLE ONLY pgundo.change IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    INSERT INTO pgundo.change (stmt_id, old) SELECT sid, ROW(r.*)::text FROM pgundo_old r;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pgundo._stmt(sid, 'D', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION pgundo.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
SET work_mem = '128MB'
AS $$
DECLARE
    sid bigint;
    n   bigint;
    m   bigint;
BEGIN
    IF current_setting('pgundo.quiet', true) = 'on' THEN
        IF EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
            RETURN NULL;  -- an undo logs this statement itself
        END IF;
    END IF;
    n := (SELECT count(*) FROM pgundo_old);
    m := (SELECT count(*) FROM pgundo_new);
    LOCK TABLE ONLY pgundo.change IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    IF n = m THEN
        INSERT INTO pgundo.change (stmt_id, old, new)
        SELECT sid, o.img, w.img
          FROM (SELECT row_number() OVER () AS pos, ROW(r.*)::text AS img FROM pgundo_old r) o
          JOIN (SELECT row_number() OVER () AS pos, ROW(r.*)::text AS img FROM pgundo_new r) w USING (pos);
    ELSE
        INSERT INTO pgundo.change (stmt_id, old) SELECT sid, ROW(r.*)::text FROM pgundo_old r;
        INSERT INTO pgundo.change (stmt_id, new) SELECT sid, ROW(r.*)::text FROM pgundo_new r;
        n := greatest(n, m);
    END IF;
    IF n > 0 THEN
        PERFORM pgundo._stmt(sid, 'U', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;
END $$;
