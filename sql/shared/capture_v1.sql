{{- /*
Shared templates (tern loads every .sql file below sql/ that is not a
migration as templates, for all migrations; this file's text outside the
definitions goes nowhere). What a migration renders must never change once it
is released (sql/migrations_test.go): change a definition here only in ways
that render the same for every migration that places it.

The capture functions of versions 1 to 4: one statement row (pgundo._stmt)
after the change rows, all with pinned output settings. 001 creates them, 004
replaces them with the same bodies and the quiet check (see 004) at the top.
*/ -}}

{{- /* pinned_output: the SET clauses that pin the output settings a row's text form depends on. */ -}}
{{define "pinned_output"}}SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO, YMD' SET intervalstyle = 'postgres'
SET extra_float_digits = 3 SET bytea_output = 'hex' SET lc_monetary = 'C' SET xmloption = 'content' SET timezone = 'UTC'{{end}}

{{- /* quiet_v4: skip a statement that an undo logs itself (version 4). */ -}}
{{define "quiet_v4"}}IF current_setting('pgundo.quiet', true) = 'on' THEN
        IF EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
            RETURN NULL;  -- an undo logs this statement itself
        END IF;
    END IF;{{end}}

{{- /* capture_one_side_v1: capture_insert (name insert, op I, rows pgundo_new, side new) or
capture_delete (delete, D, pgundo_old, old); create: CREATE or CREATE OR REPLACE; quiet: with
quiet_v4. */ -}}
{{define "capture_one_side_v1"}}{{template "capture_head_v1" .}}
{{- if .quiet}}
    {{template "quiet_v4"}}
{{- end}}
    LOCK TABLE ONLY pgundo.change IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    INSERT INTO pgundo.change (stmt_id, {{.side}}) SELECT sid, ROW(r.*)::text FROM {{.rows}} r;
    GET DIAGNOSTICS n = ROW_COUNT;
    {{template "stmt_v1" .op}}
END $$;{{end}}

{{- /* capture_head_v1: a version 1 capture function (capture_NAME) up to BEGIN; create as above. */ -}}
{{define "capture_head_v1"}}{{.create}} FUNCTION pgundo.capture_{{.name}}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
{{template "pinned_output"}}
AS $$
DECLARE
    sid bigint;
    n   bigint;
BEGIN{{end}}

{{- /* stmt_v1: the end of a version 1 capture function, op the statement's op. */ -}}
{{define "stmt_v1"}}IF n > 0 THEN
        PERFORM pgundo._stmt(sid, '{{.}}', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;{{end}}

{{- /* capture_update_v1: capture_update; create and quiet as in capture_one_side_v1 (with quiet,
the rows are counted after the check). */ -}}
{{define "capture_update_v1"}}{{.create}} FUNCTION pgundo.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
{{template "pinned_output"}}
SET work_mem = '128MB'
AS $$
DECLARE
    sid bigint;
{{- if .quiet}}
    n   bigint;
    m   bigint;
BEGIN
    {{template "quiet_v4"}}
    n := (SELECT count(*) FROM pgundo_old);
    m := (SELECT count(*) FROM pgundo_new);
{{- else}}
    n   bigint := (SELECT count(*) FROM pgundo_old);
    m   bigint := (SELECT count(*) FROM pgundo_new);
BEGIN
{{- end}}
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
    {{template "stmt_v1" "U"}}
END $$;{{end}}

{{- /* stmt_function: pgundo._stmt, which writes one statement row (create; stmt: the table). */ -}}
{{define "stmt_function"}}{{.create}} FUNCTION pgundo._stmt(stmt_id bigint, op "char", relid oid, schema_name name, table_name name, nrows bigint)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO {{.stmt}} (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag)
    VALUES (stmt_id, pgundo._session(), pg_current_xact_id(), statement_timestamp(), op, relid, schema_name, table_name, nrows,
            CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role') END,
            current_setting('application_name'), nullif(current_setting('pgundo.tag', true), ''))
$$;{{end}}
