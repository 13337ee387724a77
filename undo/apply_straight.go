package undo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Step 4, apply, straight from the log (the fast path), tried first: with
// its own table load, writes, checks and log of the undo, in a savepoint
// that falls back to the planned path (run.go) when it cannot.
//
// Most sessions worth undoing touch each row once. Then each kind of change
// is undone by one statement per table that reads the log directly, joins
// the live rows by primary key, re-checks each row under its lock (the
// WHERE) and checks the result (RETURNING). When any statement writes a
// different number of rows than the log holds changes of its kind, or a
// table has no primary key, the savepoint is rolled back and the planned
// path runs from the start, so the fast path never decides anything the
// planned path would decide differently (why counts are enough: DESIGN.md,
// "The two undo paths").

// errFastMismatch is the fast path's "not this way": fall back to the plan.
var errFastMismatch = errors.New("rows were changed more than once or since")

// errNotFast is the same for a table the fast path does not handle.
var errNotFast = errors.New("cannot undo straight from the log")

// announceRows is the fewest changes of one table for which the fast path
// says what it is about to write before writing it (100,000: a few
// seconds' work); smaller tables get only the line after.
const announceRows = 100_000

// literalIDs is the most statements of one table changeRows writes into
// its SQL as constants.
const literalIDs = 100

// tryFast undoes the selection by the fast path inside a savepoint. It
// returns the tables it undid and true when it did; false (and no error)
// when the planned path must run, with everything it did rolled back.
func (r *runner) tryFast(ctx context.Context, approved *Plan) ([]*table, bool, error) {
	sp, err := r.tx.Begin(ctx)
	if err != nil {
		return nil, false, err
	}
	tables, err := r.fast(ctx, approved)
	if err == nil {
		err = sp.Commit(ctx)
		return tables, err == nil, err
	}
	if !fallBack(ctx, err) {
		return nil, false, err
	}
	if rerr := sp.Rollback(ctx); rerr != nil {
		return nil, false, errors.Join(err, rerr)
	}
	r.plan.Tables, r.plan.RowsChanged, r.written = []TablePlan{}, 0, nil
	why := err.Error()
	if !errors.Is(err, errFastMismatch) && !errors.Is(err, errNotFast) {
		why = errNotFast.Error() + ": " + why
	}
	r.progress("%s; rolled that back, planning row by row", why)
	return nil, false, nil
}

// fallBack tells whether the planned path should run after the fast path
// failed with err: yes for anything about the data (the plan will say what),
// no for a cancel, a lost connection, a lock or resource problem.
func fallBack(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var final *finalError
	if errors.As(err, &final) {
		return false
	}
	var refused *RefusedError
	if errors.Is(err, errFastMismatch) || errors.Is(err, errNotFast) || errors.As(err, &refused) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	// By class (pgerrcode names codes, not classes): data exception,
	// integrity constraint violation, feature not supported, syntax error or
	// access rule violation, PL/pgSQL error.
	switch pgErr.Code[:2] {
	case "22", "23", "0A", "42", "P0":
		return true
	}
	// ON CONFLICT cannot use a deferrable unique constraint: the planned
	// path finds rows re-created since without it.
	return pgErr.Code == pgerrcode.ObjectNotInPrerequisiteState
}

func (r *runner) fast(ctx context.Context, approved *Plan) ([]*table, error) {
	tables, err := r.loadTables(ctx, selectedTables)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if !t.keyed() {
			return nil, fmt.Errorf("%w: %s has no primary key", errNotFast, t.name)
		}
	}
	if err := r.keepTriggersQuiet(ctx, tables); err != nil {
		return nil, err
	}
	// The undo logs its own statements, as capture would: only where
	// capture would (sql/004_undo_log.sql).
	for _, t := range tables {
		var capturing bool
		err := r.tx.QueryRow(ctx, `SELECT count(*) = 3 FROM pg_trigger WHERE tgrelid = $1 AND tgenabled = 'A'
			AND tgname IN ('pgundo_capture_insert', 'pgundo_capture_update', 'pgundo_capture_delete')`, t.oid).Scan(&capturing)
		if err != nil {
			return nil, err
		}
		if !capturing {
			return nil, fmt.Errorf("%w: %s is not tracked now, or its capture is disabled", errNotFast, t.name)
		}
	}
	// Every statement below runs with the lookup plan (see lookupPlan);
	// the foreign-key checks after them plan freely again.
	err = r.pinned(ctx, lookupPlan[:], func() error {
		for _, t := range tables {
			err := r.tx.QueryRow(ctx, `SELECT CASE WHEN count(*) <= $2 THEN array_agg(id ORDER BY id) END FROM pgundo_sel WHERE root = $1`, t.oid, literalIDs).Scan(&t.selIDs)
			if err != nil {
				return err
			}
			if err := r.fastTable(ctx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(r.plan.Tables, func(i, j int) bool { return r.plan.Tables[i].Table < r.plan.Tables[j].Table })
	if approved != nil && !samePlan(approved, r.plan) {
		return nil, errFastMismatch
	}
	for _, t := range tables {
		t.fast = true
	}
	// A foreign-key refusal here is the planned path's too: the rows
	// written are the same. It is final.
	if err := r.checkForeignKeys(ctx, tables); err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			return nil, &finalError{err}
		}
		return nil, err
	}
	return tables, nil
}

// finalError carries a refusal that the planned path would repeat, so the
// fast path does not fall back on it.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// fastTable undoes one table: rows the sessions created are deleted, rows
// they updated are put back, rows they deleted are inserted again, in that
// order (the order the planned path writes in), one statement each.
//
// It logs the undo first, as capture would have logged these three
// statements: one INSERT into pgundo.change that swaps each change's images
// (what the undo leaves is what the change found), and counts the changes
// of each kind. Each write must then write exactly that many rows, else the
// whole fast path is rolled back, log rows included.
func (r *runner) fastTable(ctx context.Context, t *table) error {
	err := r.fastWrite(ctx, t)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Name the table: a lock timeout or a lost connection is returned
		// to the user as is (fallBack), everything else falls back.
		return fmt.Errorf("undo %s: %w", t.name, err)
	}
	return err
}

// fastWrite is fastTable's work.
func (r *runner) fastWrite(ctx context.Context, t *table) error {
	if _, err := r.tx.Exec(ctx, `LOCK TABLE ONLY pgundo.change_log IN ROW EXCLUSIVE MODE`); err != nil { // before numbering: see pgundo.seal
		return fmt.Errorf("log the undo: %w", err)
	}
	var ids [3]int64 // delete, update, insert: the order the statements run in
	if err := r.tx.QueryRow(ctx, `SELECT nextval('pgundo.stmt_id_seq'), nextval('pgundo.stmt_id_seq'), nextval('pgundo.stmt_id_seq')`).Scan(&ids[0], &ids[1], &ids[2]); err != nil {
		return fmt.Errorf("log the undo: %w", err)
	}
	var created, updated, deleted int64
	args := t.changeArgs()
	n := len(args) // the ids are the parameters after changeRows'
	err := r.tx.QueryRow(ctx, fmt.Sprintf(`WITH l AS (
		INSERT INTO pgundo.change_log (stmt_id, old, new)
		SELECT CASE WHEN ch.old IS NULL THEN $%[2]d::bigint WHEN ch.new IS NULL THEN $%[4]d ELSE $%[3]d END, ch.new, ch.old
		  FROM %[1]s ch WHERE ch.old IS DISTINCT FROM ch.new
		RETURNING stmt_id)
		SELECT count(*) FILTER (WHERE stmt_id = $%[2]d), count(*) FILTER (WHERE stmt_id = $%[3]d), count(*) FILTER (WHERE stmt_id = $%[4]d) FROM l`,
		t.changeRows(), n+1, n+2, n+3), append(args, ids[0], ids[1], ids[2])...).Scan(&created, &updated, &deleted)
	if err != nil {
		return fmt.Errorf("log the undo: %w", err)
	}
	if created > 0 && deleted > 0 {
		// A key deleted and inserted again by the sessions would pass
		// the count checks below; netting makes it one restore.
		var both bool
		err := r.tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT %s FROM %s INTERSECT SELECT %s FROM %s)`,
			t.keyOf("x", "n"), t.fastSource("x", createdRows, false, true),
			t.keyOf("y", "o"), t.fastSource("y", deletedRows, true, false)), t.changeArgs()...).Scan(&both)
		if err != nil {
			return err
		}
		if both {
			return errFastMismatch
		}
	}
	r.step(t.name, created+updated+deleted, 0)
	if created+updated+deleted >= announceRows {
		// The writes below take about as long as the sessions' own
		// statements: on a big table, say what is coming.
		r.progress("undoing %s straight from the log: %d to restore, %d to re-insert, %d to delete", t.name, updated, deleted, created)
	}
	check := func(what string, got, want int64) error {
		if got != want {
			return fmt.Errorf("%w (%s: %s: %d of %d rows)", errFastMismatch, t.name, what, got, want)
		}
		return nil
	}
	cur := t.cur
	match := func(f, img string) string {
		return fmt.Sprintf("(%s) = (%s) AND (%s *= x.%s OR %s::text = x.%s)", t.curKeyCols(cur), t.keyOf("x", f), cur, f, cur, img)
	}
	if _, err := r.tx.Exec(ctx, `INSERT INTO pgundo.quiet (xid, relid) VALUES (pg_current_xact_id(), $1)`, t.oid); err != nil {
		return err
	}
	if _, err := r.tx.Exec(ctx, `SELECT set_config('pgundo.quiet', 'on', true)`); err != nil {
		return err
	}
	if created > 0 {
		var n int64
		err := r.tx.QueryRow(ctx, fmt.Sprintf(`WITH d AS (DELETE FROM %s %s USING %s WHERE %s RETURNING 1) SELECT count(*) FROM d`,
			t.ident, cur, t.fastSource("x", createdRows, false, true), match("n", "new")), t.changeArgs()...).Scan(&n)
		if err != nil {
			return err
		}
		if err := check("delete created rows", n, created); err != nil {
			return err
		}
	}
	if updated > 0 {
		set, _, _ := t.restoreLists("x.o")
		if len(set) == 0 {
			return errFastMismatch
		}
		// The row under the old image's key must read as the new image: its
		// text form is the log's definition of "as the sessions left it",
		// and printing the live row costs less than parsing the new image.
		// A key the sessions changed fails this (the key is in the text).
		// IS NOT DISTINCT FROM (both sides are never NULL here) keeps the
		// comparison out of any join condition: it is checked on the one
		// row the key finds, never used to match rows (which would print
		// every live row).
		var n, bad int64
		err := r.tx.QueryRow(ctx, fmt.Sprintf(`WITH u AS (
			UPDATE %[1]s %[2]s SET %[3]s FROM %[4]s
			 WHERE (%[5]s) = (%[6]s) AND %[2]s::text IS NOT DISTINCT FROM x.new
			RETURNING (%[2]s *= x.o OR %[2]s::text = x.old) AS ok)
			SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM u`,
			t.ident, cur, strings.Join(set, ", "), t.fastSource("x", updatedRows, true, false),
			t.curKeyCols(cur), t.keyOf("x", "o")), t.changeArgs()...).Scan(&n, &bad)
		if err != nil {
			return err
		}
		if err := check("restore updated rows", n, updated); err != nil {
			return err
		}
		if bad > 0 {
			return fmt.Errorf("%w (%s: %d restored rows differ from their logged image)", errFastMismatch, t.name, bad)
		}
	}
	if deleted > 0 {
		_, cols, vals := t.restoreLists("x.o")
		var n int64
		err := r.tx.QueryRow(ctx, fmt.Sprintf(`WITH i AS (
			INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s ON CONFLICT DO NOTHING RETURNING 1)
			SELECT count(*) FROM i`, t.ident, strings.Join(cols, ", "), strings.Join(vals, ", "), t.fastSource("x", deletedRows, true, false)), t.changeArgs()...).Scan(&n)
		if err != nil {
			return err
		}
		if err := check("insert deleted rows", n, deleted); err != nil {
			return err
		}
		// The rows inserted must read back as logged (generated columns
		// are recomputed, for one).
		var bad int64
		err = r.tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s JOIN %s %s ON (%s) = (%s) WHERE NOT (%s *= x.o OR %s::text = x.old)`,
			t.fastSource("x", deletedRows, true, false), t.ident, cur, t.curKeyCols(cur), t.keyOf("x", "o"), cur, cur), t.changeArgs()...).Scan(&bad)
		if err != nil {
			return err
		}
		if bad > 0 {
			return fmt.Errorf("%w (%s: %d inserted rows differ from their logged image)", errFastMismatch, t.name, bad)
		}
	}
	if _, err := r.tx.Exec(ctx, `SELECT set_config('pgundo.quiet', 'off', true)`); err != nil {
		return err
	}
	if _, err := r.tx.Exec(ctx, `DELETE FROM pgundo.quiet WHERE xid = pg_current_xact_id() AND relid = $1`, t.oid); err != nil {
		return err
	}
	for i, n := range []int64{created, updated, deleted} {
		if n == 0 {
			continue
		}
		if _, err := r.tx.Exec(ctx, `SELECT pgundo._stmt($1, $2::text::"char", $3, $4, $5, $6)`, ids[i], []string{"D", "U", "I"}[i], t.oid, t.schema, t.rel, n); err != nil {
			return fmt.Errorf("log the undo: %w", err)
		}
	}
	if created+deleted+updated == 0 {
		return nil // the planned path leaves such a table out of the plan
	}
	tp := TablePlan{Table: t.name, KeyColumns: t.key, Restore: updated, Reinsert: deleted, Delete: created}
	r.plan.Tables = append(r.plan.Tables, tp)
	r.plan.RowsChanged += created + deleted + updated
	r.step(t.name, created+deleted+updated, created+deleted+updated)
	r.written = append(r.written, fmt.Sprintf("undone %s: %d restored, %d re-inserted, %d deleted", t.name, tp.Restore, tp.Reinsert, tp.Delete))
	return nil
}

// lookupPlan is the settings the fast path's statements over the log run
// with: index lookups in nested loops, which cost in proportion to the
// session, never hash joins, which the planner (blind to one session's
// share of the log) would pick and spill; and streamWorkMem. Measured:
// DESIGN.md, "Straight path: plan settings".
var lookupPlan = [...][2]string{
	{"enable_hashjoin", "off"}, {"enable_mergejoin", "off"},
	{"enable_nestloop", "on"}, {"enable_indexscan", "on"},
	{"work_mem", streamWorkMem},
}

// streamWorkMem is the work_mem of the fast path's statements (4MB,
// PostgreSQL's default): their plans hash and sort nothing, and the rows
// they write (transition tables, RETURNING) spill sooner but run faster
// than at DefaultWorkMem. Measured: DESIGN.md, "Straight path: plan
// settings".
const streamWorkMem = "4MB"

// pinned runs run with each setting (name, value) set for the transaction,
// then puts back the values they had. When run fails the transaction or
// savepoint is rolled back, settings included.
func (r *runner) pinned(ctx context.Context, settings [][2]string, run func() error) error {
	var names, values []string
	for _, s := range settings {
		names, values = append(names, s[0]), append(values, s[1])
	}
	var was []string
	if err := r.tx.QueryRow(ctx, `SELECT array_agg(current_setting(n) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)`, names).Scan(&was); err != nil {
		return err
	}
	set := func(v []string) error {
		_, err := r.tx.Exec(ctx, `SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS u(n, v)`, names, v)
		return err
	}
	if err := set(values); err != nil {
		return err
	}
	if err := run(); err != nil {
		return err
	}
	return set(was)
}
