package undo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The flow: Apply and MakePlan run the steps in order (run, begin,
// planAll, writeAndCheck), each step in a file of its own (see the package
// comment in undo.go); the runner carries one undo's state through them.

// MakePlan makes the undo's plan without changing anything: the dry run.
// It runs the undo exactly as Apply would, every write and every check
// (conflicts, triggers, privileges, schema, foreign keys, the result, the
// record of the undo, deferred constraints), in a transaction that it rolls
// back instead of committing. It refuses when and as Apply would, and takes
// the same locks while it runs. The plan it returns has Applied false,
// UndoSession "" and RowsChanged 0. Sequences the undo's own log draws from
// are not rewound (nextval is not transactional); nothing else is left.
func MakePlan(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options) (*Plan, error) {
	return run(ctx, conn, sel, opts, false, nil)
}

// Apply undoes the selected sessions in one transaction and commits. On a
// conflict in Refuse mode it returns a *ConflictError and changes nothing.
// approved, when not nil, is the plan the user confirmed: if the plan made
// under lock differs from it, Apply refuses with ErrPlanChanged.
func Apply(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, approved *Plan) (*Plan, error) {
	return run(ctx, conn, sel, opts, true, approved)
}

// run is Apply and MakePlan: select, then straight from the log where it
// can, else planned row by row; then record, and commit when commit is set.
func run(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, commit bool, approved *Plan) (*Plan, error) {
	r, err := begin(ctx, conn, sel, opts, true, commit)
	if err != nil {
		return nil, err
	}
	defer r.tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if !r.opts.AlwaysPlan && len(r.leftBy) == 0 {
		_, done, err := r.tryFast(ctx, approved)
		if err != nil {
			return nil, err
		}
		if done {
			return r.record(ctx)
		}
	}
	tables, err := r.planAll(ctx)
	if err != nil {
		return r.refused(err)
	}
	if approved != nil && !samePlan(approved, r.plan) {
		return nil, &RefusedError{Kind: ErrPlanChanged, Detail: "the data changed between the plan you confirmed and the apply (other sessions wrote to these rows); nothing was changed; run the undo again to see the new plan"}
	}
	if err := r.writeAndCheck(ctx, tables); err != nil {
		return nil, err
	}
	return r.record(ctx)
}

// begin is the setup Apply, MakePlan and WriteScript share: it opens the
// undo's transaction on conn, pins its settings and selects the statements
// to undo. The caller must roll the runner's transaction back (a no-op
// after commit); on error begin has.
func begin(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, apply, commit bool) (_ *runner, err error) {
	if sel.Empty() {
		return nil, errors.New("nothing selected: give a session id, --tx, --tag, or --app/--user")
	}
	if opts.OnConflict == "" {
		opts.OnConflict = Refuse
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin undo transaction: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback(context.Background()) //nolint:errcheck // the error says what failed
		}
	}()
	r := &runner{tx: tx, opts: opts, apply: apply, commit: commit, plan: &Plan{Tables: []TablePlan{}, Conflicts: []Conflict{}, Kept: []KeptColumn{}}}
	if opts.WorkMem == "" {
		opts.WorkMem = DefaultWorkMem
	}
	// jit off: the undo's statements are big but simple, and their row
	// estimates for temp tables can make JIT compile for seconds.
	for _, s := range txSettings(opts) {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", s[0], s[1]); err != nil {
			return nil, fmt.Errorf("pin %s: %w", s[0], err)
		}
	}
	if err := r.selectStatements(ctx, sel); err != nil {
		return nil, err
	}
	return r, nil
}

// planAll builds the net changes of the selection and plans every table row
// by row, with the checks in the order Apply runs them (so that a script
// and a dry run refuse first what Apply would). On a conflict in Refuse
// mode it returns the plan with a *ConflictError.
func (r *runner) planAll(ctx context.Context) ([]*table, error) {
	if err := r.buildNet(ctx); err != nil {
		return nil, err
	}
	tables, err := r.loadTables(ctx, netTables)
	if err != nil {
		return nil, err
	}
	// Checked in a dry run and a script too, so the plan shown is the one
	// that can run.
	if err := r.keepTriggersQuiet(ctx, tables); err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := r.planTable(ctx, t); err != nil {
			return nil, err
		}
	}
	r.planned = tables
	sort.Slice(r.plan.Tables, func(i, j int) bool { return r.plan.Tables[i].Table < r.plan.Tables[j].Table })
	if len(r.plan.Conflicts) > 0 && r.opts.OnConflict == Refuse {
		r.explainConflicts(ctx, tables)
		return nil, &ConflictError{Plan: r.plan}
	}
	return tables, nil
}

// writeAndCheck writes the planned tables' rows, checks that each is back
// as it was, and checks the foreign keys: the planned path's work between
// the plan and the record, for Apply, the dry run, and a script's trial.
func (r *runner) writeAndCheck(ctx context.Context, tables []*table) error {
	for _, t := range tables {
		if err := r.applyTable(ctx, t); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if err := r.verifyTable(ctx, t); err != nil {
			return err
		}
	}
	return r.checkForeignKeys(ctx, tables)
}

// refused is what an undo that stops with err returns: with a
// *ConflictError, the plan (it names the conflicts); else no plan.
func (r *runner) refused(err error) (*Plan, error) {
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return r.plan, err
	}
	return nil, err
}

func samePlan(a, b *Plan) bool {
	if len(a.Tables) != len(b.Tables) || len(a.Conflicts) != len(b.Conflicts) {
		return false
	}
	for i := range a.Tables {
		x, y := a.Tables[i], b.Tables[i]
		if x.Table != y.Table || x.Restore != y.Restore || x.Reinsert != y.Reinsert || x.Delete != y.Delete || x.Skipped != y.Skipped || x.Merged != y.Merged {
			return false
		}
	}
	return true
}

type runner struct {
	tx   pgx.Tx
	opts Options
	// apply is set when the undo writes (Apply and MakePlan), not when a
	// script is written; commit when it commits (Apply).
	apply, commit bool
	plan          *Plan
	maxStmt       int64
	minStmt       int64
	// written holds the progress lines about rows written: they are given
	// only once the undo committed, so no line says rows were written
	// before a refusal, or in a dry run.
	written []string
	// leftBy are the earlier undos whose left rows (pgundo.undo_left) this
	// undo takes up; see leaveOutUndone.
	leftBy []string
	// planned are the tables planned row by row (not by the fast path).
	planned []*table
}

// step reports a table's progress through Options.Step.
func (r *runner) step(table string, planned, done int64) {
	if r.opts.Step != nil {
		r.opts.Step(TableProgress{Table: table, Planned: planned, Done: done})
	}
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		r.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// exec runs one generated statement, naming the table on error.
func (r *runner) exec(ctx context.Context, t *table, what, sql string, args ...any) (int64, error) {
	tag, err := r.tx.Exec(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("undo %s: %s: %w", t.name, strings.ToLower(what[:1])+what[1:], err)
	}
	return tag.RowsAffected(), nil
}

// outputSettings are the settings capture pins when it writes row images;
// the undo pins the same ones so that images compare and parse exactly.
var outputSettings = [][2]string{
	{"datestyle", "ISO, YMD"},
	{"intervalstyle", "postgres"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"xmloption", "content"},
	{"timezone", "UTC"},
	// Capture runs with this search_path, so regclass, regtype and the like
	// print schema-qualified; the undo must print them alike to compare.
	{"search_path", "pg_catalog, pg_temp"},
}

// txSettings are the settings the undo's transaction pins (set_config,
// local to it): standard_conforming_strings on, under which the literals
// generated SQL holds (see quoteLiteral) read as written whatever the
// server's, database's or role's setting; outputSettings; work_mem; jit
// off; and plan_cache_mode = force_custom_plan, so that every statement is
// planned with its parameters' values, as if they were written into it
// (see changeRows).
func txSettings(opts Options) [][2]string {
	return append(append([][2]string{{"standard_conforming_strings", "on"}}, outputSettings...),
		[2]string{"work_mem", opts.WorkMem}, [2]string{"jit", "off"}, [2]string{"plan_cache_mode", "force_custom_plan"})
}
