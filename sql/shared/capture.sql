{{- /*
Shared templates of the capture functions from version 5 on (see
shared/capture_v1.sql for how tern loads them). What a migration renders must
never change once it is released (sql/migrations_test.go).

The parts every capture function repeats (stmt_columns, session_id, who,
guard, unpin; 005 defined them, 007 and later place them too), then the
capture functions that versions 5 and 7 both write: stmt, change and journal
name the log tables each version writes to.
*/ -}}

{{define "stmt_columns"}}(id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag){{end}}
{{- /* session_id: this connection's session, registered on first use (see _register). */ -}}
{{define "session_id"}}coalesce(CASE WHEN current_setting('pgundo.session', true) = 'pgundo.session_start'::regclass::oid::text
                THEN to_hex(currval('pgundo.session_start')) || '.' || to_hex(pg_backend_pid()) END,
           pgundo._register()){{end}}
{{- /* who: the effective role (SET ROLE, else the login role), application_name and tag. */ -}}
{{define "who"}}CASE current_setting('role') WHEN 'none' THEN session_user ELSE current_setting('role') END,
           current_setting('application_name'), nullif(current_setting('pgundo.tag', true), ''){{end}}

{{- /* guard: the start of every capture function but TRUNCATE's: one test on the common path (no
undo in progress, pgundo's own output settings already in force); else skip a statement an undo
logs itself, and pin the output settings that differ (into was, for unpin). */ -}}
{{define "guard"}}IF current_setting('pgundo.quiet', true) = 'on' OR NOT pgundo._canonical() THEN
        IF current_setting('pgundo.quiet', true) = 'on'
           AND EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
            RETURN NULL;  -- an undo logs this statement itself
        END IF;
        IF NOT pgundo._canonical() THEN
            was := pgundo._pin();
        END IF;
    END IF;{{end}}
{{- /* Version 11's capture functions have no SET search_path clause (setting it on every call
cost about 13,000 instructions of a one-row UPDATE's capture): what runs on the common path (the
guard's tests, the journal INSERT, the test after it) names every function, operator and type with
its schema, so that a caller's search_path cannot put its own in their place; every other branch
first sets pgundo's search_path for the rest of the call (pin_path, into sp) and puts the caller's
back before it returns (unpin_path). session_id_q, who_q and journal_head_q are session_id, who and
the start of the journal row, qualified. */ -}}
{{define "pin_path"}}IF sp IS NULL THEN  -- below, names are not qualified: pgundo's search_path
                sp := pg_catalog.current_setting('search_path');
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            END IF;{{end}}
{{- define "unpin_path"}}PERFORM pg_catalog.set_config('search_path', sp, true);{{end}}
{{- define "session_id_q"}}COALESCE(CASE WHEN pg_catalog.current_setting('pgundo.session', true) OPERATOR(pg_catalog.=) 'pgundo.session_start'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.text
                THEN pg_catalog.to_hex(pg_catalog.currval('pgundo.session_start'::pg_catalog.regclass)) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.to_hex(pg_catalog.pg_backend_pid()) END,
           pgundo._register()){{end}}
{{- /* who_q: from version 12 on (v12) the tag as read: a tag set and then reset reads as '',
which pgundo.stmt and pgundo.fold turn into NULL (see 012). */ -}}
{{- define "who_q"}}CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none' THEN SESSION_USER ELSE pg_catalog.current_setting('role') END,
           pg_catalog.current_setting('application_name'),
           {{if .v12}}pg_catalog.current_setting('pgundo.tag', true){{else}}CASE WHEN pg_catalog.current_setting('pgundo.tag', true) OPERATOR(pg_catalog.=) '' THEN NULL ELSE pg_catalog.current_setting('pgundo.tag', true) END{{end}}{{end}}
{{- define "journal_head_q"}}pg_catalog.nextval('pgundo.stmt_id_seq'::pg_catalog.regclass), {{template "session_id_q"}},
           pg_catalog.pg_current_xact_id(), pg_catalog.statement_timestamp(){{end}}

{{- /* journal_insert: the journal INSERT from version 12 on, for op (I, D or U), of the rows of
one transition table (rows, side new or old) or of both (side both): written only when the
statement changed exactly one row (an UPDATE has no more new rows than old ones). No FROM, the
images as scalar subqueries, so that the plan is one Result whatever the statement's size; the
columns in the journal's order and of its types, so that no Subquery Scan is put above it to
reorder or convert them. Starting the executor on the version 7 to 11 form (a Limit over a
Subquery Scan over a Result over a Nested Loop, each projecting every column) was half of
capture's cost. */ -}}
{{define "journal_insert"}}INSERT INTO pgundo.journal (id, xid, at, relid, op, session_id, schema_name, table_name, role, application_name, tag, old, new)
    SELECT pg_catalog.nextval('pgundo.stmt_id_seq'::pg_catalog.regclass), pg_catalog.pg_current_xact_id(), pg_catalog.statement_timestamp(),
           TG_RELID, '{{.op}}'::pg_catalog."char",
           {{template "session_id_q"}},
           TG_TABLE_SCHEMA::pg_catalog.text, TG_TABLE_NAME::pg_catalog.text,
           {{template "who_q" (dict "v12" true)}},
{{- if eq .side "both"}}
           (SELECT ROW(o.*)::pg_catalog.text FROM pgundo_old o), (SELECT ROW(w.*)::pg_catalog.text FROM pgundo_new w)
     WHERE EXISTS (SELECT FROM pgundo_new) AND NOT EXISTS (SELECT FROM pgundo_old OFFSET 1);
{{- else}}
           {{if eq .side "old"}}(SELECT ROW(r.*)::pg_catalog.text FROM {{.rows}} r), NULL::pg_catalog.text{{else}}NULL::pg_catalog.text, (SELECT ROW(r.*)::pg_catalog.text FROM {{.rows}} r){{end}}
     WHERE EXISTS (SELECT FROM {{.rows}}) AND NOT EXISTS (SELECT FROM {{.rows}} OFFSET 1);
{{- end}}{{end}}

{{- /* guard_v12: guard from version 12 on. The tests on the common paths are version 11's (each
PL/pgSQL expression is compiled again in every transaction, so their number counts); what differs
is the slow path (pin_v12), taken when an undo is logging (pgundo.quiet) or a setting the table's
rows depend on is not pgundo's. There TimeZone, the setting most often not UTC (a server's own
zone; the JDBC driver sends the JVM's), is pinned inline, into tz, without setting search_path or
calling _pin: that and _unpin cost about 214,000 instructions a statement. The other settings
still go through _pin, after pin_path. A trigger without arguments (the table's rows may depend on
anything: reg* types print by search_path, composites and unknown types may) always takes the slow
path and sets pgundo's search_path before the journal INSERT. tz_back puts back what was pinned. */ -}}
{{define "guard_v12"}}IF TG_NARGS OPERATOR(pg_catalog.<>) 1 OR pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' THEN
        IF TG_NARGS OPERATOR(pg_catalog.=) 3 THEN
            IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical_time() THEN
                {{template "pin_v12"}}
            END IF;
        ELSIF TG_NARGS OPERATOR(pg_catalog.=) 0 OR pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical() THEN
            {{template "pin_v12"}}
        END IF;
    END IF;{{end}}
{{- define "pin_v12"}}IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' THEN
                    {{template "pin_path"}}
                    {{template "quiet_return"}}
                END IF;
                IF TG_NARGS OPERATOR(pg_catalog.<>) 1 THEN
                    IF NOT (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'UTC' OR pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) 'Etc/UTC') THEN
                        tz := pg_catalog.current_setting('TimeZone');
                        tzp := pg_catalog.set_config('TimeZone', 'UTC', true);  -- an assignment: no executor, unlike PERFORM
                    END IF;
                    IF (CASE WHEN TG_NARGS OPERATOR(pg_catalog.=) 3
                             THEN NOT (pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%' AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres')
                             WHEN TG_NARGS OPERATOR(pg_catalog.=) 0 THEN true  -- search_path too: reg* types print by it
                             ELSE NOT pgundo._canonical() END) THEN
                        {{template "pin_path"}}
                        IF TG_NARGS <> 0 OR NOT pgundo._canonical() THEN
                            was := pgundo._pin();
                        END IF;
                    END IF;
                END IF;{{end}}
{{- /* guard_v13: guard from version 13 on: version 12's tests on the common paths, and a slow
path (pin_v13) that, unlike pin_v12, starts only the tests it evaluates. PL/pgSQL compiles each
expression it evaluates again in every transaction, the branches of a CASE and the right of an OR
that is never reached included, and checks the right to call every function and operator in it
when the function's owner is not a superuser (as on RDS): pin_v12's CASE held the whole
_canonical() for a writer outside UTC on a table with a date, and a table whose trigger has no
arguments compiled _canonical() three times a statement. Five arguments (a table with floats,
bytea, xml or geometric types and no money: version 13's class 'five') test all settings but
lc_monetary (_canonical_five), whose test prints two amounts of money where it is not C. pin_path_v13 and unpin_path_v13 set
search_path by assignment (no executor, unlike PERFORM); tz_back_v13 puts back what was pinned.
local (version 14, passed in the data): two arguments (a table whose date and time columns carry
no zone) get a branch of their own after the three-argument one, which neither reads nor pins
TimeZone. */ -}}
{{define "guard_v13"}}IF TG_NARGS OPERATOR(pg_catalog.<>) 1 OR pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' THEN
        IF TG_NARGS OPERATOR(pg_catalog.=) 3 THEN
            IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical_time() THEN
                {{template "pin_v13" (dict "class" "time")}}
            END IF;
{{- if .}}{{if .local}}
        ELSIF TG_NARGS OPERATOR(pg_catalog.=) 2 THEN  -- local (version 14): TimeZone is not read
            IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT (pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%' AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres') THEN
                {{template "pin_v13" (dict "class" "local")}}
            END IF;
{{- end}}{{end}}
        ELSIF TG_NARGS OPERATOR(pg_catalog.=) 5 THEN
            IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical_five() THEN
                {{template "pin_v13" (dict "class" "five")}}
            END IF;
        ELSIF TG_NARGS OPERATOR(pg_catalog.=) 0 THEN  -- not compiled into the test below: pin_v13 tests it once
            {{template "pin_v13" (dict "class" "any")}}
        ELSIF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical() THEN
            {{template "pin_v13" (dict "class" "six")}}
        END IF;
    END IF;{{end}}
{{- define "pin_v13"}}IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' THEN
                    {{template "pin_path_v13"}}
                    {{template "quiet_return_v13"}}
                END IF;
{{- if eq .class "six"}}
                IF TG_NARGS OPERATOR(pg_catalog.<>) 1 THEN  -- six (or any other count: all); 1: an undo is logging, nothing to pin
{{- end}}
{{- if ne .class "local"}}
                IF NOT (pg_catalog.current_setting('TimeZone') OPERATOR(pg_catalog.=) ANY ('{UTC,Etc/UTC}'::pg_catalog.text[])) THEN
                    tz := pg_catalog.current_setting('TimeZone');
                    tzp := pg_catalog.set_config('TimeZone', 'UTC', true);  -- an assignment: no executor, unlike PERFORM
                END IF;
{{- end}}
{{- if or (eq .class "time") (eq .class "local")}}
                IF NOT (pg_catalog.current_setting('DateStyle') OPERATOR(pg_catalog.~~) 'ISO%' AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres') THEN
{{- else if eq .class "five"}}
                IF NOT pgundo._canonical_five() THEN
{{- else}}
{{- if eq .class "any"}}
                {{template "pin_path_v13"}}  -- reg* types print by search_path
{{- end}}
                IF NOT pgundo._canonical() THEN
{{- end}}
                    {{template "pin_path_v13"}}
                    was := pgundo._pin();
                END IF;
{{- if eq .class "six"}}
                END IF;
{{- end}}{{end}}
{{- define "pin_path_v13"}}IF sp IS NULL THEN  -- below, names are not qualified: pgundo's search_path
                sp := pg_catalog.current_setting('search_path');
                tzp := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            END IF;{{end}}
{{- define "quiet_return_v13"}}IF EXISTS (SELECT FROM pgundo.quiet WHERE xid OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id() AND relid OPERATOR(pg_catalog.=) TG_RELID) THEN
                        {{template "unpin_path_v13"}}
                        RETURN NULL;  -- an undo logs this statement itself
                    END IF;{{end}}
{{- define "unpin_path_v13"}}tzp := pg_catalog.set_config('search_path', sp, true);{{end}}
{{- define "tz_back_v13"}}{{template "unpin"}}
        IF tz IS NOT NULL THEN
            tzp := pg_catalog.set_config('TimeZone', tz, true);
        END IF;
        IF sp IS NOT NULL THEN
            {{template "unpin_path_v13"}}
        END IF;{{end}}

{{- /* tz_back: puts back what guard_v12 pinned: the settings _pin set, TimeZone, search_path. */ -}}
{{define "tz_back"}}{{template "unpin"}}
        IF tz IS NOT NULL THEN
            tzp := pg_catalog.set_config('TimeZone', tz, true);
        END IF;
        IF sp IS NOT NULL THEN
            {{template "unpin_path"}}
        END IF;{{end}}

{{- /* guard_v11: guard from version 11 on. The UPDATE, INSERT and DELETE capture triggers name,
as their arguments, the output settings the table's rows depend on (pgundo._capture_args): one
argument ('none') when no setting changes their text form, three ('DateStyle', 'IntervalStyle',
'TimeZone') when only those do, none when others may (and on triggers attached before version
11). So the common path is one test; the six settings are read only where they matter. */ -}}
{{define "guard_v11"}}IF TG_NARGS OPERATOR(pg_catalog.<>) 1 OR pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' THEN
        IF TG_NARGS OPERATOR(pg_catalog.=) 0 THEN
            IF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on' OR NOT pgundo._canonical() THEN
                {{template "pin_path"}}
                {{template "quiet_return"}}
                IF NOT pgundo._canonical() THEN
                    was := pgundo._pin();
                END IF;
            END IF;
        ELSIF pg_catalog.current_setting('pgundo.quiet', true) OPERATOR(pg_catalog.=) 'on'
              OR (TG_NARGS OPERATOR(pg_catalog.=) 3 AND NOT pgundo._canonical_time()) THEN
            {{template "pin_path"}}
            {{template "quiet_return"}}
            IF TG_NARGS = 3 AND NOT pgundo._canonical_time() THEN
                was := pgundo._pin();
            END IF;
        END IF;
    END IF;{{end}}
{{- /* quiet_return: leaves a statement that an undo logs itself (after pin_path). */ -}}
{{define "quiet_return"}}IF current_setting('pgundo.quiet', true) = 'on' THEN
                    IF EXISTS (SELECT FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = TG_RELID) THEN
                        {{template "unpin_path"}}
                        RETURN NULL;  -- an undo logs this statement itself
                    END IF;
                END IF;{{end}}
{{- /* unpin: puts back the writer's settings that guard pinned. */ -}}
{{define "unpin"}}IF was IS NOT NULL THEN
        PERFORM pgundo._unpin(was);
    END IF;{{end}}

{{- /* stmt_row: the start of a WITH that writes one statement row into table stmt and returns
its id (as s): op, and rows the number of rows changed. Placed at the depth of an IF branch. */ -}}
{{define "stmt_row"}}WITH s AS (
            INSERT INTO {{.stmt}} {{template "stmt_columns"}}
            VALUES (nextval('pgundo.stmt_id_seq'), {{template "session_id"}},
                    pg_current_xact_id(), statement_timestamp(), '{{.op}}', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, {{.rows}},
                    {{template "who"}})
            RETURNING id){{end}}

{{- /* capture_one_side_v5: version 5's capture function of INSERT (name insert, op I, rows
pgundo_new, side new) or DELETE (delete, D, pgundo_old, old). */ -}}
{{define "capture_one_side_v5"}}CREATE OR REPLACE FUNCTION pgundo.capture_{{.name}}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    was text[];
BEGIN
    {{template "guard"}}
    WITH s AS (
        INSERT INTO pgundo.stmt {{template "stmt_columns"}}
        SELECT nextval('pgundo.stmt_id_seq'), {{template "session_id"}},
               pg_current_xact_id(), statement_timestamp(), '{{.op}}', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, c.n,
               {{template "who"}}
          FROM (SELECT count(*) AS n FROM {{.rows}}) c WHERE c.n > 0
        RETURNING id)
    INSERT INTO pgundo.change (stmt_id, {{.side}}) SELECT s.id, ROW(r.*)::text FROM s, {{.rows}} r;
    {{template "unpin"}}
    RETURN NULL;
END $$;{{end}}

{{- /* capture_one_side: the capture function of INSERT (name insert, op I, rows pgundo_new, side
new) or DELETE (delete, D, pgundo_old, old) from version 7 on: the rows of one transition table,
one image each; one row into the journal, more into the log tables. */ -}}
{{define "capture_one_side"}}CREATE OR REPLACE FUNCTION pgundo.capture_{{.name}}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER{{if not .v11}} SET search_path = pg_catalog, pg_temp{{end}} AS $$
DECLARE
    was {{if .v11}}pg_catalog.{{end}}text[];
    n   bigint;{{if .v8}}
    jt  {{if .v11}}pg_catalog.{{end}}text;
    sid bigint;{{end}}{{if .v11}}
    sp  pg_catalog.text;{{end}}{{if .v12}}
    tz  pg_catalog.text;
    tzp pg_catalog.text;{{end}}
BEGIN
    {{if .v13}}{{template "guard_v13" .}}{{else if .v12}}{{template "guard_v12"}}{{else if .v11}}{{template "guard_v11"}}{{else}}{{template "guard"}}{{end}}
    {{if .v12}}{{template "journal_insert" (dict "op" .op "rows" .rows "side" .side)}}{{else}}INSERT INTO pgundo.journal (id, session_id, xid, at, op, relid, schema_name, table_name, role, application_name, tag, {{.side}})
    SELECT {{if .v11}}{{template "journal_head_q"}}{{else}}nextval('pgundo.stmt_id_seq'), {{template "session_id"}},
           pg_current_xact_id(), statement_timestamp(){{end}}, '{{.op}}', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
           {{if .v11}}{{template "who_q" .}}{{else}}{{template "who"}}{{end}}, ROW(r.*)::{{if .v11}}pg_catalog.{{end}}text
      FROM {{.rows}} r
     WHERE NOT EXISTS (SELECT FROM {{.rows}} OFFSET 1){{if .v8}}
     {{template "journal_limit"}}{{end}};{{end}}
{{- if .v8}}
    IF NOT FOUND{{if .v11}} OR sp IS NOT NULL{{if .v12}} OR tz IS NOT NULL{{end}} THEN  -- one test on the common path
        IF NOT FOUND{{end}} THEN
{{- if and .v11 (not .v13)}}
            {{template "pin_path"}}
{{- end}}
        IF EXISTS (SELECT FROM {{.rows}}) THEN  -- more than one row, counted as they are written
{{- if .v13}}
            {{template "pin_path_v13"}}
{{- end}}
            {{template "jit_off"}}
            LOCK TABLE ONLY pgundo.change_log IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
            sid := nextval('pgundo.stmt_id_seq');
            INSERT INTO pgundo.change_log (stmt_id, {{.side}}) SELECT sid, ROW(r.*)::text FROM {{.rows}} r;
            GET DIAGNOSTICS n = ROW_COUNT;
            INSERT INTO pgundo.stmt_log {{template "stmt_columns"}}
            VALUES (sid, {{template "session_id"}},
                    pg_current_xact_id(), statement_timestamp(), '{{.op}}', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n,
                    {{template "who"}});
            {{template "jit_back"}}
        END IF;
{{- if .v12}}
        END IF;
        {{if .v13}}{{template "tz_back_v13"}}{{else}}{{template "tz_back"}}{{end}}
{{- else if .v11}}
        END IF;
        {{template "unpin"}}
        {{template "unpin_path"}}
{{- end}}
    END IF;
{{- else}}
    IF NOT FOUND THEN
        SELECT count(*) INTO n FROM {{.rows}};
    END IF;
    IF n > 1 THEN
        {{template "stmt_row" (dict "stmt" "pgundo.stmt_log" "op" .op "rows" "n")}}
        INSERT INTO pgundo.change_log (stmt_id, {{.side}}) SELECT s.id, ROW(r.*)::text FROM s, {{.rows}} r;
    END IF;
{{- end}}
{{- if not .v11}}
    {{template "unpin"}}
{{- end}}
    RETURN NULL;
END $$;{{end}}

{{- /* capture_update: capture_update of version 5 (stmt pgundo.stmt, change pgundo.change) and
7 (pgundo.stmt_log, pgundo.change_log, journal): they differ in how a one-row UPDATE is written
(version 7: into the journal, and the rows are counted only when it was not one row); v8 as
version 8 has it (see 008). */ -}}
{{define "capture_update"}}CREATE OR REPLACE FUNCTION pgundo.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER{{if not .v11}} SET search_path = pg_catalog, pg_temp{{end}} AS $$
DECLARE
    n   bigint;
    m   bigint;
    was {{if .v11}}pg_catalog.{{end}}text[];
    wm  {{if .v11}}pg_catalog.{{end}}text;{{if .v8}}
    jt  {{if .v11}}pg_catalog.{{end}}text;
    mj  {{if .v11}}pg_catalog.{{end}}text;{{end}}{{if .v11}}
    sp  pg_catalog.text;{{end}}{{if .v12}}
    tz  pg_catalog.text;
    tzp pg_catalog.text;{{end}}
BEGIN
    {{if .v13}}{{template "guard_v13" .}}{{else if .v12}}{{template "guard_v12"}}{{else if .v11}}{{template "guard_v11"}}{{else}}{{template "guard"}}{{end}}
{{- if .journal}}
{{- if .v12}}
    {{template "journal_insert" (dict "op" "U" "side" "both")}}  -- an UPDATE has no more new rows than old ones
{{- else}}
    INSERT INTO pgundo.journal (id, session_id, xid, at, op, relid, schema_name, table_name, role, application_name, tag, old, new)
    SELECT {{if .v11}}{{template "journal_head_q"}}{{else}}nextval('pgundo.stmt_id_seq'), {{template "session_id"}},
           pg_current_xact_id(), statement_timestamp(){{end}}, 'U', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
           {{if .v11}}{{template "who_q" .}}, ROW(o.*)::pg_catalog.text, ROW(w.*)::pg_catalog.text{{else}}{{template "who"}}, ROW(o.*)::text, ROW(w.*)::text{{end}}
      FROM pgundo_old o, pgundo_new w
     WHERE NOT EXISTS (SELECT FROM pgundo_old OFFSET 1){{if .v8}}
     {{template "journal_limit"}}{{end}};  -- an UPDATE has no more new rows than old ones
{{- end}}
{{- if .v11}}
    IF NOT FOUND OR sp IS NOT NULL{{if .v12}} OR tz IS NOT NULL{{end}} THEN  -- one test on the common path
{{- end}}
    IF NOT FOUND THEN
{{- if .v13}}
        -- Qualified, with the caller's search_path: a statement that changed
        -- no row ends here, without setting search_path (an UPDATE has no
        -- more new rows than old ones).
        IF EXISTS (SELECT FROM pgundo_old) THEN
            SELECT (SELECT pg_catalog.count(*) FROM pgundo_old), (SELECT pg_catalog.count(*) FROM pgundo_new) INTO n, m;
        END IF;
{{- else}}
{{- if .v11}}
        {{template "pin_path"}}
{{- end}}
        SELECT (SELECT count(*) FROM pgundo_old), (SELECT count(*) FROM pgundo_new) INTO n, m;
{{- end}}
    END IF;
{{- if .v12}}
    -- Reached with the caller's search_path too (TimeZone pinned inline, the
    -- journal written): qualified.
    IF n OPERATOR(pg_catalog.=) m AND n OPERATOR(pg_catalog.>) 1 THEN
{{- if .v13}}
        {{template "pin_path_v13"}}
{{- end}}
{{- else}}
    IF n = m AND n > 1 THEN
{{- end}}
{{- else}}
    SELECT (SELECT count(*) FROM pgundo_old), (SELECT count(*) FROM pgundo_new) INTO n, m;
    IF n = 1 AND m = 1 THEN
        {{template "stmt_row" (dict "stmt" .stmt "op" "U" "rows" "1")}}
        INSERT INTO {{.change}} (stmt_id, old, new) SELECT s.id, ROW(o.*)::text, ROW(w.*)::text FROM s, pgundo_old o, pgundo_new w;
    ELSIF n = m AND n > 0 THEN
{{- end}}
        wm := current_setting('work_mem');
        PERFORM set_config('work_mem', '128MB', true);{{if .v8}}
        {{template "jit_off"}}
        {{template "hash_pairing"}}{{end}}
        {{template "stmt_row" (dict "stmt" .stmt "op" "U" "rows" "n")}}
        INSERT INTO {{.change}} (stmt_id, old, new)
        SELECT s.id, o.img, w.img
          FROM s,
               (SELECT row_number() OVER () AS pos, ROW(r.*)::text AS img FROM pgundo_old r) o
          JOIN (SELECT row_number() OVER () AS pos, ROW(r.*)::text AS img FROM pgundo_new r) w USING (pos);
        PERFORM set_config('work_mem', wm, true);{{if .v8}}
        {{template "jit_back"}}
        {{template "hash_pairing_back"}}{{end}}
    ELSIF n {{if .v12}}OPERATOR(pg_catalog.<>){{else}}<>{{end}} m THEN{{if .v13}}
        {{template "pin_path_v13"}}{{end}}{{if .v8}}
        {{template "jit_off"}}{{end}}
        {{template "stmt_row" (dict "stmt" .stmt "op" "U" "rows" "greatest(n, m)")}},
        o AS (INSERT INTO {{.change}} (stmt_id, old) SELECT s.id, ROW(r.*)::text FROM s, pgundo_old r)
        INSERT INTO {{.change}} (stmt_id, new) SELECT s.id, ROW(r.*)::text FROM s, pgundo_new r;{{if .v8}}
        {{template "jit_back"}}{{end}}
    END IF;  -- n = m = 0: nothing changed, nothing logged
{{- if .v12}}
    {{if .v13}}{{template "tz_back_v13"}}{{else}}{{template "tz_back"}}{{end}}
    END IF;
{{- else}}
    {{template "unpin"}}
{{- if .v11}}
    {{template "unpin_path"}}
    END IF;
{{- end}}
{{- end}}
    RETURN NULL;
END $$;{{end}}

{{- /* capture_truncate: capture_truncate of version 5 (stmt pgundo.stmt, change pgundo.change)
and 7 (pgundo.stmt_log, pgundo.change_log). */ -}}
{{define "capture_truncate"}}CREATE OR REPLACE FUNCTION pgundo.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid bigint;
    n   bigint;
    was text[];
BEGIN
    PERFORM pg_current_xact_id();
    IF NOT pgundo._canonical() THEN
        was := pgundo._pin();
    END IF;
    LOCK TABLE ONLY {{.stmt}}, {{.change}} IN ROW EXCLUSIVE MODE;  -- before numbering: see pgundo.seal
    sid := nextval('pgundo.stmt_id_seq');
    EXECUTE format('INSERT INTO {{.change}} (stmt_id, old) SELECT $1, ROW(r.*)::text FROM ONLY %s r', TG_RELID::regclass)
      USING sid;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        INSERT INTO {{.stmt}} {{template "stmt_columns"}}
        VALUES (sid, {{template "session_id"}},
                pg_current_xact_id(), statement_timestamp(), 'T', TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, n,
                {{template "who"}});
    END IF;
    {{template "unpin"}}
    RETURN NULL;
END $$;{{end}}
