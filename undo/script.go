package undo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/timefmt"
)

// The --sql script: the planned path (steps 1 to 3, then a trial of 4 and
// 5) run and rolled back, then written out for psql, with the statements of
// steps 4 to 6 (sqlbuild.go) and the rows they read.

// WriteScript plans the undo (changing nothing) and writes it to w as a SQL
// script for psql that a DBA can review and run. It first runs the undo's
// writes and every check Apply runs in a savepoint it rolls back, and
// refuses as Apply would (writing nothing to w) when one fails: a script
// is written only for an undo that could run now. The script is one
// transaction that pins standard_conforming_strings on (its literals read
// as written whatever the server's setting) and the output settings,
// silences application triggers, loads the rows to put
// back (COPY data inline), re-checks under lock that every row is still as
// the sessions left it (else it raises and changes nothing), applies the same
// set-based statements Apply runs, checks the result, and records the undo.
// Row data is streamed from the server to w; nothing is held in memory.
func WriteScript(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, w io.Writer) (*Plan, error) {
	r, err := begin(ctx, conn, sel, opts, false, false)
	if err != nil {
		return nil, err
	}
	tx := r.tx
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	tables, err := r.planAll(ctx)
	if err != nil {
		return r.refused(err)
	}
	// A script that Apply would refuse now is not written: the trial runs
	// the script's statements and every check Apply runs after them
	// (result, foreign keys), and rolls them back. The script repeats the
	// checks when it runs, for what changes in between.
	trial, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.writeAndCheck(ctx, tables); err != nil {
		return nil, err
	}
	if err := trial.Rollback(ctx); err != nil {
		return nil, err
	}
	r.plan.RowsChanged, r.written = 0, nil
	fks, err := r.foreignKeyChecks(ctx, tables)
	if err != nil {
		return nil, err
	}
	var stmtIDs []int64
	rows, err := tx.Query(ctx, `SELECT id FROM pgundo_sel ORDER BY id`)
	if err != nil {
		return nil, err
	}
	stmtIDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}

	bw := bufio.NewWriterSize(w, 1<<16)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("-- pgundo undo of session %s, written %s.\n", comment(strings.Join(r.plan.Sessions, ", ")), timefmt.Format(time.Now()))
	p("-- Review, then run with: psql -X -f THIS_FILE  (one transaction; any error or conflict changes nothing)\n")
	for _, t := range r.plan.Tables {
		p("--   %s: restore %d, re-insert %d, delete %d, merge %d, skip %d\n", comment(t.Table), t.Restore, t.Reinsert, t.Delete, t.Merged, t.Skipped)
	}
	p("\\set ON_ERROR_STOP on\nBEGIN;\n")
	// First, so that every literal below reads as written whatever the
	// server's, database's or role's setting (psql follows it too).
	p("SET LOCAL standard_conforming_strings = on;\n")
	for _, s := range outputSettings {
		p("SET LOCAL %s = %s;\n", s[0], quoteLiteral(s[1]))
	}
	p("SET LOCAL session_replication_role = replica;\n")
	p("-- Refuse if any of these statements was undone meanwhile.\n")
	p("CREATE TEMP TABLE pgundo_sel (id bigint) ON COMMIT DROP;\nCOPY pgundo_sel FROM stdin;\n")
	for _, id := range stmtIDs {
		p("%d\n", id)
	}
	p("\\.\n")
	const undoneSince = "pgundo: these changes were undone since this script was written; nothing was changed"
	p("%s", raiseIf(`SELECT FROM pgundo.undone u JOIN pgundo_sel s ON s.id = u.stmt_id`, undoneSince))
	if len(r.leftBy) > 0 {
		p("%s", raiseIf(fmt.Sprintf(`SELECT FROM pgundo.undo_left WHERE done_by IS NOT NULL AND undo_session = ANY (%s)`, sqlTextArray(r.leftBy)), undoneSince))
	}
	for _, t := range tables {
		if err := r.writeTableScript(ctx, bw, t); err != nil {
			return nil, err
		}
	}
	p("\n-- Foreign keys: PostgreSQL does not check them under session_replication_role = replica.\n")
	for _, c := range fks {
		if len(c.args) > 0 {
			return nil, fmt.Errorf("script: the check of foreign key %s has parameters; a script must hold its values", c.fk.name)
		}
		if c.lock != "" {
			p("%s", doBlock(fmt.Sprintf("BEGIN PERFORM FROM (%s) l; END", c.lock)))
		}
		p("%s", raiseIf(c.sql, fmt.Sprintf("pgundo: the undo would break foreign key %s; nothing was changed", c.fk.name)))
	}
	p("\n-- Record the undo as this session's, like pgundo undo does.\n")
	p("INSERT INTO pgundo.undone (stmt_id, undo_session) SELECT id, pgundo._session() FROM pgundo_sel;\n")
	for _, s := range r.plan.Sessions {
		p("INSERT INTO pgundo.undo (undo_session, undone_session) VALUES (pgundo._session(), %s) ON CONFLICT DO NOTHING;\n", quoteLiteral(s))
	}
	if len(r.leftBy) > 0 {
		p("-- The rows earlier undos left, undone now.\n")
		p("UPDATE pgundo.undo_left SET done_by = pgundo._session() WHERE done_by IS NULL AND undo_session = ANY (%s);\n", sqlTextArray(r.leftBy))
	}
	if err := r.writeLeftScript(ctx, bw, tables); err != nil {
		return nil, err
	}
	p("COMMIT;\n")
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("write script: %w", err)
	}
	return r.plan, nil
}

func (r *runner) writeTableScript(ctx context.Context, w *bufio.Writer, t *table) error {
	c, cur := fmt.Sprintf("pgundo_c_%d", t.oid), t.cur
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n-- %s\n", comment(t.name))
	var cols, sel string
	if t.keyed() {
		cols, sel = "a_img text, b_img text, action text", "a_img, b_img, action"
	} else {
		cols, sel = "pgundo_img text, cnt int, action text", "pgundo_img, cnt::text, action"
	}
	p("CREATE TEMP TABLE %s_raw (%s) ON COMMIT DROP;\nCOPY %s_raw FROM stdin;\n", c, cols, c)
	if err := copyOut(ctx, r.tx, w, fmt.Sprintf(`SELECT %s FROM %s WHERE action IN ('U', 'I', 'D', 'M')`, sel, c)); err != nil {
		return fmt.Errorf("script %s: %w", t.name, err)
	}
	p("\\.\n")
	changed := fmt.Sprintf("pgundo: rows of %s changed since this script was written; nothing was changed; write the script again", t.name)
	if t.keyed() {
		keys := make([]string, len(t.key))
		for i, k := range t.key {
			keys[i] = fmt.Sprintf("(coalesce(a_img, b_img)::%s).%s AS pgundo_k%d", t.ident, pgx.Identifier{k}.Sanitize(), i+1)
		}
		p("CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s, a_img, b_img, a_img::%s AS a, b_img::%s AS b, action FROM %s_raw;\n", c, strings.Join(keys, ", "), t.ident, t.ident, c)
		p("%s", doBlock(fmt.Sprintf("BEGIN PERFORM FROM %[1]s %[2]s JOIN %[3]s c ON %[4]s FOR UPDATE OF %[2]s; END", t.ident, cur, c, t.keyMatch(cur, "c"))))
		p("%s", raiseIf(fmt.Sprintf(`SELECT FROM %[1]s c LEFT JOIN %[2]s %[3]s ON %[4]s
  WHERE (c.action IN ('U', 'D') AND %[3]s::text IS DISTINCT FROM c.a_img) OR (c.action = 'I' AND %[3]s.ctid IS NOT NULL)`, c, t.ident, cur, t.keyMatch(cur, "c")), changed))
	} else {
		p("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE;\n", t.ident)
		p("CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT r.pgundo_img, r.cnt, coalesce(h.n, 0) AS have, r.action FROM %s_raw r\n", c, c)
		p("  LEFT JOIN (SELECT %[2]s::text AS img, count(*) AS n FROM %[1]s %[2]s GROUP BY 1) h ON h.img = r.pgundo_img;\n", t.ident, cur)
		p("%s", raiseIf(fmt.Sprintf(`SELECT FROM %s WHERE action = 'D' AND have < cnt`, c), changed))
	}
	for _, s := range t.applySQL(c, r.opts.OnConflict) {
		p("-- %s\n%s;\n", s.what, s.sql)
	}
	p("%s", raiseIf(t.verifySQL(c), fmt.Sprintf("pgundo: check before commit failed on %s; nothing was changed", t.name)))
	return nil
}

// comment returns s for a -- comment line: line breaks are written as \n
// and \r, so that a name holding one cannot end the comment.
func comment(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

// copyEscape escapes a value for COPY's text format.
func copyEscape(s string) string {
	if !strings.ContainsAny(s, "\\\t\n\r") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// writeLeftScript writes the statements that record the rows the script
// leaves (skipped conflicts) as pgundo undo does: the rows and the
// statements selected, loaded with COPY and stamped with the script's
// session.
func (r *runner) writeLeftScript(ctx context.Context, w *bufio.Writer, tables []*table) error {
	var skipped int64
	for _, t := range r.plan.Tables {
		skipped += t.Skipped
	}
	if skipped == 0 {
		return nil
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("-- The rows this undo leaves as they are (skipped), for a later undo.\n")
	p("CREATE TEMP TABLE pgundo_left_new (relid oid, old text, new text) ON COMMIT DROP;\nCOPY pgundo_left_new FROM stdin;\n")
	if _, err := r.tx.Exec(ctx, `CREATE TEMP TABLE pgundo_left_new (undo_session text, relid oid, old text, new text) ON COMMIT DROP`); err != nil {
		return err
	}
	for _, t := range tables {
		q := t.leftSQL(fmt.Sprintf("pgundo_c_%d", t.oid), "pgundo_left_new")
		if _, err := r.tx.Exec(ctx, q, "", t.oid); err != nil {
			return fmt.Errorf("script: rows left: %w", err)
		}
	}
	if err := copyOut(ctx, r.tx, w, `SELECT relid::text, old, new FROM pgundo_left_new`); err != nil {
		return err
	}
	p("\\.\n")
	p("INSERT INTO pgundo.undo_left (undo_session, relid, old, new) SELECT pgundo._session(), relid, old, new FROM pgundo_left_new;\n")
	p("CREATE TEMP TABLE pgundo_scope_new (id bigint) ON COMMIT DROP;\nCOPY pgundo_scope_new FROM stdin;\n")
	if err := copyOut(ctx, r.tx, w, `SELECT id::text FROM pgundo_sel_all ORDER BY id`); err != nil {
		return err
	}
	p("\\.\n")
	p("INSERT INTO pgundo.undo_scope (undo_session, stmt_id) SELECT pgundo._session(), id FROM pgundo_scope_new;\n")
	return nil
}

// copyOut writes the rows of query q (text columns) in COPY's text format.
func copyOut(ctx context.Context, tx pgx.Tx, w *bufio.Writer, q string) error {
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("script: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		for i, v := range rows.RawValues() {
			if i > 0 {
				w.WriteByte('\t')
			}
			if v == nil {
				w.WriteString(`\N`)
			} else {
				w.WriteString(copyEscape(string(v)))
			}
		}
		w.WriteByte('\n')
	}
	return rows.Err()
}
