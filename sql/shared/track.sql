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
