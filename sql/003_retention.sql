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
-- tern runs this file through text/template: keep double braces out of it.

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
CREATE FUNCTION pgundo.prune(before timestamptz) RETURNS SETOF pgundo.pruned
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur     bigint;
    k       bigint;
    r       pgundo.pruned;
    cands   pgundo.pruned[] := '{}';
    newest  timestamptz;
    kept    bigint;
BEGIN
    -- The re-check under lock below must see transactions that committed
    -- while prune waited for the lock: only READ COMMITTED does.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgundo.prune must run in a READ COMMITTED transaction, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    PERFORM pgundo.rotate();
    cur := (SELECT last_value FROM pgundo.stmt_id_seq) / pgundo._chunk_size();
    -- First, without locks: the closed chunks old enough, with their counts.
    FOR k IN SELECT substr(c.relname, 7)::bigint
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'pgundo.stmt'::regclass AND c.relname ~ '^stmt_c[0-9]+$'
              ORDER BY 1 LOOP
        EXIT WHEN k >= cur;
        EXECUTE format('SELECT max(at), count(*), coalesce(min(id), %s), coalesce(max(id), %s) FROM pgundo.%I',
                       k * pgundo._chunk_size(), k * pgundo._chunk_size(), 'stmt_c' || k)
           INTO r.newest, r.stmts, r.first_stmt, r.last_stmt;
        -- Chunks follow each other in time: stop at the first that is too new.
        EXIT WHEN r.newest >= before;
        EXECUTE format('SELECT count(*) FROM pgundo.%I', 'change_c' || k) INTO r.changes;
        r.bytes := pg_total_relation_size(format('pgundo.%I', 'stmt_c' || k)::regclass)
                 + pg_total_relation_size(format('pgundo.%I', 'change_c' || k)::regclass);
        r.at := now();
        r.before := before;
        r.chunk := k;
        cands := cands || r;
    END LOOP;
    IF cardinality(cands) = 0 THEN
        RETURN;
    END IF;
    -- Then under lock (writers to tracked tables wait until commit), re-check
    -- and drop: a transaction numbered in a chunk before the rotation may have
    -- committed since.
    LOCK TABLE pgundo.change, pgundo.stmt IN ACCESS EXCLUSIVE MODE;
    FOREACH r IN ARRAY cands LOOP
        k := r.chunk;
        -- max(xid8) exists from PostgreSQL 14 on: go through bigint.
        EXECUTE format('SELECT max(at), max(xid::text::bigint)::text::xid8 FROM pgundo.%I', 'stmt_c' || k) INTO newest, r.max_xid;
        EXIT WHEN newest >= before;
        EXECUTE format('UPDATE pgundo.session SET pruned_at = now() WHERE pruned_at IS NULL AND id IN (SELECT session_id FROM pgundo.%I)', 'stmt_c' || k);
        EXECUTE format('DROP TABLE pgundo.%I, pgundo.%I', 'change_c' || k, 'stmt_c' || k);
        DELETE FROM pgundo.undone WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
        DELETE FROM pgundo.seal_stmt WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
        INSERT INTO pgundo.pruned VALUES (r.*);
        RETURN NEXT r;
    END LOOP;
    -- Sessions with nothing left go, unless still connected (capture
    -- remembers, per connection, that its session row exists); those with
    -- changes left stay marked.
    DELETE FROM pgundo.session s WHERE s.pruned_at IS NOT NULL
       AND NOT EXISTS (SELECT FROM pgundo.stmt st WHERE st.session_id = s.id)
       AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = s.pid);
    kept := (SELECT min(id) FROM pgundo.stmt);
    IF to_regprocedure('pgundo._hist_forget(bigint)') IS NOT NULL THEN
        EXECUTE 'SELECT pgundo._hist_forget($1)' USING coalesce(kept, (SELECT last_value FROM pgundo.stmt_id_seq));
    END IF;
END $$;

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
CREATE FUNCTION pgundo.seal() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    last  pgundo.seal;
    lo    bigint;
    cut   bigint;
    n     bigint := 0;
    total numeric;
    sid   bigint;
    seqv  bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgundo.seal'));
    SELECT * INTO last FROM pgundo.seal ORDER BY id DESC LIMIT 1;
    lo := coalesce(last.to_stmt, 0);
    SELECT max(m.seq_value) INTO cut FROM pgundo.seal_mark m
     WHERE NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (m.vxids));
    IF cut IS NOT NULL AND cut > lo THEN
        sid := coalesce(last.id, 0) + 1;
        INSERT INTO pgundo.seal_stmt (stmt_id, seal_id, digest) SELECT d.stmt_id, sid, d.digest FROM pgundo._stmt_digests(lo, cut) d;
        GET DIAGNOSTICS n = ROW_COUNT;
        SELECT coalesce(sum(s.digest), 0) INTO total FROM pgundo.seal_stmt s WHERE s.seal_id = sid;
        INSERT INTO pgundo.seal (id, from_stmt, to_stmt, stmts, total, prev_hash, hash)
        VALUES (sid, lo, cut, n, total, coalesce(last.hash, ''), pgundo._seal_hash(coalesce(last.hash, ''), lo, cut, n, total));
        DELETE FROM pgundo.seal_mark WHERE seq_value <= cut;
    END IF;
    -- The next cut: read the sequence first, then list the transactions
    -- writing to the log. Capture locks pgundo.change before it numbers a
    -- statement, so every statement numbered up to the value read belongs to
    -- a transaction that has ended or is in that list.
    seqv := (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq);
    INSERT INTO pgundo.seal_mark (seq_value, vxids)
    SELECT seqv, coalesce(array_agg(l.virtualtransaction), '{}')
      FROM pg_locks l
     WHERE l.locktype = 'relation' AND l.relation = 'pgundo.change'::regclass AND l.mode = 'RowExclusiveLock'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    HAVING seqv > coalesce((SELECT max(seq_value) FROM pgundo.seal_mark), lo);
    RETURN n;
END $$;

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
