-- The log's size over time, and the sessions list for auditors, version 10.
--
-- Size samples. The status page showed the log's size now only; nothing
-- recorded it before. pgundo.size_sample holds measurements: the on-disk
-- size of the log (what the status page shows as its size: the log tables,
-- the journal and the sessions, with indexes and TOAST) and, beside it, the
-- planner's estimate of its row changes (labelled an estimate wherever it is
-- shown). pgundo.sample_size() adds one at most every 10 minutes; the
-- console's background refresh (refresh_summaries) and pgundo.seal (a cron'd
-- pgundo verify or seal) call it, so the history is recorded with or
-- without a console. prune records one after every drop, whenever the last
-- was (its fall shows at once), and forgets the samples older than its cut.
-- Capture never samples: a sample is catalog reads (pg_total_relation_size
-- of every chunk) and one small row, outside the writers' transactions.
--
-- Session totals for auditors. An auditor may read views only; the view
-- pgundo.sessions totals the whole log on every read (43 s for the sessions
-- page on the bench's 10M-entry log). pgundo.session_totals lists the same
-- sessions with the same totals that pgundo sessions and the console show
-- the installing role (history.Sessions): the summaries (sum_session) up to
-- their watermark, plus the statements above it from the log, read in one
-- snapshot, so they are exact however far behind the summaries are (only
-- slower). pgundo.statements is the statement log (the statements of
-- pgundo.changes, one row each, with their row counts), so that a session's
-- page reads its counts and one page of its changes, not all of them (and
-- pgundo.changes' stmt_id is now the change row's, for its index). Roles
-- already granted pgundo grant auditor (SELECT on pgundo.sessions) get
-- SELECT on both, and EXECUTE on pgundo.refresh_summaries() (as on
-- refresh_history(): it only adds what is derived from the log), so that
-- an auditor's console keeps the summaries current itself.
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

CREATE TABLE pgundo.size_sample (
    at          timestamptz PRIMARY KEY,
    log_bytes   bigint NOT NULL,
    change_rows bigint NOT NULL
);
COMMENT ON TABLE pgundo.size_sample IS 'The log''s on-disk size (log tables, journal and sessions, with indexes and TOAST) measured at at; change_rows is the planner''s estimate of its row changes then, not a count. Added by pgundo.sample_size() at most every 10 minutes (refresh_summaries, seal) and after every prune.';

-- sample_size records the log's size now unless a sample newer than every
-- exists (default 10 minutes; interval '0' records one in any case), and
-- returns whether it did. A caller that finds another sampling skips.
CREATE FUNCTION pgundo.sample_size(every interval DEFAULT interval '10 minutes') RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('pgundo.size_sample')) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM pgundo.size_sample s WHERE s.at > clock_timestamp() - every) THEN
        RETURN false;
    END IF;
    INSERT INTO pgundo.size_sample (at, log_bytes, change_rows)
    VALUES (clock_timestamp(), pgundo._log_bytes() + pg_total_relation_size('pgundo.session'), pgundo._change_rows())
    ON CONFLICT (at) DO NOTHING;
    RETURN true;
END $$;
COMMENT ON FUNCTION pgundo.sample_size(interval) IS 'Records the log''s size in pgundo.size_sample unless a sample newer than every (default 10 minutes) exists; returns whether it did.';

{{template "refresh_summaries" (dict "create" "CREATE OR REPLACE" "sample" true)}}
{{template "seal" (dict "create" "CREATE OR REPLACE" "journal" true "size" true)}}
{{template "prune" (dict "create" "CREATE OR REPLACE" "stmt" "pgundo.stmt_log" "journal" true "undo_left" true "size" true)}}

REVOKE ALL ON pgundo.size_sample FROM PUBLIC;
REVOKE ALL ON FUNCTION pgundo.sample_size(interval) FROM PUBLIC;

-- The first sample: the size at install or upgrade.
SELECT pgundo.sample_size();

-- One row per session with logged statements, as history.Sessions lists it
-- (its summarized query, sessionsSummarized, for every session): parts are
-- a session's summaries per chunk and its statements above the watermark;
-- its transactions are its runs of equal xids in id order, a run going on
-- from one part into the next counted once. A filter on id reaches the
-- summaries' and the log's session indexes; a list ordered by
-- last_change_at with a LIMIT computes the undo columns and arrays for the
-- listed rows only. Only built-in functions: a view's reader needs EXECUTE
-- on the functions it calls, and an auditor has none of pgundo's. A session
-- has undone statements only if pgundo.undo names it (an undo records both
-- in one transaction): only then are its statements counted against
-- pgundo.undone.
CREATE VIEW pgundo.session_totals AS
SELECT s.id,
       coalesce(a.last_app, '') AS application_name,
       s.session_role AS login_user,
       ARRAY(SELECT DISTINCT e.r::name COLLATE "C" FROM jsonb_array_elements(a.roles) x, jsonb_array_elements_text(x) e (r)
              WHERE e.r::name <> s.session_role ORDER BY 1) AS roles,
       s.backend_start,
       a.first_at AS first_change_at,
       a.last_at AS last_change_at,
       s.client_addr,
       s.client_port,
       s.pid,
       a.stmts AS statements,
       a.changes,
       a.xacts AS transactions,
       ARRAY(SELECT DISTINCT e.t FROM jsonb_array_elements(a.tables) x, jsonb_array_elements_text(x) e (t) ORDER BY 1) AS tables,
       ARRAY(SELECT DISTINCT e.t FROM jsonb_array_elements(a.tags) x, jsonb_array_elements_text(x) e (t) ORDER BY 1) AS tags,
       (SELECT u.undone_session FROM pgundo.undo u WHERE u.undo_session = s.id ORDER BY u.undone_session LIMIT 1) AS undo_of,
       (SELECT u.undo_session FROM pgundo.undo u WHERE u.undone_session = s.id ORDER BY u.at, u.undo_session LIMIT 1) AS undone_by,
       (SELECT coalesce(array_agg(u.undo_session ORDER BY u.at, u.undo_session), '{}') FROM pgundo.undo u WHERE u.undone_session = s.id) AS undone_by_all,
       CASE WHEN EXISTS (SELECT FROM pgundo.undo u WHERE u.undone_session = s.id) THEN
       (SELECT CASE
                 WHEN count(*) = 0 THEN NULL
                 WHEN count(*) = a.stmts
                      AND NOT EXISTS (SELECT FROM pgundo.undo_scope sc JOIN pgundo.undo_left l ON l.undo_session = sc.undo_session AND l.done_by IS NULL
                                       JOIN pgundo.stmt x ON x.id = sc.stmt_id WHERE x.session_id = s.id) THEN 'undone'
                 ELSE 'partly undone' END
          FROM pgundo.undone d JOIN pgundo.stmt x ON x.id = d.stmt_id WHERE x.session_id = s.id) END AS undo_state
  FROM pgundo.session s
  JOIN (SELECT p.session_id,
               (array_agg(p.last_app ORDER BY p.last_id DESC))[1] AS last_app,
               min(p.first_at) AS first_at,
               max(p.last_at) AS last_at,
               sum(p.stmts)::bigint AS stmts,
               sum(p.changes)::bigint AS changes,
               (sum(p.xacts) - sum(p.joined))::bigint AS xacts,
               jsonb_agg(to_jsonb(p.roles)) AS roles,
               jsonb_agg(to_jsonb(p.tables)) AS tables,
               jsonb_agg(to_jsonb(p.tags)) AS tags
          FROM (SELECT q.*, CASE WHEN lag(q.last_xid) OVER (PARTITION BY q.session_id ORDER BY q.first_id) = q.first_xid THEN 1 ELSE 0 END AS joined
                  FROM (SELECT x.session_id, x.stmts, x.changes, x.xacts, x.first_at, x.last_at, x.first_id, x.first_xid, x.last_id, x.last_xid,
                               x.last_app, x.tables, x.roles, x.tags
                          FROM pgundo.sum_session x
                         WHERE NOT EXISTS (SELECT FROM pgundo.pruned pr WHERE pr.chunk = x.chunk)
                        UNION ALL
                        -- The first and last statement's xid and application
                        -- from one sort of the session's statements (the same
                        -- in every row of it), not an ordered aggregate each.
                        SELECT b.session_id, count(*), sum(b.rows), count(DISTINCT b.xid), min(b.at), max(b.at),
                               min(b.id), (array_agg(b.first_xid))[1], max(b.id), (array_agg(b.last_xid))[1], (array_agg(b.last_app))[1],
                               array_agg(DISTINCT quote_ident(b.schema_name) || '.' || quote_ident(b.table_name)),
                               array_agg(DISTINCT b.role),
                               coalesce(array_agg(DISTINCT b.tag) FILTER (WHERE b.tag IS NOT NULL), '{}')
                          FROM (SELECT st.*, first_value(st.xid) OVER w AS first_xid, last_value(st.xid) OVER w AS last_xid,
                                       last_value(st.application_name) OVER w AS last_app
                                  FROM pgundo.stmt st
                                 WHERE st.id > (SELECT w.done_below FROM pgundo.sum_state w)
                                WINDOW w AS (PARTITION BY st.session_id ORDER BY st.id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) b
                         GROUP BY b.session_id) q) p
         GROUP BY p.session_id) a ON a.session_id = s.id;
COMMENT ON VIEW pgundo.session_totals IS 'One row per session with logged statements, with the totals pgundo sessions shows: from the console''s summaries up to their watermark and the log above it (exact at any state of the summaries). Fast ordered by last_change_at with a LIMIT, or for one id.';

-- One row per statement, as pgundo.changes shows its changes: an auditor
-- pages through a session's changes by statement (and counts them per
-- table) without reading all of them.
CREATE VIEW pgundo.statements AS
SELECT st.id AS stmt_id,
       st.session_id,
       st.xid,
       st.at,
       CASE st.op WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' WHEN 'D' THEN 'DELETE' WHEN 'T' THEN 'TRUNCATE' END AS op,
       st.schema_name,
       st.table_name,
       st.relid,
       st.rows,
       st.role,
       st.application_name,
       st.tag
  FROM pgundo.stmt st;
COMMENT ON VIEW pgundo.statements IS 'One row per logged statement and table: its session, transaction, time, operation, table, the rows it changed (its rows in pgundo.changes), role, application and tag.';

REVOKE ALL ON pgundo.session_totals, pgundo.statements FROM PUBLIC;

-- pgundo.changes as before, but its stmt_id is the change row's (equal to
-- the statement's, by the join): a condition on it (stmt_id BETWEEN lo AND
-- hi) now reaches pgundo.change's BRIN index, so one page of a session's
-- changes is one range scan, where a lookup per statement read six block
-- ranges each on the bench log (0.5 s a page). Orderings by stmt_id are the
-- same to the planner either way (the join makes them equal).
{{template "changes_view" (dict "create" "CREATE OR REPLACE" "change_id" true)}}

-- Roles granted pgundo grant auditor before this version read the new views
-- too, and may refresh the summaries.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole
               FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
              WHERE c.oid = 'pgundo.sessions'::regclass AND a.privilege_type = 'SELECT'
                AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT SELECT ON pgundo.session_totals, pgundo.statements TO %s', r);
        EXECUTE format('GRANT EXECUTE ON FUNCTION pgundo.refresh_summaries(bigint) TO %s', r);
    END LOOP;
END $$;
