-- pgundo history schema, version 2: the row-history index and the views for
-- other tools.
--
-- Finding one row's changes in a log of millions must not scan the log, but
-- capture must stay cheap: an index on the log computed at write time (a key
-- column, an expression or GIN index on pgundo.change) would add a per-row
-- index insert to every tracked write. So the key index is built lazily, on
-- the read side: pgundo.refresh_history() indexes the change rows logged since
-- its last run, by table and primary-key value, set-based, one INSERT ...
-- SELECT per table. pgundo history, pgundo asof and the pgundo.row_history
-- view read it; the history commands refresh it first, so they see the whole
-- log, and a refresh after N new changes costs about as much as reading them
-- once.
--
-- Out-of-order commits: statement ids are handed out before commit, so a
-- watermark on ids alone could pass over a transaction still in progress.
-- hist_stmt marks each indexed statement above the watermark, and the
-- watermark (hist_state.done_below) only advances to a sequence value read
-- before a snapshot whose xmax is at or below the oldest running transaction
-- now (hist_mark), so every statement at or below it belongs to a finished
-- transaction and is indexed.
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

CREATE TABLE pgundo.hist_key (
    relid     oid NOT NULL,     -- the table (the root of a partitioned table)
    key       text NOT NULL,    -- primary-key value: the column's text form, or ROW(k1, k2, ...)::text
    stmt_id   bigint NOT NULL,
    part      oid NOT NULL,     -- tableoid of the change row
    loc       tid NOT NULL,     -- ctid of the change row
    side      "char" NOT NULL CHECK (side IN ('b', 'o', 'n')), -- which images have this key: both, old only, new only
    other_key text              -- the other image's key when it differs (a primary-key change)
);
CREATE INDEX hist_key_idx ON pgundo.hist_key (relid, key, stmt_id);
COMMENT ON TABLE pgundo.hist_key IS 'Row-history index: one row per change row and primary-key value of its images, built by pgundo.refresh_history().';

CREATE TABLE pgundo.hist_stmt (
    stmt_id    bigint PRIMARY KEY,
    unreadable boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE pgundo.hist_stmt IS 'Statements above hist_state.done_below that refresh_history() has indexed (unreadable: images no longer read as the table''s row type).';

CREATE TABLE pgundo.hist_state (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    done_below bigint NOT NULL DEFAULT 0,
    refreshed  timestamptz
);
INSERT INTO pgundo.hist_state DEFAULT VALUES;
COMMENT ON TABLE pgundo.hist_state IS 'Every statement with id <= done_below is indexed in hist_key (or belongs to a transaction that rolled back).';

CREATE TABLE pgundo.hist_mark (
    seq_value bigint NOT NULL,
    snap_xmax xid8 NOT NULL,
    vxids     text[] NOT NULL DEFAULT '{}'  -- transactions writing the log when the mark was made
);
COMMENT ON TABLE pgundo.hist_mark IS 'refresh_history() runs: the statement sequence value read before a snapshot with this xmax.';

CREATE TABLE pgundo.hist_skipped (
    stmt_id bigint PRIMARY KEY,
    relid   oid NOT NULL,
    reason  text NOT NULL
);
COMMENT ON TABLE pgundo.hist_skipped IS 'Statements whose images could not be read as their table''s row type when indexed (columns changed since capture).';

-- _hist_key_expr returns the SQL expression for the primary-key value of the
-- row in composite expression v of table root: the column's text form for a
-- one-column key, ROW(...)::text for more. NULL when root has no primary key.
CREATE FUNCTION pgundo._hist_key_expr(root oid, v text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN count(*) = 1 THEN format('(%s).%I::text', v, min(a.attname))
                WHEN count(*) > 1 THEN format('ROW(%s)::text', string_agg(format('(%s).%I', v, a.attname), ', ' ORDER BY k.ord))
           END
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = root AND i.indisprimary
$$;

-- _hist_entries returns the row-history index entries of the change rows of
-- the given statements of one table (rel, as logged: a partition or a plain
-- table): one per primary-key value of their images. None when the table
-- was dropped or has no primary key. It fails (data_exception and the like)
-- when an image no longer reads as the table's row type.
{{template "hist_entries" (dict "create" "CREATE" "change" "pgundo.change")}}

-- _hist_index indexes the given statements of one table and marks them
-- indexed. Returns the number of index entries added.
CREATE FUNCTION pgundo._hist_index(rel oid, ids bigint[]) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO pgundo.hist_stmt (stmt_id) SELECT DISTINCT u FROM unnest(ids) u;
    INSERT INTO pgundo.hist_key (relid, key, stmt_id, part, loc, side, other_key)
    SELECT * FROM pgundo._hist_entries(rel, ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- refresh_history brings the row-history index up to date with the log and
-- returns the number of index entries it added. It is cheap when little was
-- logged since the last refresh. Concurrent calls queue on one lock. A
-- statement whose images no longer read as its table's row type (columns
-- dropped or retyped since capture) is recorded in hist_skipped instead.
{{template "refresh_history" (dict "create" "CREATE" "stmt" "pgundo.stmt")}}
COMMENT ON FUNCTION pgundo.refresh_history() IS 'Brings pgundo.row_history (the row-history index) up to date with the log; returns the number of index entries added.';

-- _hist_forget drops index entries of statements with ids below before (for
-- retention: call it with the first statement id kept).
CREATE FUNCTION pgundo._hist_forget(before bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM pgundo.hist_key WHERE stmt_id < before;
    DELETE FROM pgundo.hist_skipped WHERE stmt_id < before;
    DELETE FROM pgundo.hist_stmt WHERE stmt_id < before;
$$;

-- _image_jsonb reads a row image as table rel's row type and returns it as
-- jsonb, for the views (convenient, not exact: json formatting and float -0
-- are lost; the text images are exact). NULL when the image no longer reads
-- as the table's row type.
CREATE FUNCTION pgundo._image_jsonb(rel oid, image text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'
AS $$
DECLARE
    r jsonb;
BEGIN
    IF image IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = rel) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT to_jsonb($1::%s)', rel::regclass) INTO r USING image;
    RETURN r;
EXCEPTION WHEN data_exception OR undefined_column OR undefined_table OR datatype_mismatch
           OR invalid_text_representation OR undefined_object OR wrong_object_type THEN
    RETURN NULL;
END $$;

{{template "changes_view" (dict "create" "CREATE")}}
COMMENT ON VIEW pgundo.changes IS 'Every logged row change with its table and session context. old/new are the exact row images (text form, restorable with ::table); old_data/new_data the same as jsonb, for convenience.';

{{template "row_history_view" (dict "create" "CREATE" "stmt" "pgundo.stmt" "change" "pgundo.change")}}
COMMENT ON VIEW pgundo.row_history IS 'Every change of every row of tables with a primary key, by table and key (the key column''s text form, or ROW(k1, k2)::text). previous_key: the row had that key before this change; next_key: it has that key after it. Covers the log up to the last SELECT pgundo.refresh_history() (pgundo history runs it).';

{{template "sessions_view" (dict "create" "CREATE")}}
COMMENT ON VIEW pgundo.sessions IS 'One row per recorded session (connection): who, from where, when, how many row changes in which tables, and undo links.';

REVOKE ALL ON pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_state, pgundo.hist_mark, pgundo.hist_skipped,
              pgundo.changes, pgundo.row_history, pgundo.sessions FROM PUBLIC;
REVOKE ALL ON FUNCTION pgundo._hist_key_expr(oid, text), pgundo._hist_entries(oid, bigint[]), pgundo._hist_index(oid, bigint[]),
                       pgundo.refresh_history(), pgundo._hist_forget(bigint), pgundo._image_jsonb(oid, text) FROM PUBLIC;
