package undo_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/undo"
)

// update rewrites the golden files: go test ./undo -run Golden -update
var update = flag.Bool("update", false, "rewrite undo/testdata/*.golden from the SQL generated now")

// oddSchema is a small deterministic scenario with names that break naive
// SQL generation: a table whose name holds the script's old dollar tag, a
// column named like the live-row alias (cur), columns, tables and a
// foreign key whose names hold a quote after a backslash (which, with
// standard_conforming_strings off, ends a string literal quoted by
// doubling quotes), a percent sign (a RAISE placeholder) and a newline (the
// end of a -- comment). It has a keyed table, a keyless one and a
// partitioned one whose partition holds a foreign key.
const oddSchema = `
CREATE TABLE "we$pgundo$ird" (id int PRIMARY KEY, cur text, "o'k\" text, n int);
CREATE TABLE "bag\'s 100%
x" (cur text, "o'k\" text);
CREATE TABLE parts (id int, region text, ref int, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE "p\'1 $pgundo$" PARTITION OF parts FOR VALUES IN ('a');
CREATE TABLE p2 PARTITION OF parts FOR VALUES IN ('b');
ALTER TABLE "p\'1 $pgundo$" ADD CONSTRAINT "fk\'s 100%" FOREIGN KEY (ref) REFERENCES "we$pgundo$ird" (id);
INSERT INTO "we$pgundo$ird" SELECT g, 'cur' || g, E'o\\''k' || g, g FROM generate_series(1, 6) g;
INSERT INTO "bag\'s 100%
x" VALUES ('b', 'b1'), ('b', 'b1'), ('c', E'b2\\'), ('d', 'b3');
INSERT INTO parts VALUES (1, 'a', 1, 'one'), (2, 'a', 2, 'two'), (3, 'b', 3, 'three'), (4, 'b', NULL, 'four');
`

// oddSession is the session undone: it writes every table, in every way.
var oddSession = []string{
	`UPDATE "we$pgundo$ird" SET cur = 'C''' || id, "o'k\" = E'back\\slash''q', n = n + 1 WHERE id <= 2`,
	`DELETE FROM "we$pgundo$ird" WHERE id = 5`,
	`INSERT INTO "we$pgundo$ird" VALUES (10, 'new', E'\\''', 0)`,
	`UPDATE "bag\'s 100%
x" SET cur = 'changed' WHERE "o'k\" = 'b1'`,
	`DELETE FROM "bag\'s 100%
x" WHERE cur = 'c'`,
	`INSERT INTO "bag\'s 100%
x" VALUES ('n', E'new\\')`,
	`UPDATE parts SET v = 'changed', ref = 10 WHERE id = 1`,
	`UPDATE parts SET region = 'b' WHERE id = 2`,
	`INSERT INTO parts VALUES (7, 'a', 3, 'seven')`,
}

// oddOther is another session, on keyed tables only (the fast path's
// case), on rows the undone session did not touch.
var oddOther = []string{
	`UPDATE "we$pgundo$ird" SET n = 99 WHERE id = 3`,
	`DELETE FROM parts WHERE id = 4`,
	`INSERT INTO parts VALUES (8, 'a', 6, 'eight')`,
}

// oddDB returns the connection string of a fresh database holding
// oddSchema, where every new connection has standard_conforming_strings
// off when scsOff is set.
func oddDB(t *testing.T, scsOff bool) string {
	t.Helper()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	pgtest.Exec(t, conn, oddSchema)
	if scsOff {
		var db string
		require.NoError(t, conn.QueryRow(ctxT(t), `SELECT current_database()`).Scan(&db))
		pgtest.Exec(t, conn, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET standard_conforming_strings = off`)
	}
	return url
}

// oddWorld sets up the odd scenario in a database (standard_conforming_strings
// off or not), tracks its tables and runs the given sessions' statements.
func oddWorld(t *testing.T, scsOff bool, sessions ...[]string) (w *world, before map[string][]string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(oddDB(t, scsOff))
	require.NoError(t, err)
	var steps []step
	for i, s := range sessions {
		steps = append(steps, on(i, s...)...)
	}
	w = newWorld(t, scenario{Steps: steps}, cfg)
	if scsOff {
		require.Equal(t, "off", queryOne[string](t, w.Conn, `SHOW standard_conforming_strings`))
	}
	before = w.tables()
	w.run(steps, nil)
	return w, before
}

// runPsql runs the script at path with psql in cfg's database.
func runPsql(t *testing.T, cfg *pgx.ConnConfig, path string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(pgtest.BinDir(), "psql"), "-X", "-q", "-d", cfg.ConnString(), "-f", path).CombinedOutput()
	return string(out), err
}

// TestUndoScriptOddNamesStandardStringsOff: the --sql script of the odd
// scenario, run with psql in a database where standard_conforming_strings
// is off, undoes the session exactly (every table as before it) and
// records the undo; the same undo applied by Go does the same.
func TestUndoScriptOddNamesStandardStringsOff(t *testing.T) {
	t.Parallel()
	t.Run("script", func(t *testing.T) {
		t.Parallel()
		w, before := oddWorld(t, true, oddSession)
		require.NotEqual(t, before, w.tables())
		var script bytes.Buffer
		_, err := undo.WriteScript(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[0]}}, undo.Options{}, &script)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "undo.sql")
		require.NoError(t, os.WriteFile(path, script.Bytes(), 0o600))
		out, err := runPsql(t, w.cfg, path)
		require.NoError(t, err, "psql: %s\nscript:\n%s", out, script.String())
		requireSameTables(t, before, w.tables(), "after the script vs before the session")
		require.Equal(t, []string{w.IDs[0]}, queryStrings(t, w.Conn, `SELECT undone_session FROM pgundo.undo`))
		// Run again, it is refused and changes nothing.
		after := w.all()
		out, err = runPsql(t, w.cfg, path)
		require.Error(t, err)
		require.Contains(t, out, "pgundo: these changes were undone since this script was written; nothing was changed")
		requireSameTables(t, after, w.all(), "after running the script twice")
	})
	t.Run("apply", func(t *testing.T) {
		t.Parallel()
		w, before := oddWorld(t, true, oddSession)
		plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[0]}}, undo.Options{}, nil)
		require.NoError(t, err)
		require.True(t, plan.Applied)
		requireSameTables(t, before, w.tables(), "after the undo vs before the session")
	})
	t.Run("script refuses changed rows", func(t *testing.T) {
		t.Parallel()
		w, _ := oddWorld(t, true, oddSession)
		var script bytes.Buffer
		_, err := undo.WriteScript(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[0]}}, undo.Options{}, &script)
		require.NoError(t, err)
		pgtest.Exec(t, w.Conn, `UPDATE "bag\'s 100%
x" SET cur = 'edited' WHERE "o'k\" = 'b3'`)
		pgtest.Exec(t, w.Conn, `UPDATE "we$pgundo$ird" SET n = -1 WHERE id = 10`)
		path := filepath.Join(t.TempDir(), "undo.sql")
		require.NoError(t, os.WriteFile(path, script.Bytes(), 0o600))
		before := w.all()
		out, err := runPsql(t, w.cfg, path)
		require.Error(t, err)
		require.Contains(t, out, `ERROR:  pgundo: rows of public."we$pgundo$ird" changed since this script was written; nothing was changed; write the script again`)
		requireSameTables(t, before, w.all(), "after the refused script")
	})
}

// sqlLog records the SQL text of every statement a connection runs, and
// the values of its parameters.
type sqlLog struct {
	mu    sync.Mutex
	stmts []string
}

func (l *sqlLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	stmt := data.SQL
	if len(data.Args) > 0 {
		args := make([]string, len(data.Args))
		for i, a := range data.Args {
			args[i] = fmt.Sprintf("%q", fmt.Sprint(a))
		}
		stmt += "\n-- args: " + strings.Join(args, ", ")
	}
	l.stmts = append(l.stmts, stmt)
	return ctx
}

func (l *sqlLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// tracedConn opens an undo connection to w's database that logs its SQL.
func tracedConn(t *testing.T, w *world) (*pgx.Conn, *sqlLog) {
	t.Helper()
	log := &sqlLog{}
	c := w.cfg.Copy()
	c.Tracer = log
	conn, err := connectConfig(t, c)
	require.NoError(t, err)
	return conn, log
}

// normalize replaces what differs from run to run in generated SQL: table
// oids (by <oid:N>, N the table's rank by name), session ids (<session:N>
// for the scenario's, <undo session> for the undo's own) and the time a
// script was written.
func normalize(t *testing.T, w *world, sql string) string {
	t.Helper()
	rows, err := w.Conn.Query(ctxT(t), `SELECT oid::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY relname`)
	require.NoError(t, err)
	oids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for i, oid := range oids {
		sql = regexp.MustCompile(`(^|[^0-9])`+oid+`([^0-9]|$)`).ReplaceAllString(sql, fmt.Sprintf("${1}<oid:%d>${2}", i+1))
	}
	for i, id := range w.IDs {
		sql = strings.ReplaceAll(sql, id, fmt.Sprintf("<session:%d>", i))
	}
	// The undo's own session (pgundo._session(): hex backend start . hex pid).
	sql = regexp.MustCompile(`"[0-9a-f]{8}\.[0-9a-f]+"`).ReplaceAllString(sql, `"<undo session>"`)
	sql = regexp.MustCompile(`(?m)^(-- pgundo undo of session .*, written ).*\.$`).ReplaceAllString(sql, "${1}<time>.")
	return sortCopyData(sql)
}

// sortCopyData sorts the rows of each COPY ... FROM stdin block of a
// script: the script lists rows in the order the server reads them.
func sortCopyData(script string) string {
	lines := strings.Split(script, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "COPY ") || !strings.HasSuffix(lines[i], " FROM stdin;") {
			continue
		}
		end := i + 1
		for end < len(lines) && lines[end] != `\.` {
			end++
		}
		slices.Sort(lines[i+1 : end])
		i = end
	}
	return strings.Join(lines, "\n")
}

// checkGolden compares got with testdata/name.golden, or writes it there
// with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "no golden file: run go test ./undo -run Golden -update")
	if string(want) == got {
		return
	}
	w, g := strings.Split(string(want), "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	excerpt := func(lines []string) string {
		return strings.Join(lines[max(0, i-3):min(len(lines), i+4)], "\n")
	}
	t.Fatalf("generated SQL differs from %s from line %d on (if intended, run go test ./undo -run Golden -update and review the diff):\n--- want\n%s\n+++ got\n%s",
		path, i+1, excerpt(w), excerpt(g))
}

// TestGoldenSQL: the SQL the undo generates for the odd scenario, every
// statement as sent to the server, is exactly as in testdata: the planned
// path (a dry run in merge mode, which generates every statement the
// planned path has), the fast path (a dry run of a session on keyed tables
// only) and a whole --sql script.
func TestGoldenSQL(t *testing.T) {
	t.Parallel()
	w, _ := oddWorld(t, false, oddSession, oddOther)
	stmts := func(l *sqlLog) string {
		return normalize(t, w, strings.Join(l.stmts, ";\n-- next statement\n")+";\n")
	}

	conn, log := tracedConn(t, w)
	_, err := undo.MakePlan(ctxT(t), conn, undo.Selection{Sessions: []string{w.IDs[0]}}, undo.Options{AlwaysPlan: true, OnConflict: undo.Merge})
	require.NoError(t, err)
	checkGolden(t, "planned", stmts(log))

	conn, log = tracedConn(t, w)
	plan, err := undo.MakePlan(ctxT(t), conn, undo.Selection{Sessions: []string{w.IDs[1]}}, undo.Options{})
	require.NoError(t, err)
	require.Equal(t, []undo.TablePlan{
		{Table: `public."we$pgundo$ird"`, KeyColumns: []string{"id"}, Restore: 1},
		{Table: "public.parts", KeyColumns: []string{"id", "region"}, Reinsert: 1, Delete: 1},
	}, plan.Tables)
	require.Contains(t, log.stmts, "release savepoint sp_1", "the fast path (the first savepoint) undid it")
	checkGolden(t, "fast", stmts(log))

	var script bytes.Buffer
	_, err = undo.WriteScript(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[0]}}, undo.Options{}, &script)
	require.NoError(t, err)
	checkGolden(t, "script", normalize(t, w, script.String()))
}

// TestUndoScriptOddNamesSkip: with --on-conflict skip, the script of the
// odd scenario (standard_conforming_strings off) leaves the tables and
// records the rows it skipped (pgundo.undo_left) exactly as the same undo
// applied by Go does.
func TestUndoScriptOddNamesSkip(t *testing.T) {
	t.Parallel()
	other := []string{`UPDATE "we$pgundo$ird" SET n = -5 WHERE id = 1`}
	left := func(w *world) []string {
		return queryStrings(t, w.Conn, `SELECT relid::regclass::text || ' ' || coalesce(old, '-') || ' ' || coalesce(new, '-') FROM pgundo.undo_left ORDER BY 1`)
	}
	sel := func(w *world) undo.Selection { return undo.Selection{Sessions: []string{w.IDs[0]}} }
	opts := undo.Options{OnConflict: undo.Skip}

	a, _ := oddWorld(t, true, oddSession, other)
	plan, err := undo.Apply(ctxT(t), a.undoConn(), sel(a), opts, nil)
	require.NoError(t, err)
	require.Equal(t, int64(1), countsOf(tablePlan(t, plan, `public."we$pgundo$ird"`)).Skipped)

	b, _ := oddWorld(t, true, oddSession, other)
	var script bytes.Buffer
	_, err = undo.WriteScript(ctxT(t), b.undoConn(), sel(b), opts, &script)
	require.NoError(t, err)
	require.Contains(t, script.String(), "COPY pgundo_left_new FROM stdin;")
	path := filepath.Join(t.TempDir(), "undo.sql")
	require.NoError(t, os.WriteFile(path, script.Bytes(), 0o600))
	out, err := runPsql(t, b.cfg, path)
	require.NoError(t, err, "psql: %s\nscript:\n%s", out, script.String())

	requireSameTables(t, a.tables(), b.tables(), "after the script vs after the undo")
	require.Equal(t, []string{`"we$pgundo$ird" (1,cur1,"o\\'k1",1) -`, `"we$pgundo$ird" - (1,C'1,"back\\slash'q",2)`}, left(a))
	require.Equal(t, left(a), left(b))
}
