package undo_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// The fast path (apply_straight.go) undoes sessions that touched each row
// once straight from the log and logs the undo itself; anything else falls
// back to the planned path. checkUndo runs every hard case through Apply (fast
// where it applies), compares its plan with the dry run's, and redoes and
// re-undoes it; these tests pin which path ran and what the fast path logs.

// fellBack is the progress line the fast path gives when it hands over to
// the planned path.
const fellBack = "planning row by row"

// progressOf returns Options that record progress lines into *lines.
func progressOf(lines *[]string) undo.Options {
	return undo.Options{Progress: func(m string) { *lines = append(*lines, m) }}
}

// TestFastPathLogsLikeCapture: a session that updates (one of them to the
// same value), deletes and inserts rows, each once, is undone by the fast
// path. Its log then holds exactly what capture would have written: per
// table one DELETE, UPDATE and INSERT statement with each change's images
// swapped (the no-op update left out), with the undo's role, application
// and session. pgundo.quiet is empty again afterwards.
func TestFastPathLogsLikeCapture(t *testing.T) {
	t.Parallel()
	var lines []string
	sc := scenario{
		Setup: `CREATE TABLE acct (id int PRIMARY KEY, owner text, bal numeric(12,2), tags text[], doubled numeric GENERATED ALWAYS AS (bal * 2) STORED);
			INSERT INTO acct (id, owner, bal, tags) SELECT g, 'o' || g, g * 1.5, ARRAY['x', NULL] FROM generate_series(1, 50) g;
			CREATE TABLE note (k text PRIMARY KEY, body text);
			INSERT INTO note VALUES ('a', 'alpha'), ('b', NULL), ('c', 'gamma');`,
		Steps: seq(
			on(0, `UPDATE acct SET bal = bal + 1, tags = tags || 'y'::text WHERE id <= 30`,
				`UPDATE acct SET owner = owner WHERE id = 40`,
				`DELETE FROM acct WHERE id > 45`,
				`INSERT INTO acct (id, owner, bal) VALUES (100, 'new', 0), (101, 'newer', NULL)`,
				`UPDATE note SET body = 'changed' WHERE k IN ('a', 'b')`, `DELETE FROM note WHERE k = 'c'`),
			on(1, `UPDATE acct SET owner = 'other' WHERE id = 31`, `INSERT INTO note VALUES ('d', 'delta')`)),
		Opts: progressOf(&lines),
	}
	res := checkUndo(t, sc)
	require.NotContains(t, strings.Join(lines, "\n"), fellBack, "the fast path applies: every row changed once")
	require.Equal(t, []undo.TablePlan{
		{Table: "public.acct", Restore: 30, Reinsert: 5, Delete: 2, KeyColumns: []string{"id"}},
		{Table: "public.note", Restore: 2, Reinsert: 1, KeyColumns: []string{"k"}},
	}, res.Plan.Tables)

	a := res.A.Conn
	undoSession := res.Plan.UndoSession
	// Statements: op and rows per table, in the order written.
	require.Equal(t, []string{"acct D 2", "acct U 30", "acct I 5", "note U 2", "note I 1"},
		queryStrings(t, a, `SELECT table_name || ' ' || op::text || ' ' || rows FROM pgundo.stmt WHERE session_id = $1 ORDER BY id`, undoSession))
	require.Equal(t, []string{"pgundo-test-undo"},
		queryStrings(t, a, `SELECT DISTINCT application_name FROM pgundo.stmt WHERE session_id = $1`, undoSession))
	require.Equal(t, queryOne[string](t, a, `SELECT current_user::text`),
		queryOne[string](t, a, `SELECT DISTINCT role FROM pgundo.stmt WHERE session_id = $1`, undoSession))
	// Change rows: the undone session's, images swapped, no-ops left out.
	logged := func(session string, swap bool) []string {
		q := `SELECT st.table_name || ' ' || coalesce(c.old, '-') || ' -> ' || coalesce(c.new, '-')
			FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
			WHERE st.session_id = $1 AND c.old IS DISTINCT FROM c.new`
		if swap {
			q = strings.Replace(q, `coalesce(c.old, '-') || ' -> ' || coalesce(c.new, '-')`, `coalesce(c.new, '-') || ' -> ' || coalesce(c.old, '-')`, 1)
		}
		out := queryStrings(t, a, q, session)
		slices.Sort(out)
		return out
	}
	require.Len(t, logged(res.A.IDs[0], true), 40)
	require.Equal(t, logged(res.A.IDs[0], true), logged(undoSession, false))
	require.Zero(t, queryOne[int64](t, a, `SELECT count(*) FROM pgundo.quiet`))
}

// TestFastPathFallsBack: where a row was changed more than once by the
// selected sessions, or deleted and inserted again under the same key, or
// its key changed, the fast path hands over to the planned path, which
// undoes it exactly (checkUndo) with the plan a dry run shows.
func TestFastPathFallsBack(t *testing.T) {
	t.Parallel()
	setup := `CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g;`
	cases := []struct {
		name  string
		steps []string
		want  counts
	}{
		{"updated twice", []string{`UPDATE t SET v = 'x' WHERE id <= 3`, `UPDATE t SET v = 'y' WHERE id = 2`}, counts{Restore: 3}},
		{"deleted and inserted again", []string{`DELETE FROM t WHERE id IN (4, 5)`, `INSERT INTO t VALUES (4, 'again')`}, counts{Restore: 1, Reinsert: 1}},
		{"inserted and deleted", []string{`INSERT INTO t VALUES (11, 'new')`, `DELETE FROM t WHERE id = 11`, `UPDATE t SET v = 'z' WHERE id = 1`}, counts{Restore: 1}},
		{"key changed", []string{`UPDATE t SET id = id + 100 WHERE id IN (6, 7)`}, counts{Reinsert: 2, Delete: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var lines []string
			sc := scenario{Setup: setup, Steps: seq(on(0, c.steps...), on(1, `UPDATE t SET v = 'other' WHERE id = 9`)), Opts: progressOf(&lines)}
			res := checkUndo(t, sc)
			require.Contains(t, strings.Join(lines, "\n"), fellBack)
			require.Equal(t, c.want, countsOf(tablePlan(t, res.Plan, "public.t")))
		})
	}
}

// TestFastPathConflictFallsBack: a row changed since makes the fast path's
// write come up short; the planned path then refuses with the conflict,
// and nothing (data or log) changed.
func TestFastPathConflictFallsBack(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps, on(1, `UPDATE t SET b = 'later' WHERE id = 3`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := w.all()
	var lines []string
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, progressOf(&lines), nil)
	var ce *undo.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, []string{"id=3"}, []string{ce.Plan.Conflicts[0].Key})
	require.Contains(t, strings.Join(lines, "\n"), fellBack)
	requireSameTables(t, before, w.all(), "after the refused undo")
	require.Zero(t, queryOne[int64](t, w.Conn, `SELECT count(*) FROM pgundo.quiet`))
}

// TestQuietCannotBeForged: the setting that lets an undo log its own
// statements does nothing for anyone else: a session that sets it is still
// captured, and an application role can neither read nor write
// pgundo.quiet.
func TestQuietCannotBeForged(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');`}, nil)
	role := "quiet_app_" + queryOne[string](t, w.Conn, `SELECT md5(current_database())`)[:12] // roles are cluster-wide
	pgtest.Exec(t, w.Conn, `CREATE ROLE `+role+`; GRANT ALL ON t TO `+role)
	t.Cleanup(func() { _, _ = w.Conn.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	s := connect(t, w.cfg, "forger")
	pgtest.Exec(t, s, `SET pgundo.quiet = 'on'`)
	pgtest.Exec(t, s, `UPDATE t SET v = 'b'`)
	pgtest.Exec(t, s, `SET ROLE `+role)
	pgtest.Exec(t, s, `UPDATE t SET v = 'c'`)
	require.Equal(t, []string{`(1,a) -> (1,b)`, `(1,b) -> (1,c)`},
		queryStrings(t, w.Conn, `SELECT c.old || ' -> ' || c.new FROM pgundo.change c ORDER BY c.stmt_id`))
	_, err := s.Exec(ctxT(t), `INSERT INTO pgundo.quiet VALUES (pg_current_xact_id(), 0)`)
	require.ErrorContains(t, err, "permission denied")
}

// TestFastPathQuietOnlyForItsTable: while the undo logs its own statements
// on a table, capture is quiet for that table only: a write its statements
// cause elsewhere (a CHECK constraint calling a function that writes
// another tracked table, here only for the undo's connection; replica mode
// does not stop it) is captured as the undo session's, as on the planned
// path.
func TestFastPathQuietOnlyForItsTable(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: `
		CREATE TABLE other (id int PRIMARY KEY, hits int NOT NULL);
		INSERT INTO other VALUES (1, 0);
		CREATE FUNCTION touch() RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = 'pgundo-test-undo' THEN
				UPDATE public.other SET hits = hits + 1 WHERE id = 1;
			END IF;
			RETURN true;
		END $$;
		CREATE TABLE acct (id int PRIMARY KEY, v text, CONSTRAINT touches CHECK (touch()));
		INSERT INTO acct VALUES (1, 'a'), (2, 'b');`, Steps: on(0, `UPDATE acct SET v = v || '!'`)}, nil)
	w.run(on(0, `UPDATE acct SET v = v || '!'`), nil)
	var lines []string
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, progressOf(&lines), nil)
	require.NoError(t, err)
	require.NotContains(t, strings.Join(lines, "\n"), fellBack)
	require.Equal(t, []string{"(1,a)", "(2,b)"}, tableRows(t, w.Conn, "acct"))
	require.Equal(t, []string{"acct U 2", "other U 1", "other U 1"},
		queryStrings(t, w.Conn, `SELECT table_name || ' ' || op::text || ' ' || rows FROM pgundo.stmt WHERE session_id = $1 ORDER BY table_name, id`, plan.UndoSession))
}

// TestFastPathStreamsWrites: the fast path's statements run with work_mem
// 4MB (streamWorkMem), not the undo's 256MB, so that the rows they keep
// (transition tables, RETURNING) stream to a file instead of growing in
// memory. CHECK constraints on the table and on the log fail any row the
// undo writes with another work_mem; the planned path (256MB) would fail
// them too, so the undo only succeeds if the fast path did it all. After
// it, the undo's connection has its own settings back.
func TestFastPathStreamsWrites(t *testing.T) {
	t.Parallel()
	const streamed = `CHECK (current_setting('application_name') <> 'pgundo-test-undo' OR current_setting('work_mem') = '4MB')`
	sc := scenario{Setup: `
		CREATE TABLE acct (id int PRIMARY KEY, v text, CONSTRAINT streamed ` + streamed + `);
		INSERT INTO acct SELECT g, 'v' || g FROM generate_series(1, 6) g;`,
		Steps: on(0, `UPDATE acct SET v = v || '!' WHERE id <= 3`, `DELETE FROM acct WHERE id IN (4, 5)`, `INSERT INTO acct VALUES (7, 'new')`)}
	w := newWorld(t, sc, nil)
	pgtest.Exec(t, w.Conn, `ALTER TABLE pgundo.change_log ADD CONSTRAINT streamed `+streamed)
	before := w.tables()
	w.run(sc.Steps, nil)
	uc := w.undoConn()
	pgtest.Exec(t, uc, `SET work_mem = '8MB'`)
	var lines []string
	plan, err := undo.Apply(ctxT(t), uc, undo.Selection{Sessions: w.IDs[:1]}, progressOf(&lines), nil)
	require.NoError(t, err)
	require.Equal(t, "8MB", queryOne[string](t, uc, `SELECT current_setting('work_mem')`), "the undo's connection keeps its own work_mem")
	require.Equal(t, "on", queryOne[string](t, uc, `SELECT current_setting('enable_hashjoin')`))
	require.Equal(t, []string{"D 1", "U 3", "I 2"}, queryStrings(t, w.Conn,
		`SELECT st.op::text || ' ' || st.rows FROM pgundo.stmt st WHERE st.session_id = $1 ORDER BY st.id`, plan.UndoSession), "the undo logged its statements")
	require.NotContains(t, strings.Join(lines, "\n"), fellBack)
	require.Equal(t, counts{Restore: 3, Reinsert: 2, Delete: 1}, countsOf(tablePlan(t, plan, "public.acct")))
	requireSameTables(t, before, w.tables(), "after the undo")
}

// TestFastPathNeedsCapture: a table untracked since the session is undone
// on the planned path, which (capture being off) logs nothing for it; the
// fast path would have logged the undo itself.
func TestFastPathNeedsCapture(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');`, Steps: on(0, `UPDATE t SET v = 'b'`)}, nil)
	w.run(on(0, `UPDATE t SET v = 'b'`), nil)
	_, err := triggers.Untrack(ctxT(t), w.Conn, []string{"t"})
	require.NoError(t, err)
	var lines []string
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, progressOf(&lines), nil)
	require.NoError(t, err)
	require.Contains(t, strings.Join(lines, "\n"), "public.t is not tracked now")
	require.Equal(t, []string{"(1,a)"}, tableRows(t, w.Conn, "t"))
	require.Zero(t, queryOne[int64](t, w.Conn, `SELECT count(*) FROM pgundo.stmt WHERE session_id = $1`, plan.UndoSession))
}

// TestFastPathPlanOrder: the plan lists tables in the same order on both
// paths whatever the database's collation (quoted mixed-case names sort
// differently under ICU or glibc locales than byte by byte).
func TestFastPathPlanOrder(t *testing.T) {
	t.Parallel()
	checkUndo(t, scenario{
		Setup: `CREATE TABLE "Zeta" (id int PRIMARY KEY, v text); CREATE TABLE alpha (id int PRIMARY KEY, v text);
			CREATE TABLE "audit Log" (id int PRIMARY KEY, v text); CREATE TABLE "Orders" (id int PRIMARY KEY, v text);
			INSERT INTO "Zeta" VALUES (1, 'z'); INSERT INTO alpha VALUES (1, 'a'); INSERT INTO "audit Log" VALUES (1, 'l'); INSERT INTO "Orders" VALUES (1, 'o');`,
		Steps: on(0, `UPDATE "Zeta" SET v = 'x'`, `UPDATE alpha SET v = 'x'`, `UPDATE "audit Log" SET v = 'x'`, `UPDATE "Orders" SET v = 'x'`),
	})
}

// TestFastPathManyStatements: a session of more statements on a table than
// the fast path writes into its SQL as constants (literalIDs), interleaved
// with another session's, is undone by the fast path through pgundo_sel,
// exactly (checkUndo: the other session's changes stay).
func TestFastPathManyStatements(t *testing.T) {
	t.Parallel()
	var steps []step
	n := undo.LiteralIDs + 50
	for i := 1; i <= n; i++ {
		steps = append(steps, on(0, fmt.Sprintf(`UPDATE t SET v = v || '!' WHERE id = %d`, i))...)
		steps = append(steps, on(1, fmt.Sprintf(`UPDATE t SET v = v || '?' WHERE id = %d`, 1000+i))...)
	}
	steps = append(steps, on(0, `DELETE FROM t WHERE id = 500`, `INSERT INTO t VALUES (5000, 'new')`)...)
	var lines []string
	res := checkUndo(t, scenario{
		Setup: `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 2000) g;`,
		Steps: steps,
		Opts:  progressOf(&lines),
	})
	require.NotContains(t, strings.Join(lines, "\n"), fellBack)
	require.Equal(t, counts{Restore: int64(n), Reinsert: 1, Delete: 1}, countsOf(tablePlan(t, res.Plan, "public.t")))
}

// TestFastPathLooksRowsUp: the fast path's statements that join logged
// changes to the live table look each row up in the primary key's index,
// whatever the planner would guess (it cannot know one session's share of
// the log): never a hash or merge join, which spilled a 1M-row session to
// disk, nor a nested loop over a scan of the live table or a materialized
// copy of the changes, which is quadratic. Checked on the plans
// auto_explain reports for a session that rewrote a whole table (the case
// that used to be hashed), a partitioned table with a sub-partitioned
// partition, and a session of more statements than are written into the
// SQL as constants; the undo must still give back the tables as they were.
func TestFastPathLooksRowsUp(t *testing.T) {
	t.Parallel()
	whole := undo.AnnounceRows + 10 // big enough for the fast path to say what it is writing
	steps := []string{
		`UPDATE whole SET v = v || '!' WHERE id > 10`, `DELETE FROM whole WHERE id <= 10`, fmt.Sprintf(`INSERT INTO whole SELECT g, 'new' FROM generate_series(%d, %d) g`, whole+1, whole+10),
		`UPDATE part SET v = v || '!' WHERE id % 2 = 0 AND id > 10`, `DELETE FROM part WHERE id <= 10`, `INSERT INTO part SELECT g, g % 3, 'new' FROM generate_series(3001, 3010) g`,
	}
	for i := 1; i <= undo.LiteralIDs+20; i++ {
		steps = append(steps, fmt.Sprintf(`UPDATE many SET v = v || '!' WHERE id = %d`, i))
	}
	steps = append(steps, `DELETE FROM many WHERE id > 990`, `INSERT INTO many VALUES (1001, 'new')`)
	w := newWorld(t, scenario{Setup: `
		CREATE TABLE whole (id int PRIMARY KEY, v text);
		INSERT INTO whole SELECT g, 'v' || g FROM generate_series(1, ` + fmt.Sprint(whole) + `) g;
		CREATE TABLE part (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
		CREATE TABLE part0 PARTITION OF part FOR VALUES IN (0);
		CREATE TABLE part1 PARTITION OF part FOR VALUES IN (1);
		CREATE TABLE part2 PARTITION OF part FOR VALUES IN (2) PARTITION BY RANGE (id);
		CREATE TABLE part2a PARTITION OF part2 FOR VALUES FROM (MINVALUE) TO (1500);
		CREATE TABLE part2b PARTITION OF part2 FOR VALUES FROM (1500) TO (MAXVALUE);
		INSERT INTO part SELECT g, g % 3, 'v' || g FROM generate_series(1, 3000) g;
		CREATE TABLE many (id int PRIMARY KEY, v text);
		INSERT INTO many SELECT g, 'v' || g FROM generate_series(1, 1000) g;
		ANALYZE;`, Steps: on(0, steps...)}, nil)
	before := w.tables()
	w.run(on(0, steps...), nil)

	var mu sync.Mutex
	var notices []string
	cfg := w.cfg.Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	c := connect(t, cfg, "pgundo-test-undo")
	pgtest.Exec(t, c, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice; SET search_path = ''`)
	var lines []string
	plan, err := undo.Apply(ctxT(t), c, undo.Selection{Sessions: w.IDs[:1]}, progressOf(&lines), nil)
	require.NoError(t, err)
	require.NotContains(t, strings.Join(lines, "\n"), fellBack)
	require.Contains(t, lines, fmt.Sprintf("undoing public.whole straight from the log: %d to restore, 10 to re-insert, 10 to delete", whole-10),
		"a big undo says what it is writing before it writes")
	require.NotContains(t, strings.Join(lines, "\n"), "undoing public.part", "a small one does not")
	require.Len(t, plan.Tables, 3)
	requireSameTables(t, before, w.tables(), "after the undo")

	mu.Lock()
	defer mu.Unlock()
	joins := map[string]int{}
	bad := regexp.MustCompile(`Hash Join|Merge Join|Seq Scan on \S+ cur`)
	for _, n := range notices {
		var kind string
		switch {
		case strings.Contains(n, "WITH d AS (DELETE FROM"):
			kind = "delete"
		case strings.Contains(n, "WITH u AS (") && strings.Contains(n, "UPDATE"):
			kind = "update"
		case strings.Contains(n, "SELECT count(*) FROM (SELECT ch.old") && strings.Contains(n, " JOIN "):
			kind = "read back"
		default:
			continue
		}
		joins[kind]++
		require.NotRegexp(t, bad, n, "the %s joined to the live table", kind)
		require.Contains(t, n, "Index Scan", "the %s looks rows up by key", kind)
		// A loop over a materialized input is fine only over the selected
		// statements (pgundo_sel: bounded, the planner's choice below about
		// a hundred of them), never over changes or live rows.
		plan := strings.Split(n, "\n")
		for i, l := range plan {
			if strings.Contains(l, "Materialize") {
				require.Less(t, i+1, len(plan))
				require.Contains(t, plan[i+1], "on pgundo_sel", "the %s materializes only the selected statements:\n%s", kind, n)
			}
		}
	}
	require.Equal(t, map[string]int{"delete": 3, "update": 3, "read back": 3}, joins, "plans seen: %d notices", len(notices))
}

// TestUndoOnEveryOutputClass: a session with hostile output settings changes
// tables of every output class (none, time, five, six, and no arguments: a
// regclass column), one row and many rows per statement; the undo (fast
// path: every row changed once; then the redo on the planned path)
// restores every table exactly, and pgundo's capture of the undo's own
// statements on each class steps aside (the rows its session logged are the
// rows it wrote, checkUndo): each class's pinning block (schema 13) leaves
// the statements of an undo on the fast path to it.
func TestUndoOnEveryOutputClass(t *testing.T) {
	t.Parallel()
	var lines []string
	sc := scenario{
		Opts: progressOf(&lines),
		Setup: `CREATE TABLE c_none (id int PRIMARY KEY, v text);
			CREATE TABLE c_time (id int PRIMARY KEY, at timestamptz, d interval);
			CREATE TABLE c_local (id int PRIMARY KEY, ts timestamp, tz timetz, d date, iv interval);
			CREATE TABLE c_five (id int PRIMARY KEY, f float8, b bytea);
			CREATE TABLE c_six (id int PRIMARY KEY, m money, f float4);
			CREATE TABLE c_any (id int PRIMARY KEY, r regclass);
			INSERT INTO c_none SELECT g, 'v' || g FROM generate_series(1, 5) g;
			INSERT INTO c_time SELECT g, '2024-01-01 00:00:00.5+00'::timestamptz + g * interval '1 day', g * interval '90 minutes' FROM generate_series(1, 5) g;
			INSERT INTO c_local SELECT g, '2024-01-01 00:00:00.5'::timestamp + g * interval '1 day', '12:00:00+01', '2024-02-28'::date + g, g * interval '90 minutes' FROM generate_series(1, 5) g;
			INSERT INTO c_five SELECT g, g / 7.0::float8, decode(repeat('ff', g), 'hex') FROM generate_series(1, 5) g;
			INSERT INTO c_six SELECT g, g * 1234.5, g / 3.0::float4 FROM generate_series(1, 5) g;
			INSERT INTO c_any SELECT g, 'c_none'::regclass FROM generate_series(1, 5) g;`,
		Steps: seq(on(0,
			`SET DateStyle = 'SQL, DMY'`, `SET IntervalStyle = 'sql_standard'`, `SET extra_float_digits = -15`,
			`SET bytea_output = 'escape'`, `SET TimeZone = 'Asia/Kathmandu'`, `SET search_path = public`,
			`UPDATE c_none SET v = 'x' WHERE id = 1`, `UPDATE c_none SET v = v || '!' WHERE id > 1`,
			`UPDATE c_time SET at = at + interval '1 hour' WHERE id = 1`, `UPDATE c_time SET d = d * 2 WHERE id BETWEEN 2 AND 4`, `DELETE FROM c_time WHERE id = 5`,
			`UPDATE c_local SET ts = ts + interval '1 hour', tz = '13:30:00' WHERE id = 1`, `UPDATE c_local SET d = d + 1, iv = iv * 2 WHERE id BETWEEN 2 AND 4`, `DELETE FROM c_local WHERE id = 5`,
			`UPDATE c_five SET f = f * 3 WHERE id = 1`, `UPDATE c_five SET b = b || '\x00'::bytea WHERE id > 1`, `INSERT INTO c_five VALUES (9, 0.1, '\x01')`,
			`UPDATE c_six SET m = m + 0.5::money WHERE id = 1`, `UPDATE c_six SET f = f * 2 WHERE id IN (2, 3)`, `DELETE FROM c_six WHERE id > 3`,
			`UPDATE c_any SET r = 'c_time' WHERE id = 1`, `UPDATE c_any SET r = 'c_five' WHERE id > 1`, `INSERT INTO c_any VALUES (9, 'c_six')`)),
	}
	res := checkUndo(t, sc)
	require.NotContains(t, strings.Join(lines, "\n"), fellBack, "the fast path applies: every row changed once")
	require.Empty(t, res.Plan.Conflicts)
	require.Equal(t, []string{"c_any ",
		"c_five 'DateStyle', 'IntervalStyle', 'TimeZone', 'extra_float_digits', 'bytea_output'",
		"c_local 'DateStyle', 'IntervalStyle'",
		"c_none 'none'",
		"c_six 'DateStyle', 'IntervalStyle', 'TimeZone', 'extra_float_digits', 'bytea_output', 'lc_monetary'",
		"c_time 'DateStyle', 'IntervalStyle', 'TimeZone'",
	}, queryStrings(t, res.A.Conn, `
		SELECT tgrelid::regclass::text || ' ' || substring(pg_get_triggerdef(oid) from 'EXECUTE FUNCTION pgundo\.\w+\((.*)\)$')
		  FROM pg_trigger WHERE tgname = 'pgundo_capture_update' ORDER BY 1`), "each table of its class")
	require.Zero(t, queryOne[int64](t, res.A.Conn, `SELECT count(*) FROM pgundo.quiet`))
}
