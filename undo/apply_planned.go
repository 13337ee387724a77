package undo

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Step 4, apply, planned row by row: each table's plan (pgundo_c_OID, from
// classify.go) is written with the set-based statements applySQL builds
// (sqlbuild.go), each re-checking its rows under lock, and every kind's
// count must match the plan's.

// applyTable writes the table's plan.
func (r *runner) applyTable(ctx context.Context, t *table) error {
	c := fmt.Sprintf("pgundo_c_%d", t.oid)
	var total int64
	var tp *TablePlan
	for i := range r.plan.Tables {
		if r.plan.Tables[i].Table == t.name {
			tp = &r.plan.Tables[i]
		}
	}
	want := map[stepKind]int64{stepDelete: tp.Delete, stepRestore: tp.Restore, stepMerge: tp.Merged, stepInsert: tp.Reinsert}
	steps := t.applySQL(c, r.opts.OnConflict)
	got := map[stepKind]int64{}
	for i, s := range steps {
		n, err := r.exec(ctx, t, s.what, s.sql)
		if err != nil {
			return err
		}
		got[s.kind] += n
		total += n
		if s.replaces {
			total += n
		}
		// A kind's count is checked after its last step (restores may take
		// two: rows replaced whole, rows updated).
		if s.kind == stepMerge || (i+1 < len(steps) && steps[i+1].kind == s.kind) {
			continue
		}
		if got[s.kind] != want[s.kind] {
			return &RefusedError{Kind: ErrPlanChanged, Detail: fmt.Sprintf(
				"undo %s: rows changed while the undo ran (%s: %d of %d planned rows were still as the sessions left them); the undo was rolled back, nothing was changed; run it again",
				t.name, strings.ToLower(s.what[:1])+s.what[1:], got[s.kind], want[s.kind])}
		}
	}
	if r.opts.OnConflict == Merge && t.keyed() {
		if err := r.collectKept(ctx, t, c); err != nil {
			return err
		}
	}
	r.plan.RowsChanged += total
	r.step(t.name, total, total)
	r.written = append(r.written, fmt.Sprintf("applied %s: %d rows written", t.name, total))
	return nil
}

// collectKept lists, for merged rows, the columns the sessions had changed
// that someone changed again since, which merge left as they are.
func (r *runner) collectKept(ctx context.Context, t *table, c string) error {
	var names, cases []string
	for _, col := range t.writable() {
		if t.isKey(col.name) {
			continue
		}
		names = append(names, col.name)
		id := pgx.Identifier{col.name}.Sanitize()
		cases = append(cases, fmt.Sprintf("CASE WHEN (x.a).%[1]s::text IS DISTINCT FROM (x.b).%[1]s::text AND (x.cur).%[1]s::text IS DISTINCT FROM (x.a).%[1]s::text THEN ($1::text[])[%[2]d] END", id, len(names)))
	}
	if len(cases) == 0 {
		return nil
	}
	rows, err := r.tx.Query(ctx, fmt.Sprintf(`
		SELECT x.k, col FROM (SELECT %s AS k, cur_img::%s AS cur, a, b FROM %s WHERE action = 'M' OFFSET 0) x
		 CROSS JOIN LATERAL unnest(ARRAY[%s]) col WHERE col IS NOT NULL ORDER BY 1, 2`,
		t.keyText(""), t.ident, c, strings.Join(cases, ", ")), names)
	if err != nil {
		return fmt.Errorf("undo %s: list merged columns: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key []string
		var col string
		if err := rows.Scan(&key, &col); err != nil {
			return err
		}
		r.plan.Kept = append(r.plan.Kept, KeptColumn{Table: t.name, Key: formatKey(t.keyShown, key), Column: col})
	}
	return rows.Err()
}
