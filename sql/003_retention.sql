-- pgundo retention and tamper evidence, version 3.
--
-- Retention: pgundo.prune(before) drops whole log chunks (see pgundo.rotate
-- in 001) whose newest statement is older than before. Sessions that lose
-- some of their changes are marked (session.pruned_at): undo refuses them.
--
-- Tamper evidence: pgundo.seal() hashes, off the capture path, every
-- statement logged since the last seal, with its session and all its change
-- rows, into a per-statement digest (seal_stmt) and chains the seals with
-- SHA-256. pgundo.verify() recomputes everything and lists each statement
-- whose log rows were edited, deleted or inserted since they were sealed.
-- Capture never waits for a seal: a seal covers only statements whose
-- transactions have all ended (marks, as in hist_mark).
--
-- tern runs this file through text/template: what another version writes
-- again is a template in shared/, placed with a template action; keep other
-- double braces out of it.

CREATE TABLE pgundo.pruned (
    at         timestamptz NOT NULL DEFAULT now(),
    before     timestamptz NOT NULL,
    chunk      bigint NOT NULL,
    first_stmt bigint NOT NULL,
    last_stmt  bigint NOT NULL,
    stmts      bigint NOT NULL,
    changes    bigint NOT NULL,
    bytes      bigint NOT NULL,
    newest     timestamptz,
    max_xid    xid8         -- the newest transaction with a statement in the chunk
);
COMMENT ON TABLE pgundo.pruned IS 'Log chunks removed by pgundo prune: statement id range, counts, and the newest statement time they held.';

-- prune rotates the log (so everything logged so far is in closed chunks),
-- then drops, oldest first, every closed chunk whose newest statement is
-- older than before, and returns what it dropped. The log tables are locked
-- for the duration (writers to tracked tables wait; the work is a few
-- catalog operations and one index scan per chunk).
{{template "prune" (dict "create" "CREATE" "stmt" "pgundo.stmt")}}

CREATE TABLE pgundo.seal (
    id        bigint PRIMARY KEY,
    from_stmt bigint NOT NULL,  -- exclusive
    to_stmt   bigint NOT NULL,  -- inclusive
    stmts     bigint NOT NULL,
    total     numeric NOT NULL, -- sum of the statements' digests
    prev_hash text NOT NULL,
    hash      text NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgundo.seal IS 'Seals: hash = sha256(prev_hash|from_stmt|to_stmt|stmts|total), chained; record the newest hash outside the database to detect a rewrite of the whole chain.';

CREATE TABLE pgundo.seal_stmt (
    stmt_id bigint PRIMARY KEY,
    seal_id bigint NOT NULL,
    digest  bigint NOT NULL
);
COMMENT ON TABLE pgundo.seal_stmt IS 'Digest of each sealed statement: its stmt row, its session row, and all its change rows.';

CREATE TABLE pgundo.seal_mark (
    seq_value bigint NOT NULL,
    vxids     text[] NOT NULL
);
COMMENT ON TABLE pgundo.seal_mark IS 'Candidate seal cuts: every statement numbered up to seq_value belongs to a finished transaction or to one of these (virtual transaction ids holding ROW EXCLUSIVE on pgundo.change when the mark was made).';

-- _stmt_digests returns the digest of every statement with lo < id <= hi:
-- 64 bits of md5 over its stmt row, its session row, and the count and the
-- sum of 64-bit hashes of its change rows (order-independent: the rows of
-- one statement have no order). Output settings are pinned.
CREATE FUNCTION pgundo._stmt_digests(lo bigint, hi bigint) RETURNS TABLE (stmt_id bigint, digest bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' SET extra_float_digits = 3
AS $$
    SELECT st.id,
           ('x' || left(md5(concat_ws('|', st.id, st.session_id, st.xid, st.at, st.op, st.relid, st.schema_name, st.table_name,
                                      st.rows, st.role, st.application_name, st.tag,
                                      se.id, se.pid, se.backend_start, se.session_role, se.client_addr, se.client_port, se.application_name,
                                      coalesce(c.n, 0), coalesce(c.h, 0))), 16))::bit(64)::bigint
      FROM pgundo.stmt st
      LEFT JOIN pgundo.session se ON se.id = st.session_id
      LEFT JOIN (SELECT ch.stmt_id, count(*) AS n,
                        sum(hashtextextended(coalesce(ch.old, E'\\N'), ch.stmt_id) # hashtextextended(coalesce(ch.new, E'\\N'), -ch.stmt_id)) AS h
                   FROM pgundo.change ch WHERE ch.stmt_id > lo AND ch.stmt_id <= hi GROUP BY ch.stmt_id) c ON c.stmt_id = st.id
     WHERE st.id > lo AND st.id <= hi
$$;

CREATE FUNCTION pgundo._seal_hash(prev text, lo bigint, hi bigint, n bigint, total numeric) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', prev, lo, hi, n, total), 'UTF8')), 'hex')
$$;

-- seal seals the statements up to the newest mark whose listed transactions
-- have all ended, then leaves a mark for the next call. Returns the number of
-- statements sealed. Sealers are serialized by an advisory lock; capture is
-- never blocked.
{{template "seal" (dict "create" "CREATE")}}

-- verify recomputes the seals and every sealed statement's digest and
-- returns each problem, in statement order: 'edited' (its rows differ from
-- what was sealed), 'deleted' (sealed, now missing, not pruned), 'inserted'
-- (log rows in a sealed range that were not sealed), or 'seal' (a seal's
-- hash or chain does not match; stmt_id is the seal's last statement).
CREATE FUNCTION pgundo.verify() RETURNS TABLE (stmt_id bigint, problem text, detail text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    hi bigint := coalesce((SELECT max(to_stmt) FROM pgundo.seal), 0);
BEGIN
    RETURN QUERY
    WITH seals AS (
        SELECT s.*, lag(s.hash) OVER (ORDER BY s.id) AS chain_prev, lag(s.id) OVER (ORDER BY s.id) AS prev_id,
               (SELECT count(*) FROM pgundo.seal_stmt ss WHERE ss.seal_id = s.id) AS n_now,
               (SELECT coalesce(sum(ss.digest), 0) FROM pgundo.seal_stmt ss WHERE ss.seal_id = s.id) AS total_now,
               EXISTS (SELECT FROM pgundo.pruned p
                        WHERE (p.chunk + 1) * pgundo._chunk_size() > s.from_stmt + 1 AND p.chunk * pgundo._chunk_size() <= s.to_stmt) AS pruned
          FROM pgundo.seal s)
    SELECT s.to_stmt, 'seal'::text, format('seal %s (statements %s to %s): %s', s.id, s.from_stmt + 1, s.to_stmt,
               CASE WHEN s.hash <> pgundo._seal_hash(s.prev_hash, s.from_stmt, s.to_stmt, s.stmts, s.total) THEN 'its hash does not match its contents'
                    WHEN s.prev_id IS NOT NULL AND s.prev_hash <> s.chain_prev THEN 'it does not chain to seal ' || s.prev_id
                    ELSE 'its statement digests were changed' END)
      FROM seals s
     WHERE s.hash <> pgundo._seal_hash(s.prev_hash, s.from_stmt, s.to_stmt, s.stmts, s.total)
        OR (s.prev_id IS NOT NULL AND s.prev_hash <> s.chain_prev)
        OR (NOT s.pruned AND (s.n_now <> s.stmts OR s.total_now <> s.total))
    UNION ALL
    SELECT coalesce(d.stmt_id, ss.stmt_id),
           CASE WHEN ss.stmt_id IS NULL THEN 'inserted' WHEN d.stmt_id IS NULL THEN 'deleted' ELSE 'edited' END,
           CASE WHEN ss.stmt_id IS NULL THEN 'statement in a sealed range that was not sealed'
                WHEN d.stmt_id IS NULL THEN 'sealed statement missing from the log'
                ELSE 'statement, session or change rows differ from what was sealed' END
      FROM (SELECT * FROM pgundo._stmt_digests(0, hi)) d
      FULL JOIN (SELECT * FROM pgundo.seal_stmt) ss ON ss.stmt_id = d.stmt_id
     WHERE ss.stmt_id IS NULL OR d.stmt_id IS NULL OR ss.digest <> d.digest
    UNION ALL
    SELECT DISTINCT c.stmt_id, 'inserted', 'change rows of a statement that is not in the log'
      FROM pgundo.change c
     WHERE c.stmt_id <= hi AND NOT EXISTS (SELECT FROM pgundo.stmt st WHERE st.id = c.stmt_id)
       AND NOT EXISTS (SELECT FROM pgundo.seal_stmt ss WHERE ss.stmt_id = c.stmt_id)
     ORDER BY 1, 2;
END $$;

REVOKE ALL ON pgundo.pruned, pgundo.seal, pgundo.seal_stmt, pgundo.seal_mark FROM PUBLIC;
REVOKE ALL ON FUNCTION pgundo.prune(timestamptz), pgundo._stmt_digests(bigint, bigint), pgundo._seal_hash(text, bigint, bigint, bigint, numeric),
                       pgundo.seal(), pgundo.verify() FROM PUBLIC;
