package undo_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// ---------------------------------------------------------------------------
// The two-database method.
//
// A scenario is setup SQL, then "sessions": each its own connection (with
// its own application_name), running SQL scripts in a given interleaving.
// checkUndo runs it twice: in database A everything runs and then the
// target session is undone; in database B the target session never runs.
// Every user table must then hold exactly the same rows in A and B (as
// sorted lists of row text, partition by partition, so a row in the wrong
// partition shows). Sequences are not rewound by undo (documented), so
// scenarios give explicit keys wherever the undone session and the others
// would otherwise draw from the same sequence, and stamping triggers are
// deterministic (no now()) wherever the others' rows get stamped.

// step is one SQL script run on session S's connection. A script may hold
// several statements (simple protocol), and may leave a transaction open
// for a later step of the same session to finish. With Mark set, the step
// instead records the server's clock_timestamp() under that name (S and SQL
// are ignored); scenarios selecting by time use marks.
type step struct {
	S    int
	SQL  string
	Mark string
}

// on returns steps running each script on session s, in order.
func on(s int, scripts ...string) []step {
	out := make([]step, len(scripts))
	for i, sql := range scripts {
		out[i] = step{S: s, SQL: sql}
	}
	return out
}

// seq concatenates step lists into one interleaving.
func seq(parts ...[]step) []step { return slices.Concat(parts...) }

// mark is a step that records the server clock under name.
func mark(name string) []step { return []step{{S: -1, Mark: name}} }

// scenario describes a hard case for checkUndo.
type scenario struct {
	// Setup creates the schema and initial data; it runs before tracking,
	// so it is not logged.
	Setup string
	// Track names the tables to track; nil tracks every user table.
	Track []string
	// Apps are the sessions' application_name values; session i defaults
	// to "s<i>".
	Apps []string
	// Steps run in this order, each on its session's connection.
	Steps []step
	// Target is the session undone (by its id) and left out of B.
	Target int
	// Select, when set, replaces the selection {Sessions: [Target's id]}.
	Select func(w *world) undo.Selection
	// LeaveOut, when set, replaces "B leaves out the target's steps".
	LeaveOut func(s step) bool
	// Opts are passed to undo.Apply.
	Opts undo.Options
}

func (sc scenario) sessions() int {
	n := len(sc.Apps)
	for _, st := range sc.Steps {
		n = max(n, st.S+1)
	}
	return n
}

func (sc scenario) app(i int) string {
	if i < len(sc.Apps) && sc.Apps[i] != "" {
		return sc.Apps[i]
	}
	return fmt.Sprintf("s%d", i)
}

// world is one database a scenario runs in.
type world struct {
	t     *testing.T
	cfg   *pgx.ConnConfig // base connection settings for the database
	Conn  *pgx.Conn       // inspection connection (no tracked writes)
	Sess  []*pgx.Conn     // one per session
	IDs   []string        // pgundo session id per session
	Marks map[string]time.Time
}

// newDB returns the connection settings of a fresh database with pgundo
// installed.
func newDB(t *testing.T) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.NewDB(t))
	require.NoError(t, err)
	return cfg
}

// connect opens a connection to cfg's database with application_name app,
// closed when the test ends.
func connect(t *testing.T, cfg *pgx.ConnConfig, app string) *pgx.Conn {
	t.Helper()
	c := cfg.Copy()
	c.RuntimeParams = map[string]string{}
	for k, v := range cfg.RuntimeParams {
		c.RuntimeParams[k] = v
	}
	c.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, c)
	require.NoError(t, err, "connect as %s", app)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// sessionIDQuery gives the connection's PostgreSQL session id, which is
// what pgundo records as the session id.
const sessionIDQuery = `SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()`

// newWorld creates a database for sc (or uses cfg when not nil), runs
// Setup, tracks the tables and opens the sessions' connections.
func newWorld(t *testing.T, sc scenario, cfg *pgx.ConnConfig) *world {
	t.Helper()
	if cfg == nil {
		cfg = newDB(t)
	}
	w := &world{t: t, cfg: cfg, Marks: map[string]time.Time{}}
	w.Conn = connect(t, cfg, "pgundo-test-inspect")
	if sc.Setup != "" {
		pgtest.Exec(t, w.Conn, sc.Setup)
	}
	names := sc.Track
	if names == nil {
		names = userTables(t, w.Conn, false)
	}
	if len(names) > 0 {
		_, err := triggers.Track(ctxT(t), w.Conn, names)
		require.NoError(t, err, "track %v", names)
	}
	for i := 0; i < sc.sessions(); i++ {
		c := connect(t, cfg, sc.app(i))
		w.Sess = append(w.Sess, c)
		w.IDs = append(w.IDs, queryOne[string](t, c, sessionIDQuery))
	}
	return w
}

// run runs the steps in order, leaving out those leaveOut says (nil: none).
func (w *world) run(steps []step, leaveOut func(step) bool) {
	w.t.Helper()
	for i, st := range steps {
		if st.Mark != "" {
			w.Marks[st.Mark] = queryOne[time.Time](w.t, w.Conn, `SELECT clock_timestamp()`)
			continue
		}
		if leaveOut != nil && leaveOut(st) {
			continue
		}
		_, err := w.Sess[st.S].Exec(ctxT(w.t), st.SQL)
		require.NoError(w.t, err, "step %d (session %d): %s", i, st.S, st.SQL)
	}
}

// undoConn opens the connection an undo runs on, as the CLI would: a
// connection of its own.
func (w *world) undoConn() *pgx.Conn {
	w.t.Helper()
	c := connect(w.t, w.cfg, "pgundo-test-undo")
	_, _ = c.Exec(ctxT(w.t), "SET search_path = ''")
	return c
}

// tables snapshots every user table (see snapshot).
func (w *world) tables() map[string][]string { return snapshot(w.t, w.Conn, false) }

// all snapshots every user table and pgundo's log.
func (w *world) all() map[string][]string { return snapshot(w.t, w.Conn, true) }

// undoSession undoes session i of w on a connection of its own.
func undoSession(t *testing.T, w *world, i int) (*undo.Plan, error) {
	t.Helper()
	return undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[i]}}, undo.Options{}, nil)
}

// result is what checkUndo leaves for further assertions.
type result struct {
	Plan *undo.Plan
	A, B *world
}

// checkUndo runs sc in database A, undoes the target, runs sc without the
// target in database B, and requires every user table to be equal.
func checkUndo(t *testing.T, sc scenario) result {
	t.Helper()
	a := newWorld(t, sc, nil)
	a.run(sc.Steps, nil)
	post := a.tables()
	sel := undo.Selection{Sessions: []string{a.IDs[sc.Target]}}
	if sc.Select != nil {
		sel = sc.Select(a)
	}
	dry, err := undo.MakePlan(ctxT(t), a.undoConn(), sel, sc.Opts)
	require.NoError(t, err, "plan the undo of %+v", sel)
	plan, err := undo.Apply(ctxT(t), a.undoConn(), sel, sc.Opts, nil)
	require.NoError(t, err, "undo %+v", sel)
	require.True(t, plan.Applied)
	require.NotEmpty(t, plan.UndoSession)
	// Apply may take the fast path; what it did must be what the plan said.
	require.Equal(t, dry.Tables, plan.Tables, "the undo's plan vs the dry run's")
	// The undo's own capture logs exactly the rows it wrote: an application
	// trigger or FK action firing during the undo would log more.
	logged := queryOne[int64](t, a.Conn, `SELECT coalesce(sum(rows), 0)::bigint FROM pgundo.stmt WHERE session_id = $1`, plan.UndoSession)
	require.Equal(t, plan.RowsChanged, logged, "rows the undo wrote vs rows its session logged")

	b := newWorld(t, sc, nil)
	leaveOut := sc.LeaveOut
	if leaveOut == nil {
		leaveOut = func(s step) bool { return s.S == sc.Target }
	}
	b.run(sc.Steps, leaveOut)
	requireSameTables(t, b.tables(), a.tables(), "A (all sessions, target undone) vs B (target never ran)")

	// Redo: undoing the undo, on the planned path, checks the undo's log
	// row by row (each row must be as the undo logged it left it) and must
	// bring back the tables as the sessions left them. Undoing the redo in
	// turn (fast path where it applies) checks the redo's log and leaves A
	// undone again for the caller.
	if len(plan.Conflicts) == 0 {
		redo, err := undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{plan.UndoSession}}, undo.Options{AlwaysPlan: true}, nil)
		require.NoError(t, err, "redo: undo of the undo %s", plan.UndoSession)
		requireSameTables(t, post, a.tables(), "after the redo (undo of the undo) vs after the sessions")
		_, err = undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{redo.UndoSession}}, undo.Options{}, nil)
		require.NoError(t, err, "undo of the redo %s", redo.UndoSession)
		requireSameTables(t, b.tables(), a.tables(), "after undoing the redo vs B (target never ran)")
	}
	return result{Plan: plan, A: a, B: b}
}

// ---------------------------------------------------------------------------
// Snapshots.

// userTables lists the user's tables as quoted qualified names: with
// leaves, every table holding rows (plain tables and partitions, not
// partitioned parents); else tracking roots (plain and partitioned tables,
// not partitions). pgundo's own schema and system schemas are left out.
func userTables(t *testing.T, conn *pgx.Conn, leaves bool) []string {
	t.Helper()
	return queryStrings(t, conn, `
		SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname NOT IN ('pgundo', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		   AND CASE WHEN $1 THEN c.relkind = 'r' ELSE c.relkind IN ('r', 'p') AND NOT c.relispartition END
		 ORDER BY 1`, leaves)
}

// logTables are pgundo's log tables, compared by "data and log exactly as
// before" checks (sequences are not: nextval is not transactional).
var logTables = []string{"pgundo.session", "pgundo.stmt", "pgundo.change", "pgundo.undo", "pgundo.undone", "pgundo.undo_left", "pgundo.undo_scope", "pgundo.shape", "pgundo.tracked"}

// snapshot returns, per table, its rows as text, sorted bytewise: every
// user table holding rows (each partition on its own), and with log also
// pgundo's log tables. Text forms are read with pinned output settings.
func snapshot(t *testing.T, conn *pgx.Conn, log bool) map[string][]string {
	t.Helper()
	ctx := ctxT(t)
	_, err := conn.Exec(ctx, `SET datestyle = 'ISO, YMD'; SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET intervalstyle = 'postgres'`)
	require.NoError(t, err)
	names := userTables(t, conn, true)
	if log {
		names = append(names, logTables...)
	}
	out := map[string][]string{}
	for i, n := range names {
		// User tables partition by partition (ONLY); the log tables whole
		// (stmt and change are partitioned: ONLY would read no rows).
		only := "ONLY "
		if log && i >= len(names)-len(logTables) {
			only = ""
		}
		rows := queryStrings(t, conn, fmt.Sprintf(`SELECT x::text FROM %s%s x`, only, n))
		slices.Sort(rows)
		if rows == nil {
			rows = []string{}
		}
		out[n] = rows
	}
	return out
}

// requireSameTables fails with a per-table diff (rows only in one side)
// unless want and got hold the same tables with the same rows.
func requireSameTables(t *testing.T, want, got map[string][]string, what string) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		w, wok := want[n]
		g, gok := got[n]
		if !wok || !gok {
			fmt.Fprintf(&b, "\n%s: present only in %s", n, map[bool]string{true: "want", false: "got"}[wok])
			continue
		}
		onlyW, onlyG := multisetDiff(w, g)
		if len(onlyW)+len(onlyG) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: %d rows wanted, %d got", n, len(w), len(g))
		for i, r := range onlyW {
			if i == 20 {
				fmt.Fprintf(&b, "\n  - ... %d more", len(onlyW)-20)
				break
			}
			fmt.Fprintf(&b, "\n  - missing    %s", r)
		}
		for i, r := range onlyG {
			if i == 20 {
				fmt.Fprintf(&b, "\n  + ... %d more", len(onlyG)-20)
				break
			}
			fmt.Fprintf(&b, "\n  + unexpected %s", r)
		}
	}
	if b.Len() > 0 {
		t.Fatalf("%s: tables differ:%s", what, b.String())
	}
}

// multisetDiff returns the elements of sorted a not in sorted b, and of b
// not in a, counting duplicates.
func multisetDiff(a, b []string) (onlyA, onlyB []string) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := strings.Compare(a[i], b[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			onlyA = append(onlyA, a[i])
			i++
		default:
			onlyB = append(onlyB, b[j])
			j++
		}
	}
	return append(onlyA, a[i:]...), append(onlyB, b[j:]...)
}

// ---------------------------------------------------------------------------
// Small query helpers.

func ctxT(t *testing.T) context.Context { return t.Context() }

// queryStrings runs a query returning one text column.
func queryStrings(t *testing.T, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(ctxT(t), sql, args...)
	require.NoError(t, err, sql)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err, sql)
	return out
}

// queryOne runs a query returning one value.
func queryOne[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, conn.QueryRow(ctxT(t), sql, args...).Scan(&v), sql)
	return v
}

// tableRows returns one table's rows as text, sorted bytewise.
func tableRows(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows := queryStrings(t, conn, fmt.Sprintf(`SELECT x::text FROM %s x`, table))
	slices.Sort(rows)
	return rows
}

// tablePlan returns the plan's entry for table (failing when absent).
func tablePlan(t *testing.T, p *undo.Plan, table string) undo.TablePlan {
	t.Helper()
	for _, tp := range p.Tables {
		if tp.Table == table {
			return tp
		}
	}
	t.Fatalf("plan has no entry for %s: %+v", table, p.Tables)
	return undo.TablePlan{}
}

// counts is a TablePlan's counts, for compact assertions.
type counts struct{ Restore, Reinsert, Delete, Merged, Skipped int64 }

func countsOf(tp undo.TablePlan) counts {
	return counts{tp.Restore, tp.Reinsert, tp.Delete, tp.Merged, tp.Skipped}
}
