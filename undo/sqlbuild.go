package undo

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The SQL builders of every step, in one place: each returns SQL text (and
// the values of its parameters, where it has any) and runs nothing. Names
// come from the catalog, quoted with pgx.Identifier; values are parameters
// or, where a --sql script must hold them, literals (quoteLiteral). The
// statements are fed from the temp tables pgundo_net and pgundo_c_OID
// (classify.go) or straight from the log (changeRows). The golden tests
// (sqlbuild_test.go, testdata/*.golden) hold the text they produce.

// Quoting.

// quoteLiteral quotes s as a SQL string literal that reads as s whatever
// standard_conforming_strings is: quotes are doubled, and a string holding
// a backslash is written as an escape string (E'...') with backslashes
// doubled. Scripts and the undo's transaction pin the setting on anyway.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// dollarQuote returns s as a dollar-quoted string constant, with the tag
// $pgundo$, or else $pgundo_1$, $pgundo_2$, ... the first that s does not
// hold (as pg_dump does) and that does not run into the end of s: names
// in s can hold any of them.
func dollarQuote(s string) string {
	tag := "$pgundo$"
	for i := 1; strings.Index(s+tag, tag) < len(s); i++ {
		tag = fmt.Sprintf("$pgundo_%d$", i)
	}
	return tag + s + tag
}

// sqlTextArray writes ss as a text[] expression of string literals.
func sqlTextArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteLiteral(s)
	}
	return "ARRAY[" + strings.Join(q, ", ") + "]::text[]"
}

// doBlock returns a DO statement running the PL/pgSQL block body (BEGIN ...
// END), dollar-quoted (see dollarQuote).
func doBlock(body string) string {
	return "DO " + dollarQuote(" "+body+" ") + ";\n"
}

// raiseIf returns a DO statement that raises an exception with message msg
// (taken as is: no % placeholders) when query q returns a row.
func raiseIf(q, msg string) string {
	return doBlock(fmt.Sprintf("BEGIN IF EXISTS (%s) THEN\n  RAISE EXCEPTION USING MESSAGE = %s; END IF; END", q, quoteLiteral(msg)))
}

// Key and column lists.

// keyCols returns "pgundo_k1, pgundo_k2, ..." or with a prefix.
func (t *table) keyCols(prefix string) string {
	parts := make([]string, len(t.key))
	for i := range t.key {
		parts[i] = fmt.Sprintf("%spgundo_k%d", prefix, i+1)
	}
	return strings.Join(parts, ", ")
}

// curKeyCols returns "cur.k1, cur.k2" for the live table.
func (t *table) curKeyCols(alias string) string {
	parts := make([]string, len(t.key))
	for i, k := range t.key {
		parts[i] = alias + "." + pgx.Identifier{k}.Sanitize()
	}
	return strings.Join(parts, ", ")
}

// keyMatch is "(cur.k1, cur.k2) = (c.pgundo_k1, c.pgundo_k2)"; IS NOT
// DISTINCT FROM is not needed, primary-key columns are never NULL.
func (t *table) keyMatch(cur, c string) string {
	return fmt.Sprintf("(%s) = (%s)", t.curKeyCols(cur), t.keyCols(c+"."))
}

// keyText is an array expression of the key values as text, for reports.
func (t *table) keyText(prefix string) string {
	parts := make([]string, len(t.key))
	for i := range t.key {
		parts[i] = fmt.Sprintf("%spgundo_k%d::text", prefix, i+1)
	}
	return "ARRAY[" + strings.Join(parts, ", ") + "]"
}

// keyOf is "(x.n).k1, (x.n).k2" for image field f of alias x.
func (t *table) keyOf(x, f string) string {
	parts := make([]string, len(t.key))
	for i, k := range t.key {
		parts[i] = fmt.Sprintf("(%s.%s).%s", x, f, pgx.Identifier{k}.Sanitize())
	}
	return strings.Join(parts, ", ")
}

// rowKey is a text array naming row x of t for messages: its primary key,
// or its whole row when t has none.
func (t *table) rowKey(x string) string {
	if !t.keyed() {
		return fmt.Sprintf("ARRAY[(%s)::text]", x)
	}
	return textArray(t.key, col("("+x+")."))
}

func textArray(cols []string, expr func(string) string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = expr(c) + "::text"
	}
	return "ARRAY[" + strings.Join(parts, ", ") + "]"
}

func col(prefix string) func(string) string {
	return func(c string) string { return prefix + pgx.Identifier{c}.Sanitize() }
}

// refMatch is "x.a = y.b AND ..." over two column lists, with each side's
// column expression made by the given functions.
func refMatch(left, right []string, l, rt func(string) string) string {
	parts := make([]string, len(left))
	for i := range left {
		parts[i] = l(left[i]) + " = " + rt(right[i])
	}
	return strings.Join(parts, " AND ")
}

func notNull(cols []string, expr func(string) string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = expr(c) + " IS NOT NULL"
	}
	return strings.Join(parts, " AND ")
}

// restoreLists returns, for the row image expression img (say "x.o"), what
// puts a row back: the SET list of an UPDATE (the settable columns), and the
// column and value lists of an INSERT (every writable column).
func (t *table) restoreLists(img string) (set, cols, vals []string) {
	for _, col := range t.writable() {
		id := pgx.Identifier{col.name}.Sanitize()
		cols = append(cols, id)
		vals = append(vals, fmt.Sprintf("(%s).%s", img, id))
		if t.settable(col) {
			set = append(set, fmt.Sprintf("%s = (%s).%s", id, img, id))
		}
	}
	return set, cols, vals
}

// settable tells whether an UPDATE that puts a row back sets writable
// column col. Key columns are not set (rows are matched by them), nor
// identity ALWAYS columns, which UPDATE cannot set: their value never
// changes under the same key but through SET col = DEFAULT, and the check
// after the write catches that case.
func (t *table) settable(col column) bool { return !t.isKey(col.name) && !col.identityAlways }

// The log as a FROM item, for the straight path (apply_straight.go) and its
// foreign-key checks.

// changeRows is the log's changes of the selected statements on t, as a
// FROM item with columns old and new. Its parameters are $1 on, with the
// values changeArgs gives; a statement that uses it numbers its own
// parameters after them. The id range lets the scan prune chunks and use
// the BRIN index. A few statements (selIDs, at most literalIDs) are given
// as a constant list, more are joined through pgundo_sel (why: DESIGN.md,
// "Straight path: plan settings").
func (t *table) changeRows() string {
	if len(t.selIDs) > 0 {
		return `(SELECT c.old, c.new FROM pgundo.change c
		 WHERE c.stmt_id = ANY ($1::bigint[]) AND c.stmt_id BETWEEN $2::bigint AND $3::bigint)`
	}
	return `(SELECT c.old, c.new FROM pgundo.change c
		 WHERE c.stmt_id IN (SELECT id FROM pgundo_sel WHERE root = $1::oid)
		   AND c.stmt_id BETWEEN (SELECT min(id) FROM pgundo_sel WHERE root = $1::oid) AND (SELECT max(id) FROM pgundo_sel WHERE root = $1::oid))`
}

// changeArgs returns the values of changeRows' parameters ($1 on), and so
// of fastSource's.
func (t *table) changeArgs() []any {
	if len(t.selIDs) > 0 {
		return []any{t.selIDs, slices.Min(t.selIDs), slices.Max(t.selIDs)}
	}
	return []any{t.oid}
}

// fastSource returns a FROM item named alias over t's changes matching
// where (its parameters are changeRows': pass t.changeArgs()), with the images parsed once per row into o (old) and n (new) as
// needed. OFFSET 0 keeps the subquery whole: each image is parsed once in
// its target list (flattened, every (x.o).col would parse it again), and
// the planner joins it as one relation (a LATERAL parse let it nest a
// sequential scan of the live table inside a loop over the changes).
func (t *table) fastSource(alias, where string, old, new bool) string {
	parsed := ""
	if old {
		parsed += fmt.Sprintf(", ch.old::%s AS o", t.ident)
	}
	if new {
		parsed += fmt.Sprintf(", ch.new::%s AS n", t.ident)
	}
	return fmt.Sprintf(`(SELECT ch.old, ch.new%s FROM %s ch WHERE %s OFFSET 0) %s`,
		parsed, t.changeRows(), where, alias)
}

// The three kinds of change, as filters on change rows. An update that left
// the row as it was (old = new) changes nothing and is left out, as netting
// leaves it out of the plan.
const (
	createdRows = `ch.old IS NULL`
	deletedRows = `ch.new IS NULL`
	updatedRows = `ch.old IS NOT NULL AND ch.new IS NOT NULL AND ch.old IS DISTINCT FROM ch.new`
	// restoredRows are the changes whose old image the undo writes back
	// (updated and deleted rows), removedRows those whose new image it
	// takes away (updated and created rows): the foreign-key checks' rows.
	restoredRows = `ch.old IS NOT NULL AND ch.old IS DISTINCT FROM ch.new`
	removedRows  = `ch.new IS NOT NULL AND ch.old IS DISTINCT FROM ch.new`
)

// Apply, planned (apply_planned.go; the same statements go into scripts).

// stepKind is the plan action a generated statement writes (see pgundo_c).
type stepKind byte

// The kinds of apply statements, as pgundo_c's action letters.
const (
	stepDelete  stepKind = 'D'
	stepRestore stepKind = 'U'
	stepMerge   stepKind = 'M'
	stepInsert  stepKind = 'I'
)

// sqlStep is one generated statement with what it does, for messages, and
// the plan action it writes, set by the builder.
type sqlStep struct {
	what, sql string
	kind      stepKind
	// replaces marks a step that deletes each row and inserts it back:
	// it writes (and its undo logs) two rows per planned row.
	replaces bool
}

// applySQL returns the statements that write the table's plan from temp
// table c: deletions, restores, merges and re-insertions, one set-based
// statement each. The same statements run in Apply and go into --sql scripts.
// The live table is aliased t.cur (see liveAlias).
func (t *table) applySQL(c string, mode ConflictMode) []sqlStep {
	cur := t.cur
	setCols, _, _ := t.restoreLists("u.b")
	_, insCols, insVals := t.restoreLists("i.b")
	var mergeSet []string
	for _, col := range t.writable() {
		if !t.settable(col) {
			continue
		}
		id := pgx.Identifier{col.name}.Sanitize()
		mergeSet = append(mergeSet, fmt.Sprintf("%[1]s = CASE WHEN %[2]s.%[1]s::text IS NOT DISTINCT FROM (u.a).%[1]s::text THEN (u.b).%[1]s ELSE %[2]s.%[1]s END", id, cur))
	}
	var stmts []sqlStep
	add := func(kind stepKind, what, sql string) {
		stmts = append(stmts, sqlStep{what: what, sql: sql, kind: kind})
	}
	if t.keyed() {
		// Each write re-checks, on the row version it locks, that the row is
		// still as the sessions left it; the caller compares the counts.
		add(stepDelete, "Delete rows the sessions created", fmt.Sprintf(`DELETE FROM %[1]s %[4]s USING %[2]s c WHERE c.action = 'D' AND %[3]s AND (%[4]s *= c.a OR %[4]s::text = c.a_img)`,
			t.ident, c, t.keyMatch(cur, "c"), cur))
		// An UPDATE cannot set a GENERATED ALWAYS identity column: a row
		// whose identity value differs from the one to put back (it was
		// deleted and inserted again under its key) is deleted and inserted
		// back whole instead, in one statement.
		var idCur, idOld []string
		for _, col := range t.writable() {
			if col.identityAlways && !t.isKey(col.name) {
				id := pgx.Identifier{col.name}.Sanitize()
				idCur = append(idCur, cur+"."+id)
				idOld = append(idOld, "(u.b)."+id)
			}
		}
		sameID := ""
		if len(idCur) > 0 {
			sameID = fmt.Sprintf(" AND (%s) IS NOT DISTINCT FROM (%s)", strings.Join(append(idCur, "NULL"), ", "), strings.Join(append(idOld, "NULL"), ", "))
			_, repCols, repVals := t.restoreLists("g.b")
			add(stepRestore, "Replace rows whose identity changed", fmt.Sprintf(`WITH g AS (DELETE FROM %[1]s %[4]s USING %[2]s u WHERE u.action = 'U' AND %[3]s AND (%[4]s *= u.a OR %[4]s::text = u.a_img)
    AND (%[5]s) IS DISTINCT FROM (%[6]s) RETURNING u.b)
INSERT INTO %[1]s (%[7]s) OVERRIDING SYSTEM VALUE SELECT %[8]s FROM g`,
				t.ident, c, t.keyMatch(cur, "u"), cur, strings.Join(append(idCur, "NULL"), ", "), strings.Join(append(idOld, "NULL"), ", "),
				strings.Join(repCols, ", "), strings.Join(repVals, ", ")))
			stmts[len(stmts)-1].replaces = true
		}
		if len(setCols) > 0 {
			add(stepRestore, "Update rows back", fmt.Sprintf(`UPDATE %[1]s %[5]s SET %[2]s FROM %[3]s u WHERE u.action = 'U' AND %[4]s AND (%[5]s *= u.a OR %[5]s::text = u.a_img)%[6]s`,
				t.ident, strings.Join(setCols, ", "), c, t.keyMatch(cur, "u"), cur, sameID))
			if mode == Merge {
				add(stepMerge, "Merge changed rows", fmt.Sprintf(`UPDATE %s %s SET %s FROM %s u WHERE u.action = 'M' AND %s`,
					t.ident, cur, strings.Join(mergeSet, ", "), c, t.keyMatch(cur, "u")))
			}
		}
		add(stepInsert, "Insert deleted rows back", fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s i WHERE i.action = 'I'`,
			t.ident, strings.Join(insCols, ", "), strings.Join(insVals, ", "), c))
	} else {
		add(stepDelete, "Delete rows the sessions created", fmt.Sprintf(`DELETE FROM %[1]s %[3]s WHERE (%[3]s.tableoid, %[3]s.ctid) IN (
  SELECT x.tableoid, x.ctid FROM (
    SELECT %[3]s.tableoid, %[3]s.ctid, c.cnt, row_number() OVER (PARTITION BY c.pgundo_img) AS rn
      FROM %[1]s %[3]s JOIN %[2]s c ON c.pgundo_img = %[3]s::text WHERE c.action = 'D') x
   WHERE x.rn <= x.cnt)`, t.ident, c, cur))
		add(stepInsert, "Insert deleted rows back", fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM (SELECT pgundo_img::%s AS b, -cnt AS n FROM %s WHERE action = 'I' OFFSET 0) i CROSS JOIN LATERAL generate_series(1, i.n)`,
			t.ident, strings.Join(insCols, ", "), strings.Join(insVals, ", "), t.ident, c))
	}
	return stmts
}

// Check (check.go).

// verifySQL returns a query for the first row of temp table c that is not
// as it was before the sessions (key, found, expected), or no row.
func (t *table) verifySQL(c string) string {
	if t.keyed() {
		return fmt.Sprintf(`SELECT %[1]s, coalesce(%[5]s::text, '(absent)'), coalesce(c.b_img, '(absent)')
  FROM %[2]s c LEFT JOIN %[3]s %[5]s ON %[4]s
 WHERE (c.action IN ('U', 'I') AND NOT coalesce(%[5]s *= c.b OR %[5]s::text = c.b_img, false))
    OR (c.action = 'D' AND %[5]s.ctid IS NOT NULL)
 LIMIT 1`, t.keyText("c."), c, t.ident, t.keyMatch(t.cur, "c"), t.cur)
	}
	return fmt.Sprintf(`SELECT ARRAY[c.pgundo_img], coalesce(h.n, 0)::text || ' equal rows', (c.have - c.cnt)::text || ' equal rows'
  FROM %[1]s c LEFT JOIN (SELECT %[3]s::text AS img, count(*) AS n FROM %[2]s %[3]s GROUP BY 1) h ON h.img = c.pgundo_img
 WHERE c.action IN ('D', 'I') AND coalesce(h.n, 0) <> c.have - c.cnt
 LIMIT 1`, c, t.ident, t.cur)
}

// childSide: every row the undo restored or re-inserted into t must find
// its referenced row. A key declared on one partition of t (f.child is not
// t) checks the rows now in that partition only.
func childSide(t *table, f fkey) fkCheck {
	c, cur := fmt.Sprintf("pgundo_c_%d", t.oid), t.cur
	var src string
	switch {
	case f.child != t.oid && t.keyed():
		// The live rows of that partition (its leaves, if it is
		// partitioned itself) among those the undo wrote. By name, so
		// that a --sql script run later fails on a partition gone since.
		written := fmt.Sprintf(`SELECT %s FROM %s c WHERE c.action IN ('U', 'I', 'M')`, t.keyCols("c."), c)
		if t.fast {
			written = fmt.Sprintf(`SELECT %s FROM %s`, t.keyOf("x", "o"), t.fastSource("x", restoredRows, true, false))
		}
		src = fmt.Sprintf(`SELECT %[2]s AS x FROM %[1]s %[2]s WHERE %[3]s AND (%[4]s) IN (%[5]s)`, t.ident, cur, inPartition(cur, f.childName), t.curKeyCols(cur), written)
	case f.child != t.oid:
		src = fmt.Sprintf(`SELECT %[2]s AS x FROM %[1]s %[2]s WHERE %[3]s AND %[2]s::text IN (SELECT pgundo_img FROM %[4]s WHERE action = 'I')`, t.ident, cur, inPartition(cur, f.childName), c)
	case t.fast:
		// The fast path checked that these rows now read as logged.
		src = fmt.Sprintf(`SELECT x.o AS x FROM %s`, t.fastSource("x", restoredRows, true, false))
	case t.keyed():
		src = fmt.Sprintf(`SELECT %[2]s AS x FROM %[1]s %[2]s JOIN %[3]s c ON %[4]s WHERE c.action IN ('U', 'I', 'M')`, t.ident, cur, c, t.keyMatch(cur, "c"))
	default:
		src = fmt.Sprintf(`SELECT pgundo_img::%s AS x FROM %s WHERE action = 'I'`, t.ident, c)
	}
	q := fmt.Sprintf(`SELECT %s, %s FROM (%s OFFSET 0) s WHERE %s AND NOT EXISTS (SELECT FROM %s p WHERE %s) LIMIT 1`,
		textArray(f.childCols, col("(s.x).")), t.rowKey("s.x"), src, notNull(f.childCols, col("(s.x).")), f.parentNm,
		refMatch(f.parentCol, f.childCols, col("p."), col("(s.x).")))
	// src is a FROM item beside p, not a subquery under it: there p's
	// columns would be in scope, and one named like t's alias would take
	// the place of t's whole row.
	lock := fmt.Sprintf(`SELECT FROM %s p, (%s OFFSET 0) s WHERE %s FOR KEY SHARE OF p`,
		f.parentNm, src, refMatch(f.parentCol, f.childCols, col("p."), col("(s.x).")))
	return fkCheck{table: t, fk: f, lock: lock, sql: q, restores: true, args: fastArgs(t)}
}

// parentSide: no row may reference a row the undo deleted or changed away
// in t.
func parentSide(t *table, f fkey) fkCheck {
	c := fmt.Sprintf("pgundo_c_%d", t.oid)
	var src string
	switch {
	case t.fast:
		src = fmt.Sprintf(`SELECT x.n AS x FROM %s`, t.fastSource("x", removedRows, false, true))
	case t.keyed():
		src = fmt.Sprintf(`SELECT a AS x FROM %s WHERE action IN ('D', 'U', 'M')`, c)
	default:
		src = fmt.Sprintf(`SELECT pgundo_img::%s AS x FROM %s WHERE action = 'D'`, t.ident, c)
	}
	// The referenced table is t, or the partition of t the key was
	// declared on: the removed row's values must still be found there.
	q := fmt.Sprintf(`SELECT %s, %s FROM (%s OFFSET 0) s WHERE %s
		AND EXISTS (SELECT FROM %s ch WHERE %s) AND NOT EXISTS (SELECT FROM %s p WHERE %s) LIMIT 1`,
		textArray(f.parentCol, col("(s.x).")), t.rowKey("s.x"), src, notNull(f.parentCol, col("(s.x).")),
		f.childName, refMatch(f.childCols, f.parentCol, col("ch."), col("(s.x).")),
		f.parentNm, refMatch(f.parentCol, f.parentCol, col("p."), col("(s.x).")))
	return fkCheck{table: t, fk: f, sql: q, args: fastArgs(t)}
}

// fastArgs is the values of the parameters of t's foreign-key checks: those
// of t's changes in the log when the fast path undid t (see changeRows),
// else none.
func fastArgs(t *table) []any {
	if t.fast {
		return t.changeArgs()
	}
	return nil
}

// inPartition is a condition that row cur (the alias of a partitioned
// table's live rows) is in the partition (or sub-partition tree) with
// quoted name part. The name is a literal (see quoteLiteral): the same
// check goes into --sql scripts.
func inPartition(cur, part string) string {
	return fmt.Sprintf(`%s.tableoid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)`, cur, quoteLiteral(part))
}

// otherChanges is the condition on pgundo.stmt st (and the change c it
// joins) for changes of another session than the undone ones, since the
// first undone statement (parameter $first: pass r.minStmt there), on the
// tables of root's tree ($1 is root's oid), not made by the undo itself.
func otherChanges(first int) string {
	return fmt.Sprintf(`st.relid IN (%[2]s)
		   AND st.id >= $%[1]d AND c.stmt_id >= $%[1]d AND st.id NOT IN (SELECT id FROM pgundo_sel)
		   AND st.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()`, first, treeOf1)
}

// treeOf1 is the oids of table $1 and, when it is partitioned, of its
// partitions (pg_partition_tree lists nothing for a plain table).
const treeOf1 = `SELECT $1::oid UNION ALL SELECT relid FROM pg_partition_tree($1::oid::regclass) WHERE relid <> $1::oid::regclass`

// keyArgs returns "(x.a, x.b) = ($2::int, $3::text)" for the reference's
// columns cols of row x against the key values vals, with its arguments
// from position first.
func keyArgs(x string, cols, types, vals []string, first int) (string, []any) {
	l, rt := make([]string, len(cols)), make([]string, len(cols))
	args := make([]any, len(cols))
	for i, c := range cols {
		l[i] = fmt.Sprintf("(%s).%s", x, pgx.Identifier{c}.Sanitize())
		rt[i] = fmt.Sprintf("$%d::%s", first+i, types[i])
		args[i] = vals[i]
	}
	return fmt.Sprintf("(%s) = (%s)", strings.Join(l, ", "), strings.Join(rt, ", ")), args
}

// Record (record.go): the rows the undo leaves.

// leftSQL returns the statement that copies the rows plan table c skips
// into table into, pgundo.undo_left or a table of its columns ($1 the
// undo's session, $2 the table). With a key,
// a skipped key's net images (pgundo_net: the images the sessions left,
// +1, and the ones they replaced, -1, however many statements and sessions
// wrote them) are kept as they are, so that a later undo nets them again to
// the same; without one, each skipped row's pair (see skipKeyless).
func (t *table) leftSQL(c, into string) string {
	if !t.keyed() {
		return fmt.Sprintf(`INSERT INTO %s (undo_session, relid, old, new)
			SELECT $1, $2, orig, pgundo_img FROM %s CROSS JOIN LATERAL generate_series(1, cnt) WHERE action = 'S'`, into, c)
	}
	keyOf := make([]string, len(t.key))
	for i, k := range t.key {
		keyOf[i] = fmt.Sprintf("(p.r).%s::text", pgx.Identifier{k}.Sanitize())
	}
	return fmt.Sprintf(`INSERT INTO %[5]s (undo_session, relid, old, new)
		SELECT $1, $2, CASE WHEN n.cnt < 0 THEN n.img END, CASE WHEN n.cnt > 0 THEN n.img END
		  FROM (SELECT img, cnt FROM pgundo_net WHERE relid = $2 OFFSET 0) n
		 CROSS JOIN LATERAL (SELECT n.img::%[1]s AS r OFFSET 0) p
		 CROSS JOIN LATERAL generate_series(1, abs(n.cnt))
		 WHERE ARRAY[%[2]s] IN (SELECT %[3]s FROM %[4]s WHERE action = 'S')`,
		t.ident, strings.Join(keyOf, ", "), t.keyText(""), c, into)
}
