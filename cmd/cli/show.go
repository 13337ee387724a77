package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
)

type showOptions struct {
	limit int
	table string
	key   []string
}

// Validate checks the flag values.
func (o showOptions) Validate() error {
	if o.limit < 0 {
		return usageErr(errors.New("--limit must be 0 (no limit) or more"))
	}
	if len(o.key) > 0 && o.table == "" {
		return usageErr(errors.New("--key needs --table: the key is read as that table's primary key"))
	}
	return nil
}

func newShowCommand(g *globals) *cobra.Command {
	var o showOptions
	cmd := &cobra.Command{
		Use:   "show SESSION",
		Short: "What a session changed: counts per table, then row-level diffs",
		Long: `Show one recorded session: who (login and effective roles), when, from where,
with which application_name and tag; how many rows it inserted, updated,
deleted and truncated per table; then each row change, statement by statement
in the order they were logged, with the changed columns of an update
(old -> new) and every column of an insert or delete. Within a statement,
rows are listed in primary-key order (numbers by value); when --limit cuts a statement, the rows listed are
the first it logged, in key order.

--table keeps only one table's changes (with its partitions); --key, with
--table, only those of the row with that primary key before or after the
change: the value alone for a one-column key, or col=value for each key
column (repeat --key), read as the key columns' types as pgundo history
reads them.`,
		Example: `  pgundo show 6740a1b2.3f1c
  pgundo show 6740a1b2.3f1c --limit 1000 --json
  pgundo show 6740a1b2.3f1c --table public.orders --key 1042
  pgundo show 6740a1b2.3f1c --table public.film_actor --key actor_id=1 --key film_id=23`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			so := history.ShowOptions{Limit: o.limit}
			if o.table != "" {
				if so.Table, err = loadTable(ctx, conn, o.table); err != nil {
					return err
				}
			}
			if len(o.key) > 0 {
				k, err := so.Table.ParseKey(o.key)
				if err != nil {
					return usageErr(err)
				}
				so.Key = &k
			}
			d, err := history.ShowWith(ctx, conn, args[0], so)
			var re *history.RequestError
			if errors.Is(err, history.ErrNoSuchSession) || errors.As(err, &re) {
				return usageErr(err)
			}
			if err != nil {
				return err
			}
			if err := g.output(d, func(w io.Writer) error { return renderShow(w, g.palette(w), d) }); err != nil {
				return err
			}
			g.noteMoreChanges(o.limit, d.More)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.table, "table", "", "only the changes of this table (and its partitions)")
	cmd.Flags().StringArrayVar(&o.key, "key", nil, "with --table: only the changes of the row with this primary key (VALUE, or COL=VALUE for each key column, repeated)")
	cmd.Flags().IntVar(&o.limit, "limit", 100, "list at most this many row changes (0: all); a cut is said on stderr, and in --json by \"more\" and \"truncated\"")
	cmd.ValidArgsFunction = g.completeSessions(false)
	_ = cmd.RegisterFlagCompletionFunc("table", g.completeTrackedTables(false))
	return cmd
}

func renderShow(w io.Writer, p palette, d *history.SessionDetail) error {
	s := d.Session
	client := s.ClientAddr
	if client == "" {
		client = "local socket"
	}
	fmt.Fprintf(w, "session %s: user %s, application %q, from %s, pid %d\n", s.ID, s.User, s.ApplicationName, client, s.PID)
	fmt.Fprintf(w, "connected %s; changes %s .. %s in %d transactions\n", timefmt.Format(s.StartedAt),
		timefmt.Format(s.FirstChangeAt), timefmt.Format(s.LastChangeAt), s.Transactions)
	if len(s.Roles) > 0 {
		fmt.Fprintf(w, "wrote as roles: %s\n", joinOr(s.Roles, ", "))
	}
	if len(s.Tags) > 0 {
		fmt.Fprintf(w, "tags: %s\n", joinOr(s.Tags, ", "))
	}
	if s.UndoOf != nil {
		fmt.Fprintf(w, "this session is the undo of %s\n", *s.UndoOf)
	}
	if s.UndoState != nil {
		fmt.Fprintf(w, "%s by session %s\n", *s.UndoState, strings.Join(s.UndoneByAll, ", "))
	}
	fmt.Fprintln(w)
	return renderDiff(w, p, d.Tables, d.Changes, true)
}
