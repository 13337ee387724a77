{{- /*
Shared templates of the console's summaries (see shared/capture_v1.sql for
how tern loads them). What a migration renders must never change once it is
released (sql/migrations_test.go). Parameters: create is CREATE or CREATE OR
REPLACE; sample is set from version 10 on (refresh_summaries records the
log's size, pgundo.sample_size).
*/ -}}

{{- /* refresh_summaries: pgundo.refresh_summaries (create, sample). */ -}}
{{define "refresh_summaries"}}{{.create}} FUNCTION pgundo.refresh_summaries(batch bigint DEFAULT 200000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    st   pgundo.sum_state;
    seqv bigint;
    vx   text[];
    hi   bigint;
    n    bigint;
BEGIN
    -- What is final is read in new snapshots below: under REPEATABLE READ
    -- they would not be new, so nothing is added there.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN 0;
    END IF;
    SELECT * INTO st FROM pgundo.sum_state FOR UPDATE;
    DELETE FROM pgundo.sum_session s USING pgundo.pruned p WHERE s.chunk = p.chunk;
    DELETE FROM pgundo.sum_hour s USING pgundo.pruned p WHERE s.chunk = p.chunk;
    DELETE FROM pgundo.sum_activity s USING pgundo.pruned p WHERE s.chunk = p.chunk;
    -- Every writer holds ROW EXCLUSIVE on change_log or the journal from
    -- before it numbers a statement to its end. So the ids up to a sequence
    -- value are final once the writers listed after reading it have ended:
    -- at once when there were none, else at a later run (the mark).
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO seqv FROM pgundo.stmt_id_seq;
    vx := pgundo._writers();
    IF st.mark IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (st.mark_vxids)) THEN
        st.final_below := greatest(st.final_below, st.mark);
        st.mark := NULL;
    END IF;
    IF cardinality(vx) = 0 THEN
        st.final_below := greatest(st.final_below, seqv);
        st.mark := NULL;
    ELSIF st.mark IS NULL AND seqv > st.final_below THEN
        st.mark := seqv;
        st.mark_vxids := vx;
    END IF;
    n := 0;
    hi := st.done_below;
    IF st.final_below > st.done_below THEN
        -- At most batch statements: up to the batch-th id after done_below.
        SELECT max(b.id), count(*) INTO hi, n
          FROM (SELECT s.id FROM pgundo.stmt s WHERE s.id > st.done_below AND s.id <= st.final_below ORDER BY s.id LIMIT greatest(batch, 1)) b;
        IF n < greatest(batch, 1) THEN
            hi := st.final_below;
        END IF;
        PERFORM pgundo._sum_add(st.done_below, hi);
    END IF;
    UPDATE pgundo.sum_state SET done_below = hi, final_below = st.final_below, mark = st.mark, mark_vxids = st.mark_vxids,
           refreshed = clock_timestamp();
{{- if .sample}}
    -- A sample of the log's size, at most every 10 minutes (version 10).
    PERFORM pgundo.sample_size();
{{- end}}
    RETURN n;
END $$;{{end}}
