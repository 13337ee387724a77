-- Summaries of the statement log for the console, version 9.
--
-- The sessions list, its filters and the activity chart totalled every
-- statement of the sessions (or of the time range) they showed, on every
-- request: a second and more on a log of 4M statements. Summaries kept at
-- capture time would add work to every tracked write, so, as the row-history
-- index (002), they are built on the read side: pgundo.refresh_summaries()
-- adds the statements logged since its last run, in id order, to
--
--   * sum_session: per session and log chunk, its counts, time span, first
--     and last statement (id, xid, application), tables, roles and tags;
--   * sum_hour: per chunk, UTC hour, session, table, role, application and
--     tag, the row changes (the sessions filters: a session matches when one
--     of its statements matches every filter);
--   * sum_activity: per chunk, UTC hour, table and application, the row
--     changes (the activity chart).
--
-- Readers add the statements above sum_state.done_below from pgundo.stmt (the
-- log and the journal) to the summaries, so a page reads the same numbers as
-- from the log alone, however far behind the summaries are; the console
-- refreshes them in the background. A watermark on ids alone could pass over
-- a transaction still in progress (ids are handed out before commit), so
-- done_below only advances to a sequence value read when no transaction was
-- writing the log, or to one read while some were and all of those have
-- ended since (sum_state.mark), as pgundo.seal does. Rows are kept per chunk: a pruned chunk's rows
-- are left out by readers (pgundo.pruned) and deleted by the next refresh.
-- Transactions are counted per session as runs of equal xids in id order (a
-- connection runs one transaction at a time), so a transaction split between
-- two refreshes or two chunks is counted once.
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

-- One row: the watermark, and what refresh_summaries knows of the ids
-- above it.
CREATE TABLE pgundo.sum_state (
    done_below  bigint NOT NULL DEFAULT 0,
    final_below bigint NOT NULL DEFAULT 0,  -- every id up to it belongs to a finished transaction
    mark        bigint,                     -- a sequence value read while ...
    mark_vxids  text[],                     -- ... these transactions wrote the log: final once they ended
    refreshed   timestamptz
);
CREATE UNIQUE INDEX sum_state_one_idx ON pgundo.sum_state ((true));
INSERT INTO pgundo.sum_state DEFAULT VALUES;
COMMENT ON TABLE pgundo.sum_state IS 'Every statement with id <= done_below is counted in the summaries (sum_session, sum_hour, sum_activity), or belongs to a transaction that rolled back.';

CREATE TABLE pgundo.sum_session (
    session_id text NOT NULL,
    chunk      bigint NOT NULL,
    stmts      bigint NOT NULL,
    changes    bigint NOT NULL,
    xacts      bigint NOT NULL,   -- runs of equal xids in id order
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    first_id   bigint NOT NULL,
    first_xid  xid8 NOT NULL,
    last_id    bigint NOT NULL,
    last_xid   xid8 NOT NULL,
    last_app   text,              -- application_name of the last statement
    tables     text[] NOT NULL,   -- quote_ident(schema) || '.' || quote_ident(table)
    roles      name[] NOT NULL,
    tags       text[] NOT NULL,
    PRIMARY KEY (session_id, chunk)
);
COMMENT ON TABLE pgundo.sum_session IS 'Per session and log chunk, its statements up to sum_state.done_below, summarized (pgundo.refresh_summaries()).';

CREATE TABLE pgundo.sum_hour (
    chunk            bigint NOT NULL,
    hour             timestamptz NOT NULL,
    session_id       text NOT NULL,
    relid            oid NOT NULL,
    role             name NOT NULL,
    application_name text,
    tag              text,
    changes          bigint NOT NULL
);
-- The filters: by time, and by application, tag or table (and time) with
-- the session and chunk in the index, read without the table (the bench
-- log's 277,602 rows: 24,000 of one application in 20 ms instead of 400).
CREATE INDEX sum_hour_hour_idx ON pgundo.sum_hour (hour);
CREATE INDEX sum_hour_app_idx ON pgundo.sum_hour (application_name, hour) INCLUDE (session_id, chunk);
CREATE INDEX sum_hour_tag_idx ON pgundo.sum_hour (tag, hour) INCLUDE (session_id, chunk);
CREATE INDEX sum_hour_table_idx ON pgundo.sum_hour (relid, hour) INCLUDE (session_id, chunk);
COMMENT ON TABLE pgundo.sum_hour IS 'Per log chunk, UTC hour, session, table, role, application and tag, the row changes up to sum_state.done_below (pgundo.refresh_summaries()).';

CREATE TABLE pgundo.sum_activity (
    chunk            bigint NOT NULL,
    hour             timestamptz NOT NULL,
    schema_name      name NOT NULL,
    table_name       name NOT NULL,
    application_name text,
    changes          bigint NOT NULL
);
CREATE INDEX sum_activity_hour_idx ON pgundo.sum_activity (hour);
COMMENT ON TABLE pgundo.sum_activity IS 'Per log chunk, UTC hour, table and application, the row changes up to sum_state.done_below (pgundo.refresh_summaries()).';

-- _sum_add adds the statements with ids in (lo, hi] to the summaries.
CREATE FUNCTION pgundo._sum_add(lo bigint, hi bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO pgundo.sum_session AS t
    SELECT b.session_id, b.chunk, count(*), sum(b.rows), count(DISTINCT b.xid), min(b.at), max(b.at),
           min(b.id), (array_agg(b.xid ORDER BY b.id))[1], max(b.id), (array_agg(b.xid ORDER BY b.id DESC))[1],
           (array_agg(b.application_name ORDER BY b.id DESC))[1],
           array_agg(DISTINCT quote_ident(b.schema_name) || '.' || quote_ident(b.table_name)),
           array_agg(DISTINCT b.role),
           coalesce(array_agg(DISTINCT b.tag) FILTER (WHERE b.tag IS NOT NULL), '{}')
      FROM (SELECT st.*, st.id / pgundo._chunk_size() AS chunk FROM pgundo.stmt st WHERE st.id > lo AND st.id <= hi) b
     GROUP BY b.session_id, b.chunk
    ON CONFLICT (session_id, chunk) DO UPDATE SET
           stmts = t.stmts + excluded.stmts,
           changes = t.changes + excluded.changes,
           xacts = t.xacts + excluded.xacts - CASE WHEN t.last_xid = excluded.first_xid THEN 1 ELSE 0 END,
           first_at = least(t.first_at, excluded.first_at),
           last_at = greatest(t.last_at, excluded.last_at),
           last_id = excluded.last_id,
           last_xid = excluded.last_xid,
           last_app = excluded.last_app,
           tables = ARRAY(SELECT DISTINCT u FROM unnest(t.tables || excluded.tables) u ORDER BY 1),
           roles = ARRAY(SELECT DISTINCT u FROM unnest(t.roles || excluded.roles) u ORDER BY 1),
           tags = ARRAY(SELECT DISTINCT u FROM unnest(t.tags || excluded.tags) u ORDER BY 1);

    -- The groups the new statements fall in are taken out and put back with
    -- the new statements added.
    WITH b AS (
        SELECT st.id / pgundo._chunk_size() AS chunk, date_trunc('hour', st.at, 'UTC') AS hour, st.session_id, st.relid,
               st.role, st.application_name, st.tag, sum(st.rows) AS changes
          FROM pgundo.stmt st WHERE st.id > lo AND st.id <= hi
         GROUP BY 1, 2, 3, 4, 5, 6, 7),
    o AS (
        DELETE FROM pgundo.sum_hour h USING b
         WHERE h.hour = b.hour AND h.chunk = b.chunk AND h.session_id = b.session_id AND h.relid = b.relid AND h.role = b.role
           AND h.application_name IS NOT DISTINCT FROM b.application_name AND h.tag IS NOT DISTINCT FROM b.tag
        RETURNING h.chunk, h.hour, h.session_id, h.relid, h.role, h.application_name, h.tag, h.changes)
    INSERT INTO pgundo.sum_hour (chunk, hour, session_id, relid, role, application_name, tag, changes)
    SELECT chunk, hour, session_id, relid, role, application_name, tag, sum(changes)
      FROM (SELECT * FROM b UNION ALL SELECT * FROM o) x
     GROUP BY 1, 2, 3, 4, 5, 6, 7;

    WITH b AS (
        SELECT st.id / pgundo._chunk_size() AS chunk, date_trunc('hour', st.at, 'UTC') AS hour, st.schema_name, st.table_name,
               st.application_name, sum(st.rows) AS changes
          FROM pgundo.stmt st WHERE st.id > lo AND st.id <= hi
         GROUP BY 1, 2, 3, 4, 5),
    o AS (
        DELETE FROM pgundo.sum_activity a USING b
         WHERE a.hour = b.hour AND a.chunk = b.chunk AND a.schema_name = b.schema_name AND a.table_name = b.table_name
           AND a.application_name IS NOT DISTINCT FROM b.application_name
        RETURNING a.chunk, a.hour, a.schema_name, a.table_name, a.application_name, a.changes)
    INSERT INTO pgundo.sum_activity (chunk, hour, schema_name, table_name, application_name, changes)
    SELECT chunk, hour, schema_name, table_name, application_name, sum(changes)
      FROM (SELECT * FROM b UNION ALL SELECT * FROM o) x
     GROUP BY 1, 2, 3, 4, 5;
END $$;

-- refresh_summaries adds at most batch statements (in id order) to the
-- summaries, up to the newest id known to belong to a finished transaction,
-- and returns how many it added (0: up to date, as far as it can be).
-- Serialized by the row lock on sum_state. Run it again until it returns 0
-- to catch up on a big log.
{{template "refresh_summaries" (dict "create" "CREATE")}}
COMMENT ON FUNCTION pgundo.refresh_summaries(bigint) IS 'Adds up to batch statements logged since its last run to the console''s summaries (sum_session, sum_hour, sum_activity); returns how many (0: up to date).';

REVOKE ALL ON pgundo.sum_state, pgundo.sum_session, pgundo.sum_hour, pgundo.sum_activity FROM PUBLIC;
REVOKE ALL ON FUNCTION pgundo._sum_add(bigint, bigint), pgundo.refresh_summaries(bigint) FROM PUBLIC;
