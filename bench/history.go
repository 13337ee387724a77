package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/triggers"
)

// Defaults of HistoryOptions.
const (
	DefaultHistoryEntries = 10_000_000
	DefaultHistoryRuns    = 7
	DefaultHistoryNew     = 1000
)

// GoalHistoryMS is the speed target for history of one row and asof of one
// key in a 10,000,000-entry log: well under 100 ms.
const GoalHistoryMS = 100

// HistoryOptions configures History. The zero value gives the defaults
// stated on each field.
type HistoryOptions struct {
	// Entries is the size of the log built, in row changes; a multiple of 10,
	// at least 100. Default 10,000,000. The log is that of a table of
	// Entries/10 rows shaped like pgbench_accounts: one INSERT of every row,
	// five UPDATEs of every row, then 4 × rows single-row UPDATEs (each row
	// four times, spread over the log), from 1,000 sessions over ten days.
	Entries int64
	// Runs is how many times each query is timed; the median is reported.
	// Default 7.
	Runs int
	// NewChanges is the number of single-row UPDATEs made through capture
	// after the index is built, before the last measurement (history that
	// first catches the index up with them). Default 1000.
	NewChanges int
	// Keep leaves schema pgundo_bench, the log and pgundo in place.
	Keep bool
	// Force runs even where pgundo's log holds other tables' changes,
	// deleting them.
	Force bool
}

func (o HistoryOptions) withDefaults() (HistoryOptions, error) {
	if o.Entries == 0 {
		o.Entries = DefaultHistoryEntries
	}
	if o.Runs == 0 {
		o.Runs = DefaultHistoryRuns
	}
	if o.NewChanges == 0 {
		o.NewChanges = DefaultHistoryNew
	}
	switch {
	case o.Entries < 100 || o.Entries%10 != 0:
		return o, fmt.Errorf("entries must be a multiple of 10, at least 100, not %d", o.Entries)
	case o.Runs < 1:
		return o, fmt.Errorf("runs must be at least 1, not %d", o.Runs)
	case o.NewChanges < 1:
		return o, fmt.Errorf("new changes must be at least 1, not %d", o.NewChanges)
	}
	return o, nil
}

// QueryTiming is one timed query: the median and the range over the runs,
// in milliseconds.
type QueryTiming struct {
	What     string  `json:"what"`
	MedianMS float64 `json:"median_ms"`
	MinMS    float64 `json:"min_ms"`
	MaxMS    float64 `json:"max_ms"`
	Runs     int     `json:"runs"`
	// GoalMS is the target for the median (0: none).
	GoalMS  float64 `json:"goal_ms"`
	GoalMet bool    `json:"goal_met"`
}

// HistoryResult is what History measured.
type HistoryResult struct {
	Database string `json:"database"`
	Server   Server `json:"server"`
	// Entries, Statements and Rows describe the log built and its table.
	Entries    int64 `json:"entries"`
	Statements int64 `json:"statements"`
	Rows       int64 `json:"rows"`
	// LogBytes is the size of pgundo.change, pgundo.stmt and pgundo.session
	// with indexes; IndexBytes that of the row-history index
	// (pgundo.hist_key and pgundo.hist_stmt with indexes).
	LogBytes   int64 `json:"log_bytes"`
	IndexBytes int64 `json:"index_bytes"`
	// BuildSeconds is the time to generate the log; IndexSeconds the time
	// the first two refreshes of the row-history index took (the first
	// indexes everything, the second moves the watermark past it).
	BuildSeconds float64 `json:"build_seconds"`
	IndexSeconds float64 `json:"index_seconds"`
	// Key is the row whose history and past state were asked for, and
	// Versions how many versions its history has.
	Key      string `json:"key"`
	Versions int    `json:"versions"`
	// Timings: history of one row, asof of one key, and history right after
	// NewChanges single-row changes (the refresh included).
	Timings []QueryTiming `json:"timings"`
	Kept    bool          `json:"kept"`
	Seconds float64       `json:"seconds"`
}

const histTable = "hist_accounts"

// History builds a log of opts.Entries row changes directly in pgundo's
// tables (set-based INSERT ... SELECT over generate_series, as capture would
// have written them), builds the row-history index, and times pgundo
// history of one row and pgundo asof of one key (medians of opts.Runs),
// then the history of a row right after opts.NewChanges changes made through
// capture. It works in schema pgundo_bench and empties pgundo's log first,
// so like Capture it refuses (a *LogInUseError) where the log is in real use
// unless opts.Force. Timings are reported, never asserted.
func History(ctx context.Context, conn *pgx.Conn, opts HistoryOptions, progress func(string)) (res *HistoryResult, err error) {
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
	res = &HistoryResult{Database: e.cfg.Database, Server: srv, Entries: opts.Entries, Rows: opts.Entries / 10, Kept: opts.Keep}
	if err := e.prepare(ctx, opts.Force); err != nil {
		if e.installed {
			err = errors.Join(err, e.finish(ctx, opts.Keep))
		}
		return nil, err
	}
	defer func() {
		if !opts.Keep {
			_, cerr := e.conn.Exec(context.WithoutCancel(ctx), `TRUNCATE pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_mark, pgundo.hist_skipped;
				UPDATE pgundo.hist_state SET done_below = 0, refreshed = NULL`)
			err = errors.Join(err, cerr)
		}
		err = errors.Join(err, e.finish(ctx, opts.Keep))
		if err != nil {
			res = nil
		}
	}()
	if err := e.createSchema(ctx); err != nil {
		return nil, err
	}
	if err := e.emptyLogs(ctx); err != nil {
		return nil, err
	}
	if _, err := e.conn.Exec(ctx, `TRUNCATE pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_mark, pgundo.hist_skipped;
		UPDATE pgundo.hist_state SET done_below = 0, refreshed = NULL`); err != nil {
		return nil, fmt.Errorf("empty the row-history index: %w", err)
	}

	t0 := time.Now()
	p.f("building a log of %d row changes for a table of %d rows", opts.Entries, res.Rows)
	if res.Statements, err = e.buildHistoryLog(ctx, res.Rows); err != nil {
		return nil, err
	}
	res.BuildSeconds = time.Since(t0).Seconds()
	if err := e.conn.QueryRow(ctx, `SELECT pgundo._log_bytes() + pg_total_relation_size('pgundo.session')`).Scan(&res.LogBytes); err != nil {
		return nil, err
	}
	p.f("log built in %.1f s (%d statements, %.0f MB); indexing it", res.BuildSeconds, res.Statements, float64(res.LogBytes)/1e6)

	t0 = time.Now()
	for i := 0; i < 2; i++ {
		if _, err := history.Refresh(ctx, e.conn); err != nil {
			return nil, err
		}
	}
	res.IndexSeconds = time.Since(t0).Seconds()
	if _, err := e.conn.Exec(ctx, "VACUUM ANALYZE pgundo.hist_key"); err != nil {
		return nil, err
	}
	if err := e.conn.QueryRow(ctx, `SELECT pg_total_relation_size('pgundo.hist_key') + pg_total_relation_size('pgundo.hist_stmt')`).
		Scan(&res.IndexBytes); err != nil {
		return nil, err
	}
	p.f("row-history index built in %.1f s (%.0f MB)", res.IndexSeconds, float64(res.IndexBytes)/1e6)

	var oid uint32
	if err := e.conn.QueryRow(ctx, "SELECT $1::regclass::oid", ident(histTable)).Scan(&oid); err != nil {
		return nil, err
	}
	tbl, err := history.LoadTable(ctx, e.conn, oid)
	if err != nil {
		return nil, err
	}
	aid := res.Rows/2 + 1
	key, err := tbl.ParseKey([]string{fmt.Sprint(aid)})
	if err != nil {
		return nil, err
	}
	res.Key = "aid=" + fmt.Sprint(aid)
	// A time with changes of the row on both sides: after its second
	// single-row update (its 8th version), before its third.
	var at time.Time
	if err := e.conn.QueryRow(ctx, `SELECT st.at + interval '1 microsecond' FROM pgundo.hist_key h JOIN pgundo.stmt st ON st.id = h.stmt_id
		WHERE h.relid = $1 AND h.key = $2 ORDER BY h.stmt_id OFFSET 7 LIMIT 1`, oid, fmt.Sprint(aid)).Scan(&at); err != nil {
		return nil, fmt.Errorf("pick a time: %w", err)
	}

	timeIt := func(what string, goal float64, before, f func() error) error {
		var ms []float64
		for i := 0; i < opts.Runs; i++ {
			if before != nil {
				if err := before(); err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
			}
			t := time.Now()
			if err := f(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			ms = append(ms, float64(time.Since(t).Microseconds())/1000)
		}
		qt := QueryTiming{What: what, MedianMS: median(ms), MinMS: minOf(ms), MaxMS: maxOf(ms), Runs: opts.Runs, GoalMS: goal}
		qt.GoalMet = goal == 0 || qt.MedianMS <= goal
		res.Timings = append(res.Timings, qt)
		p.f("%s: median %.1f ms (min %.1f, max %.1f)", what, qt.MedianMS, qt.MinMS, qt.MaxMS)
		return nil
	}
	historyOfKey := func() error {
		h, err := history.History(ctx, e.conn, tbl, key)
		if err == nil {
			res.Versions = len(h.Versions)
		}
		return err
	}
	if err := timeIt("history of one row (pgundo history)", GoalHistoryMS, nil, historyOfKey); err != nil {
		return nil, err
	}
	if err := timeIt("asof of one key (pgundo asof --at T KEY)", GoalHistoryMS, nil, func() error {
		img, err := history.AsOfRow(ctx, e.conn, tbl, key, at)
		if err == nil && img == nil {
			err = fmt.Errorf("no row %s at %s", key, at)
		}
		return err
	}); err != nil {
		return nil, err
	}
	// Changes made through capture since the last refresh: the next history
	// call indexes them first. Only that call is timed.
	newChanges := func() error {
		_, err := e.conn.Exec(ctx, `DO $$ BEGIN FOR i IN 1..`+fmt.Sprint(opts.NewChanges)+` LOOP
				UPDATE `+ident(histTable)+` SET abalance = abalance + 1 WHERE aid = 1 + (i * 7919) % `+fmt.Sprint(res.Rows)+`;
			END LOOP; END $$`)
		return err
	}
	if err := timeIt(fmt.Sprintf("history right after %d new single-row changes (index refresh included)", opts.NewChanges), 0,
		newChanges, historyOfKey); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(started).Seconds()
	return res, nil
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

// buildHistoryLog creates the bench table with rows rows in their final
// state, tracks it, and writes its log straight into pgundo's tables: the
// row images are cast from the table's row type, so they are exactly what
// capture writes. Returns the number of statements logged.
func (e *env) buildHistoryLog(ctx context.Context, rows int64) (int64, error) {
	tbl := ident(histTable)
	singles := 4 * rows
	if _, err := e.conn.Exec(ctx, `CREATE TABLE `+tbl+` (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))`); err != nil {
		return 0, fmt.Errorf("create %s: %w", tbl, err)
	}
	if _, err := e.conn.Exec(ctx, `INSERT INTO `+tbl+` SELECT aid, (aid - 1) / 100000 + 1, 9, '' FROM generate_series(1, $1::int) aid`, rows); err != nil {
		return 0, fmt.Errorf("fill %s: %w", tbl, err)
	}
	if _, err := triggers.Track(ctx, e.conn, []string{tbl}); err != nil {
		return 0, fmt.Errorf("track %s: %w", tbl, err)
	}
	tx, err := e.conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after commit: no-op
	var base int64
	nstmt := 6 + singles
	if err := tx.QueryRow(ctx, `SELECT setval('pgundo.stmt_id_seq', nextval('pgundo.stmt_id_seq') + $1) - $1`, nstmt).Scan(&base); err != nil {
		return 0, err
	}
	steps := []struct {
		what, sql string
		args      []any
	}{
		{"sessions", `INSERT INTO pgundo.session (id, pid, backend_start, session_role, client_addr, client_port, application_name, first_change_at)
			SELECT 'b' || to_hex(s) || '.' || to_hex(s), s, now() - interval '11 days', current_user, '10.1.0.0'::inet + s, 40000 + s,
			       'bench-app-' || s % 10, now() - interval '10 days'
			  FROM generate_series(1, 1000) s`, nil},
		{"statements", `INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag)
			SELECT $1::bigint + i, 'b' || to_hex(1 + i % 1000) || '.' || to_hex(1 + i % 1000), (1000 + i)::text::xid8,
			       now() - interval '10 days' + (interval '10 days' - interval '1 hour') * i / $2::bigint,
			       CASE WHEN i = 0 THEN 'I' ELSE 'U' END, $3::regclass, $4, $5, CASE WHEN i < 6 THEN $6::bigint ELSE 1 END,
			       current_user, 'bench-app-' || (1 + i % 1000) % 10, CASE WHEN i % 100 = 0 THEN 'ticket-' || i / 100 END
			  FROM generate_series(0, $2::bigint - 1) i`, []any{base, nstmt, tbl, Schema, histTable, rows}},
		{"the first INSERT's changes", `INSERT INTO pgundo.change_log (stmt_id, new)
			SELECT $1::bigint, ROW(aid, (aid - 1) / 100000 + 1, 0, '')::` + tbl + `::text FROM generate_series(1, $2::int) aid`,
			[]any{base, rows}},
		{"five bulk UPDATEs' changes", `INSERT INTO pgundo.change_log (stmt_id, old, new)
			SELECT $1::bigint + j, ROW(aid, (aid - 1) / 100000 + 1, j - 1, '')::` + tbl + `::text, ROW(aid, (aid - 1) / 100000 + 1, j, '')::` + tbl + `::text
			  FROM generate_series(1, 5) j, generate_series(1, $2::int) aid`, []any{base, rows}},
		{"single-row UPDATEs' changes", `INSERT INTO pgundo.change_log (stmt_id, old, new)
			SELECT $1::bigint + 6 + i, ROW(a, (a - 1) / 100000 + 1, 5 + i / $2::bigint, '')::` + tbl + `::text,
			       ROW(a, (a - 1) / 100000 + 1, 6 + i / $2::bigint, '')::` + tbl + `::text
			  FROM generate_series(0, $3::bigint - 1) i, LATERAL (SELECT (1 + (i * 7919) % $2::bigint)::int AS a) x`,
			[]any{base, rows, singles}},
	}
	for _, s := range steps {
		e.progress.f("writing %s", s.what)
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return 0, fmt.Errorf("write %s: %w", s.what, err)
		}
	}
	// The table was tracked before the log's first entry.
	if _, err := tx.Exec(ctx, `UPDATE pgundo.tracked SET tracked_at = now() - interval '10 days 1 hour' WHERE relid = $1::regclass`, tbl); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	e.progress.f("VACUUM ANALYZE of the log (summarizes pgundo.change_log's BRIN index, as autovacuum would)")
	if _, err := e.conn.Exec(ctx, "VACUUM ANALYZE pgundo.change_log, pgundo.stmt_log, pgundo.journal, pgundo.session"); err != nil {
		return 0, err
	}
	return nstmt, nil
}
