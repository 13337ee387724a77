package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/undo"
)

// DefaultUndoSizes are the session sizes Undo measures by default.
var DefaultUndoSizes = []int64{100_000, 1_000_000}

// DefaultUndoRepeat is how many times Undo measures each size by default.
const DefaultUndoRepeat = 3

// UndoOptions configures Undo. The zero value gives the defaults stated on
// each field.
type UndoOptions struct {
	// Sizes are the table sizes (rows, shaped like pgbench_accounts) to
	// measure; every row is updated by the session that is undone. Default
	// DefaultUndoSizes (100,000 and 1,000,000): two sizes show whether the
	// undo's time and pgundo's own memory grow with the session.
	Sizes []int64
	// Repeat is how many times each size is measured; the figures are
	// medians (memory: the largest). Default DefaultUndoRepeat (3): on a
	// shared machine one undo ÷ its session ranged 0.77-1.36 where the
	// median of runs stayed within 0.89-1.00 at 1M rows.
	Repeat int
	// Keep leaves schema pgundo_bench, the log and pgundo in place (the
	// tables in pgundo_bench with autovacuum off, as the bench set them).
	Keep bool
	// Force runs where pgundo's log holds other tables' entries (deleting
	// them). Default false: refuse with a *LogInUseError.
	Force bool
	// Planned also times, on a session of its own, the undo with
	// undo.Options.AlwaysPlan: the planned path the fast path skips.
	// Default false.
	Planned bool
}

// UndoResult is what Undo measured.
type UndoResult struct {
	Database        string    `json:"database"`
	Server          Server    `json:"server"`
	Repeat          int       `json:"repeat"`
	InstalledPgundo bool      `json:"installed_pgundo"`
	Sizes           []UndoRun `json:"sizes"`
	// Seconds is the bench's total wall-clock time.
	Seconds float64 `json:"seconds"`
}

// UndoRun is one session size measured.
type UndoRun struct {
	// Rows is the number of rows the session updated (and the undo put back).
	Rows int64 `json:"rows"`
	// Untracked is the forward UPDATE on the table without capture, Forward
	// the same UPDATE on the tracked table (the session that is undone), Undo
	// the undo of that session (plan, apply, check and commit), all medians
	// in seconds.
	Untracked float64 `json:"untracked_seconds"`
	Forward   float64 `json:"forward_seconds"`
	Undo      float64 `json:"undo_seconds"`
	// RunRatios are each run's undo ÷ the forward UPDATE it undid, in run
	// order. Ratio is their median; the goal (PRODUCT.md) is at most 1.
	// Each undo is paired with its own session, measured seconds apart,
	// so that a slow spell of a shared machine lands on both sides of one
	// ratio; the medians above can come from different runs. With one run
	// Ratio is Undo ÷ Forward.
	RunRatios []float64 `json:"run_ratios"`
	Ratio     float64   `json:"ratio"`
	GoalMet   bool      `json:"goal_met"`
	// PeakHeapBytes is the largest Go heap in use sampled (every 20 ms)
	// while the undo ran: what pgundo itself holds, which must not grow with
	// the session.
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
	// Exact is true when the table after the undo equals, row for row, a copy
	// taken before the session (checked on every run).
	Exact bool `json:"exact"`
	// Planned and PlannedForward are, with UndoOptions.Planned, the undo
	// on the planned path and the tracked UPDATE it undid (medians), and
	// PlannedRatio the median of each run's planned undo ÷ its forward;
	// zero otherwise.
	Planned        float64 `json:"planned_seconds,omitempty"`
	PlannedForward float64 `json:"planned_forward_seconds,omitempty"`
	PlannedRatio   float64 `json:"planned_ratio,omitempty"`
	// PlannedRunRatios are each run's planned undo ÷ its forward.
	PlannedRunRatios []float64 `json:"planned_run_ratios,omitempty"`
}

// GoalUndo is the largest acceptable ratio of an undo's time to the tracked
// forward statement's (PRODUCT.md: no slower than the forward statement).
const GoalUndo = 1.0

// Undo measures undoing a session that updated every row of a table, for
// each size in opts.Sizes: the untracked UPDATE, the same UPDATE tracked
// (the session), and the undo of that session, each on a connection of its
// own after VACUUM ANALYZE and CHECKPOINT. After every undo the table is
// compared with a copy taken before the session; any difference is an error.
// Like Capture it works in schema pgundo_bench and empties pgundo's log.
func Undo(ctx context.Context, conn *pgx.Conn, opts UndoOptions, progress func(string)) (res *UndoResult, err error) {
	started := time.Now()
	if len(opts.Sizes) == 0 {
		opts.Sizes = DefaultUndoSizes
	}
	if opts.Repeat == 0 {
		opts.Repeat = DefaultUndoRepeat
	}
	for _, n := range opts.Sizes {
		if n < 2 {
			return nil, fmt.Errorf("sizes must be at least 2 rows, not %d", n)
		}
	}
	if opts.Repeat < 1 {
		return nil, fmt.Errorf("repeat must be at least 1, not %d", opts.Repeat)
	}
	p := orNop(progress)
	e, srv, err := newEnv(ctx, conn, p)
	if err != nil {
		return nil, err
	}
	res = &UndoResult{Database: e.cfg.Database, Server: srv, Repeat: opts.Repeat}
	if err := e.prepare(ctx, opts.Force); err != nil {
		if e.installed {
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
	for _, n := range opts.Sizes {
		var untracked, forward, undone, pforward, planned []float64
		run := UndoRun{Rows: n, Exact: true}
		for r := 0; r < opts.Repeat; r++ {
			u, err := e.timeUntrackedUpdate(ctx, n)
			if err != nil {
				return nil, err
			}
			f, un, heap, err := e.timeUndo(ctx, n, undo.Options{})
			if err != nil {
				return nil, err
			}
			untracked, forward, undone = append(untracked, u), append(forward, f), append(undone, un)
			run.RunRatios = append(run.RunRatios, ratio(un, f))
			run.PeakHeapBytes = max(run.PeakHeapBytes, heap)
			p.f("undo %d rows run %d/%d: untracked update %.3f s, tracked update %.3f s, undo %.3f s (%.2f of the tracked update), peak Go heap %.1f MiB",
				n, r+1, opts.Repeat, u, f, un, ratio(un, f), float64(heap)/(1<<20))
			if opts.Planned {
				pf, pu, heap, err := e.timeUndo(ctx, n, undo.Options{AlwaysPlan: true})
				if err != nil {
					return nil, err
				}
				pforward, planned = append(pforward, pf), append(planned, pu)
				run.PlannedRunRatios = append(run.PlannedRunRatios, ratio(pu, pf))
				run.PeakHeapBytes = max(run.PeakHeapBytes, heap)
				p.f("undo %d rows run %d/%d, planned path: tracked update %.3f s, undo %.3f s (%.2f of the tracked update)", n, r+1, opts.Repeat, pf, pu, ratio(pu, pf))
			}
		}
		run.Untracked, run.Forward, run.Undo = median(untracked), median(forward), median(undone)
		run.Ratio = median(run.RunRatios)
		if opts.Planned {
			run.PlannedForward, run.Planned = median(pforward), median(planned)
			run.PlannedRatio = median(run.PlannedRunRatios)
		}
		run.GoalMet = run.Ratio <= GoalUndo
		res.Sizes = append(res.Sizes, run)
	}
	res.Seconds = time.Since(started).Seconds()
	return res, nil
}

// updateAll is the session's statement: every row of the accounts table.
var updateAll = "UPDATE " + ident(accounts) + " SET abalance = abalance + 1, filler = 'patched'"

// timeUntrackedUpdate times updateAll on a fresh untracked table of n rows.
func (e *env) timeUntrackedUpdate(ctx context.Context, n int64) (float64, error) {
	if err := e.buildQuietAccounts(ctx, n); err != nil {
		return 0, err
	}
	if err := e.settle(ctx, accounts); err != nil {
		return 0, err
	}
	return e.timed(ctx, updateAll)
}

// timed runs sql on a connection of its own and returns its wall time.
func (e *env) timed(ctx context.Context, sql string) (float64, error) {
	c, err := e.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	t0 := time.Now()
	if _, err := c.Exec(ctx, sql); err != nil {
		return 0, fmt.Errorf("%s: %w", sql, err)
	}
	return time.Since(t0).Seconds(), nil
}

// timeUndo builds a tracked table of n rows, copies it, times updateAll on
// it (the session), then times the undo of that session and checks the table
// equals the copy. It returns both times and the peak Go heap seen during
// the undo, which runs with uo.
func (e *env) timeUndo(ctx context.Context, n int64, uo undo.Options) (forward, undone float64, peakHeap uint64, err error) {
	if err := e.buildQuietAccounts(ctx, n); err != nil {
		return 0, 0, 0, err
	}
	snap := ident("accounts_before")
	if _, err := e.conn.Exec(ctx, "DROP TABLE IF EXISTS "+snap+"; CREATE TABLE "+snap+" WITH (autovacuum_enabled = off) AS TABLE "+ident(accounts)); err != nil {
		return 0, 0, 0, fmt.Errorf("copy %s: %w", ident(accounts), err)
	}
	if err := e.attach(ctx, Pgundo, accounts); err != nil {
		return 0, 0, 0, err
	}
	defer func() { err = errors.Join(err, e.detach(context.WithoutCancel(ctx), Pgundo, accounts)) }()
	if err := e.emptyLogs(ctx); err != nil {
		return 0, 0, 0, err
	}
	if err := e.settle(ctx, accounts); err != nil {
		return 0, 0, 0, err
	}
	c, err := e.connect(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	_, err = c.Exec(ctx, updateAll)
	forward = time.Since(t0).Seconds()
	if err != nil {
		c.Close(context.WithoutCancel(ctx))
		return 0, 0, 0, fmt.Errorf("%s: %w", updateAll, err)
	}
	var sid string
	err = c.QueryRow(ctx, "SELECT session_id FROM pgundo.stmt ORDER BY id DESC LIMIT 1").Scan(&sid)
	c.Close(context.WithoutCancel(ctx))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("find the session to undo: %w", err)
	}
	if err := e.vacuumLog(ctx); err != nil {
		return 0, 0, 0, err
	}
	if err := e.settle(ctx, accounts); err != nil {
		return 0, 0, 0, err
	}
	uc, err := e.connect(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer uc.Close(context.WithoutCancel(ctx))
	stop := sampleHeap()
	t0 = time.Now()
	plan, err := undo.Apply(ctx, uc, undo.Selection{Sessions: []string{sid}}, uo, nil)
	undone = time.Since(t0).Seconds()
	peakHeap = stop()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("undo session %s: %w", sid, err)
	}
	if got := plan.Tables[0].Restore; got != n {
		return 0, 0, 0, fmt.Errorf("undo session %s restored %d rows, want %d", sid, got, n)
	}
	// The undo logged as many rows as the session: vacuum them now, or
	// autovacuum wakes up on them during the next run's timed statements.
	if err := e.vacuumLog(ctx); err != nil {
		return 0, 0, 0, err
	}
	var diff int64
	if err := e.conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM (
		(TABLE %[1]s EXCEPT ALL TABLE %[2]s) UNION ALL (TABLE %[2]s EXCEPT ALL TABLE %[1]s)) d`, ident(accounts), snap)).Scan(&diff); err != nil {
		return 0, 0, 0, fmt.Errorf("compare %s with its copy: %w", ident(accounts), err)
	}
	if diff != 0 {
		return 0, 0, 0, fmt.Errorf("after the undo, %s differs from its copy taken before the session in %d rows", ident(accounts), diff)
	}
	return forward, undone, peakHeap, nil
}

// buildQuietAccounts builds the accounts table of n rows with autovacuum
// off: settle vacuums it before every timed statement, and autovacuum
// waking up on it (or on the copy timeUndo takes) inside one slowed that
// side of a ratio (a 1M-row undo took 14.3 s against 10.5-10.8 s while
// autovacuum processed the copy, seen in the server log).
func (e *env) buildQuietAccounts(ctx context.Context, n int64) error {
	if err := e.buildAccounts(ctx, true, n); err != nil {
		return err
	}
	if _, err := e.conn.Exec(ctx, "ALTER TABLE "+ident(accounts)+" SET (autovacuum_enabled = off)"); err != nil {
		return fmt.Errorf("build %s: %w", ident(accounts), err)
	}
	return nil
}

// vacuumLog vacuums and analyzes the log's partitions (as autovacuum does:
// the leaves, not the partitioned tables) before the undo is timed, as
// settle does the table before each timed statement: the undo reads the
// log as the session read the table, vacuumed, rather than with autovacuum
// waking up on it at random during the undo. (Measured: it does not make
// the undo faster; 1M-row undos took 10.1-10.5 s before, 10.4-10.6 s after,
// in steady runs.)
func (e *env) vacuumLog(ctx context.Context) error {
	var leaves []string
	err := e.conn.QueryRow(ctx, `SELECT array_agg(relid::regclass::text ORDER BY relid) FROM (
		SELECT relid FROM pg_partition_tree('pgundo.change_log') WHERE isleaf
		UNION ALL SELECT relid FROM pg_partition_tree('pgundo.stmt_log') WHERE isleaf) p`).Scan(&leaves)
	if err != nil {
		return fmt.Errorf("list the log's partitions: %w", err)
	}
	return e.vacuumAlso(ctx, leaves...)
}

// vacuumAlso vacuums and analyzes the tables named (qualified, quoted as
// needed) besides the one settle does.
func (e *env) vacuumAlso(ctx context.Context, tables ...string) error {
	for _, t := range tables {
		if _, err := e.conn.Exec(ctx, "VACUUM ANALYZE "+t); err != nil {
			return fmt.Errorf("vacuum %s: %w", t, err)
		}
	}
	return nil
}

// sampleHeap samples the Go heap in use every 20 ms until the returned
// function is called, which returns the largest value seen.
func sampleHeap() func() uint64 {
	runtime.GC()
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	read := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 {
		read()
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
