{{- /*
Shared templates of tracking: what track and the DDL event triggers run to put capture on a table.
*/ -}}

{{- /* attach: pgundo._attach, which puts the capture triggers on one table (ENABLE ALWAYS, so
they also fire under session_replication_role = replica); idempotent. create: CREATE or CREATE OR
REPLACE; args (version 11): the UPDATE, INSERT and DELETE triggers get the output settings the
table's rows depend on as arguments (pgundo._capture_args). */ -}}
{{define "attach"}}{{.create}} FUNCTION pgundo._attach(rel regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
{{- if .args}}
DECLARE
    a text := pgundo._capture_args(rel);
{{- end}}
BEGIN
    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = rel AND tgname = 'pgundo_capture_insert') THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER pgundo_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgundo_new FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_insert({{if .args}}%s{{end}})', rel{{if .args}}, a{{end}});
    EXECUTE format('CREATE TRIGGER pgundo_capture_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgundo_old NEW TABLE AS pgundo_new FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_update({{if .args}}%s{{end}})', rel{{if .args}}, a{{end}});
    EXECUTE format('CREATE TRIGGER pgundo_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgundo_old FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_delete({{if .args}}%s{{end}})', rel{{if .args}}, a{{end}});
    EXECUTE format('CREATE TRIGGER pgundo_capture_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_truncate()', rel);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgundo_capture_insert, '
                   'ENABLE ALWAYS TRIGGER pgundo_capture_update, ENABLE ALWAYS TRIGGER pgundo_capture_delete, '
                   'ENABLE ALWAYS TRIGGER pgundo_capture_truncate', rel);
END $$;{{end}}

{{- /* output_class, capture_args, reclass: pgundo._output_class, _capture_args and _reclass
(version 11, see 011; create: CREATE or CREATE OR REPLACE). six (version 12): the class 'six' for
the types whose text form depends on pgundo's six output settings and nothing else (floats, bytea,
money, xml, geometric types), six arguments; NULL is then left for what may depend on anything,
search_path included (reg* types, composites, types pgundo does not know), no arguments. five
(version 13): money alone keeps 'six'; floats, bytea, xml and geometric types are 'five' (five
arguments: lc_monetary is not read for their tables). local (version 14): tables whose date and
time columns are all of types that print the same whatever TimeZone (date, time, timetz, timestamp,
interval; timestamptz alone does not) are 'local', two arguments (DateStyle, IntervalStyle). */ -}}
{{define "output_class"}}{{.create}} FUNCTION pgundo._output_class(rel regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH RECURSIVE t (typ) AS (
        SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT u.typ
          FROM t JOIN pg_type y ON y.oid = t.typ
         CROSS JOIN LATERAL (SELECT y.typbasetype WHERE y.typtype = 'd'
                             UNION ALL SELECT y.typelem WHERE y.typcategory = 'A' AND y.typelem <> 0
                             UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE y.typtype = 'r' AND r.rngtypid = y.oid) u (typ)
    ), leaf AS (
        SELECT CASE WHEN y.typtype = 'e' THEN 'none'
                    WHEN y.oid IN ('bool'::regtype, 'int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype,
                                   'oid'::regtype, 'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'name'::regtype,
                                   '"char"'::regtype, 'uuid'::regtype, 'json'::regtype, 'jsonb'::regtype, 'inet'::regtype,
                                   'cidr'::regtype, 'macaddr'::regtype, 'macaddr8'::regtype, 'bit'::regtype, 'varbit'::regtype,
                                   'tsvector'::regtype, 'tsquery'::regtype) THEN 'none'
{{- if .local}}
                    WHEN y.oid = 'timestamptz'::regtype THEN 'time'
                    WHEN y.oid IN ('date'::regtype, 'time'::regtype, 'timetz'::regtype, 'timestamp'::regtype,
                                   'interval'::regtype) THEN 'local'{{else}}
                    WHEN y.oid IN ('date'::regtype, 'time'::regtype, 'timetz'::regtype, 'timestamp'::regtype,
                                   'timestamptz'::regtype, 'interval'::regtype) THEN 'time'{{end}}{{if .six}}
{{- if .five}}
                    WHEN y.oid = 'money'::regtype THEN 'six'
                    WHEN y.oid IN ('float4'::regtype, 'float8'::regtype, 'bytea'::regtype, 'xml'::regtype,
                                   'point'::regtype, 'line'::regtype, 'lseg'::regtype, 'box'::regtype, 'path'::regtype,
                                   'polygon'::regtype, 'circle'::regtype) THEN 'five'{{else}}
                    WHEN y.oid IN ('float4'::regtype, 'float8'::regtype, 'bytea'::regtype, 'money'::regtype, 'xml'::regtype,
                                   'point'::regtype, 'line'::regtype, 'lseg'::regtype, 'box'::regtype, 'path'::regtype,
                                   'polygon'::regtype, 'circle'::regtype) THEN 'six'{{end}}{{end}}
               END AS class
          FROM t JOIN pg_type y ON y.oid = t.typ
         WHERE y.typtype NOT IN ('d', 'r') AND NOT (y.typcategory = 'A' AND y.typelem <> 0)
    )
    SELECT CASE WHEN bool_or(class IS NULL) THEN NULL{{if .six}} WHEN bool_or(class = 'six') THEN 'six'{{end}}{{if .five}} WHEN bool_or(class = 'five') THEN 'five'{{end}} WHEN bool_or(class = 'time') THEN 'time'{{if .local}} WHEN bool_or(class = 'local') THEN 'local'{{end}} ELSE 'none' END FROM leaf
$$;
COMMENT ON FUNCTION pgundo._output_class(regclass) IS 'What the text form of a table''s rows depends on: none (no output setting), {{if .local}}local (DateStyle, IntervalStyle: date, time, timetz, timestamp, interval), {{end}}time (DateStyle, IntervalStyle, TimeZone{{if .local}}: timestamptz{{end}}){{if .five}}, five (those and extra_float_digits, bytea_output: floats, bytea, xml, geometric types){{end}}{{if .six}}, six (pgundo''s six output settings) or NULL (anything, search_path included: reg* types, composites, types pgundo does not know){{else}} or NULL (any of pgundo''s six output settings){{end}}.';{{end}}

{{define "capture_args"}}{{.create}} FUNCTION pgundo._capture_args(rel regclass) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgundo_reclass' AND evtenabled = 'A') THEN ''
                WHEN c = 'none' THEN '''none'''
{{- if .local}}
                WHEN c = 'local' THEN '''DateStyle'', ''IntervalStyle'''{{end}}
                WHEN c = 'time' THEN '''DateStyle'', ''IntervalStyle'', ''TimeZone'''{{if .six}}
{{- if .five}}
                WHEN c = 'five' THEN '''DateStyle'', ''IntervalStyle'', ''TimeZone'', ''extra_float_digits'', ''bytea_output'''{{end}}
                WHEN c = 'six' THEN '''DateStyle'', ''IntervalStyle'', ''TimeZone'', ''extra_float_digits'', ''bytea_output'', ''lc_monetary'''{{end}}
                ELSE '' END
      FROM pgundo._output_class(rel) c
$$;{{end}}

{{define "reclass"}}{{.create}} FUNCTION pgundo._reclass(rel regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a text := pgundo._capture_args(rel);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger
                    WHERE tgrelid = rel AND tgname IN ('pgundo_capture_insert', 'pgundo_capture_update', 'pgundo_capture_delete')
                      AND tgnargs <> CASE a WHEN '' THEN 0 WHEN '''none''' THEN 1 {{if .local}}WHEN '''DateStyle'', ''IntervalStyle''' THEN 2 {{end}}{{if .six}}WHEN '''DateStyle'', ''IntervalStyle'', ''TimeZone''' THEN 3 {{if .five}}WHEN '''DateStyle'', ''IntervalStyle'', ''TimeZone'', ''extra_float_digits'', ''bytea_output''' THEN 5 {{end}}ELSE 6{{else}}ELSE 3{{end}} END) THEN
        RETURN false;
    END IF;
    PERFORM pgundo._detach(rel);
    PERFORM pgundo._attach(rel);
    RETURN true;
END $$;{{end}}

{{- /* reclass_tracked: re-attaches the capture triggers of every tracked table (and partition)
whose arguments are not what _capture_args gives now. */ -}}
{{define "reclass_tracked"}}DO $$
DECLARE
    r record;{{if .}}{{if .timeout}}
    lt text := pg_catalog.current_setting('lock_timeout');{{end}}{{end}}
BEGIN{{if .}}{{if .timeout}}
    -- Each re-attachment takes an exclusive lock on its table until the
    -- migration commits: wait at most two seconds for a busy one.
    PERFORM pg_catalog.set_config('lock_timeout', '2s', true);{{end}}{{end}}
    FOR r IN SELECT p.relid::regclass AS rel
               FROM pgundo.tracked t
              CROSS JOIN LATERAL (SELECT pt.relid FROM pg_partition_tree(t.relid) pt UNION SELECT t.relid) p
              WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid)
    LOOP
        BEGIN
            PERFORM pgundo._reclass(r.rel);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'pgundo: capture on % keeps checking every output setting (%); run pgundo track % as its owner for the faster check', r.rel, SQLERRM, r.rel;{{if .}}{{if .timeout}}
        WHEN lock_not_available THEN
            RAISE WARNING 'pgundo: capture on % keeps the output settings it checked before (the table was busy: %); run pgundo track % later to bring them up to date', r.rel, SQLERRM, r.rel;{{end}}{{end}}
        END;
    END LOOP;{{if .}}{{if .timeout}}
    PERFORM pg_catalog.set_config('lock_timeout', lt, true);{{end}}{{end}}
END $$;{{end}}
