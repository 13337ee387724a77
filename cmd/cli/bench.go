package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/bench"
)

// newBenchCommand returns the "bench" group; each benchmark is a subcommand.
func newBenchCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure pgundo's overhead in a scratch database",
		Long: `Benchmarks that measure what pgundo costs, in the database they are pointed at,
as ratios against the same work without pgundo, in one run.

They create schema "pgundo_bench" and empty pgundo's log as they go: run them in
a scratch database, not in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErr(errors.New("choose a benchmark: pgundo bench capture, or pgundo bench undo (see pgundo bench --help)"))
		},
	}
	cmd.AddCommand(newBenchCaptureCommand(g), newBenchUndoCommand(g), newBenchHistoryCommand(g))
	return cmd
}

// runBench connects, runs one benchmark with its progress lines on stderr,
// and prints its result; a *bench.LogInUseError is a refusal (exit 3).
func runBench[R any](ctx context.Context, g *globals, name string, run func(context.Context, *pgx.Conn, func(string)) (R, error), render func(io.Writer, R) error) error {
	conn, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	res, err := run(ctx, conn, func(msg string) { fmt.Fprintf(g.stderr, "pgundo bench: %s\n", msg) })
	if err != nil {
		var inUse *bench.LogInUseError
		if errors.As(err, &inUse) {
			return refusedErr(err)
		}
		return fmt.Errorf("bench %s: %w", name, err)
	}
	return g.output(res, func(w io.Writer) error { return render(w, res) })
}

type benchCaptureOptions struct {
	rows        int64
	repeat      int
	oltpSeconds int
	oltpScale   int
	clients     int
	jobs        int
	pgbench     string
	keep        bool
	force       bool
	emaj        bool
}

// Validate checks the flag values that need no database.
func (o benchCaptureOptions) Validate() error {
	switch {
	case o.rows < 2 || o.rows > math.MaxInt32:
		return usageErr(fmt.Errorf("--rows must be between 2 and %d", math.MaxInt32))
	case o.repeat < 1:
		return usageErr(errors.New("--repeat must be at least 1"))
	case o.oltpSeconds < 0:
		return usageErr(errors.New("--oltp-seconds must be 0 (skip the OLTP phase) or more"))
	case o.oltpScale < 1 || o.oltpScale > math.MaxInt32/100_000:
		return usageErr(fmt.Errorf("--oltp-scale must be between 1 and %d", math.MaxInt32/100_000))
	case o.clients < 1:
		return usageErr(errors.New("--clients must be at least 1"))
	case o.jobs < 1:
		return usageErr(errors.New("--jobs must be at least 1"))
	}
	return nil
}

func (o benchCaptureOptions) captureOptions() bench.CaptureOptions {
	return bench.CaptureOptions{
		Rows:        o.rows,
		Repeat:      o.repeat,
		SkipOLTP:    o.oltpSeconds == 0,
		OLTPSeconds: o.oltpSeconds,
		OLTPScale:   o.oltpScale,
		Clients:     o.clients,
		Jobs:        o.jobs,
		Pgbench:     o.pgbench,
		Keep:        o.keep,
		Force:       o.force,
		EMaj:        o.emaj,
	}
}

func newBenchCaptureCommand(g *globals) *cobra.Command {
	var o benchCaptureOptions
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "Time bulk writes and pgbench transactions with and without capture",
		Long: `Measure what capture costs, as ratios against the same work untracked, and
against baselines measured in the same run:

  update  UPDATE of every row of a --rows table shaped like pgbench_accounts
  delete  DELETE of half of its rows
  insert  INSERT of --rows rows into an empty table of that shape
  oltp    pgbench's tpcb-like transactions for --oltp-seconds, all four
          pgbench tables tracked, at 1 client and at --clients; then one
          single-row UPDATE per transaction at 1 client with
          synchronous_commit off, so that the commit's flush does not hide
          the CPU cost of capture (needs pgbench; --oltp-seconds 0 skips it)

Beside untracked, two baselines run in the same rounds: "rowlevel", a
classic row-level audit trigger, and "floor", a statement trigger that
writes one text image per row and the transaction id to an unindexed table:
the least any trigger-based capture can cost. With --emaj, E-Maj (the
closest peer: row-level log triggers writing each changed row into a log
table per table) runs in the same rounds too; it must be installed in the
database first (CREATE EXTENSION emaj CASCADE, or E-Maj's psql install
script emaj-<version>.sql, as a superuser; E-Maj 5 needs PostgreSQL 14, 4.7 PostgreSQL 11). The bench
puts the tables in an E-Maj group of its own, "pgundo_bench", for each run.

Every run gets a freshly built table, VACUUM ANALYZE, CHECKPOINT, and a
connection of its own; the statement's wall time, commit included, counts.
The variants run interleaved (untracked, pgundo, rowlevel, floor, rotated on
each of --repeat repetitions) and the medians are reported. "log B/row" is the
growth of pgundo's log (its log tables and journal, indexes included) per
changed row. Goals are those of pgundo's speed targets; the command exits 0
whether they are met or not.

The bench installs pgundo if needed (and removes it again at the end), works
in schema "pgundo_bench" (dropped at the end unless --keep), and empties
pgundo's log before every run. It therefore refuses, with exit code 3, to run
where pgundo's log holds other tables' changes or other tables are tracked,
unless --force. Progress goes to stderr.`,
		Example: `  createdb pgundo_bench
  pgundo bench capture --database-url postgres:///pgundo_bench
  pgundo bench capture --rows 10000 --oltp-seconds 2      # a quick look
  pgundo bench capture --repeat 3 --json > capture.json
  psql -d pgundo_bench -f emaj-4.7.1.sql                  # E-Maj's psql install script
  pgundo bench capture --repeat 3 --emaj --database-url postgres:///pgundo_bench`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return runBench(cmd.Context(), g, "capture", func(ctx context.Context, conn *pgx.Conn, progress func(string)) (*bench.CaptureResult, error) {
				return bench.Capture(ctx, conn, o.captureOptions(), progress)
			}, renderBenchCapture)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.rows, "rows", bench.DefaultRows, "rows in the table of the bulk steps")
	f.IntVar(&o.repeat, "repeat", bench.DefaultRepeat, "take each measurement this many times and report the medians")
	f.IntVar(&o.oltpSeconds, "oltp-seconds", bench.DefaultOLTPSeconds, "length of each pgbench run, in seconds (0 skips the OLTP phase)")
	f.IntVar(&o.oltpScale, "oltp-scale", bench.DefaultOLTPScale, "pgbench scale factor (100,000 accounts per unit)")
	f.IntVar(&o.clients, "clients", bench.DefaultClients, "pgbench clients (-c) of the second tpcb-like phase (the first runs 1)")
	f.IntVar(&o.jobs, "jobs", bench.DefaultJobs, "pgbench threads (-j), at most --clients")
	f.StringVar(&o.pgbench, "pgbench", "", "pgbench executable (default: the server's version from /usr/lib/postgresql, pg_config --bindir, or $PATH)")
	f.BoolVar(&o.keep, "keep", false, "keep schema pgundo_bench, the last run's log, and pgundo itself at the end")
	f.BoolVar(&o.force, "force", false, "run even where pgundo's log holds other tables' changes, deleting them")
	f.BoolVar(&o.emaj, "emaj", false, "also measure E-Maj, installed in the database beforehand")
	return cmd
}

func renderBenchCapture(w io.Writer, res *bench.CaptureResult) error {
	fmt.Fprintf(w, "pgundo bench capture: database %s, PostgreSQL %s\n", res.Database, res.Server.Version)
	keys := make([]string, 0, len(res.Server.Settings))
	for k := range res.Server.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	settings := make([]string, len(keys))
	for i, k := range keys {
		settings[i] = k + "=" + res.Server.Settings[k]
	}
	fmt.Fprintf(w, "settings: %s\n", strings.Join(settings, " "))
	runs := "1 run"
	if res.Repeat > 1 {
		runs = fmt.Sprintf("median of %d runs", res.Repeat)
	}
	prep := "VACUUM ANALYZE and CHECKPOINT"
	if !res.Checkpoints {
		prep = "VACUUM ANALYZE (CHECKPOINT not permitted)"
	}
	fmt.Fprintf(w, "%d rows; %s per figure, each on a fresh table after %s\n\n", res.Rows, runs, prep)

	emaj := res.EMajVersion != ""
	// row writes one tab-terminated line; the E-Maj cells only when E-Maj
	// was measured.
	row := func(tw io.Writer, cells []string, emajCells ...string) {
		if emaj {
			cells = append(cells[:9:9], append(emajCells, cells[9:]...)...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := strings.Split("STEP  \tROWS\tUNTRACKED\tPGUNDO\tRATIO\tROWLEVEL\tRATIO\tFLOOR\tRATIO\tGOAL\t\tLOG B/ROW\tROWLEVEL LOG B/ROW", "\t")
	if emaj {
		header = append(header, "EMAJ LOG B/ROW")
	}
	row(tw, header, "EMAJ", "RATIO")
	met, goals := 0, 0
	verdict := func(ok bool) string {
		goals++
		if ok {
			met++
			return "ok"
		}
		return "MISSED"
	}
	for _, s := range res.Steps {
		logCol := fmt.Sprintf("%.0f", s.Pgundo.LogBytesPerRow)
		if s.LogBytesGoal > 0 {
			logCol += fmt.Sprintf(" (≤ %.0f %s)", s.LogBytesGoal, verdict(s.LogBytesGoalMet))
		}
		var emajCells []string
		if s.EMaj != nil {
			emajCells = []string{fmt.Sprintf("%.3f s", s.EMaj.Seconds), fmt.Sprintf("%.2f", s.EMaj.Ratio)}
		}
		cells := []string{fmt.Sprintf("%-6s", s.Step), fmt.Sprint(s.Rows), fmt.Sprintf("%.3f s", s.Untracked.Seconds),
			fmt.Sprintf("%.3f s", s.Pgundo.Seconds), fmt.Sprintf("%.2f", s.Pgundo.Ratio),
			fmt.Sprintf("%.3f s", s.RowLevel.Seconds), fmt.Sprintf("%.2f", s.RowLevel.Ratio),
			fmt.Sprintf("%.3f s", s.Floor.Seconds), fmt.Sprintf("%.2f", s.Floor.Ratio),
			fmt.Sprintf("≤ %.2f", s.Goal), verdict(s.GoalMet), logCol, fmt.Sprintf("%.0f", s.RowLevel.LogBytesPerRow)}
		if s.EMaj != nil {
			cells = append(cells, fmt.Sprintf("%.0f", s.EMaj.LogBytesPerRow))
		}
		row(tw, cells, emajCells...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.OLTP) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		row(tw, strings.Split("OLTP         \tCLIENTS\tUNTRACKED\tPGUNDO\tRATIO\tROWLEVEL\tRATIO\tFLOOR\tRATIO\tGOAL\t\tPGUNDO÷FLOOR\tGOAL\t\tLOG B/ROW", "\t"), "EMAJ", "RATIO")
		for _, o := range res.OLTP {
			floorGoal, floorVerdict := "-", ""
			if o.FloorGoal > 0 {
				floorGoal, floorVerdict = fmt.Sprintf("≥ %.2f", o.FloorGoal), verdict(o.FloorGoalMet)
			}
			var emajCells []string
			if o.EMaj != nil {
				emajCells = []string{fmt.Sprintf("%.0f tps", o.EMaj.TPS), fmt.Sprintf("%.2f", o.EMaj.Ratio)}
			}
			row(tw, []string{fmt.Sprintf("%-13s", o.Script), fmt.Sprint(o.Clients), fmt.Sprintf("%.0f tps", o.Untracked.TPS),
				fmt.Sprintf("%.0f tps", o.Pgundo.TPS), fmt.Sprintf("%.2f", o.Pgundo.Ratio),
				fmt.Sprintf("%.0f tps", o.RowLevel.TPS), fmt.Sprintf("%.2f", o.RowLevel.Ratio),
				fmt.Sprintf("%.0f tps", o.Floor.TPS), fmt.Sprintf("%.2f", o.Floor.Ratio),
				fmt.Sprintf("≥ %.2f", o.Goal), verdict(o.GoalMet), fmt.Sprintf("%.2f", o.FloorRatio), floorGoal, floorVerdict,
				fmt.Sprintf("%.0f", o.Pgundo.LogBytesPerRow)}, emajCells...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, o := range res.OLTP {
		fmt.Fprintf(w, "oltp %s: pgbench scale %d, %d clients, %d threads, %d s per run, synchronous_commit %s; "+
			"folding pgundo's journal after each run took %.1f µs a row (%.0f log B/row once folded)\n",
			o.Script, o.Scale, o.Clients, o.Jobs, o.Seconds, o.SynchronousCommit, o.Pgundo.FoldMicrosPerRow, o.Pgundo.FoldedLogBytesPerRow)
	}
	fmt.Fprintln(w, "floor: a statement trigger writing one text image per row and the xid to one unindexed table (the least any trigger capture costs)")
	if emaj {
		fmt.Fprintf(w, "emaj: E-Maj %s, row-level log triggers writing each changed row into a log table per table (group %s, audit_only: the same triggers as a rollbackable group)\n", res.EMajVersion, bench.EMajGroup)
	}
	fmt.Fprintf(w, "ratios: variant ÷ untracked (time for bulk steps, TPS for oltp); goals met: %d of %d; took %.0f s\n", met, goals, res.Seconds)
	return nil
}
