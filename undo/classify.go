package undo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Step 3, classify (the planned path): per table, the net images are
// grouped by key (or, without one, kept as multisets of whole rows) and
// compared with the live rows into temp table pgundo_c (kept as
// pgundo_c_OID), whose action is one of: U restore (update back), I
// re-insert, D delete, M merge, S skipped conflict, C conflict. Conflicts
// are then refused, skipped (classify_keyless.go for tables without a key)
// or merged, per Options.OnConflict.

func (r *runner) planTable(ctx context.Context, t *table) error {
	if _, err := r.tx.Exec(ctx, "DROP TABLE IF EXISTS pg_temp.pgundo_c"); err != nil {
		return err
	}
	var err error
	if t.keyed() {
		err = r.classifyKeyed(ctx, t)
	} else {
		err = r.classifyKeyless(ctx, t)
	}
	if err != nil {
		return err
	}
	// Conflict handling per mode. Without a key, a skipped row is the pair
	// of images the log links (see skipKeyless), and merge refuses.
	switch {
	case r.opts.OnConflict == Skip && t.keyed():
		_, err = r.exec(ctx, t, "skip conflicts", `UPDATE pgundo_c SET action = 'S' WHERE action = 'C'`)
	case r.opts.OnConflict == Merge && t.keyed():
		_, err = r.exec(ctx, t, "merge conflicts", `UPDATE pgundo_c SET action = CASE WHEN reason = 'changed since' AND b_img IS NOT NULL THEN 'M' ELSE 'S' END WHERE action = 'C'`)
	case r.opts.OnConflict == Skip || r.opts.OnConflict == Merge:
		var n int64
		var example *string
		if err := r.tx.QueryRow(ctx, `SELECT coalesce(sum(cnt - have), 0)::bigint, min(pgundo_img COLLATE "C") FROM pgundo_c WHERE action = 'C'`).Scan(&n, &example); err != nil {
			return fmt.Errorf("undo %s: count conflicts: %w", t.name, err)
		}
		switch {
		case n == 0:
		case r.opts.OnConflict == Merge:
			return refuseKeylessMerge(t, n, *example)
		default:
			err = r.skipKeyless(ctx, t)
		}
	}
	if err == nil && t.keyed() && r.opts.OnConflict != Refuse {
		err = r.skipMovedKeys(ctx, t)
	}
	if err != nil {
		return err
	}
	tp := TablePlan{Table: t.name, KeyColumns: t.key}
	if tp.KeyColumns == nil {
		tp.KeyColumns = []string{}
	}
	weight := "1"
	if !t.keyed() {
		weight = "abs(cnt)"
	}
	err = r.tx.QueryRow(ctx, fmt.Sprintf(`SELECT
			coalesce(sum(%[1]s) FILTER (WHERE action = 'U'), 0), coalesce(sum(%[1]s) FILTER (WHERE action = 'I'), 0),
			coalesce(sum(%[1]s) FILTER (WHERE action = 'D'), 0), coalesce(sum(%[1]s) FILTER (WHERE action = 'M'), 0),
			coalesce(sum(%[1]s) FILTER (WHERE action = 'S'), 0)
		FROM pgundo_c`, weight)).Scan(&tp.Restore, &tp.Reinsert, &tp.Delete, &tp.Merged, &tp.Skipped)
	if err != nil {
		return fmt.Errorf("undo %s: count the plan: %w", t.name, err)
	}
	r.plan.Tables = append(r.plan.Tables, tp)
	if err := r.collectConflicts(ctx, t); err != nil {
		return err
	}
	r.step(t.name, tp.Restore+tp.Reinsert+tp.Delete+tp.Merged, 0)
	r.progress("planned %s: %d to restore, %d to re-insert, %d to delete, %d conflicts", t.name, tp.Restore, tp.Reinsert, tp.Delete, tp.Skipped+tp.Merged+int64(countConflicts(r.plan.Conflicts, t.name, false)))
	// Keep the plan's temp table per table for apply, verify and scripts.
	if _, err := r.tx.Exec(ctx, fmt.Sprintf("ALTER TABLE pgundo_c RENAME TO pgundo_c_%d", t.oid)); err != nil {
		return err
	}
	return nil
}

// classifyKeyed fills pgundo_c with one row per primary key the sessions
// left changed, with the image they left (a_img), the image before them
// (b_img), the current row, and the action.
func (r *runner) classifyKeyed(ctx context.Context, t *table) error {
	sel := make([]string, len(t.key))
	for i, k := range t.key {
		sel[i] = fmt.Sprintf("(p.r).%s AS pgundo_k%d", pgx.Identifier{k}.Sanitize(), i+1)
	}
	groupBy := make([]string, len(t.key))
	for i := range t.key {
		groupBy[i] = fmt.Sprint(i + 1)
	}
	// One statement: group the net images by key, then look up the current
	// row. No lock is taken here; the apply statements re-check each row as
	// it is written (see applySQL), so a concurrent change cannot slip in.
	// Two steps, each analyzed, so the planner sees real row counts: a
	// handful of rows is looked up by index, a million by one hash join.
	if _, err := r.tx.Exec(ctx, "DROP TABLE IF EXISTS pg_temp.pgundo_k"); err != nil {
		return err
	}
	err := r.parseGuard(ctx, t, fmt.Sprintf(`
		CREATE TEMP TABLE pgundo_k ON COMMIT DROP AS
		SELECT %s,
		       (array_agg(n.img) FILTER (WHERE n.cnt > 0))[1] AS a_img, (array_agg(n.img) FILTER (WHERE n.cnt < 0))[1] AS b_img,
		       (array_agg(p.r) FILTER (WHERE n.cnt > 0))[1] AS a, (array_agg(p.r) FILTER (WHERE n.cnt < 0))[1] AS b,
		       count(*) FILTER (WHERE n.cnt > 0) AS na, count(*) FILTER (WHERE n.cnt < 0) AS nb, max(abs(n.cnt)) AS maxcnt
		  FROM pgundo_net n CROSS JOIN LATERAL (SELECT n.img::%s AS r OFFSET 0) p
		 WHERE n.relid = $1
		 GROUP BY %s`, strings.Join(sel, ", "), t.ident, strings.Join(groupBy, ", ")), t.oid)
	if err != nil {
		return err
	}
	if _, err := r.exec(ctx, t, "analyze plan", `ANALYZE pgundo_k`); err != nil {
		return err
	}
	_, err = r.exec(ctx, t, "classify rows", fmt.Sprintf(`
		CREATE TEMP TABLE pgundo_c ON COMMIT DROP AS
		WITH c AS (
		  -- A row is as the sessions left it when its bytes are the same, or
		  -- failing that its text form (the log's definition).
		  SELECT k.*, %[3]s.ctid IS NOT NULL AS cur_exists,
		         coalesce(%[3]s *= k.a OR %[3]s::text = k.a_img, false) AS cur_as_left,
		         CASE WHEN NOT coalesce(%[3]s *= k.a, false) THEN %[3]s::text END AS cur_img
		    FROM pgundo_k k LEFT JOIN %[1]s %[3]s ON %[2]s)
		SELECT c.*,
		  CASE
		    WHEN na > 1 OR nb > 1 OR maxcnt > 1 THEN 'C'
		    WHEN a_img IS NOT NULL AND NOT cur_exists THEN 'C'
		    WHEN a_img IS NOT NULL AND NOT cur_as_left THEN 'C'
		    WHEN a_img IS NULL AND cur_exists THEN 'C'
		    WHEN a_img IS NOT NULL AND b_img IS NOT NULL THEN 'U'
		    WHEN a_img IS NOT NULL THEN 'D'
		    ELSE 'I' END AS action,
		  CASE
		    WHEN na > 1 OR nb > 1 OR maxcnt > 1 THEN 'changed by another session in between the undone changes'
		    WHEN a_img IS NOT NULL AND NOT cur_exists THEN 'deleted since'
		    WHEN a_img IS NOT NULL AND NOT cur_as_left THEN 'changed since'
		    WHEN a_img IS NULL AND cur_exists THEN 're-created since' END AS reason
		  FROM c`, t.ident, t.keyMatch(t.cur, "k"), t.cur))
	if err != nil {
		return err
	}
	_, err = r.exec(ctx, t, "analyze plan", `ANALYZE pgundo_c`)
	return err
}

// classifyKeyless fills pgundo_c for a table without a primary key: one row
// per distinct row image with its net count and how many equal rows the
// table holds now.
func (r *runner) classifyKeyless(ctx context.Context, t *table) error {
	err := r.parseGuard(ctx, t, fmt.Sprintf(`
		CREATE TEMP TABLE pgundo_c ON COMMIT DROP AS
		SELECT n.img AS pgundo_img, n.cnt, 0::bigint AS have, 'C'::text AS action, NULL::text AS reason, NULL::text AS orig
		  FROM pgundo_net n CROSS JOIN LATERAL (SELECT n.img::%s AS r OFFSET 0) p
		 WHERE n.relid = $1`, t.ident), t.oid)
	if err != nil {
		return err
	}
	if r.apply {
		// Without a key, rows cannot be locked one by one: keep writers off
		// the table until the undo commits.
		if _, err := r.exec(ctx, t, "lock table", fmt.Sprintf(`LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE`, t.ident)); err != nil {
			return err
		}
	}
	if _, err := r.exec(ctx, t, "count current rows", fmt.Sprintf(`
		UPDATE pgundo_c c SET have = h.n
		  FROM (SELECT %[2]s::text AS img, count(*) AS n FROM %[1]s %[2]s GROUP BY 1) h
		 WHERE h.img = c.pgundo_img`, t.ident, t.cur)); err != nil {
		return err
	}
	_, err = r.exec(ctx, t, "classify rows", `
		UPDATE pgundo_c SET
		  action = CASE WHEN cnt > 0 AND have < cnt THEN 'C' WHEN cnt > 0 THEN 'D' ELSE 'I' END,
		  reason = CASE WHEN cnt > 0 AND have < cnt THEN
		    CASE WHEN have = 0 THEN 'changed or deleted since' ELSE format('only %s of the %s equal rows left remain', have, cnt) END END`)
	return err
}

// parseGuard runs sql in a savepoint and turns a failure to read row images
// back into the table's type into a schema-changed refusal.
func (r *runner) parseGuard(ctx context.Context, t *table, sql string, args ...any) error {
	sp, err := r.tx.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := sp.Exec(ctx, sql, args...); err != nil {
		var pgErr *pgconn.PgError
		// Class 22, data exception (invalid_text_representation and the
		// like): a logged value no longer reads as its column's type.
		if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
			return &RefusedError{Kind: ErrSchemaChanged, Detail: fmt.Sprintf(
				"table %s cannot be put back as captured: its logged rows no longer read as the table's columns (%s); its columns changed since capture; nothing was changed", t.name, pgErr.Message)}
		}
		return fmt.Errorf("undo %s: read logged rows: %w", t.name, err)
	}
	return sp.Commit(ctx)
}

// skipMovedKeys skips, with every skipped key, the keys the sessions moved
// it from or to (an UPDATE of the key, a partition move): the row under the
// old key and the row under the new one are one row, so re-inserting the
// one while skipping the other would leave it twice (or not at all). The
// links come from the log's old/new pairs, followed transitively.
func (r *runner) skipMovedKeys(ctx context.Context, t *table) error {
	var skipped bool
	if err := r.tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgundo_c WHERE action = 'S')`).Scan(&skipped); err != nil {
		return err
	}
	if !skipped {
		return nil
	}
	keyOf := func(alias string) string {
		parts := make([]string, len(t.key))
		for i, k := range t.key {
			parts[i] = fmt.Sprintf("(%s.r).%s::text", alias, pgx.Identifier{k}.Sanitize())
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]"
	}
	_, err := r.exec(ctx, t, "skip moved keys", fmt.Sprintf(`
		WITH RECURSIVE links AS (
		  SELECT %[2]s AS a, %[3]s AS b
		    FROM (SELECT c.old, c.new FROM pgundo_sel s JOIN pgundo.change c ON c.stmt_id = s.id
		           WHERE s.root = $1 AND c.stmt_id BETWEEN $2 AND $3 AND c.old IS NOT NULL AND c.new IS NOT NULL
		          OFFSET 0) c -- only this table's images are cast to its row type
		   CROSS JOIN LATERAL (SELECT c.old::%[1]s AS r OFFSET 0) o
		   CROSS JOIN LATERAL (SELECT c.new::%[1]s AS r OFFSET 0) n
		   WHERE %[2]s <> %[3]s),
		sk (k) AS (
		  SELECT %[4]s FROM pgundo_c WHERE action = 'S'
		  UNION
		  SELECT CASE WHEN l.a = sk.k THEN l.b ELSE l.a END FROM links l JOIN sk ON sk.k IN (l.a, l.b))
		UPDATE pgundo_c c SET action = 'S', reason = coalesce(c.reason, 'moved to or from a key skipped')
		  FROM sk WHERE %[5]s = sk.k AND c.action <> 'S'`,
		t.ident, keyOf("o"), keyOf("n"), t.keyText(""), t.keyText("c.")), t.oid, r.minStmt, r.maxStmt)
	return err
}

// collectConflicts appends the table's conflicts to the plan.
func (r *runner) collectConflicts(ctx context.Context, t *table) error {
	var q string
	var args []any
	if t.keyed() {
		names := make([]string, 0, len(t.columns))
		diffs := make([]string, 0, len(t.columns))
		for _, c := range t.columns {
			names = append(names, c.name)
			col := pgx.Identifier{c.name}.Sanitize()
			diffs = append(diffs, fmt.Sprintf("CASE WHEN (x.cur).%[1]s::text IS DISTINCT FROM (x.a).%[1]s::text THEN ($1::text[])[%[2]d] END", col, len(names)))
		}
		q = fmt.Sprintf(`
			SELECT x.k, x.reason, x.action,
			       CASE WHEN x.cur_img IS NOT NULL AND x.a_img IS NOT NULL THEN array_remove(ARRAY[%s], NULL) ELSE '{}' END
			  FROM (SELECT %s AS k, reason, action, cur_img::%s AS cur, a, cur_img, a_img
			          FROM pgundo_c WHERE action IN ('C', 'S', 'M') OFFSET 0) x
			 ORDER BY x.k`, strings.Join(diffs, ", "), t.keyText(""), t.ident)
		args = []any{names}
	} else {
		q = `SELECT ARRAY[pgundo_img], reason, action, '{}'::text[] FROM pgundo_c WHERE action IN ('C', 'S') ORDER BY 1`
	}
	rows, err := r.tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("undo %s: list conflicts: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key []string
		var c Conflict
		var action string
		if err := rows.Scan(&key, &c.Reason, &action, &c.Columns); err != nil {
			return err
		}
		c.Table = t.name
		c.Key = formatKey(t.keyShown, key)
		c.Skipped = action != "C"
		r.plan.Conflicts = append(r.plan.Conflicts, c)
	}
	return rows.Err()
}

func countConflicts(cs []Conflict, table string, skipped bool) int {
	n := 0
	for _, c := range cs {
		if c.Table == table && c.Skipped == skipped {
			n++
		}
	}
	return n
}

// formatKey renders a row's key as col=value pairs; names come quoted.
func formatKey(names, values []string) string {
	if len(names) == 0 {
		return "row " + strings.Join(values, "")
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + values[i]
	}
	return strings.Join(parts, ", ")
}

// explainConflicts adds, best effort, the latest other session that changed
// each conflicting row since, from the log. The statements the row-history
// index (pgundo.hist_key, kept by pgundo.refresh_history: the console, pgundo
// history) holds are looked up there by key; only the later ones are read
// from the log and their images parsed, so a few conflicts on a big log are
// explained in milliseconds, not by reading every later change of the table.
// Without the index (or the right to read it) every later change is read.
func (r *runner) explainConflicts(ctx context.Context, tables []*table) {
	done := r.indexedBelow(ctx)
	for _, t := range tables {
		if !t.keyed() {
			continue
		}
		authors, err := r.conflictAuthors(ctx, t, done)
		if done > 0 && (err != nil || r.unexplained(t, authors)) {
			// The index could not be read, or holds no entry under the
			// row's key for a change it covers (a primary key added or
			// changed, a partition attached, since it was built): read
			// every later change instead.
			authors, err = r.conflictAuthors(ctx, t, 0)
		}
		if err != nil {
			continue // best effort: the conflict stays without its author
		}
		for k, a := range authors {
			for i := range r.plan.Conflicts {
				c := &r.plan.Conflicts[i]
				if c.Table == t.name && c.Key == k {
					s, at := a.session, a.at
					c.ChangedBy, c.ChangedAt = &s, &at
				}
			}
		}
	}
}

// unexplained reports whether a conflict of t has no author in authors.
func (r *runner) unexplained(t *table, authors map[string]author) bool {
	for _, c := range r.plan.Conflicts {
		if _, ok := authors[c.Key]; c.Table == t.name && !ok {
			return true
		}
	}
	return false
}

// author is the session that last changed a row, and when.
type author struct {
	session string
	at      time.Time
}

// indexedBelow is the row-history index's watermark (every statement at or
// below it is indexed, see pgundo.hist_state), or 0 when it cannot be read.
func (r *runner) indexedBelow(ctx context.Context) int64 {
	var done int64
	sp, err := r.tx.Begin(ctx)
	if err != nil {
		return 0
	}
	if err := sp.QueryRow(ctx, "SELECT done_below FROM pgundo.hist_state").Scan(&done); err != nil {
		done = 0
	}
	if sp.Rollback(ctx) != nil {
		return 0
	}
	return done
}

// conflictAuthors returns, by the key shown in the plan, the latest session
// other than the undone ones that changed each conflicting row of t since
// the first undone statement. done is the row-history index's watermark.
// It runs under a savepoint: an error (an image that no longer parses, no
// right to read the index) leaves the undo's transaction as it was.
func (r *runner) conflictAuthors(ctx context.Context, t *table, done int64) (map[string]author, error) {
	sp, err := r.tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer sp.Rollback(ctx) //nolint:errcheck // read only; a failed rollback fails the undo's next statement
	// The index's key of each conflicting row: the text form of its root
	// table's primary key (or its partition's), as refresh_history writes it.
	var hk *string
	var root uint32
	if done > r.minStmt {
		if err := sp.QueryRow(ctx, `
			SELECT coalesce(pgundo._hist_key_expr(r, 'x.v'), pgundo._hist_key_expr($1, 'x.v')), r
			  FROM coalesce(pg_partition_root($1::oid::regclass)::oid, $1::oid) r`, t.oid).Scan(&hk, &root); err != nil {
			return nil, err
		}
	}
	keyOf := make([]string, len(t.key))
	for i, k := range t.key {
		keyOf[i] = fmt.Sprintf("(p.r).%s::text", pgx.Identifier{k}.Sanitize())
	}
	conflicts := fmt.Sprintf(`SELECT %s AS k, coalesce(c.a, c.b) AS v FROM pgundo_c_%d c WHERE c.action IN ('C', 'S', 'M')`, t.keyText("c."), t.oid)
	// Later statements not in the index: their images are read and parsed.
	from, notIndexed := r.minStmt, ""
	if hk != nil {
		from = max(r.minStmt, done)
		notIndexed = `
		   AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id)`
	}
	tail := fmt.Sprintf(`
		SELECT ck.k, st.id
		  FROM pgundo.stmt st
		  JOIN pgundo.change c ON c.stmt_id = st.id
		 CROSS JOIN LATERAL (VALUES (c.old), (c.new)) v (img)
		 CROSS JOIN LATERAL (SELECT v.img::%s AS r OFFSET 0) p
		  JOIN ck ON ck.k = ARRAY[%s]
		 WHERE st.relid = ANY ($1) AND st.id > $2 AND c.stmt_id > $2 AND v.img IS NOT NULL%s`,
		t.ident, strings.Join(keyOf, ", "), notIndexed)
	args := []any{t.partition, from}
	if hk != nil {
		// Indexed statements: looked up by key.
		tail += fmt.Sprintf(`
		UNION ALL
		SELECT ck.k, h.stmt_id
		  FROM ck CROSS JOIN LATERAL (SELECT ck.v) x (v)
		  JOIN pgundo.hist_key h ON h.relid = $3 AND h.key = %s AND h.stmt_id > $4`, *hk)
		args = append(args, root, r.minStmt)
	}
	rows, err := sp.Query(ctx, fmt.Sprintf(`
		WITH ck AS MATERIALIZED (%s),
		     later AS (%s)
		SELECT DISTINCT ON (l.k) l.k, st.session_id, st.at
		  FROM later l
		  JOIN pgundo.stmt st ON st.id = l.id
		 WHERE st.id NOT IN (SELECT id FROM pgundo_sel)
		 ORDER BY l.k, st.id DESC`, conflicts, tail), args...)
	if err != nil {
		return nil, err
	}
	out := map[string]author{}
	var key []string
	var a author
	_, err = pgx.ForEachRow(rows, []any{&key, &a.session, &a.at}, func() error {
		out[formatKey(t.keyShown, key)] = a
		return nil
	})
	return out, err
}
