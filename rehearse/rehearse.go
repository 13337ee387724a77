// Package rehearse runs a SQL patch script inside one transaction and reports
// exactly what it changed, before the caller rolls it back or commits it
// (pgundo try).
//
// A script is first split the way psql splits it (Split) and checked
// (Check): transaction control and what cannot run in a transaction block
// are refused before anything runs. Run then executes each statement in turn
// on one connection, runs deferred constraints as COMMIT would, and reads
// back the row changes pgundo's capture triggers logged in the same
// transaction (cascades and trigger side effects included), plus the
// untracked tables the script wrote. The transaction stays open in the
// returned Rehearsal until the caller calls Rollback or Commit.
//
// The package never prints and never asks: rendering and confirmation belong
// to the caller.
package rehearse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/history"
)

// Defaults for a rehearsal's timeouts: short, so a rehearsal on a busy
// production database gives up instead of queueing behind (and in front of)
// its users. Options' zero values mean no limit; callers pass these.
const (
	DefaultLockTimeout      = 3 * time.Second
	DefaultStatementTimeout = 60 * time.Second
)

// Options configure Run. The zero value runs with no lock or statement
// timeout, lists every row change and sets no tag.
type Options struct {
	// LockTimeout gives up a statement that waits longer than this for a
	// lock; 0 means no limit (see DefaultLockTimeout).
	LockTimeout time.Duration
	// StatementTimeout gives up a statement that runs longer than this; 0
	// means no limit (see DefaultStatementTimeout).
	StatementTimeout time.Duration
	// IdleTimeout, when positive, makes the server end the session (rolling
	// back) if the transaction stays idle longer than this after Run returns,
	// e.g. while the caller waits for a confirmation. 0 keeps the server's
	// idle_in_transaction_session_timeout.
	IdleTimeout time.Duration
	// Limit lists at most this many row changes in Result.Changes (the rest
	// are counted in Result.More); 0 lists them all.
	Limit int
	// Tag sets pgundo.tag for the script's changes; "" sets none.
	Tag string
}

// StatementResult is one statement of the script and what the server said it
// did.
type StatementResult struct {
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

// Describe says in words what the script did to the table, e.g.
// "1 row inserted, truncated or rewritten".
func (u UntrackedWrite) Describe() string {
	var parts []string
	for _, p := range []struct {
		n    int64
		verb string
	}{{u.Inserted, "inserted"}, {u.Updated, "updated"}, {u.Deleted, "deleted"}} {
		if p.n > 0 {
			row := "rows"
			if p.n == 1 {
				row = "row"
			}
			parts = append(parts, fmt.Sprintf("%d %s %s", p.n, row, p.verb))
		}
	}
	if u.Rewritten {
		parts = append(parts, "truncated or rewritten")
	}
	return strings.Join(parts, ", ")
}

// Result is what a rehearsal reports: the statements, then what they changed
// in tracked tables (cascades and trigger side effects included), the
// untracked tables they wrote, and whether it was committed.
type Result struct {
	Script     string            `json:"script"`
	Statements []StatementResult `json:"statements"`
	history.TxDetail
	Untracked []UntrackedWrite `json:"untracked"`
	// Committed is true when the changes were kept (Rehearsal.Commit);
	// otherwise the transaction was rolled back.
	Committed bool `json:"committed"`
}

// CheckError is a script refused before anything ran: it cannot be split
// (Err, a *SyntaxError), it has no statements (Err nil, Refused empty), or
// some of its statements cannot run inside the rehearsal's transaction
// (Refused).
type CheckError struct {
	Script  string
	Err     error
	Refused []Statement
}

func (e *CheckError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("try %s: %v; nothing was run", e.Script, e.Err)
	case len(e.Refused) == 0:
		return fmt.Sprintf("try %s: the script has no statements; nothing was run", e.Script)
	}
	refused := make([]string, len(e.Refused))
	for i, s := range e.Refused {
		refused[i] = fmt.Sprintf("  line %d: %s\n    %s", s.Line, s.Summary(), s.Refusal())
	}
	return fmt.Sprintf("try %s: refused, nothing was run: the script has %d statement(s) that cannot run inside try's transaction:\n%s",
		e.Script, len(refused), strings.Join(refused, "\n"))
}

func (e *CheckError) Unwrap() error { return e.Err }

// Check splits the script src, named name in messages, and refuses it with a
// *CheckError naming every offending statement if it cannot run inside a
// rehearsal's transaction. standardStrings is the server's
// standard_conforming_strings (true unless the server says otherwise).
func Check(name, src string, standardStrings bool) ([]Statement, error) {
	stmts, err := Split(src, standardStrings)
	if err != nil {
		return nil, &CheckError{Script: name, Err: err}
	}
	if len(stmts) == 0 {
		return nil, &CheckError{Script: name}
	}
	var refused []Statement
	for _, s := range stmts {
		if s.Refusal() != "" {
			refused = append(refused, s)
		}
	}
	if len(refused) > 0 {
		return nil, &CheckError{Script: name, Refused: refused}
	}
	return stmts, nil
}

// StatementError is a script statement that failed; the transaction was
// rolled back.
type StatementError struct {
	Script string
	Stmt   Statement
	// ErrLine is the script line the server's error position points at
	// (Stmt.Line when the error has no position).
	ErrLine int
	Err     error
}

func (e *StatementError) Error() string {
	var b strings.Builder
	at := fmt.Sprintf("line %d", e.Stmt.Line)
	if e.ErrLine != e.Stmt.Line {
		at = fmt.Sprintf("line %d (error at line %d)", e.Stmt.Line, e.ErrLine)
	}
	fmt.Fprintf(&b, "try %s: the statement at %s failed: %s\n", e.Script, at, PgMessage(e.Err))
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

func (e *StatementError) Unwrap() error { return e.Err }

// PgMessage renders a server error with its detail, hint and context; any
// other error as its Error().
func PgMessage(err error) string {
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

// Rehearsal is a script that ran in a transaction still open on its
// connection, waiting for Rollback or Commit.
type Rehearsal struct {
	// Result is what the script did; Commit sets Result.Committed.
	Result *Result
	tx     pgx.Tx
}

// Rollback ends the rehearsal, leaving data and log exactly as before (only
// sequences the script used stay advanced). It is a no-op after Commit.
func (r *Rehearsal) Rollback(ctx context.Context) error {
	if r.Result.Committed {
		return nil
	}
	if err := r.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("try %s: roll back: %w", r.Result.Script, err)
	}
	return nil
}

// Commit keeps the script's changes: they become a recorded session (named
// in Result.Session) that pgundo undo can put back.
func (r *Rehearsal) Commit(ctx context.Context) error {
	if err := r.tx.Commit(ctx); err != nil {
		return fmt.Errorf("try %s: commit failed, nothing was changed: %w", r.Result.Script, err)
	}
	r.Result.Committed = true
	return nil
}

// Run rehearses the script src (named name in messages) on conn: it checks
// it against the server's standard_conforming_strings (a *CheckError if
// refused), runs every statement in one transaction with the simple query
// protocol as psql would, runs deferred constraints as COMMIT would, and
// reads back what the script changed, as pgundo's caller whatever role the
// script switched to. A failing statement is a *StatementError; on any error
// the transaction is rolled back and nothing was changed. On success the
// transaction stays open: the caller must Rollback or Commit the Rehearsal.
//
// Untracked writes are counted from pg_stat_get_xact_tuples_*, which also
// count a connection's earlier writes that have not yet been flushed to the
// statistics system: pass a fresh connection (as pgundo try does).
func Run(ctx context.Context, conn *pgx.Conn, name, src string, o Options) (*Rehearsal, error) {
	var scs string
	if err := conn.QueryRow(ctx, "SELECT current_setting('standard_conforming_strings')").Scan(&scs); err != nil {
		return nil, fmt.Errorf("try %s: %w", name, err)
	}
	stmts, err := Check(name, src, scs == "on")
	if err != nil {
		return nil, err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("try %s: begin: %w", name, err)
	}
	res, err := run(ctx, tx, name, stmts, o)
	if err != nil {
		_ = tx.Rollback(context.Background())
		return nil, err
	}
	return &Rehearsal{Result: res, tx: tx}, nil
}

func run(ctx context.Context, tx pgx.Tx, name string, stmts []Statement, o Options) (*Result, error) {
	settings := [][2]string{
		{"lock_timeout", fmt.Sprint(o.LockTimeout.Milliseconds())},
		{"statement_timeout", fmt.Sprint(o.StatementTimeout.Milliseconds())},
	}
	if o.IdleTimeout > 0 {
		settings = append(settings, [2]string{"idle_in_transaction_session_timeout", fmt.Sprint(o.IdleTimeout.Milliseconds())})
	}
	if o.Tag != "" {
		settings = append(settings, [2]string{"pgundo.tag", o.Tag})
	}
	for _, s := range settings {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", s[0], s[1]); err != nil {
			return nil, fmt.Errorf("try %s: set %s: %w", name, s[0], err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('application_name', 'pgundo try', true) WHERE current_setting('application_name') = 'pgundo'"); err != nil {
		return nil, fmt.Errorf("try %s: %w", name, err)
	}
	before, err := storage(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("try %s: %w", name, err)
	}

	res := &Result{Script: name, Statements: []StatementResult{}}
	for _, s := range stmts {
		tag, err := execStatement(ctx, tx.Conn().PgConn(), s.Text)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			line := s.Line
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Position > 0 {
				line = s.LineOf(int(pe.Position))
			}
			if pgconn.SafeToRetry(err) || tx.Conn().IsClosed() {
				return nil, fmt.Errorf("try %s: the statement at line %d: %w; nothing was changed", name, s.Line, err)
			}
			return nil, &StatementError{Script: name, Stmt: s, ErrLine: line, Err: err}
		}
		res.Statements = append(res.Statements, StatementResult{Line: s.Line, Statement: s.Summary(), Result: tag})
	}

	// Deferred constraints and constraint triggers run now, as COMMIT would
	// run them: their failures and side effects belong in the rehearsal.
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("try %s: every statement ran, but a deferred constraint or trigger failed when checked as COMMIT would check it: %s\nrolled back: nothing was changed; fix the script and run try again", name, PgMessage(err))
	}
	// Read back as pgundo's caller, whatever role the script switched to.
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE NONE"); err != nil {
		return nil, fmt.Errorf("try %s: %w", name, err)
	}
	res.Untracked, err = untrackedWrites(ctx, tx, before)
	if err != nil {
		return nil, fmt.Errorf("try %s: find the untracked tables the script wrote: %w", name, err)
	}
	d, err := history.CurrentTx(ctx, tx, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("try %s: %w", name, err)
	}
	res.TxDetail = *d
	return res, nil
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
