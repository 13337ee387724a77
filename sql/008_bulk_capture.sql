-- Version 8: capture of many rows never waits for the JIT compiler, nor sorts.
--
-- PostgreSQL compiles a statement with LLVM when its estimated cost passes
-- jit_above_cost (on by default since 12, where the server has it). The
-- planner cannot know that capture's statements are cheap: the journal's
-- INSERT joins the old and new transition tables, estimated at the square of
-- their rows although its one-row test lets it write only when both hold one
-- row; the log's INSERT pairs them through a sort estimated the same way. So
-- an UPDATE of 5,000 rows paid about a second of compiling for a statement
-- that wrote nothing (DESIGN.md, "Capture cost"), and bigger statements paid
-- it again for the log's INSERT. Now:
--
--   * the journal's INSERT says LIMIT 1 (it writes one row or none), which
--     keeps its estimate, and so the compiler, away;
--   * the statements of more than one row run with jit off, set for them
--     only and put back after, as work_mem is;
--   * an UPDATE of many rows pairs its old and new rows with a hash join
--     (enable_mergejoin off for that statement): the merge join sorted both
--     sides, copying every image twice. Backend CPU of an UPDATE of 1M
--     pgbench rows: 2.65x untracked with the merge join, 1.96x hashed.
--
-- TRUNCATE's capture and pgundo.fold, which read whole tables, are estimated
-- from real row counts and did not compile at 100,000 rows; they stay as
-- they are.
--
-- The function bodies are 007's templates with "v8" set.

{{define "journal_limit"}}LIMIT 1{{end}}
{{- define "jit_off"}}jt := current_setting('jit');
        PERFORM set_config('jit', 'off', true);{{end}}
{{- define "jit_back"}}PERFORM set_config('jit', jt, true);{{end}}
{{- define "hash_pairing"}}mj := current_setting('enable_mergejoin');
        PERFORM set_config('enable_mergejoin', 'off', true);{{end}}
{{- define "hash_pairing_back"}}PERFORM set_config('enable_mergejoin', mj, true);{{end}}

{{template "capture_one_side" (dict "name" "insert" "op" "I" "rows" "pgundo_new" "side" "new" "v8" true)}}

{{template "capture_one_side" (dict "name" "delete" "op" "D" "rows" "pgundo_old" "side" "old" "v8" true)}}

{{template "capture_update" (dict "v8" true)}}
