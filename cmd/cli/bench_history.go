package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/bench"
)

type benchHistoryOptions struct {
	entries int64
	runs    int
	newOnes int
	keep    bool
	force   bool
}

// Validate checks the flag values that need no database.
func (o benchHistoryOptions) Validate() error {
	switch {
	case o.entries < 100 || o.entries%10 != 0:
		return usageErr(errors.New("--entries must be a multiple of 10, at least 100"))
	case o.runs < 1:
		return usageErr(errors.New("--runs must be at least 1"))
	case o.newOnes < 1:
		return usageErr(errors.New("--new-changes must be at least 1"))
	}
	return nil
}

func newBenchHistoryCommand(g *globals) *cobra.Command {
	var o benchHistoryOptions
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Time history of one row and asof of one key in a 10M-entry log",
		Long: `Build a log of --entries row changes (default 10,000,000) straight into
pgundo's tables, with set-based INSERT ... SELECT over generate_series (row
images cast from the table's row type, exactly as capture writes them): a
table of entries/10 rows shaped like pgbench_accounts, one INSERT of every
row, five UPDATEs of every row, and four single-row UPDATEs of each row
spread over the log, from 1,000 sessions over ten days. Then build the
row-history index, and time (medians of --runs):

  history  pgundo history of one row (its ten versions), index refresh included
  asof     pgundo asof --at T of one key, T between two of its changes
  fresh    history right after --new-changes single-row UPDATEs made through
           capture, which the call indexes first

The goal for history and asof is well under 100 ms; the command exits 0
whether it is met or not. Like bench capture it works in schema pgundo_bench,
empties pgundo's log first and refuses (exit 3) where the log is in real use
unless --force; it removes what it built at the end unless --keep. The
default size needs about 4 GB of disk and takes minutes. Progress goes to
stderr.`,
		Example: `  createdb pgundo_bench
  pgundo bench history --database-url postgres:///pgundo_bench
  pgundo bench history --entries 100000 --runs 3      # a quick look
  pgundo bench history --json > history.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			res, err := bench.History(ctx, conn, bench.HistoryOptions{Entries: o.entries, Runs: o.runs, NewChanges: o.newOnes, Keep: o.keep, Force: o.force},
				func(msg string) { fmt.Fprintf(g.stderr, "pgundo bench: %s\n", msg) })
			if err != nil {
				var inUse *bench.LogInUseError
				if errors.As(err, &inUse) {
					return refusedErr(err)
				}
				return fmt.Errorf("bench history: %w", err)
			}
			return g.output(res, func(w io.Writer) error { return renderBenchHistory(w, res) })
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.entries, "entries", bench.DefaultHistoryEntries, "row changes in the log built (a multiple of 10)")
	f.IntVar(&o.runs, "runs", bench.DefaultHistoryRuns, "time each query this many times and report the median")
	f.IntVar(&o.newOnes, "new-changes", bench.DefaultHistoryNew, "single-row changes made through capture before each 'fresh' history call")
	f.BoolVar(&o.keep, "keep", false, "keep schema pgundo_bench, the log and pgundo itself at the end")
	f.BoolVar(&o.force, "force", false, "run even where pgundo's log holds other tables' changes, deleting them")
	return cmd
}

func renderBenchHistory(w io.Writer, res *bench.HistoryResult) error {
	fmt.Fprintf(w, "pgundo bench history: database %s, PostgreSQL %s\n", res.Database, res.Server.Version)
	fmt.Fprintf(w, "log: %d row changes in %d statements for a table of %d rows, %.0f MB (built in %.0f s)\n",
		res.Entries, res.Statements, res.Rows, float64(res.LogBytes)/1e6, res.BuildSeconds)
	fmt.Fprintf(w, "row-history index: %.0f MB, built in %.1f s (first two refreshes)\n", float64(res.IndexBytes)/1e6, res.IndexSeconds)
	fmt.Fprintf(w, "row asked for: %s (%d versions)\n\n", res.Key, res.Versions)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUERY\tMEDIAN\tMIN\tMAX\tRUNS\tGOAL")
	for _, q := range res.Timings {
		goal := "-"
		if q.GoalMS > 0 {
			goal = fmt.Sprintf("< %.0f ms ", q.GoalMS)
			if q.GoalMet {
				goal += "ok"
			} else {
				goal += "MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%.1f ms\t%.1f ms\t%.1f ms\t%d\t%s\n", q.What, q.MedianMS, q.MinMS, q.MaxMS, q.Runs, goal)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ntook %.0f s\n", res.Seconds)
	return nil
}
