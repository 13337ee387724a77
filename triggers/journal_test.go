package triggers_test

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestJournalOneRowStatements: a statement that changed one row is written
// to pgundo.journal, a bigger one to the log tables; the views read both;
// pgundo.fold moves committed journal rows into the log tables without the
// log reading any different before, during or after (an uncommitted row
// stays in the journal until a later fold; a fold waiting for another one
// moves nothing twice).
func TestJournalOneRowStatements(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	execAll(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	track(t, conn, "t")
	execAll(t, conn,
		`INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`, // three rows: the log tables
		`UPDATE t SET v = 'B' WHERE id = 2`,                 // one row each: the journal
		`DELETE FROM t WHERE id = 1`,
		`INSERT INTO t VALUES (4, 'd')`,
		`UPDATE t SET v = v || '!' WHERE id IN (3, 4)`, // two rows: the log tables
	)
	const stmtQ = `SELECT concat_ws(' ', id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag) FROM pgundo.stmt ORDER BY id`
	const changeQ = `SELECT concat_ws(' ', stmt_id, coalesce(old, 'NULL'), coalesce(new, 'NULL')) FROM pgundo.change ORDER BY stmt_id, old, new`
	read := func() []string {
		return slices.Concat(queryStrings(t, conn, stmtQ), queryStrings(t, conn, changeQ))
	}
	require.Equal(t, []string{"U (2,b) (2,B)", "D (1,a) NULL", "I NULL (4,d)"}, queryStrings(t, conn,
		`SELECT concat_ws(' ', op, coalesce(old, 'NULL'), coalesce(new, 'NULL')) FROM pgundo.journal ORDER BY id`))
	require.Equal(t, []string{"I 3", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt_log ORDER BY id`))
	require.Equal(t, []string{"I 3", "U 1", "D 1", "I 1", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt ORDER BY id`))
	before := read()
	require.Len(t, before, 5+8)

	// A one-row statement not yet committed stays in the journal.
	w := pgtest.Connect(t, url)
	tx, err := w.Begin(ctxT(t))
	require.NoError(t, err)
	execAll(t, tx, `UPDATE t SET v = 'late' WHERE id = 2`)
	require.Equal(t, 3, queryOne[int](t, conn, `SELECT pgundo.fold()::int`))
	require.Equal(t, before, read())
	require.Zero(t, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))
	require.Equal(t, []string{"I 3", "U 1", "D 1", "I 1", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt_log ORDER BY id`))
	require.NoError(t, tx.Commit(ctxT(t)))
	withLate := read()
	require.Len(t, withLate, len(before)+2)
	require.Equal(t, 1, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))

	// Two folds at once: the second waits for the first, then finds
	// nothing left; a reader sees the log whole meanwhile.
	f1 := pgtest.Connect(t, url)
	tx1, err := f1.Begin(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, 1, queryOne[int](t, tx1, `SELECT pgundo.fold()::int`))
	require.Equal(t, withLate, read(), "a fold not yet committed")
	f2 := pgtest.Connect(t, url)
	done := make(chan int, 1)
	go func() {
		var n int
		if err := f2.QueryRow(ctxT(t), `SELECT pgundo.fold()::int`).Scan(&n); err != nil {
			n = -1
		}
		done <- n
	}()
	select {
	case n := <-done:
		t.Fatalf("the second fold did not wait for the first: it returned %d", n)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, tx1.Commit(ctxT(t)))
	require.Equal(t, 0, <-done)
	require.Equal(t, withLate, read())
	require.Zero(t, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))
}

// TestCaptureDoesNotCompile: capture's own statements never pay for the JIT
// compiler, and an UPDATE of many rows pairs its images without sorting
// them (schema 8). The planner estimated the journal's INSERT at the square
// of the transition tables' rows and the log's pairing the same way, so an
// UPDATE of a few thousand rows compiled for about a second; the statements
// of many rows now run with jit off, and the pairing with enable_mergejoin
// off, each put back after. The journal's INSERT (schema 12) has no join:
// its images are scalar subqueries, estimated at 0.05 a row of the
// statement, so it passes the default jit_above_cost only at about two
// million rows (where compiling took 14 ms of a statement of seconds). Its
// plan is one Result under the Insert: no Subquery Scan, Limit or Nested
// Loop to start per statement. auto_explain shows every nested plan (and
// the settings it ran with); none of capture's may say JIT or cost more
// than jit_above_cost unless it ran with jit off (which holds on a server
// without LLVM too), the pairing is a hash join, the user's settings are as
// they were, and the log holds every row.
func TestCaptureDoesNotCompile(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	execAll(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	track(t, conn, "t")

	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	w, err := pgx.ConnectConfig(ctxT(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	execAll(t, w, `LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_nested_statements = on`,
		`SET auto_explain.log_level = notice`, `SET auto_explain.log_settings = on`, `SET jit = on`, `SET work_mem = '4MB'`)
	// What decides compiling, so that the test holds on a server built
	// without LLVM too: a plan is compiled when its cost passes
	// jit_above_cost and jit is on.
	jitAbove := queryOne[float64](t, w, `SELECT current_setting('jit_above_cost')::float8`)
	topCost := regexp.MustCompile(`\(cost=[0-9.]+\.\.([0-9.]+) `)
	tx, err := w.Begin(ctxT(t))
	require.NoError(t, err)
	execAll(t, tx,
		`INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g`,
		`UPDATE t SET v = v || '!'`,
		`UPDATE t SET v = 'one' WHERE id = 1`,
		`DELETE FROM t WHERE id > 2500`)
	require.Equal(t, "on 4MB on", queryOne[string](t, tx, `SELECT concat_ws(' ', current_setting('jit'), current_setting('work_mem'), current_setting('enable_mergejoin'))`),
		"capture puts back the settings it changes")
	require.NoError(t, tx.Commit(ctxT(t)))

	mu.Lock()
	defer mu.Unlock()
	var captured, paired, journal int
	for _, p := range plans {
		if !strings.Contains(p, "pgundo.") {
			continue
		}
		captured++
		require.NotContains(t, p, "JIT:", "capture's statement was compiled:\n%s", p)
		m := topCost.FindStringSubmatch(p)
		require.NotNil(t, m, "a plan with its cost:\n%s", p)
		cost, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		if cost > jitAbove {
			require.Contains(t, p, "jit = 'off'", "capture's statement costs %.0f, past jit_above_cost, and ran with jit on:\n%s", cost, p)
		}
		if strings.Contains(p, "INSERT INTO pgundo.journal") {
			journal++
			require.Regexp(t, `(?m)^Insert on journal .*\n  ->  Result `, p, "the journal's INSERT is one Result:\n%s", p)
			require.NotContains(t, p, "Subquery Scan", "the journal's INSERT has no Subquery Scan:\n%s", p)
			require.NotContains(t, p, "Nested Loop", "the journal's INSERT has no join:\n%s", p)
		}
		if strings.Contains(p, "INSERT INTO pgundo.change_log (stmt_id, old, new)") {
			paired++
			require.Contains(t, p, "Hash Join", "the UPDATE's images are paired by a hash join:\n%s", p)
			require.NotContains(t, p, "Sort", "the UPDATE's images are paired without sorting:\n%s", p)
		}
	}
	require.GreaterOrEqual(t, captured, 4, "auto_explain showed capture's statements")
	require.Equal(t, 1, paired, "one UPDATE of many rows")
	require.Equal(t, 4, journal, "every statement tried the journal first")

	require.Equal(t, []string{"I 5000", "U 5000", "U 1", "D 2500"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt ORDER BY id`))
	require.Equal(t, queryStrings(t, conn, `
		SELECT 'I NULL (' || g || ',v' || g || ')' FROM generate_series(1, 5000) g
		UNION ALL SELECT 'U (' || g || ',v' || g || ') (' || g || ',v' || g || '!)' FROM generate_series(1, 5000) g
		UNION ALL SELECT 'U (1,v1!) (1,one)'
		UNION ALL SELECT 'D (' || g || ',v' || g || '!) NULL' FROM generate_series(2501, 5000) g
		ORDER BY 1`),
		queryStrings(t, conn, `SELECT concat_ws(' ', s.op, coalesce(c.old, 'NULL'), coalesce(c.new, 'NULL')) FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id ORDER BY 1`))
}
