package undo

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

// Step 5, check, before the record: every row the planned path wrote reads
// back as it was before the sessions (verifyTable; the straight path checks
// its rows as it writes them), and no foreign key is broken
// (checkForeignKeys, both paths).

// verifyTable checks, inside the transaction, that every row the undo
// restored, re-inserted or deleted is now exactly as it was before the
// sessions; any difference aborts the undo.
func (r *runner) verifyTable(ctx context.Context, t *table) error {
	q := t.verifySQL(fmt.Sprintf("pgundo_c_%d", t.oid))
	var key []string
	var got, want string
	err := r.tx.QueryRow(ctx, q).Scan(&key, &got, &want)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("undo %s: check the result: %w", t.name, err)
	}
	return fmt.Errorf("undo %s: check before commit failed at %s: found %s, expected %s (a trigger or a changed generated column rewrote it?); the undo was rolled back, nothing was changed",
		t.name, formatKey(t.keyShown, key), got, want)
}

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
	// childRoot and parentRoot are the tables the constraint's tables belong
	// to: themselves, or the partitioned table at the top of their tree,
	// which is what pgundo tracks and what refusals name.
	childRoot, parentRoot       uint32
	childRootNm, parentRootNm   string
	parentTypes                 []string // SQL types of parentCol, to read key values back
	childRootKey, childRootKeyQ []string // childRoot's primary key, plain and quoted for messages
}

// label names the constraint for messages, with the partition it is
// declared on or references when that is not the whole table.
func (f fkey) label() string {
	s := "foreign key " + quoteAll([]string{f.name})[0]
	if f.child != f.childRoot {
		s += " of partition " + f.childName
	}
	if f.parent != f.parentRoot {
		s += " to partition " + f.parentNm
	}
	return s
}

// fkCheck is one set-based query that returns the referencing values of the
// first row that would break a foreign key, and the refusal for it.
type fkCheck struct {
	table *table
	fk    fkey
	// lock, when set, runs first: it takes FOR KEY SHARE on the parent rows
	// the restored rows reference, as PostgreSQL's own check would, so that
	// no concurrent transaction can delete them between check and commit.
	lock string
	// sql returns, for the first row found, the key values of the
	// reference (text[]) and the key of the row of table (text[]: its
	// primary key, or its whole row when it has none).
	sql string
	// restores tells which side table is on: true when the undo puts back
	// a row of table that references (child side), false when it removes
	// a row of table that is referenced (parent side).
	restores bool
	// args are the values of lock's and sql's parameters: the fast path's
	// (see changeRows); none for a planned table, whose checks also go
	// into --sql scripts.
	args []any
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
		               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
		       cr.oid, quote_ident(crn.nspname) || '.' || quote_ident(cr.relname),
		       pr.oid, quote_ident(prn.nspname) || '.' || quote_ident(pr.relname),
		       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(c.confkey) WITH ORDINALITY k (n, o)
		               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
		       ARRAY(SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (n, o)
		               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
		              WHERE i.indrelid = cr.oid AND i.indisprimary ORDER BY k.o)
		  FROM pg_constraint c
		  JOIN pg_class cc ON cc.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
		  JOIN pg_class pc ON pc.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
		  JOIN pg_class cr ON cr.oid = coalesce(pg_partition_root(c.conrelid)::oid, c.conrelid) JOIN pg_namespace crn ON crn.oid = cr.relnamespace
		  JOIN pg_class pr ON pr.oid = coalesce(pg_partition_root(c.confrelid)::oid, c.confrelid) JOIN pg_namespace prn ON prn.oid = pr.relnamespace
		 WHERE c.contype = 'f' AND c.conparentid = 0 AND (c.conrelid = ANY ($1) OR c.confrelid = ANY ($1))
		 ORDER BY c.conname`, oids)
	if err != nil {
		return nil, fmt.Errorf("undo: read foreign keys: %w", err)
	}
	fks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fkey, error) {
		var f fkey
		err := row.Scan(&f.name, &f.child, &f.parent, &f.childName, &f.parentNm, &f.childCols, &f.parentCol,
			&f.childRoot, &f.childRootNm, &f.parentRoot, &f.parentRootNm, &f.parentTypes, &f.childRootKey)
		f.childRootKeyQ = quoteAll(f.childRootKey)
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
			if _, err := r.tx.Exec(ctx, c.lock, c.args...); err != nil {
				return fmt.Errorf("undo %s: lock the rows foreign key %s references: %w", c.table.name, c.fk.name, err)
			}
		}
		var vals, row []string
		err := r.tx.QueryRow(ctx, c.sql, c.args...).Scan(&vals, &row)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("undo %s: check foreign key %s: %w", c.table.name, c.fk.name, err)
		}
		if c.restores {
			return r.missingParent(ctx, c, vals, row)
		}
		return r.orphanedChild(ctx, c, vals)
	}
	return nil
}

// writer is the latest other session that wrote a row, from the log.
type writer struct {
	session string
	at      time.Time
	removed bool // the change deleted the row (else it changed it)
}

func (w *writer) String() string {
	return fmt.Sprintf("session %s at %s", w.session, w.at.Local().Format("2006-01-02 15:04:05 MST"))
}

// lookup runs one query of a refusal's explanation in a savepoint: it is
// best effort (a table not tracked, a log pruned, images that no longer
// read as the table's row say nothing), so a failure is no answer.
func (r *runner) lookup(ctx context.Context, sql string, args []any, dest ...any) bool {
	sp, err := r.tx.Begin(ctx)
	if err != nil {
		return false
	}
	err = sp.QueryRow(ctx, sql, args...).Scan(dest...)
	if rerr := sp.Rollback(ctx); rerr != nil {
		return false
	}
	return err == nil
}

// missingParent refuses an undo that would put back row (its key) of
// c.table whose reference vals finds no row, naming the session that
// removed the referenced row when the log has it.
func (r *runner) missingParent(ctx context.Context, c fkCheck, vals, row []string) error {
	t, f := c.table, c.fk
	cond, args := keyArgs("p.o", f.parentCol, f.parentTypes, vals, 2)
	notNow, _ := keyArgs("p.n", f.parentCol, f.parentTypes, vals, 2)
	var w writer
	found := r.lookup(ctx, fmt.Sprintf(`
		SELECT st.session_id, st.at, c.new IS NULL
		  FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
		 CROSS JOIN LATERAL (SELECT c.old::%[1]s AS o, c.new::%[1]s AS n OFFSET 0) p
		 WHERE %[2]s AND c.old IS NOT NULL AND %[3]s AND NOT coalesce(%[4]s, false)
		 ORDER BY st.id DESC LIMIT 1`, f.parentRootNm, otherChanges(len(args)+2), cond, notNow),
		append(append([]any{f.parentRoot}, args...), r.minStmt), &w.session, &w.at, &w.removed)
	what := fmt.Sprintf("the undo would put back %s %s, whose %s no longer exists in %s (%s",
		t.name, formatKey(t.keyShown, row), formatKey(quoteAll(f.childCols), vals), f.parentRootNm, f.label())
	next := fmt.Sprintf("put that row of %s back (pgundo sessions --table %s lists who changed it)", f.parentRootNm, f.parentRootNm)
	if found {
		verb := "changed"
		if w.removed {
			verb = "deleted"
		}
		what += fmt.Sprintf("; %s by %s", verb, w.String())
		next = fmt.Sprintf("undo session %s first (pgundo undo %s), or %s", w.session, w.session, next)
	}
	return &RefusedError{Kind: ErrForeignKey, Detail: fmt.Sprintf(
		"undo refused: %s); nothing was changed; %s, then run this undo again", what, next)}
}

// orphanedChild refuses an undo that would remove the row of c.table that
// vals references while a row of the referencing table still does: it
// names that row and, when the log has it, the session that last wrote it.
func (r *runner) orphanedChild(ctx context.Context, c fkCheck, vals []string) error {
	t, f := c.table, c.fk
	cond, args := keyArgs("x", f.childCols, f.parentTypes, vals, 2)
	keyOf := "ARRAY[x::text]"
	if len(f.childRootKey) > 0 {
		keyOf = textArray(f.childRootKey, col("x."))
	}
	var img string
	var key []string
	rowShown := "a row of " + f.childRootNm
	if r.lookup(ctx, fmt.Sprintf(`SELECT x::text, %s FROM %s x WHERE x.tableoid IN (%s) AND %s LIMIT 1`,
		keyOf, f.childRootNm, treeOf1, cond), append([]any{f.child}, args...), &img, &key) {
		rowShown = f.childRootNm + " " + formatKey(f.childRootKeyQ, key)
	}
	var w writer
	found := img != "" && r.lookup(ctx, fmt.Sprintf(`
		SELECT st.session_id, st.at, false FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
		 WHERE %s AND c.new = $2 ORDER BY st.id DESC LIMIT 1`, otherChanges(3)),
		[]any{f.childRoot, img, r.minStmt}, &w.session, &w.at, &w.removed)
	what := fmt.Sprintf("the undo would remove %s %s, which %s still references (%s",
		t.name, formatKey(quoteAll(f.parentCol), vals), rowShown, f.label())
	next := fmt.Sprintf("change or delete that row (pgundo sessions --table %s lists who wrote to it)", f.childRootNm)
	if found {
		what += "; that row was last written by " + w.String()
		next = fmt.Sprintf("undo session %s first (pgundo undo %s), or change or delete that row", w.session, w.session)
	}
	return &RefusedError{Kind: ErrForeignKey, Detail: fmt.Sprintf(
		"undo refused: %s); nothing was changed; %s, then run this undo again", what, next)}
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
