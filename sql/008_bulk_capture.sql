-- Version 8: capture of many rows never waits for the JIT compiler, nor sorts.
--
-- The planner cannot know that capture's statements are cheap: it estimates
-- the journal INSERT's join of the transition tables at the square of their
-- rows, so past jit_above_cost an UPDATE of a few thousand rows compiled it
-- with LLVM, and the log's INSERT paired old and new rows through two sorts.
-- So: the journal INSERT says LIMIT 1 (it writes one row or none); the
-- statements of many rows run with jit off and pair with a hash join
-- (enable_mergejoin off), each setting put back after, as work_mem is.
-- Measurements: DESIGN.md, "Capture cost", "JIT (schema 8)".
--
-- The function bodies are 007's templates (sql/shared/capture.sql) with "v8" set.

{{define "journal_limit"}}LIMIT 1{{end}}
{{- define "jit_off"}}jt := current_setting('jit');
        PERFORM set_config('jit', 'off', true);{{end}}
{{- define "jit_back"}}PERFORM set_config('jit', jt, true);{{end}}
{{- define "hash_pairing"}}mj := current_setting('enable_mergejoin');
        PERFORM set_config('enable_mergejoin', 'off', true);{{end}}
{{- define "hash_pairing_back"}}PERFORM set_config('enable_mergejoin', mj, true);{{end}}

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true)}}

{{template "capture_update" (dict "stmt" "pgundo.stmt_log" "change" "pgundo.change_log" "journal" true "v8" true)}}
