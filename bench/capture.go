package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/triggers"
)

// Defaults of CaptureOptions.
const (
	DefaultRows        = 1_000_000
	DefaultRepeat      = 1
	DefaultOLTPSeconds = 10
	DefaultOLTPScale   = 1
	DefaultClients     = 4
	DefaultJobs        = 2
)

// CaptureOptions configures Capture. The zero value gives the defaults
// stated on each field.
type CaptureOptions struct {
	// Rows is the size of the table the bulk steps work on, shaped like
	// pgbench_accounts (aid int primary key, bid int, abalance int,
	// filler char(84)). Default 1,000,000; at least 2.
	Rows int64
	// Repeat is how many times each measurement is taken, the variants
	// interleaved; the figures reported are medians. Default 1.
	Repeat int
	// SkipOLTP skips the pgbench phase (and the search for pgbench).
	SkipOLTP bool
	// OLTPSeconds is the length of each pgbench run (pgbench -T). Default 10.
	OLTPSeconds int
	// OLTPScale is the pgbench scale factor: 100,000 accounts, 10 tellers
	// and 1 branch per unit. Default 1.
	OLTPScale int
	// Clients is the number of pgbench clients (pgbench -c) of the second
	// tpcb-like phase; the first always runs 1. Default 4.
	Clients int
	// Jobs is the number of pgbench threads (pgbench -j), at most Clients.
	// Default 2.
	Jobs int
	// Pgbench is the pgbench executable. Default: FindPgbench's answer.
	Pgbench string
	// Keep leaves schema pgundo_bench (with the tables last built), pgundo's
	// log of the last measurement, and pgundo itself in place at the end.
	// Default false: all three are removed (pgundo only if the bench
	// installed it).
	Keep bool
	// Force runs the bench even where pgundo's log holds entries of tables
	// outside pgundo_bench or such tables are tracked, deleting those
	// entries. Default false: the bench refuses with a *LogInUseError.
	Force bool
	// EMaj also measures every step and phase with E-Maj (the EMaj
	// variant), which must be installed in the database; where it is not,
	// Capture returns an *EMajMissingError before changing anything.
	// Default false.
	EMaj bool
}

// withDefaults fills in defaults and checks the values.
func (o CaptureOptions) withDefaults() (CaptureOptions, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Rows == 0 {
		o.Rows = DefaultRows
	}
	def(&o.Repeat, DefaultRepeat)
	def(&o.OLTPSeconds, DefaultOLTPSeconds)
	def(&o.OLTPScale, DefaultOLTPScale)
	def(&o.Clients, DefaultClients)
	def(&o.Jobs, DefaultJobs)
	switch {
	case o.Rows < 2 || o.Rows > math.MaxInt32:
		return o, fmt.Errorf("rows must be between 2 and %d, not %d", math.MaxInt32, o.Rows)
	case o.Repeat < 1:
		return o, fmt.Errorf("repeat must be at least 1, not %d", o.Repeat)
	case o.OLTPSeconds < 1:
		return o, fmt.Errorf("OLTP seconds must be at least 1, not %d", o.OLTPSeconds)
	case o.OLTPScale < 1 || o.OLTPScale > math.MaxInt32/100_000:
		return o, fmt.Errorf("OLTP scale must be between 1 and %d, not %d", math.MaxInt32/100_000, o.OLTPScale)
	case o.Clients < 1:
		return o, fmt.Errorf("clients must be at least 1, not %d", o.Clients)
	case o.Jobs < 1:
		return o, fmt.Errorf("jobs must be at least 1, not %d", o.Jobs)
	}
	o.Jobs = min(o.Jobs, o.Clients)
	return o, nil
}

// CaptureResult is what Capture measured.
type CaptureResult struct {
	// Database is the name of the database the bench ran in.
	Database string `json:"database"`
	// Server is the server's version and write-related settings.
	Server Server `json:"server"`
	// Rows is the size of the bulk steps' table; Repeat how many times each
	// measurement was taken.
	Rows   int64 `json:"rows"`
	Repeat int   `json:"repeat"`
	// Checkpoints is true when a CHECKPOINT preceded every measurement
	// (false when the role may not run CHECKPOINT).
	Checkpoints bool `json:"checkpoints"`
	// InstalledPgundo is true when pgundo was not installed and the bench
	// installed it (and removed it again, unless Kept).
	InstalledPgundo bool `json:"installed_pgundo"`
	// Kept is true when schema pgundo_bench and the log were left in place.
	Kept bool `json:"kept"`
	// EMajVersion is the version of the E-Maj measured beside pgundo
	// (emaj_get_version()); empty when E-Maj was not measured.
	EMajVersion string `json:"emaj_version,omitempty"`
	// Steps are the bulk steps: update, delete, insert, in that order.
	Steps []StepResult `json:"steps"`
	// OLTP are the pgbench phases, in this order: tpcb-like at 1 client,
	// tpcb-like at Clients clients (left out when Clients is 1), and
	// single-update at 1 client. Empty when skipped.
	OLTP []*OLTPResult `json:"oltp"`
	// Seconds is the bench's total wall-clock time.
	Seconds float64 `json:"seconds"`
}

// StepResult is one bulk statement measured in every variant.
type StepResult struct {
	// Step is "update", "delete" or "insert".
	Step string `json:"step"`
	// SQL is the timed statement ($1 is Rows).
	SQL string `json:"sql"`
	// Rows is the number of rows the statement changed.
	Rows int64 `json:"rows"`
	// Untracked, Pgundo, RowLevel and Floor are the variants' measurements;
	// EMaj is E-Maj's, nil unless it was measured.
	Untracked Timing  `json:"untracked"`
	Pgundo    Timing  `json:"pgundo"`
	RowLevel  Timing  `json:"rowlevel"`
	Floor     Timing  `json:"floor"`
	EMaj      *Timing `json:"emaj,omitempty"`
	// Goal is the largest acceptable Pgundo.Ratio (PRODUCT.md), and GoalMet
	// whether it was met.
	Goal    float64 `json:"goal"`
	GoalMet bool    `json:"goal_met"`
	// LogBytesGoal is the largest acceptable Pgundo.LogBytesPerRow (0: none),
	// and LogBytesGoalMet whether it was met (true when there is no goal).
	LogBytesGoal    float64 `json:"log_bytes_goal"`
	LogBytesGoalMet bool    `json:"log_bytes_goal_met"`
}

// Timing is one variant's measurement of a bulk statement.
type Timing struct {
	// Seconds is the median wall-clock time of the statement (commit
	// included), over Runs.
	Seconds float64   `json:"seconds"`
	Runs    []float64 `json:"runs"`
	// Ratio is Seconds ÷ the untracked variant's Seconds.
	Ratio float64 `json:"ratio"`
	// LogBytesPerRow is the median growth of the variant's log (for pgundo:
	// pg_total_relation_size of pgundo.change plus pgundo.stmt), divided by
	// the rows changed. 0 for the untracked variant.
	LogBytesPerRow float64 `json:"log_bytes_per_row"`
}

// step is one bulk statement to time.
type step struct {
	name    string
	sql     string
	filled  bool // the statement works on a full table (else an empty one)
	args    bool // the statement takes Rows as $1
	goal    float64
	logGoal float64
}

// accounts is the bulk steps' table, in Schema.
const accounts = "accounts"

var steps = []step{
	{name: "update", sql: "UPDATE " + ident(accounts) + " SET abalance = abalance + 1", filled: true, goal: GoalUpdate, logGoal: GoalLogBytes},
	{name: "delete", sql: "DELETE FROM " + ident(accounts) + " WHERE aid % 2 = 0", filled: true, goal: GoalDelete},
	{name: "insert", sql: "INSERT INTO " + ident(accounts) + " (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, $1::int) aid", args: true, goal: GoalInsert},
}

// Capture measures what pgundo's capture costs in the database conn is
// connected to, against no capture, a classic row-level audit trigger, the
// floor trigger and, when opts.EMaj, E-Maj:
//
//   - bulk steps on a table of opts.Rows rows shaped like pgbench_accounts:
//     UPDATE of every row, DELETE of half the rows, INSERT of opts.Rows rows
//     into an empty table. Each run gets a freshly built table, VACUUM
//     ANALYZE, CHECKPOINT and a connection of its own; the statement's wall
//     time, commit included, is what counts.
//   - unless opts.SkipOLTP, pgbench's tpcb-like transactions, on pgbench
//     tables built in Schema (all four tracked in the pgundo variant), for
//     opts.OLTPSeconds per run, at 1 client and at opts.Clients; then one
//     single-row UPDATE per transaction at 1 client with
//     synchronous_commit off (no wait for the commit's flush: what is left
//     is the CPU cost of capture).
//
// For each step and repetition the variants run one after the other, in an
// order rotated on each repetition. The logs are emptied before each run,
// and their growth gives the log bytes per changed row.
//
// conn must be allowed to create a schema (and to install pgundo, if it is
// not installed); CHECKPOINT needs superuser or pg_checkpoint and is skipped
// without them. Progress lines go to progress, which may be nil. On return,
// error or not, schema pgundo_bench is dropped and the log emptied unless
// opts.Keep. A *LogInUseError means nothing was changed.
func Capture(ctx context.Context, conn *pgx.Conn, opts CaptureOptions, progress func(string)) (res *CaptureResult, err error) {
	started := time.Now()
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	p := orNop(progress)
	e, srv, err := newEnv(ctx, conn, p)
	if err != nil {
		return nil, err
	}
	res = &CaptureResult{Database: e.cfg.Database, Server: srv, Rows: opts.Rows, Repeat: opts.Repeat, Kept: opts.Keep}
	pgbench := opts.Pgbench
	if !opts.SkipOLTP && pgbench == "" {
		if pgbench, err = FindPgbench(srv.VersionNum / 10000); err != nil {
			return nil, err
		}
	}
	if opts.EMaj {
		// Checked before anything is changed.
		if res.EMajVersion, err = e.emajVersion(ctx); err != nil {
			return nil, err
		}
		e.emaj = true
		e.variants = append(slices.Clone(Variants), EMaj)
	}
	if err := e.prepare(ctx, opts.Force); err != nil {
		if e.installed { // a failure after installing: remove it again
			err = errors.Join(err, e.finish(ctx, opts.Keep))
		}
		return nil, err
	}
	defer func() {
		err = errors.Join(err, e.finish(ctx, opts.Keep))
		if err != nil {
			res = nil
		}
	}()
	res.InstalledPgundo = e.installed
	if err := e.createSchema(ctx); err != nil {
		return nil, err
	}

	for _, st := range steps {
		sr, err := e.measureStep(ctx, st, opts)
		if err != nil {
			return nil, err
		}
		res.Steps = append(res.Steps, sr)
	}
	if !opts.SkipOLTP {
		for _, ph := range oltpPhases(opts) {
			o, err := e.measureOLTP(ctx, pgbench, ph, opts)
			if err != nil {
				return nil, err
			}
			res.OLTP = append(res.OLTP, o)
		}
	}
	res.Checkpoints = e.checkpoint
	res.Seconds = time.Since(started).Seconds()
	return res, nil
}

// measureStep times one bulk step in every variant, opts.Repeat times.
func (e *env) measureStep(ctx context.Context, st step, opts CaptureOptions) (StepResult, error) {
	sr := StepResult{Step: st.name, SQL: st.sql, Goal: st.goal, LogBytesGoal: st.logGoal}
	runs := map[Variant][]float64{}
	perRow := map[Variant][]float64{}
	for r := 0; r < opts.Repeat; r++ {
		for _, v := range e.rotate(r) {
			secs, rows, logBytes, err := e.runStep(ctx, st, v, opts.Rows)
			if err != nil {
				return sr, fmt.Errorf("%s step, %s variant: %w", st.name, v, err)
			}
			if sr.Rows == 0 {
				sr.Rows = rows
			} else if rows != sr.Rows {
				return sr, fmt.Errorf("%s step, %s variant: changed %d rows, other runs %d", st.name, v, rows, sr.Rows)
			}
			runs[v] = append(runs[v], secs)
			perRow[v] = append(perRow[v], ratio(float64(logBytes), float64(rows)))
			msg := fmt.Sprintf("%s %s run %d/%d: %.3f s, %d rows", st.name, v, r+1, opts.Repeat, secs, rows)
			if v != Untracked {
				msg += fmt.Sprintf(", log %.0f bytes/row", ratio(float64(logBytes), float64(rows)))
			}
			e.progress(msg)
		}
	}
	base := median(runs[Untracked])
	timing := func(v Variant) Timing {
		t := Timing{Seconds: median(runs[v]), Runs: runs[v], LogBytesPerRow: median(perRow[v])}
		t.Ratio = ratio(t.Seconds, base)
		return t
	}
	sr.Untracked, sr.Pgundo, sr.RowLevel, sr.Floor = timing(Untracked), timing(Pgundo), timing(RowLevel), timing(Floor)
	if e.emaj {
		t := timing(EMaj)
		sr.EMaj = &t
	}
	sr.GoalMet = sr.Pgundo.Ratio <= sr.Goal
	sr.LogBytesGoalMet = sr.LogBytesGoal == 0 || sr.Pgundo.LogBytesPerRow <= sr.LogBytesGoal
	return sr, nil
}

// runStep builds a fresh table, attaches variant v's capture, settles, and
// times st on a connection of its own. It returns the seconds, the rows
// changed and the growth of the variant's log in bytes.
func (e *env) runStep(ctx context.Context, st step, v Variant, rows int64) (secs float64, changed, logBytes int64, err error) {
	if err := e.buildAccounts(ctx, st.filled, rows); err != nil {
		return 0, 0, 0, err
	}
	if err := e.attach(ctx, v, accounts); err != nil {
		return 0, 0, 0, err
	}
	if err := e.emptyLogs(ctx); err != nil {
		return 0, 0, 0, err
	}
	if err := e.settle(ctx, accounts); err != nil {
		return 0, 0, 0, err
	}
	before, err := e.logBytes(ctx, v)
	if err != nil {
		return 0, 0, 0, err
	}
	conn, err := e.connect(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var args []any
	if st.args {
		args = append(args, rows)
	}
	t0 := time.Now()
	tag, err := conn.Exec(ctx, st.sql, args...)
	secs = time.Since(t0).Seconds()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", st.sql, err)
	}
	after, err := e.logBytes(ctx, v)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := e.detach(ctx, v, accounts); err != nil {
		return 0, 0, 0, err
	}
	return secs, tag.RowsAffected(), after - before, nil
}

// buildAccounts (re)creates the bulk steps' table, shaped like
// pgbench_accounts: filled with rows rows the way pgbench -i fills it, or
// empty.
func (e *env) buildAccounts(ctx context.Context, filled bool, rows int64) error {
	t := ident(accounts)
	if _, err := e.conn.Exec(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
		return fmt.Errorf("drop %s: %w", t, err)
	}
	if !filled {
		if _, err := e.conn.Exec(ctx, "CREATE TABLE "+t+" (aid int PRIMARY KEY, bid int, abalance int, filler char(84))"); err != nil {
			return fmt.Errorf("create %s: %w", t, err)
		}
		return nil
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"CREATE TABLE " + t + " (aid int NOT NULL, bid int, abalance int, filler char(84))", nil},
		{"INSERT INTO " + t + " (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, $1::int) aid", []any{rows}},
		{"ALTER TABLE " + t + " ADD PRIMARY KEY (aid)", nil},
	} {
		if _, err := e.conn.Exec(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("build %s: %w", t, err)
		}
	}
	return nil
}

// detach stops pgundo's capture on the tables after a pgundo run, so that
// pgundo's tracked list does not keep tables the next build drops, and
// drops the E-Maj group after an E-Maj run (E-Maj would refuse to let its
// tables be dropped).
func (e *env) detach(ctx context.Context, v Variant, tables ...string) error {
	if v == EMaj {
		return e.emajDetach(ctx)
	}
	if v != Pgundo {
		return nil
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = ident(t)
	}
	if _, err := triggers.Untrack(ctx, e.conn, names); err != nil {
		return fmt.Errorf("untrack: %w", err)
	}
	return nil
}
