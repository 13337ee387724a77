package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
	"github.com/pgundo/pgundo/triggers"
)

type sessionsOptions struct {
	since, until timeFlag
	user, app    string
	table, tag   string
	limit        int
}

// Validate checks the flag values that need no database.
func (o sessionsOptions) Validate() error {
	if o.limit < 0 {
		return usageErr(errors.New("--limit must be 0 (no limit) or more"))
	}
	return nil
}

func (o *sessionsOptions) filter() history.SessionFilter {
	f := history.SessionFilter{User: o.user, App: o.app, Tag: o.tag, Since: o.since.ptr(), Until: o.until.ptr()}
	if o.limit > 0 {
		f.Limit = o.limit + 1 // one more, to tell whether the output is cut
	}
	return f
}

func newSessionsCommand(g *globals) *cobra.Command {
	var o sessionsOptions
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "Recent sessions that changed tracked tables, newest first",
		Long: `List the database sessions (connections) that changed tracked tables, the most
recently active first. A session's id is PostgreSQL's own (log_line_prefix %c:
hex backend start time, dot, hex pid), so it matches the server's log lines.

Filters combine: a session is listed when one of its changes matches them all;
its counts then cover all of its changes. "changes" counts one per row per
statement, cascades and trigger side effects included.`,
		Example: `  pgundo sessions
  pgundo sessions --since 2h --table public.orders
  pgundo sessions --app psql --user alice --since 2026-11-24 --until 2026-11-25
  pgundo sessions --tag ticket-123 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			f := o.filter()
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			if o.table != "" {
				t, err := triggers.Resolve(ctx, conn, o.table)
				if err != nil {
					var ne *triggers.NameError
					if errors.As(err, &ne) {
						return usageErr(err)
					}
					return err
				}
				f.TableOID = t.OID
			}
			sessions, err := history.Sessions(ctx, conn, f)
			if err != nil {
				return err
			}
			if sessions == nil {
				sessions = []history.Session{}
			}
			cut := o.limit > 0 && len(sessions) > o.limit
			if cut {
				sessions = sessions[:o.limit]
			}
			if err := g.output(sessions, func(w io.Writer) error { return renderSessions(w, g.termWidth(w), sessions) }); err != nil {
				return err
			}
			if cut {
				g.noteCut(int64(o.limit), "sessions")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	timeVar(fl, &o.since, "since", "only sessions with a change at or after this time")
	timeVar(fl, &o.until, "until", "only sessions with a change before this time")
	fl.StringVar(&o.user, "user", "", "only sessions of this login role or effective role")
	fl.StringVar(&o.app, "app", "", "only sessions with changes under this application_name")
	fl.StringVar(&o.table, "table", "", "only sessions that changed this table (or one of its partitions)")
	fl.StringVar(&o.tag, "tag", "", "only sessions with changes tagged so (SET pgundo.tag = '...')")
	fl.IntVar(&o.limit, "limit", history.DefaultLimit, "list at most this many sessions, the most recent (0: all); a cut is said on stderr")
	_ = cmd.RegisterFlagCompletionFunc("table", g.completeTrackedTables(false))
	_ = cmd.RegisterFlagCompletionFunc("tag", g.completeTags)
	return cmd
}

// renderSessions lists sessions, one a line, columns aligned. When width
// is more than 0 (the terminal's width) and a line would be wider, the
// TABLES column is shortened to fit: the first tables, then how many more
// (public.orders,public.items +3); at least one table is always named.
// --json lists every table.
func renderSessions(w io.Writer, width int, sessions []history.Session) error {
	if len(sessions) == 0 {
		fmt.Fprintln(w, "no sessions match")
		return nil
	}
	const tablesCol = 6
	rows := [][]string{{"SESSION", "LAST CHANGE", "USER", "APPLICATION", "CLIENT", "CHANGES", "TABLES", "TAG", "UNDO"}}
	for _, s := range sessions {
		undo := "-"
		switch {
		case s.UndoState != nil:
			undo = *s.UndoState + " by " + strings.Join(s.UndoneByAll, ",")
		case s.UndoOf != nil:
			undo = "undo of " + *s.UndoOf
		}
		client := s.ClientAddr
		if client == "" {
			client = "local"
		}
		rows = append(rows, []string{s.ID, timefmt.Format(s.LastChangeAt), s.User, s.ApplicationName, client,
			strconv.FormatInt(s.Changes, 10), joinOr(s.Tables, ","), joinOr(s.Tags, ","), undo})
	}
	if width > 0 {
		widths := columnWidths(rows)
		total := 2 * (len(widths) - 1)
		for _, n := range widths {
			total += n
		}
		if total > width {
			budget := max(width-(total-widths[tablesCol]), utf8.RuneCountInString(rows[0][tablesCol]))
			for i, s := range sessions {
				rows[i+1][tablesCol] = shortenList(s.Tables, budget)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// columnWidths returns the widest cell of each column, in runes.
func columnWidths(rows [][]string) []int {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	return widths
}

// shortenList joins items with commas in at most width runes: as many items
// as fit, then " +N" for the N left out; the first item is always named,
// even when it alone is wider. No items is "-".
func shortenList(items []string, width int) string {
	full := joinOr(items, ",")
	if utf8.RuneCountInString(full) <= width || len(items) < 2 {
		return full
	}
	for k := len(items) - 1; k > 1; k-- {
		s := strings.Join(items[:k], ",") + " +" + strconv.Itoa(len(items)-k)
		if utf8.RuneCountInString(s) <= width {
			return s
		}
	}
	return items[0] + " +" + strconv.Itoa(len(items)-1)
}
