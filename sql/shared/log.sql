{{- /*
Shared templates of the log tables (see shared/capture_v1.sql for how tern
loads them). What a migration renders must never change once it is released.
*/ -}}

{{- /* ensure_chunk: pgundo._ensure_chunk. create: CREATE or CREATE OR REPLACE; q: the body's
dollar quote; parent: the expression naming the partitioned table of t (stmt or change): t up to
version 6, t || '_log' from 7 on; drop_range: drop the range CHECK once the chunk is attached
(version 5 on). */ -}}
{{define "ensure_chunk"}}{{.create}} FUNCTION pgundo._ensure_chunk(k bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {{.q}}
DECLARE
    lo bigint := k * pgundo._chunk_size();
    hi bigint := (k + 1) * pgundo._chunk_size();
    t  text;
    c  text;
BEGIN
    FOREACH t IN ARRAY ARRAY['stmt', 'change'] LOOP
        IF to_regclass(format('pgundo.%I', t || '_c' || k)) IS NOT NULL THEN
            CONTINUE;
        END IF;
        c := CASE t WHEN 'stmt' THEN 'id' ELSE 'stmt_id' END;
        EXECUTE format('CREATE TABLE pgundo.%I (LIKE pgundo.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', t || '_c' || k, {{.parent}});
        EXECUTE format('ALTER TABLE pgundo.%I ADD CONSTRAINT %I CHECK (%I >= %s AND %I < %s)', t || '_c' || k, t || '_c' || k || '_range', c, lo, c, hi);
        EXECUTE format('ALTER TABLE pgundo.%I ATTACH PARTITION pgundo.%I FOR VALUES FROM (%s) TO (%s)', {{.parent}}, t || '_c' || k, lo, hi);
{{- if .drop_range}}
        EXECUTE format('ALTER TABLE pgundo.%I DROP CONSTRAINT %I', t || '_c' || k, t || '_c' || k || '_range');
{{- end}}
        EXECUTE format('REVOKE ALL ON pgundo.%I FROM PUBLIC', t || '_c' || k);
    END LOOP;
END {{.q}};{{end}}

{{- /* fold: pgundo.fold (create: CREATE or CREATE OR REPLACE), version 7's; v12: a reset tag's ''
as the journal holds it from version 12 on becomes NULL in the log tables. */ -}}
{{define "fold"}}{{.create}} FUNCTION pgundo.fold() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pgundo.journal) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pgundo.fold'));
    WITH j AS (DELETE FROM pgundo.journal RETURNING *),
    k AS (SELECT * FROM j WHERE NOT EXISTS (SELECT FROM pgundo.pruned p WHERE p.chunk = j.id / pgundo._chunk_size())),
    s AS (INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag)
          SELECT id, session_id, xid, at, op, relid, schema_name, table_name, 1, role, application_name, {{if .v12}}nullif(tag, ''){{else}}tag{{end}} FROM k)
    INSERT INTO pgundo.change_log (stmt_id, old, new) SELECT id, old, new FROM k;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;{{end}}
