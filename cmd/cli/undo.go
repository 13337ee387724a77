package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pgundo/pgundo/undo"
)

type undoOptions struct {
	txs          []string
	tag          string
	app, user    string
	since, until timeFlag
	dryRun       bool
	sqlFile      string
	yes          bool
	onConflict   string
}

// Validate checks the flags that need no database and builds the selection.
func (o *undoOptions) Validate(args []string) (undo.Selection, undo.ConflictMode, error) {
	sel := undo.Selection{Sessions: args, Tag: o.tag, App: o.app, User: o.user, Since: o.since.ptr(), Until: o.until.ptr()}
	for _, x := range o.txs {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return sel, "", usageErr(fmt.Errorf("--tx %q: a transaction id is a number (pgundo sessions and pgundo show list them)", x))
		}
		sel.TxIDs = append(sel.TxIDs, v)
	}
	if sel.Empty() {
		return sel, "", usageErr(errors.New("say what to undo: a SESSION id (see pgundo sessions), --tx XID, --tag TAG, or --app/--user with --since/--until"))
	}
	if (sel.Since != nil || sel.Until != nil) && len(args) == 0 && len(sel.TxIDs) == 0 && sel.Tag == "" && sel.App == "" && sel.User == "" {
		return sel, "", usageErr(errors.New("--since/--until narrow --app, --user or --tag; give one of them too"))
	}
	mode, err := undo.ParseConflictMode(o.onConflict)
	if err != nil {
		return sel, "", usageErr(err)
	}
	return sel, mode, nil
}

func newUndoCommand(g *globals) *cobra.Command {
	var o undoOptions
	cmd := &cobra.Command{
		Use:   "undo [SESSION...]",
		Short: "Put back exactly what a session changed, or refuse and say why",
		Long: `Undo one or more recorded sessions: every row they changed (directly, or through
cascades and triggers) is put back exactly as it was before their first change,
on every column; rows they deleted come back with their original keys; rows
they created go away; nothing else is touched.

A row that someone else changed since is a conflict: by default the undo is
refused (exit 3), the conflicts are listed, and nothing is changed.
--on-conflict skip undoes the rest; --on-conflict merge restores column by
column only the values still as the session left them. On a table without a
primary key, skip leaves a conflicting row whole (refusing where equal rows
make the log ambiguous) and merge refuses (exit 3).

The undo runs in one transaction, re-checks the rows under lock, keeps
application triggers and FK actions from firing (session_replication_role =
replica: superuser, rds_superuser, or GRANT SET ON PARAMETER on PostgreSQL
15+), and is itself recorded as a session (undo it again to redo).
Sequences are not rewound.

--dry-run runs the undo exactly as --yes would, every write and every check
(conflicts, foreign keys, triggers, privileges, schema changes), in a
transaction it rolls back: it shows the plan, or refuses as --yes would, with
the same exit code, and changes nothing (it holds the same locks while it
runs). --sql writes no script for an undo that --yes would refuse now.

Running longer than two seconds on a terminal, it shows a progress bar per
table on stderr (rows written of rows planned, rate, time left); off a
terminal, step lines; under --json, nothing.

Without --yes it shows the plan (made as --dry-run makes it) and asks on a
terminal; with no terminal it refuses (exit 2). Exit codes: 0 undone (or plan
shown), 1 error, 2 bad usage, 3 refused (conflicts, foreign keys, triggers
that would fire, already undone, schema changed).`,
		Example: `  pgundo undo 6740a1b2.3f1c --dry-run
  pgundo undo 6740a1b2.3f1c --yes
  pgundo undo --tag ticket-123 --yes
  pgundo undo --app patch.py --since '2026-11-25 09:00' --until '2026-11-25 09:30' --on-conflict skip --yes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sel, mode, err := o.Validate(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			opts := undo.Options{OnConflict: mode, Progress: g.progress}
			if o.sqlFile != "" {
				return g.writeUndoScript(ctx, conn, sel, opts, o.sqlFile)
			}
			// With --yes there is nothing to confirm: plan and apply in one
			// transaction. Otherwise plan first (changing nothing), show it,
			// and apply only the plan that was confirmed.
			var plan *undo.Plan
			if o.dryRun || !o.yes {
				err = g.withUndoProgress(opts, func(opts undo.Options) (err error) {
					plan, err = undo.MakePlan(ctx, conn, sel, opts)
					return err
				})
				if err != nil {
					return g.undoError(plan, err)
				}
			}
			if o.dryRun {
				return g.output(plan, func(w io.Writer) error {
					renderPlan(w, g.palette(w), plan)
					fmt.Fprintln(w, "dry run: nothing was changed (the undo ran with every check --yes runs, then was rolled back)")
					return nil
				})
			}
			if !o.yes {
				renderPlan(g.stderr, g.palette(g.stderr), plan)
				if !isTerminal(g.stdin) {
					return usageErr(errors.New("undo needs confirmation: no terminal to ask on, so nothing was changed; add --yes to apply the plan above"))
				}
				ok, err := confirm(g.stdin, g.stderr, "apply this undo? [y/N] ")
				if err != nil {
					return err
				}
				if !ok {
					return refusedErr(errors.New("undo not confirmed; nothing was changed"))
				}
			}
			var applied *undo.Plan
			err = g.withUndoProgress(opts, func(opts undo.Options) (err error) {
				applied, err = undo.Apply(ctx, conn, sel, opts, plan)
				return err
			})
			if err != nil {
				return g.undoError(applied, err)
			}
			return g.output(applied, func(w io.Writer) error {
				renderPlan(w, g.palette(w), applied)
				fmt.Fprintf(w, "undone: %d rows written in one transaction, recorded as session %s (undo that session to redo)\n", applied.RowsChanged, applied.UndoSession)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&o.txs, "tx", nil, "undo the changes of this transaction id (xid, repeatable)")
	fl.StringVar(&o.tag, "tag", "", "undo the changes tagged so (SET pgundo.tag, pgundo run --tag)")
	fl.StringVar(&o.app, "app", "", "undo the changes made under this application_name")
	fl.StringVar(&o.user, "user", "", "undo the changes made by this login or effective role")
	timeVar(fl, &o.since, "since", "with --app/--user/--tag: only changes at or after this time")
	timeVar(fl, &o.until, "until", "with --app/--user/--tag: only changes before this time")
	fl.BoolVar(&o.dryRun, "dry-run", false, "run the undo and every check --yes runs, then roll it back: show the plan or the refusal, change nothing")
	fl.StringVar(&o.sqlFile, "sql", "", "write the undo as a reviewable SQL script for psql to FILE ('-': stdout) instead of applying it; none is written for an undo --yes would refuse")
	fl.BoolVar(&o.yes, "yes", false, "apply without asking")
	fl.StringVar(&o.onConflict, "on-conflict", "refuse", "refuse (change nothing), skip (undo the rest), or merge (keep later column edits)")
	cmd.ValidArgsFunction = g.completeSessions(true)
	_ = cmd.RegisterFlagCompletionFunc("tag", g.completeTags)
	return cmd
}

// writeUndoScript writes the undo as a SQL script to path ("-": stdout).
// A file is written under a temporary name and renamed when complete, so a
// failure never leaves half a script behind.
func (g *globals) writeUndoScript(ctx context.Context, conn *pgx.Conn, sel undo.Selection, opts undo.Options, path string) error {
	if path == "-" {
		plan, err := undo.WriteScript(ctx, conn, sel, opts, g.stdout)
		if err != nil {
			return g.undoError(plan, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".pgundo-undo-*.sql")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	plan, err := undo.WriteScript(ctx, conn, sel, opts, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return g.undoError(plan, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return g.output(plan, func(w io.Writer) error {
		renderPlan(w, g.palette(w), plan)
		fmt.Fprintf(w, "wrote the undo to %s; nothing was changed; review it, then run: psql -X -f %s\n", path, path)
		return nil
	})
}

// undoError maps undo's errors to exit codes, printing the plan's
// conflicts as JSON when asked.
func (g *globals) undoError(plan *undo.Plan, err error) error {
	var ce *undo.ConflictError
	var re *undo.RefusedError
	var nf *undo.NotFoundError
	switch {
	case errors.As(err, &ce):
		if g.json {
			_ = g.output(ce.Plan, nil)
		}
		return refusedErr(err)
	case errors.As(err, &re):
		return refusedErr(err)
	case errors.As(err, &nf):
		return usageErr(err)
	}
	return err
}

func (g *globals) progress(msg string) {
	if !g.json {
		fmt.Fprintln(g.stderr, msg)
	}
}

// renderPlan prints an undo's plan: the work per table, then each conflict
// (bold red when it refuses, yellow when it was skipped) and each column merge
// kept.
func renderPlan(w io.Writer, pal palette, p *undo.Plan) {
	fmt.Fprintf(w, "undo of session %s: %d logged row changes\n", strings.Join(p.Sessions, ", "), p.Changes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tRESTORE\tRE-INSERT\tDELETE\tMERGE\tSKIP")
	for _, t := range p.Tables {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", t.Table, t.Restore, t.Reinsert, t.Delete, t.Merged, t.Skipped)
	}
	_ = tw.Flush()
	for _, c := range p.Conflicts {
		if c.Skipped {
			fmt.Fprintln(w, "  "+pal.Warning("skipped: "+c.String()))
			continue
		}
		fmt.Fprintln(w, "  "+pal.Refusal(c.String()))
	}
	for _, k := range p.Kept {
		fmt.Fprintf(w, "  merge kept %s %s column %s (changed since)\n", k.Table, pal.Key(k.Key), k.Column)
	}
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func confirm(in io.Reader, out io.Writer, prompt string) (bool, error) {
	fmt.Fprint(out, prompt)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
