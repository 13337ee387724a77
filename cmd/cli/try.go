package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/rehearse"
)

// tryConfirmTimeout bounds how long a try --commit holds its locks while
// waiting for y/N: the server ends the session (rolling back) after it.
const tryConfirmTimeout = 5 * time.Minute

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

// The result and error types of pgundo try are the rehearse package's; these
// names are kept for callers of the CLI package.
type (
	TryStatement      = rehearse.StatementResult
	UntrackedWrite    = rehearse.UntrackedWrite
	TryResult         = rehearse.Result
	TryStatementError = rehearse.StatementError
)

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
			// Refused scripts are refused before connecting; Run checks
			// again against the server's standard_conforming_strings.
			if _, err := rehearse.Check(name, string(src), true); err != nil {
				return usageErr(err)
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			return g.try(ctx, conn, name, string(src), o)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&o.commit, "commit", false, "commit after showing the report (asks y/N on a terminal)")
	fl.BoolVar(&o.yes, "yes", false, "with --commit: commit without asking")
	fl.DurationVar(&o.lockTimeout, "lock-timeout", rehearse.DefaultLockTimeout, "give up a statement that waits longer than this for a lock (0: no limit)")
	fl.DurationVar(&o.statementTimeout, "statement-timeout", rehearse.DefaultStatementTimeout, "give up a statement that runs longer than this (0: no limit)")
	fl.IntVar(&o.limit, "limit", 100, "list at most this many row changes (0: all); a cut is said on stderr, and in --json by \"more\" and \"truncated\"")
	fl.StringVar(&o.tag, "tag", "", "set pgundo.tag for the script's changes (kept with --commit; pgundo undo --tag)")
	return cmd
}

// try rehearses the script, reports, and rolls back or commits.
func (g *globals) try(ctx context.Context, conn *pgx.Conn, name, src string, o tryOptions) error {
	ro := rehearse.Options{LockTimeout: o.lockTimeout, StatementTimeout: o.statementTimeout, Limit: o.limit, Tag: o.tag}
	if o.commit && !o.yes {
		ro.IdleTimeout = tryConfirmTimeout
	}
	reh, err := rehearse.Run(ctx, conn, name, src, ro)
	if err != nil {
		var ce *rehearse.CheckError
		if errors.As(err, &ce) {
			return usageErr(err)
		}
		return err
	}
	defer reh.Rollback(context.Background()) //nolint:errcheck // a no-op after commit
	res := reh.Result
	for _, u := range res.Untracked {
		if !g.json {
			break // the report names them
		}
		fmt.Fprintf(g.stderr, "pgundo: warning: the script wrote %s, which is not tracked, so its row changes are not shown (%s); pgundo track %s to see them\n",
			u.Table, u.Describe(), u.Table)
	}

	if !o.commit {
		if err := reh.Rollback(ctx); err != nil {
			return err
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
			if err := reh.Rollback(ctx); err != nil {
				return err
			}
			return refusedErr(fmt.Errorf("try %s: commit not confirmed; rolled back, nothing was changed", name))
		}
	}
	if err := reh.Commit(ctx); err != nil {
		return err
	}
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
		_ = renderDiff(w, p, r.Tables, r.Changes, false)
	}
	if len(r.Untracked) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, p.Warning("warning:")+" also written, but not tracked, so their rows are not shown (pgundo track TABLE to see them):")
		for _, u := range r.Untracked {
			fmt.Fprintf(w, "  %s: %s\n", u.Table, u.Describe())
		}
	}
	fmt.Fprintln(w)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
