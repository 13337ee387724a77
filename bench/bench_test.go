package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/bench"
	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
)

// TestMain runs the package's tests against a throwaway PostgreSQL whose
// template database has pgundo installed.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.Installed))
}

// setup returns a connection to a fresh database with pgundo installed.
func setup(t *testing.T) *pgx.Conn {
	t.Helper()
	return pgtest.Connect(t, pgtest.NewDB(t))
}

// pgbenchPath is the pgbench next to the test server's binaries; the test
// fails if there is none (the OLTP phase is part of what is tested).
func pgbenchPath(t *testing.T) string {
	t.Helper()
	dir := pgtest.BinDir()
	if dir == "" {
		t.Fatal("no PostgreSQL client binaries found; pgbench is needed for the OLTP phase")
	}
	p := filepath.Join(dir, "pgbench")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pgbench is needed for the OLTP phase: %v", err)
	}
	return p
}

// progress collects progress lines.
type progress struct {
	mu    sync.Mutex
	lines []string
}

func (p *progress) add(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, s)
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func schemaExists(t *testing.T, conn *pgx.Conn, schema string) bool {
	t.Helper()
	return count(t, conn, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) > 0
}

// requireBenchGone checks that the bench left no trace: no schema
// pgundo_bench, nothing of it tracked, pgundo's log empty.
func requireBenchGone(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	if schemaExists(t, conn, bench.Schema) {
		t.Fatalf("schema %s must be dropped", bench.Schema)
	}
	if !schemaExists(t, conn, "pgundo") {
		return
	}
	for _, q := range []string{
		"SELECT count(*) FROM pgundo.tracked WHERE schema_name = 'pgundo_bench'",
		"SELECT count(*) FROM pgundo.stmt",
		"SELECT count(*) FROM pgundo.change",
		"SELECT count(*) FROM pgundo.session",
	} {
		if n := count(t, conn, q); n != 0 {
			t.Errorf("%s = %d, want 0", q, n)
		}
	}
}

func checkTiming(t *testing.T, what string, tm bench.Timing, repeat int, logged bool) {
	t.Helper()
	if len(tm.Runs) != repeat || tm.Seconds <= 0 || tm.Ratio <= 0 {
		t.Errorf("%s: want %d runs, seconds > 0, ratio > 0; got %+v", what, repeat, tm)
	}
	if logged != (tm.LogBytesPerRow > 0) {
		t.Errorf("%s: log bytes per row = %v, want %s", what, tm.LogBytesPerRow, map[bool]string{true: "> 0", false: "0"}[logged])
	}
}

func checkThroughput(t *testing.T, what string, tp bench.Throughput, repeat int, logged bool) {
	t.Helper()
	if len(tp.Runs) != repeat || tp.TPS <= 0 || tp.Ratio <= 0 {
		t.Errorf("%s: want %d runs, tps > 0, ratio > 0; got %+v", what, repeat, tp)
	}
	if logged != (tp.LogBytesPerRow > 0) {
		t.Errorf("%s: log bytes per row = %v, want %s", what, tp.LogBytesPerRow, map[bool]string{true: "> 0", false: "0"}[logged])
	}
}

// TestCapture runs the whole capture bench at a tiny size and checks the
// result's structure (never its timings) and that it cleaned up.
func TestCapture(t *testing.T) {
	t.Parallel()
	conn := setup(t)
	var p progress
	res, err := bench.Capture(context.Background(), conn, bench.CaptureOptions{
		Rows: 2000, Repeat: 2, OLTPSeconds: 1, Clients: 2, Pgbench: pgbenchPath(t),
	}, p.add)
	if err != nil {
		t.Fatal(err)
	}

	if res.Rows != 2000 || res.Repeat != 2 || res.InstalledPgundo || res.Kept || !res.Checkpoints {
		t.Errorf("rows/repeat/installed/kept/checkpoints = %d/%d/%v/%v/%v, want 2000/2/false/false/true",
			res.Rows, res.Repeat, res.InstalledPgundo, res.Kept, res.Checkpoints)
	}
	if res.Server.Version == "" || res.Server.Settings["fsync"] == "" || res.Seconds <= 0 {
		t.Errorf("server or seconds missing: %+v, %v", res.Server, res.Seconds)
	}

	want := []struct {
		step string
		rows int64
	}{{"update", 2000}, {"delete", 1000}, {"insert", 2000}}
	if len(res.Steps) != len(want) {
		t.Fatalf("got %d steps, want %d", len(res.Steps), len(want))
	}
	for i, w := range want {
		s := res.Steps[i]
		if s.Step != w.step || s.Rows != w.rows || s.SQL == "" || s.Goal <= 0 {
			t.Errorf("step %d: got %s, %d rows, goal %v, sql %q; want %s, %d rows", i, s.Step, s.Rows, s.Goal, s.SQL, w.step, w.rows)
		}
		checkTiming(t, w.step+" untracked", s.Untracked, 2, false)
		checkTiming(t, w.step+" pgundo", s.Pgundo, 2, true)
		checkTiming(t, w.step+" rowlevel", s.RowLevel, 2, true)
		checkTiming(t, w.step+" floor", s.Floor, 2, true)
		if s.Untracked.Ratio != 1 {
			t.Errorf("%s: untracked ratio = %v, want 1", w.step, s.Untracked.Ratio)
		}
		if s.GoalMet != (s.Pgundo.Ratio <= s.Goal) {
			t.Errorf("%s: goal_met = %v with ratio %v and goal %v", w.step, s.GoalMet, s.Pgundo.Ratio, s.Goal)
		}
	}
	if res.Steps[0].LogBytesGoal != bench.GoalLogBytes {
		t.Errorf("update log bytes goal = %v, want %v", res.Steps[0].LogBytesGoal, bench.GoalLogBytes)
	}

	// tpcb-like at 1 client and at --clients, then single-update at 1
	// client with synchronous_commit off.
	wantPhases := []struct {
		script, syncCommit string
		clients, jobs      int
		goal, floorGoal    float64
	}{
		{"tpcb-like", "server default", 1, 1, bench.GoalTPS, bench.GoalFloor},
		{"tpcb-like", "server default", 2, 2, bench.GoalTPS, bench.GoalFloor},
		{"single-update", "off", 1, 1, bench.GoalSingle, 0},
	}
	if len(res.OLTP) != len(wantPhases) {
		t.Fatalf("got %d OLTP phases, want %d: %+v", len(res.OLTP), len(wantPhases), res.OLTP)
	}
	for i, w := range wantPhases {
		o := res.OLTP[i]
		if o.Script != w.script || o.Scale != 1 || o.Clients != w.clients || o.Jobs != w.jobs || o.Seconds != 1 ||
			o.Pgbench == "" || o.SynchronousCommit != w.syncCommit || o.Goal != w.goal || o.FloorGoal != w.floorGoal {
			t.Errorf("OLTP phase %d parameters: %+v, want %+v", i, o, w)
		}
		what := fmt.Sprintf("oltp %s %d clients", o.Script, o.Clients)
		checkThroughput(t, what+" untracked", o.Untracked, 2, false)
		checkThroughput(t, what+" pgundo", o.Pgundo, 2, true)
		checkThroughput(t, what+" rowlevel", o.RowLevel, 2, true)
		checkThroughput(t, what+" floor", o.Floor, 2, true)
		if o.GoalMet != (o.Pgundo.Ratio >= o.Goal) {
			t.Errorf("%s: goal_met = %v with ratio %v and goal %v", what, o.GoalMet, o.Pgundo.Ratio, o.Goal)
		}
		// pgbench's one-row statements went to the journal: folding them
		// took time, and the folded log is bigger (statement and change
		// rows with their indexes).
		if o.Pgundo.FoldMicrosPerRow <= 0 || o.Pgundo.FoldedLogBytesPerRow <= 0 || o.RowLevel.FoldMicrosPerRow != 0 {
			t.Errorf("%s: fold %v µs/row, %v B/row folded (rowlevel: %v)", what, o.Pgundo.FoldMicrosPerRow, o.Pgundo.FoldedLogBytesPerRow, o.RowLevel.FoldMicrosPerRow)
		}
		if o.FloorRatio != o.Pgundo.TPS/o.Floor.TPS || o.FloorGoalMet != (o.FloorGoal == 0 || o.FloorRatio >= o.FloorGoal) {
			t.Errorf("%s: floor ratio %v (goal %v, met %v) with tps %v and floor %v", what, o.FloorRatio, o.FloorGoal, o.FloorGoalMet, o.Pgundo.TPS, o.Floor.TPS)
		}
	}

	// The JSON form carries the figures under stable names.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"steps":`, `"log_bytes_per_row":`, `"ratio":`, `"oltp":`, `"tps":`, `"rowlevel":`, `"floor":`, `"floor_ratio":`, `"synchronous_commit":`, `"fold_us_per_row":`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}

	if len(p.lines) == 0 {
		t.Error("no progress reported")
	}
	requireBenchGone(t, conn)
	if !schemaExists(t, conn, "pgundo") {
		t.Error("pgundo was installed before the bench and must stay")
	}
}

// TestCaptureRefusesRealLog checks that the bench never wipes a log that
// holds other tables' changes, unless forced.
func TestCaptureRefusesRealLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := setup(t)
	pgtest.Exec(t, conn, "CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)")
	if _, err := triggers.Track(ctx, conn, []string{"public.orders"}); err != nil {
		t.Fatal(err)
	}

	// Tracked but nothing logged yet: still refused (the bench would delete
	// whatever gets captured while it runs).
	_, err := bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 100, SkipOLTP: true}, nil)
	var inUse *bench.LogInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("got %v, want a *LogInUseError", err)
	}
	if !slices.Equal(inUse.TrackedTables, []string{"public.orders"}) || len(inUse.LoggedTables) != 0 {
		t.Errorf("got %+v, want public.orders tracked, nothing logged", inUse)
	}

	pgtest.Exec(t, conn, "INSERT INTO public.orders VALUES (1, 9.99), (2, 19.99)")
	const changes = "SELECT count(*) FROM pgundo.change"
	if n := count(t, conn, changes); n != 2 {
		t.Fatalf("log holds %d changes, want 2", n)
	}
	_, err = bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 100, SkipOLTP: true}, nil)
	if !errors.As(err, &inUse) {
		t.Fatalf("got %v, want a *LogInUseError", err)
	}
	if !slices.Equal(inUse.LoggedTables, []string{"public.orders"}) {
		t.Errorf("logged tables = %v, want public.orders", inUse.LoggedTables)
	}
	for _, s := range []string{"public.orders", "--force", "nothing was changed"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message lacks %q: %v", s, err)
		}
	}
	if n := count(t, conn, changes); n != 2 || schemaExists(t, conn, bench.Schema) {
		t.Errorf("a refused bench must change nothing: %d changes, schema %s exists: %v", n, bench.Schema, schemaExists(t, conn, bench.Schema))
	}

	res, err := bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 100, SkipOLTP: true, Force: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OLTP != nil || len(res.Steps) != 3 {
		t.Errorf("got OLTP %v and %d steps, want none and 3", res.OLTP, len(res.Steps))
	}
	requireBenchGone(t, conn)
	if n := count(t, conn, "SELECT count(*) FROM pgundo.tracked WHERE table_name = 'orders'"); n != 1 {
		t.Error("tables outside the bench must stay tracked")
	}
}

// TestCaptureInstallsAndKeeps checks that the bench installs pgundo where it
// is missing and removes it again, and that Keep leaves everything in place.
func TestCaptureInstallsAndKeeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := setup(t)
	if err := pgsql.Uninstall(ctx, conn); err != nil {
		t.Fatal(err)
	}

	res, err := bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 50, SkipOLTP: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.InstalledPgundo || schemaExists(t, conn, "pgundo") {
		t.Errorf("installed_pgundo = %v, pgundo left: %v; want true, false", res.InstalledPgundo, schemaExists(t, conn, "pgundo"))
	}
	requireBenchGone(t, conn)

	res, err = bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 50, SkipOLTP: true, Keep: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Kept || !schemaExists(t, conn, "pgundo") || !schemaExists(t, conn, bench.Schema) {
		t.Errorf("Keep must leave pgundo and %s in place", bench.Schema)
	}

	// A later run starts over from what Keep left.
	res, err = bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 50, SkipOLTP: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.InstalledPgundo {
		t.Error("pgundo was there already")
	}
	requireBenchGone(t, conn)
}

// TestCaptureOptionsChecked checks that bad options are refused before the
// database is touched.
func TestCaptureOptionsChecked(t *testing.T) {
	t.Parallel()
	conn := setup(t)
	for _, o := range []bench.CaptureOptions{{Rows: 1}, {Repeat: -1}, {Clients: -2}, {OLTPScale: -1}} {
		if _, err := bench.Capture(context.Background(), conn, o, nil); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if schemaExists(t, conn, bench.Schema) {
		t.Errorf("schema %s created", bench.Schema)
	}
}

// TestFindPgbench checks that the pgbench the tests use can be found
// without being named.
func TestFindPgbench(t *testing.T) {
	p, err := bench.FindPgbench(0)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "pgbench" {
		t.Errorf("got %s", p)
	}
}

// TestCaptureEMajMissing: asked to measure E-Maj where it is not
// installed, the bench says how to install it and changes nothing (it does
// not even install pgundo).
func TestCaptureEMajMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := setup(t)
	if err := pgsql.Uninstall(ctx, conn); err != nil {
		t.Fatal(err)
	}
	_, err := bench.Capture(ctx, conn, bench.CaptureOptions{Rows: 50, SkipOLTP: true, EMaj: true}, nil)
	var missing *bench.EMajMissingError
	if !errors.As(err, &missing) || missing.Err != nil {
		t.Fatalf("got %v, want an *EMajMissingError without a cause", err)
	}
	for _, s := range []string{"E-Maj is not installed in database " + conn.Config().Database, "nothing was changed", "CREATE EXTENSION emaj", "without --emaj"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message lacks %q: %v", s, err)
		}
	}
	if schemaExists(t, conn, bench.Schema) || schemaExists(t, conn, "pgundo") {
		t.Error("nothing may be created when E-Maj is missing")
	}
}

// TestCaptureWithEMaj runs the bench with E-Maj beside the other variants.
// E-Maj is not part of this repository: the test installs it from the psql
// script named by PGUNDO_EMAJ_SCRIPT (emaj-<version>.sql from the sql/
// directory of https://github.com/dalibo/emaj; E-Maj 5 needs PostgreSQL 14) and
// is skipped, saying so, when the variable is not set.
func TestCaptureWithEMaj(t *testing.T) {
	script := os.Getenv("PGUNDO_EMAJ_SCRIPT")
	if script == "" {
		t.Skip("PGUNDO_EMAJ_SCRIPT is not set: E-Maj's psql install script is needed to measure E-Maj")
	}
	body, err := os.ReadFile(script)
	if err != nil {
		t.Fatalf("PGUNDO_EMAJ_SCRIPT: %v", err)
	}
	ctx := context.Background()
	conn := setup(t)
	pgtest.Exec(t, conn, string(body))
	// A group left by an interrupted run, logging: the bench drops it.
	pgtest.Exec(t, conn, `CREATE SCHEMA pgundo_bench; CREATE TABLE pgundo_bench.accounts (aid int PRIMARY KEY);
		SELECT emaj.emaj_create_group('pgundo_bench', false);
		SELECT emaj.emaj_assign_table('pgundo_bench', 'accounts', 'pgundo_bench');
		SELECT emaj.emaj_start_group('pgundo_bench')`)

	res, err := bench.Capture(ctx, conn, bench.CaptureOptions{
		Rows: 2000, Repeat: 1, OLTPSeconds: 1, Clients: 2, Pgbench: pgbenchPath(t), EMaj: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.EMajVersion == "" {
		t.Error("E-Maj's version missing")
	}
	for _, s := range res.Steps {
		if s.EMaj == nil {
			t.Fatalf("%s: no E-Maj timing", s.Step)
		}
		checkTiming(t, s.Step+" emaj", *s.EMaj, 1, true)
		if s.EMaj.Ratio != s.EMaj.Seconds/s.Untracked.Seconds {
			t.Errorf("%s: E-Maj ratio %v, seconds %v, untracked %v", s.Step, s.EMaj.Ratio, s.EMaj.Seconds, s.Untracked.Seconds)
		}
	}
	if len(res.OLTP) != 3 {
		t.Fatalf("got %d OLTP phases, want 3", len(res.OLTP))
	}
	for _, o := range res.OLTP {
		if o.EMaj == nil {
			t.Fatalf("oltp %s: no E-Maj throughput", o.Script)
		}
		checkThroughput(t, fmt.Sprintf("oltp %s %d clients emaj", o.Script, o.Clients), *o.EMaj, 1, true)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"emaj_version":`, `"emaj":{`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	requireBenchGone(t, conn)
	if n := count(t, conn, "SELECT count(*) FROM emaj.emaj_group WHERE group_name = $1", bench.EMajGroup); n != 0 {
		t.Errorf("E-Maj group %s left behind", bench.EMajGroup)
	}
}
