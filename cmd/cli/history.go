package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
	"github.com/pgundo/pgundo/triggers"
)

type historyOptions struct {
	reindex bool
}

// Validate checks the flag values and arguments that need no database.
func (o historyOptions) Validate(args []string) error {
	if len(args) < 1 {
		return usageErr(errors.New("name a table and the key of one of its rows, e.g. pgundo history public.orders 42"))
	}
	if len(args) < 2 && !o.reindex {
		return usageErr(fmt.Errorf("give the key of a row of %s: its primary-key value, or col=value pairs", args[0]))
	}
	return nil
}

func newHistoryCommand(g *globals) *cobra.Command {
	var o historyOptions
	cmd := &cobra.Command{
		Use:   "history TABLE KEY...",
		Short: "Every recorded version of one row: who changed what, when, from where",
		Long: `Show every recorded version of one row, oldest first: the time, session,
login user and effective role, application_name, client address, tag and
operation of each change, and which columns changed from what to what.

The row is named by its primary key: the value alone for a one-column key,
or col=value pairs (every key column) for any key. Values are read as the key
columns' types, so 042 finds id 42.

The history follows the row back through primary-key changes: when an UPDATE
(or an ON UPDATE CASCADE) gave the row its key, the versions it had under its
previous key are shown too. A key that was deleted and inserted again shows
every life of that key.

Finding a row does not scan the log: pgundo keeps a row-history index
(pgundo.hist_key) that each history, asof or log run brings up to date with
the changes logged since the last run (pgundo.refresh_history()); capture
itself pays nothing for it. --reindex rebuilds it from the whole log.

Exit codes: 0 shown; 1 error; 2 unknown or untracked table, a key that names
the wrong columns or a value of the wrong type, no such row.`,
		Example: `  pgundo history public.orders 42
  pgundo history orders id=42 --json
  pgundo history public.film_actor actor_id=1 film_id=23
  pgundo history '"Billing Ops"."Order ""Items"""' '"Line No"=7'
  pgundo history --reindex public.orders`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			t, err := loadTable(ctx, conn, args[0])
			if err != nil {
				return err
			}
			if o.reindex {
				done := g.working("rebuilding the row-history index")
				n, err := history.Reindex(ctx, conn)
				done()
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "pgundo: row-history index rebuilt: %d entries\n", n)
				if len(args) < 2 {
					return nil
				}
			}
			k, err := t.ParseKey(args[1:])
			if err != nil {
				return usageErr(err)
			}
			done := g.working("bringing the row-history index up to date")
			h, err := history.History(ctx, conn, t, k)
			done()
			var re *history.RequestError
			if errors.As(err, &re) {
				return usageErr(err)
			}
			if err != nil {
				return err
			}
			return g.output(h, func(w io.Writer) error { return renderHistory(w, g.palette(w), h) })
		},
	}
	cmd.Flags().BoolVar(&o.reindex, "reindex", false, "rebuild the row-history index from the whole log first (after VACUUM FULL or CLUSTER of pgundo.change_log)")
	cmd.ValidArgsFunction = g.completeTrackedTables(true)
	return cmd
}

// loadTable resolves a table name as psql would and reads what the read side
// needs; an unknown name is bad usage.
func loadTable(ctx context.Context, conn *pgx.Conn, name string) (*history.Table, error) {
	rt, err := triggers.Resolve(ctx, conn, name)
	if err != nil {
		var ne *triggers.NameError
		if errors.As(err, &ne) {
			return nil, usageErr(err)
		}
		return nil, err
	}
	t, err := history.LoadTable(ctx, conn, rt.OID)
	var re *history.RequestError
	if errors.As(err, &re) {
		return nil, usageErr(err)
	}
	return t, err
}

// renderHistory prints a row's versions, oldest first: removed values red,
// added ones green, the row's key bold (see palette).
func renderHistory(w io.Writer, p palette, h *history.RowHistory) error {
	n := len(h.Versions)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "history of %s %s: %d recorded version%s\n", h.Table, h.Key, n, plural)
	if !h.Tracked {
		fmt.Fprintf(w, "note: %s is not tracked now; changes made while it was not tracked are missing\n", h.Table)
	}
	if h.Unreadable > 0 {
		fmt.Fprintf(w, "note: %d logged statements of %s could not be read (its columns changed since capture); their changes are not shown\n", h.Unreadable, h.Table)
	}
	for _, v := range h.Versions {
		fmt.Fprintln(w)
		key := p.Key(v.Key)
		if v.PreviousKey != nil {
			key += " (was " + p.Key(*v.PreviousKey) + ")"
		}
		fmt.Fprintf(w, "%s  %s %s %s\n", timefmt.Format(v.At), v.Op, v.Table, key)
		who := "user " + v.User
		if v.Role != "" && v.Role != v.User {
			who += " as role " + v.Role
		}
		client := v.ClientAddr
		if client == "" {
			client = "local socket"
		}
		tag := ""
		if v.Tag != nil {
			tag = ", tag " + *v.Tag
		}
		fmt.Fprintf(w, "    session %s, %s, application %q, from %s%s, xid %s\n", v.Session, who, v.ApplicationName, client, tag, v.XID)
		if len(v.Columns) == 0 && v.Op == "UPDATE" {
			fmt.Fprintln(w, "    (no column changed)")
		}
		if len(v.Columns) == 0 && (v.Old != nil || v.New != nil) && v.Op != "UPDATE" {
			fmt.Fprintf(w, "    old: %s\n    new: %s\n", p.Removed(deref(v.Old)), p.Added(deref(v.New)))
		}
		for _, c := range v.Columns {
			switch {
			case v.Old != nil && v.New != nil:
				fmt.Fprintf(w, "    %s: %s -> %s\n", c.Column, p.Removed(quoteValue(c.Old)), p.Added(quoteValue(c.New)))
			case v.New != nil:
				fmt.Fprintf(w, "    %s: %s\n", c.Column, p.Added(quoteValue(c.New)))
			default:
				fmt.Fprintf(w, "    %s: %s\n", c.Column, p.Removed(quoteValue(c.Old)))
			}
		}
	}
	fmt.Fprintln(w)
	if h.Current == nil {
		fmt.Fprintf(w, "now: no row with %s\n", h.Key)
		return nil
	}
	var now []string
	for _, c := range h.CurrentColumns {
		now = append(now, c.Column+"="+quoteValue(c.New))
	}
	if now == nil {
		now = []string{*h.Current}
	}
	fmt.Fprintf(w, "now: %s\n", strings.Join(now, " "))
	return nil
}

// quoteValue shows a column value for people: NULL, or the text form,
// single-quoted when empty or when it has spaces or quotes.
func quoteValue(s *string) string {
	if s == nil {
		return "NULL"
	}
	if *s == "" || strings.ContainsAny(*s, " '\t\n\r,") {
		return "'" + strings.ReplaceAll(*s, "'", "''") + "'"
	}
	return *s
}
