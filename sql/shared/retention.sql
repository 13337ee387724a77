{{- /*
Shared templates of retention and tamper evidence (see shared/capture_v1.sql
for how tern loads them). What a migration renders must never change once it
is released (sql/migrations_test.go). Parameters as in shared/history.sql;
undo_left is set from version 6 on (prune forgets undo_scope and undo_left
with the statements); size from version 10 on (seal records the log's size at
most every 10 minutes, prune after every drop, and prune forgets samples
older than its cut: pgundo.size_sample).
*/ -}}

{{- /* prune: pgundo.prune (create, stmt, journal, undo_left, size). */ -}}
{{define "prune"}}{{.create}} FUNCTION pgundo.prune(before timestamptz) RETURNS SETOF pgundo.pruned
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
{{- if .journal}}
    PERFORM pgundo.fold();
{{- end}}
    PERFORM pgundo.rotate();
    cur := (SELECT last_value FROM pgundo.stmt_id_seq) / pgundo._chunk_size();
    -- First, without locks: the closed chunks old enough, with their counts.
    FOR k IN SELECT substr(c.relname, 7)::bigint
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = '{{.stmt}}'::regclass AND c.relname ~ '^stmt_c[0-9]+$'
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
{{- if .journal}}
    LOCK TABLE pgundo.change_log, pgundo.stmt_log, pgundo.journal IN ACCESS EXCLUSIVE MODE;
    PERFORM pgundo.fold();
{{- else}}
    LOCK TABLE pgundo.change, pgundo.stmt IN ACCESS EXCLUSIVE MODE;
{{- end}}
    FOREACH r IN ARRAY cands LOOP
        k := r.chunk;
        -- max(xid8) exists from PostgreSQL 14 on: go through bigint.
        EXECUTE format('SELECT max(at), max(xid::text::bigint)::text::xid8 FROM pgundo.%I', 'stmt_c' || k) INTO newest, r.max_xid;
        EXIT WHEN newest >= before;
        EXECUTE format('UPDATE pgundo.session SET pruned_at = now() WHERE pruned_at IS NULL AND id IN (SELECT session_id FROM pgundo.%I)', 'stmt_c' || k);
        EXECUTE format('DROP TABLE pgundo.%I, pgundo.%I', 'change_c' || k, 'stmt_c' || k);
        DELETE FROM pgundo.undone WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
{{- if .undo_left}}
        DELETE FROM pgundo.undo_scope WHERE stmt_id BETWEEN k * pgundo._chunk_size() AND (k + 1) * pgundo._chunk_size() - 1;
{{- end}}
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
{{- if .undo_left}}
    -- Rows an undo left (skipped) go with the last of the statements it
    -- selected: a later undo could only take them with all of those.
    DELETE FROM pgundo.undo_left l
     WHERE NOT EXISTS (SELECT FROM pgundo.undo_scope sc WHERE sc.undo_session = l.undo_session);
{{- end}}
    kept := (SELECT min(id) FROM pgundo.stmt);
    IF to_regprocedure('pgundo._hist_forget(bigint)') IS NOT NULL THEN
        EXECUTE 'SELECT pgundo._hist_forget($1)' USING coalesce(kept, (SELECT last_value FROM pgundo.stmt_id_seq));
    END IF;
{{- if .size}}
    -- The log's size after the drop, whenever the last sample is (the chart
    -- of the status page shows the fall), and the samples older than the cut
    -- go as the log did.
    PERFORM pgundo.sample_size(interval '0');
    DELETE FROM pgundo.size_sample WHERE at < before;
{{- end}}
END $$;{{end}}

{{- /* seal: pgundo.seal (create, journal, size). */ -}}
{{define "seal"}}{{.create}} FUNCTION pgundo.seal() RETURNS bigint
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
{{- if .journal}}
    PERFORM pgundo.fold();
{{- end}}
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
{{- if .journal}}
    -- writing to the log. Capture locks pgundo.change_log or pgundo.journal
    -- before it numbers a statement, so every statement numbered up to the value read belongs to
{{- else}}
    -- writing to the log. Capture locks pgundo.change before it numbers a
    -- statement, so every statement numbered up to the value read belongs to
{{- end}}
    -- a transaction that has ended or is in that list.
    seqv := (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pgundo.stmt_id_seq);
    INSERT INTO pgundo.seal_mark (seq_value, vxids)
{{- if .journal}}
    SELECT seqv, pgundo._writers()
     WHERE seqv > coalesce((SELECT max(seq_value) FROM pgundo.seal_mark), lo);
{{- else}}
    SELECT seqv, coalesce(array_agg(l.virtualtransaction), '{}')
      FROM pg_locks l
     WHERE l.locktype = 'relation' AND l.relation = 'pgundo.change'::regclass AND l.mode = 'RowExclusiveLock'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    HAVING seqv > coalesce((SELECT max(seq_value) FROM pgundo.seal_mark), lo);
{{- end}}
{{- if .size}}
    -- A sample of the log's size, at most every 10 minutes (a cron'd seal
    -- records the size history without a console).
    PERFORM pgundo.sample_size();
{{- end}}
    RETURN n;
END $$;{{end}}
