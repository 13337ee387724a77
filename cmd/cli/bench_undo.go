package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/bench"
)

type benchUndoOptions struct {
	sizes   []int64
	repeat  int
	keep    bool
	force   bool
	planned bool
}

// Validate checks the flag values that need no database.
func (o benchUndoOptions) Validate() error {
	if len(o.sizes) == 0 {
		return usageErr(errors.New("--rows needs at least one size"))
	}
	for _, n := range o.sizes {
		if n < 2 || n > 1<<31-1 {
			return usageErr(fmt.Errorf("--rows: each size must be between 2 and %d, not %d", 1<<31-1, n))
		}
	}
	if o.repeat < 1 {
		return usageErr(errors.New("--repeat must be at least 1"))
	}
	return nil
}

func newBenchUndoCommand(g *globals) *cobra.Command {
	var o benchUndoOptions
	cmd := &cobra.Command{
		Use:   "undo",
		Short: "Time the undo of a session that updated every row, against the session itself",
		Long: `Measure how long pgundo undo takes to put back a session that updated every
row of a table shaped like pgbench_accounts, for each --rows size:

  untracked  the UPDATE on the table without capture
  forward    the same UPDATE on the tracked table: the session to undo
  undo       pgundo undo of that session (re-check, apply, check, commit)

With --planned it also undoes a second, identical session with every row
planned first (the path undo takes when rows were changed more than once or
since), for comparison; "planned ÷ its forward" is that undo against the
UPDATE it undid.

The goal (PRODUCT.md) is undo ÷ forward ≤ 1. Each size is measured --repeat
times (default 3): each run's undo is divided by the session it undid
(measured seconds before it, so a slow spell of a shared machine weighs on
both) and the ratio shown is the median of those; the times shown are each
column's median. "peak heap" is the largest Go heap pgundo itself used during
the undo, sampled every 20 ms: the undo streams everything in the database,
so it stays flat as the session grows. After every undo the table is compared
with a copy taken before the session; any difference fails the bench.

Like "bench capture", it installs pgundo if needed (and removes it again), works
in schema "pgundo_bench", empties pgundo's log, and refuses with exit code 3
where the log holds other tables' changes unless --force. Progress goes to
stderr.`,
		Example: `  createdb pgundo_bench
  pgundo bench undo --database-url postgres:///pgundo_bench
  pgundo bench undo --rows 10000,100000 --repeat 5 --json
  pgundo bench undo --rows 300000 --repeat 1   # a quick look
  pgundo bench undo --rows 300000 --planned`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), g, "undo", func(ctx context.Context, conn *pgx.Conn, progress func(string)) (*bench.UndoResult, error) {
				return bench.Undo(ctx, conn, bench.UndoOptions{Sizes: o.sizes, Repeat: o.repeat, Keep: o.keep, Force: o.force, Planned: o.planned}, progress)
			}, renderBenchUndo)
		},
	}
	f := cmd.Flags()
	f.Int64SliceVar(&o.sizes, "rows", bench.DefaultUndoSizes, "session sizes to measure: rows updated, comma-separated")
	f.IntVar(&o.repeat, "repeat", bench.DefaultUndoRepeat, "measure each size this many times and report the medians (one run's ratio is noisy on a shared machine)")
	f.BoolVar(&o.keep, "keep", false, "keep schema pgundo_bench, the log, and pgundo itself at the end")
	f.BoolVar(&o.force, "force", false, "run even where pgundo's log holds other tables' changes, deleting them")
	f.BoolVar(&o.planned, "planned", false, "also time the undo with every row planned first (the slower path), for comparison")
	return cmd
}

func renderBenchUndo(w io.Writer, res *bench.UndoResult) error {
	fmt.Fprintf(w, "pgundo bench undo: database %s, PostgreSQL %s\n", res.Database, res.Server.Version)
	runs := "1 run"
	if res.Repeat > 1 {
		runs = fmt.Sprintf("median of %d runs", res.Repeat)
	}
	fmt.Fprintf(w, "a session updates every row; %s per figure\n\n", runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	planned := len(res.Sizes) > 0 && res.Sizes[0].Planned > 0
	head := "ROWS\tUNTRACKED\tFORWARD\tUNDO\tUNDO÷FORWARD\tGOAL\t\tPEAK HEAP\tEXACT\t"
	if planned {
		head += "PLANNED\tPLANNED÷ITS FORWARD\t"
	}
	fmt.Fprintln(tw, head)
	met := 0
	for _, r := range res.Sizes {
		verdict := "MISSED"
		if r.GoalMet {
			verdict = "ok"
			met++
		}
		fmt.Fprintf(tw, "%d\t%.3f s\t%.3f s\t%.3f s\t%.2f\t≤ %.2f\t%s\t%.1f MiB\t%v\t",
			r.Rows, r.Untracked, r.Forward, r.Undo, r.Ratio, bench.GoalUndo, verdict, float64(r.PeakHeapBytes)/(1<<20), r.Exact)
		if planned {
			fmt.Fprintf(tw, "%.3f s\t%.2f\t", r.Planned, r.PlannedRatio)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.Repeat > 1 {
		fmt.Fprintf(w, "\nUNDO÷FORWARD is the median of each run's undo ÷ the session it undid:\n")
		for _, r := range res.Sizes {
			fmt.Fprintf(w, "  %d rows: %s\n", r.Rows, ratioList(r.RunRatios))
			if planned {
				fmt.Fprintf(w, "  %d rows, planned: %s\n", r.Rows, ratioList(r.PlannedRunRatios))
			}
		}
	}
	fmt.Fprintf(w, "\ngoals met: %d of %d; took %.0f s\n", met, len(res.Sizes), res.Seconds)
	return nil
}

// ratioList is "0.91 0.84 1.02".
func ratioList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " ")
}
