package undo

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The undo writes with session_replication_role = replica, which also keeps
// PostgreSQL's own foreign-key checks quiet. checkForeignKeys does their work
// for the rows the undo wrote, set-based, before commit: a row it restored or
// re-inserted must find the row it references, and a row it deleted or
// changed must not leave rows (written by other sessions since) that
// reference it. MATCH SIMPLE semantics: a reference with a NULL column is
// not checked.

// fkey is one foreign-key constraint touching an affected table.
type fkey struct {
	name                 string
	child, parent        uint32
	childName, parentNm  string // quote_ident-qualified, usable as SQL
	childCols, parentCol []string
}

// fkCheck is one set-based query that returns the referencing values of the
// first row that would break a foreign key, and the refusal for it.
type fkCheck struct {
	table *table
	fk    fkey
	// lock, when set, runs first: it takes FOR KEY SHARE on the parent rows
	// the restored rows reference, as PostgreSQL's own check would, so that
	// no concurrent transaction can delete them between check and commit.
	lock    string
	sql     string
	refusal func(vals []string) error
}

// foreignKeyChecks returns the checks for every foreign key from or to an
// affected table, each run against the plan's temp tables pgundo_c_OID.
func (r *runner) foreignKeyChecks(ctx context.Context, tables []*table) ([]fkCheck, error) {
	// A foreign key may be declared on the partitioned table or on one of
	// its partitions (then it holds for that partition's rows only).
	byOID := map[uint32]*table{}
	oids := make([]uint32, 0, len(tables))
	for _, t := range tables {
		for _, p := range t.partition {
			byOID[p] = t
			oids = append(oids, p)
		}
	}
	rows, err := r.tx.Query(ctx, `
		SELECT c.conname, c.conrelid, c.confrelid,
		       quote_ident(cn.nspname) || '.' || quote_ident(cc.relname), quote_ident(pn.nspname) || '.' || quote_ident(pc.relname),
		       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k (n, o)
		               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
		       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k (n, o)
		               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
		  FROM pg_constraint c
		  JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
		  JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		 WHERE c.contype = 'f' AND c.conparentid = 0 AND (c.conrelid = ANY ($1) OR c.confrelid = ANY ($1))
		 ORDER BY c.conname`, oids)
	if err != nil {
		return nil, fmt.Errorf("undo: read foreign keys: %w", err)
	}
	fks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fkey, error) {
		var f fkey
		err := row.Scan(&f.name, &f.child, &f.parent, &f.childName, &f.parentNm, &f.childCols, &f.parentCol)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("undo: read foreign keys: %w", err)
	}
	var out []fkCheck
	for _, f := range fks {
		if t := byOID[f.child]; t != nil {
			out = append(out, childSide(t, f))
		}
		if t := byOID[f.parent]; t != nil {
			out = append(out, parentSide(t, f))
		}
	}
	return out, nil
}

// checkForeignKeys runs every foreign-key check; the first that finds a row
// refuses the undo.
func (r *runner) checkForeignKeys(ctx context.Context, tables []*table) error {
	checks, err := r.foreignKeyChecks(ctx, tables)
	if err != nil {
		return err
	}
	for _, c := range checks {
		if c.lock != "" {
			if _, err := r.tx.Exec(ctx, c.lock); err != nil {
				return fmt.Errorf("undo %s: lock the rows foreign key %s references: %w", c.table.name, c.fk.name, err)
			}
		}
		var vals []string
		err := r.tx.QueryRow(ctx, c.sql).Scan(&vals)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("undo %s: check foreign key %s: %w", c.table.name, c.fk.name, err)
		}
		return c.refusal(vals)
	}
	return nil
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

// childSide: every row the undo restored or re-inserted into t must find
// its referenced row. A key declared on one partition of t (f.child is not
// t) checks the rows now in that partition only.
func childSide(t *table, f fkey) fkCheck {
	c := fmt.Sprintf("pgundo_c_%d", t.oid)
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
		src = fmt.Sprintf(`SELECT cur AS x FROM %s cur WHERE %s AND (%s) IN (%s)`, t.ident, inPartition(f.childName), t.curKeyCols("cur"), written)
	case f.child != t.oid:
		src = fmt.Sprintf(`SELECT cur AS x FROM %s cur WHERE %s AND cur::text IN (SELECT pgundo_img FROM %s WHERE action = 'I')`, t.ident, inPartition(f.childName), c)
	case t.fast:
		// The fast path checked that these rows now read as logged.
		src = fmt.Sprintf(`SELECT x.o AS x FROM %s`, t.fastSource("x", restoredRows, true, false))
	case t.keyed():
		src = fmt.Sprintf(`SELECT cur AS x FROM %s cur JOIN %s c ON %s WHERE c.action IN ('U', 'I', 'M')`, t.ident, c, t.keyMatch("cur", "c"))
	default:
		src = fmt.Sprintf(`SELECT pgundo_img::%s AS x FROM %s WHERE action = 'I'`, t.ident, c)
	}
	q := t.aliased(fmt.Sprintf(`SELECT %s FROM (%s OFFSET 0) s WHERE %s AND NOT EXISTS (SELECT FROM %s p WHERE %s) LIMIT 1`,
		textArray(f.childCols, col("(s.x).")), src, notNull(f.childCols, col("(s.x).")), f.parentNm,
		refMatch(f.parentCol, f.childCols, col("p."), col("(s.x)."))))
	lock := t.aliased(fmt.Sprintf(`SELECT FROM %s p WHERE EXISTS (SELECT FROM (%s OFFSET 0) s WHERE %s) FOR KEY SHARE OF p`,
		f.parentNm, src, refMatch(f.parentCol, f.childCols, col("p."), col("(s.x)."))))
	return fkCheck{table: t, fk: f, lock: lock, sql: q, refusal: func(vals []string) error {
		return &RefusedError{Kind: ErrForeignKey, Detail: fmt.Sprintf(
			"undo refused: it would put back a row of %s whose %s no longer exists in %s (foreign key %s); nothing was changed; undo the session that deleted it first, or restore that row",
			f.childName, formatKey(quoteAll(f.childCols), vals), f.parentNm, quoteAll([]string{f.name})[0])}
	}}
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
	q := fmt.Sprintf(`SELECT %s FROM (%s OFFSET 0) s WHERE %s
		AND EXISTS (SELECT FROM %s ch WHERE %s) AND NOT EXISTS (SELECT FROM %s p WHERE %s) LIMIT 1`,
		textArray(f.parentCol, col("(s.x).")), src, notNull(f.parentCol, col("(s.x).")),
		f.childName, refMatch(f.childCols, f.parentCol, col("ch."), col("(s.x).")),
		f.parentNm, refMatch(f.parentCol, f.parentCol, col("p."), col("(s.x).")))
	return fkCheck{table: t, fk: f, sql: q, refusal: func(vals []string) error {
		return &RefusedError{Kind: ErrForeignKey, Detail: fmt.Sprintf(
			"undo refused: rows of %s written since still reference %s %s, which the undo would remove (foreign key %s); nothing was changed; undo or delete those rows first (pgundo sessions --table %s)",
			f.childName, f.parentNm, formatKey(quoteAll(f.parentCol), vals), quoteAll([]string{f.name})[0], f.childName)}
	}}
}

// inPartition is a condition that row cur of a partitioned table is in the
// partition (or sub-partition tree) with quoted name part.
func inPartition(part string) string {
	lit := "'" + strings.ReplaceAll(part, "'", "''") + "'"
	return fmt.Sprintf(`cur.tableoid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)`, lit)
}

// quoteAll quotes column names for messages where SQL would need quotes
// (mixed case, spaces, quotes), as quote_ident does for all but keywords.
func quoteAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c
		if !plainIdent.MatchString(c) {
			out[i] = pgx.Identifier{c}.Sanitize()
		}
	}
	return out
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)
