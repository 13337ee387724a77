package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// Defaults for pgundo try: short, so a rehearsal on a busy production
// database gives up instead of queueing behind (and in front of) its users.
const (
	defaultTryLockTimeout      = 3 * time.Second
	defaultTryStatementTimeout = 60 * time.Second
	// tryConfirmTimeout bounds how long a try --commit holds its locks while
	// waiting for y/N: the server ends the session (rolling back) after it.
	tryConfirmTimeout = 5 * time.Minute
)

type tryOptions struct {
	commit           bool
	yes              bool
	lockTimeout      time.Duration
	statementTimeout time.Duration
	limit            int
	tag              string
}

// Validate checks the flags that need no database.
func (o tryOptions) Validate(args []string, stdin io.Reader) error {
	if len(args) != 1 {
		return usageErr(errors.New("name one script: pgundo try FILE.sql (or - for stdin)"))
	}
	if o.lockTimeout < 0 || o.statementTimeout < 0 {
		return usageErr(errors.New("--lock-timeout and --statement-timeout must not be negative (0 means no limit)"))
	}
	if o.limit < 0 {
		return usageErr(errors.New("--limit must be 0 (no limit) or more"))
	}
	if o.yes && !o.commit {
		return usageErr(errors.New("--yes only makes sense with --commit (without it try always rolls back)"))
	}
	if o.commit && !o.yes {
		if args[0] == "-" {
			return usageErr(errors.New("try - --commit reads the script from stdin, so it cannot ask for confirmation there; nothing was run; add --yes, or run try without --commit first to see the report"))
		}
		if !isTerminal(stdin) {
			return usageErr(errors.New("try --commit needs confirmation: no terminal to ask on, so nothing was run; add --yes to commit without asking, or run try without --commit first to see the report"))
		}
	}
	return nil
}

// TryStatement is one statement of the script and what the server said it did.
type TryStatement struct {
	// Line is the script line where the statement starts.
	Line int `json:"line"`
	// Statement is the statement's first line, shortened.
	Statement string `json:"statement"`
	// Result is the server's command tag, e.g. "UPDATE 3".
	Result string `json:"result"`
}

// UntrackedWrite is a table the script wrote that pgundo does not track, so
// its row changes could not be captured and shown.
type UntrackedWrite struct {
	Table    string `json:"table"`
	Inserted int64  `json:"inserted"`
	Updated  int64  `json:"updated"`
	Deleted  int64  `json:"deleted"`
	// Rewritten is true when the table got new storage in the transaction:
	// TRUNCATE, or a rewriting ALTER TABLE, CLUSTER or VACUUM FULL.
	Rewritten bool `json:"truncated_or_rewritten"`
}

// TryResult is what pgundo try reports: the statements, then what they
// changed in tracked tables (cascades and trigger side effects included),
// the untracked tables they wrote, and whether it was committed.
type TryResult struct {
	Script     string         `json:"script"`
	Statements []TryStatement `json:"statements"`
	history.TxDetail
	Untracked []UntrackedWrite `json:"untracked"`
	// Committed is true when the changes were kept (--commit, confirmed);
	// otherwise the transaction was rolled back.
	Committed bool `json:"committed"`
}

// TryStatementError is a script statement that failed; the transaction was
// rolled back.
type TryStatementError struct {
	Script string
	Stmt   scriptStmt
	// ErrLine is the script line the server's error position points at
	// (Stmt.Line when the error has no position).
	ErrLine int
	Err     error
}

func (e *TryStatementError) Error() string {
	var b strings.Builder
	at := fmt.Sprintf("line %d", e.Stmt.Line)
	if e.ErrLine != e.Stmt.Line {
		at = fmt.Sprintf("line %d (error at line %d)", e.Stmt.Line, e.ErrLine)
	}
	fmt.Fprintf(&b, "try %s: the statement at %s failed: %s\n", e.Script, at, pgMessage(e.Err))
	lines := strings.Split(e.Stmt.Text, "\n")
	if len(lines) > 12 {
		lines = append(lines[:12], "...")
	}
	for i, l := range lines {
		if i < 12 {
			fmt.Fprintf(&b, "  %5d | %s\n", e.Stmt.Line+i, l)
		} else {
			fmt.Fprintf(&b, "        | %s\n", l)
		}
	}
	b.WriteString("rolled back: nothing was changed; fix the statement and run try again")
	return b.String()
}

func (e *TryStatementError) Unwrap() error { return e.Err }

// pgMessage renders a server error with its detail, hint and context.
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := fmt.Sprintf("%s: %s (SQLSTATE %s)", pe.Severity, pe.Message, pe.Code)
	if pe.Detail != "" {
		s += "\n  detail: " + pe.Detail
	}
	if pe.Hint != "" {
		s += "\n  hint: " + pe.Hint
	}
	if pe.Where != "" {
		s += "\n  where: " + strings.ReplaceAll(pe.Where, "\n", "\n    ")
	}
	return s
}

const tryLong = `Rehearse a patch script: run it inside one transaction, show exactly what it
changed, then roll back (the default) or commit (--commit).

The report lists each statement with its result, then per table the rows
inserted, updated, deleted and truncated, then every row change with the
columns it changed (old -> new), cascades and trigger side effects included:
pgundo's capture triggers write the log inside the same transaction, and try
reads it back before it ends. Deferred constraints and constraint triggers
are run at the end of the script, as COMMIT would run them. Tables the script wrote that are not tracked
are named in a warning (their rows cannot be shown; pgundo track them first).

By default the transaction is rolled back: data and log are exactly as before
(only sequences the script used stay advanced, as PostgreSQL never rolls
them back). With --commit the report is shown first and try asks y/N on a
terminal (with no terminal, --yes is required: exit 2); the committed changes
are a recorded session that pgundo undo can put back. While it waits for the
answer the script's locks are held, for at most 5 minutes.

The script is plain SQL (psql meta-commands such as \set are refused). It is
split into statements as psql does (quotes, dollar quoting, comments and
BEGIN ATOMIC bodies respected) and each runs in turn; a failing statement is
shown with its line, and everything is rolled back. A script that manages its
own transactions (BEGIN, COMMIT, ROLLBACK, END, SAVEPOINT, PREPARE TRANSACTION)
or runs what cannot run in a transaction block (VACUUM, CREATE INDEX
CONCURRENTLY, CREATE DATABASE, ...) is refused before anything runs (exit 2).

--lock-timeout (default 3s) and --statement-timeout (default 60s) keep a
rehearsal from queueing behind, and blocking, production traffic for long; 0
means no limit.

Exit codes: 0 shown (and rolled back, or committed); 1 error, including a
failing statement; 2 bad usage or a refused script; 3 commit not confirmed.`

func newTryCommand(g *globals) *cobra.Command {
	var o tryOptions
	cmd := &cobra.Command{
		Use:   "try FILE.sql",
		Short: "Rehearse a script in a transaction: show the row changes, then roll back (or --commit)",
		Long:  tryLong,
		Example: `  pgundo try fix-notes.sql
  pgundo try fix-notes.sql --json | jq '.tables'
  psql -XAt -c "select 'update orders set note = null where id = 7'" | pgundo try -
  pgundo try fix-notes.sql --lock-timeout 1s --statement-timeout 5m
  pgundo try fix-notes.sql --commit            # asks y/N after the report
  pgundo try fix-notes.sql --commit --yes --tag ticket-123`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args, g.stdin); err != nil {
				return err
			}
			name := args[0]
			var src []byte
			var err error
			if name == "-" {
				name = "(stdin)"
				src, err = io.ReadAll(g.stdin)
			} else {
				src, err = os.ReadFile(name)
			}
			if err != nil {
				return usageErr(fmt.Errorf("try: cannot read the script: %w", err))
			}
			src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
			stmts, err := checkScript(name, string(src), true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var scs string
			if err := conn.QueryRow(ctx, "SELECT current_setting('standard_conforming_strings')").Scan(&scs); err != nil {
				return fmt.Errorf("try %s: %w", name, err)
			}
			if scs != "on" {
				if stmts, err = checkScript(name, string(src), false); err != nil {
					return err
				}
			}
			return g.try(ctx, conn, name, stmts, o)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.commit, "commit", false, "commit after showing the report (asks y/N on a terminal)")
	fl.BoolVar(&o.yes, "yes", false, "with --commit: commit without asking")
	fl.DurationVar(&o.lockTimeout, "lock-timeout", defaultTryLockTimeout, "give up a statement that waits longer than this for a lock (0: no limit)")
	fl.DurationVar(&o.statementTimeout, "statement-timeout", defaultTryStatementTimeout, "give up a statement that runs longer than this (0: no limit)")
	fl.IntVar(&o.limit, "limit", 100, "list at most this many row changes (0: all); a cut is said on stderr, and in --json by \"more\" and \"truncated\"")
	fl.StringVar(&o.tag, "tag", "", "set pgundo.tag for the script's changes (kept with --commit; pgundo undo --tag)")
	return cmd
}

// checkScript splits the script and refuses it, naming every offending
// statement, if it cannot run inside try's transaction.
func checkScript(name, src string, standardStrings bool) ([]scriptStmt, error) {
	stmts, err := splitScript(src, standardStrings)
	if err != nil {
		return nil, usageErr(fmt.Errorf("try %s: %w; nothing was run", name, err))
	}
	if len(stmts) == 0 {
		return nil, usageErr(fmt.Errorf("try %s: the script has no statements; nothing was run", name))
	}
	var refused []string
	for _, s := range stmts {
		if why := s.refusal(); why != "" {
			refused = append(refused, fmt.Sprintf("  line %d: %s\n    %s", s.Line, s.summary(), why))
		}
	}
	if len(refused) > 0 {
		return nil, usageErr(fmt.Errorf("try %s: refused, nothing was run: the script has %d statement(s) that cannot run inside try's transaction:\n%s",
			name, len(refused), strings.Join(refused, "\n")))
	}
	return stmts, nil
}

// try runs the statements in one transaction, reports, and rolls back or
// commits.
func (g *globals) try(ctx context.Context, conn *pgx.Conn, name string, stmts []scriptStmt, o tryOptions) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("try %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after commit
	settings := [][2]string{
		{"lock_timeout", fmt.Sprint(o.lockTimeout.Milliseconds())},
		{"statement_timeout", fmt.Sprint(o.statementTimeout.Milliseconds())},
	}
	if o.commit && !o.yes {
		settings = append(settings, [2]string{"idle_in_transaction_session_timeout", fmt.Sprint(tryConfirmTimeout.Milliseconds())})
	}
	if o.tag != "" {
		settings = append(settings, [2]string{"pgundo.tag", o.tag})
	}
	for _, s := range settings {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", s[0], s[1]); err != nil {
			return fmt.Errorf("try %s: set %s: %w", name, s[0], err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('application_name', 'pgundo try', true) WHERE current_setting('application_name') = 'pgundo'"); err != nil {
		return fmt.Errorf("try %s: %w", name, err)
	}
	before, err := storage(ctx, tx)
	if err != nil {
		return fmt.Errorf("try %s: %w", name, err)
	}

	res := &TryResult{Script: name, Statements: []TryStatement{}}
	for _, s := range stmts {
		tag, err := execStatement(ctx, tx.Conn().PgConn(), s.Text)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			line := s.Line
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Position > 0 {
				line = s.lineOf(int(pe.Position))
			}
			if pgconn.SafeToRetry(err) || conn.IsClosed() {
				return fmt.Errorf("try %s: the statement at line %d: %w; nothing was changed", name, s.Line, err)
			}
			return &TryStatementError{Script: name, Stmt: s, ErrLine: line, Err: err}
		}
		res.Statements = append(res.Statements, TryStatement{Line: s.Line, Statement: s.summary(), Result: tag})
	}

	// Deferred constraints and constraint triggers run now, as COMMIT would
	// run them: their failures and side effects belong in the rehearsal.
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("try %s: every statement ran, but a deferred constraint or trigger failed when checked as COMMIT would check it: %s\nrolled back: nothing was changed; fix the script and run try again", name, pgMessage(err))
	}
	// Read back as pgundo's caller, whatever role the script switched to.
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE NONE"); err != nil {
		return fmt.Errorf("try %s: %w", name, err)
	}
	res.Untracked, err = untrackedWrites(ctx, tx, before)
	if err != nil {
		return fmt.Errorf("try %s: find the untracked tables the script wrote: %w", name, err)
	}
	d, err := history.CurrentTx(ctx, tx, o.limit)
	if err != nil {
		return fmt.Errorf("try %s: %w", name, err)
	}
	res.TxDetail = *d
	for _, u := range res.Untracked {
		if !g.json {
			break // the report names them
		}
		fmt.Fprintf(g.stderr, "pgundo: warning: the script wrote %s, which is not tracked, so its row changes are not shown (%s); pgundo track %s to see them\n",
			u.Table, u.describe(), u.Table)
	}

	if !o.commit {
		if err := tx.Rollback(ctx); err != nil {
			return fmt.Errorf("try %s: roll back: %w", name, err)
		}
		if err := g.output(res, func(w io.Writer) error {
			renderTry(w, g.palette(w), res)
			fmt.Fprintln(w, "rolled back: nothing was changed (sequences the script used stay advanced); pgundo try --commit keeps these changes")
			return nil
		}); err != nil {
			return err
		}
		g.noteMoreChanges(o.limit, res.More)
		return nil
	}
	if !o.yes {
		renderTry(g.stdout, g.palette(g.stdout), res)
		g.noteMoreChanges(o.limit, res.More)
		ok, err := confirm(g.stdin, g.stderr, "commit these changes? [y/N] ")
		if err != nil {
			return err
		}
		if !ok {
			if err := tx.Rollback(ctx); err != nil {
				return fmt.Errorf("try %s: roll back: %w", name, err)
			}
			return refusedErr(fmt.Errorf("try %s: commit not confirmed; rolled back, nothing was changed", name))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("try %s: commit failed, nothing was changed: %w", name, err)
	}
	res.Committed = true
	done := func(w io.Writer) {
		undoHint := "it wrote no tracked table, so there is nothing pgundo can undo"
		if res.XID != "" {
			undoHint = fmt.Sprintf("recorded as session %s (transaction %s); to put it back: pgundo undo %s", res.Session, res.XID, res.Session)
		}
		fmt.Fprintf(w, "committed: %s\n", undoHint)
	}
	if !o.yes && !g.json {
		done(g.stdout)
		return nil
	}
	if err := g.output(res, func(w io.Writer) error {
		renderTry(w, g.palette(w), res)
		done(w)
		return nil
	}); err != nil {
		return err
	}
	if o.yes {
		g.noteMoreChanges(o.limit, res.More)
	}
	return nil
}

// execStatement runs one statement with the simple query protocol, as psql
// would, discarding any rows it returns, and returns its command tag.
func execStatement(ctx context.Context, pc *pgconn.PgConn, sql string) (string, error) {
	mrr := pc.Exec(ctx, sql)
	var tag string
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		for rr.NextRow() {
		}
		ct, err := rr.Close()
		if err != nil {
			_ = mrr.Close()
			return "", err
		}
		tag = ct.String()
	}
	return tag, mrr.Close()
}

// storage maps each user table that pgundo does not capture to its storage
// file number, to notice a TRUNCATE (which the row counters miss).
func storage(ctx context.Context, tx pgx.Tx) (map[uint32]uint32, error) {
	rows, err := tx.Query(ctx, untrackedTablesSQL("c.oid, c.relfilenode"))
	if err != nil {
		return nil, err
	}
	m := map[uint32]uint32{}
	var oid, node uint32
	_, err = pgx.ForEachRow(rows, []any{&oid, &node}, func() error { m[oid] = node; return nil })
	return m, err
}

// untrackedTablesSQL selects cols from the permanent user tables (c) that
// have no enabled pgundo capture trigger.
func untrackedTablesSQL(cols string) string {
	return `SELECT ` + cols + `
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p'
		   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgundo') AND n.nspname NOT LIKE 'pg\_toast%'
		   AND NOT EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = 'pgundo_capture_insert' AND tg.tgenabled <> 'D')`
}

// untrackedWrites lists the untracked tables written in this transaction:
// pg_stat_xact_user_tables counts the rows inserted, updated and deleted so
// far by the current transaction, and a changed relfilenode shows a TRUNCATE
// or a rewrite.
func untrackedWrites(ctx context.Context, tx pgx.Tx, before map[uint32]uint32) ([]UntrackedWrite, error) {
	rows, err := tx.Query(ctx, untrackedTablesSQL(`c.oid, c.relfilenode, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
		       pg_stat_get_xact_tuples_inserted(c.oid), pg_stat_get_xact_tuples_updated(c.oid), pg_stat_get_xact_tuples_deleted(c.oid)`)+
		` ORDER BY 3`)
	if err != nil {
		return nil, err
	}
	out := []UntrackedWrite{}
	var oid, node uint32
	var u UntrackedWrite
	_, err = pgx.ForEachRow(rows, []any{&oid, &node, &u.Table, &u.Inserted, &u.Updated, &u.Deleted}, func() error {
		old, existed := before[oid]
		u.Rewritten = existed && old != node
		if u.Inserted+u.Updated+u.Deleted > 0 || u.Rewritten {
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

func (u UntrackedWrite) describe() string {
	var parts []string
	for _, p := range []struct {
		n    int64
		verb string
	}{{u.Inserted, "inserted"}, {u.Updated, "updated"}, {u.Deleted, "deleted"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s %s", p.n, plural(p.n, "row", "rows"), p.verb))
		}
	}
	if u.Rewritten {
		parts = append(parts, "truncated or rewritten")
	}
	return strings.Join(parts, ", ")
}

// renderTry prints the statements, the counts per table and the row diffs.
func renderTry(w io.Writer, p palette, r *TryResult) {
	fmt.Fprintf(w, "try %s: %d %s ran in one transaction\n", r.Script, len(r.Statements), plural(int64(len(r.Statements)), "statement", "statements"))
	for _, s := range r.Statements {
		fmt.Fprintf(w, "  line %d: %s  -> %s\n", s.Line, s.Statement, s.Result)
	}
	fmt.Fprintln(w)
	if len(r.Tables) == 0 {
		fmt.Fprintln(w, "no rows of tracked tables changed")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tINSERTED\tUPDATED\tDELETED\tTRUNCATED")
		for _, t := range r.Tables {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", t.Table, t.Inserts, t.Updates, t.Deletes, t.Truncates)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
		renderChanges(w, p, r.Changes, false)
	}
	if len(r.Untracked) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, p.Warning("warning:")+" also written, but not tracked, so their rows are not shown (pgundo track TABLE to see them):")
		for _, u := range r.Untracked {
			fmt.Fprintf(w, "  %s: %s\n", u.Table, u.describe())
		}
	}
	fmt.Fprintln(w)
}

// renderChanges prints row changes, for show and try alike: an update with
// its key (the columns it left as they were) and its changed columns
// (old -> new), an insert or delete with every column; with when, each
// header names the transaction and the time. Removed values are coloured
// red, added ones green, keys bold (see palette).
func renderChanges(w io.Writer, p palette, changes []history.Change, when bool) {
	for _, c := range changes {
		key := ""
		if c.Op == "UPDATE" {
			for _, col := range c.Columns {
				if deref(col.Old) == deref(col.New) {
					key += " " + p.Key(col.Column+"="+deref(col.Old))
				}
			}
		}
		suffix := ""
		if when {
			suffix = fmt.Sprintf("  (xid %s, %s)", c.XID, timefmt.Format(c.At))
		}
		fmt.Fprintf(w, "%s %s%s%s\n", c.Op, c.Table, key, suffix)
		if len(c.Columns) == 0 {
			fmt.Fprintf(w, "    old: %s\n    new: %s\n", p.Removed(deref(c.Old)), p.Added(deref(c.New)))
			continue
		}
		for _, col := range c.Columns {
			switch c.Op {
			case "UPDATE":
				if deref(col.Old) == deref(col.New) {
					continue
				}
				fmt.Fprintf(w, "    %s: %s -> %s\n", col.Column, p.Removed(deref(col.Old)), p.Added(deref(col.New)))
			case "INSERT":
				fmt.Fprintf(w, "    %s: %s\n", col.Column, p.Added(deref(col.New)))
			default:
				fmt.Fprintf(w, "    %s: %s\n", col.Column, p.Removed(deref(col.Old)))
			}
		}
	}
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
