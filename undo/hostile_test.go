package undo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// Hostile input that is not worth fuzzing byte by byte: injection strings
// in tags and application names, a 500-column table, 10 MB values.

// injections are strings that would break SQL, format strings, templates
// or terminals if pasted anywhere unquoted.
var injections = []string{
	`'; DROP TABLE t; --`,
	`" OR 1=1 --`,
	`$$; DELETE FROM t; $$`,
	`\'; TRUNCATE pgundo.change; --`,
	`'||(SELECT pg_sleep(5))||'`,
	`%s %d %n %x {{.}} ${PATH} $(id) ` + "`id`",
	`*/ SELECT 1; /*`,
	"line1\nline2\r\n\ttabbed",
	`ticket-✓ 日本語 😀 ñ`,
	`   `,
	`a\x00b \u0000 \\ E'\\x41'`,
	strings.Repeat("long-tag-", 1200),
}

// TestUndoHostileTags: each tag, set with SET (as a parameter, through
// set_config) or at connection start (as PGOPTIONS would, -c pgundo.tag=...),
// is logged byte for byte, and undo --tag of it undoes exactly that
// session's change, nothing else; the tables are all still there.
func TestUndoHostileTags(t *testing.T) {
	t.Parallel()
	cfg := newDB(t)
	admin := connect(t, cfg, "pgundo-test-admin")
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := admin.Exec(ctxT(t), sql, args...)
		require.NoError(t, err, sql)
	}
	exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	exec(`INSERT INTO t SELECT g, 'orig' || g FROM generate_series(1, $1::int) g`, 2*len(injections))
	_, err := triggers.Track(ctxT(t), admin, []string{"t"})
	require.NoError(t, err)
	want := tableRows(t, admin, "t")

	for i, tag := range injections {
		for j, how := range []string{"set_config", "startup"} {
			id := 2*i + j + 1
			tag := fmt.Sprintf("%d:%s", id, tag)
			if how == "startup" {
				tag = cut(tag, 2000) // the startup packet is limited to 10000 bytes
			}
			c := cfg.Copy()
			c.RuntimeParams = map[string]string{"application_name": "pgundo-test-tagged"}
			if how == "startup" {
				c.RuntimeParams["pgundo.tag"] = tag
			}
			w, err := connectConfig(t, c)
			require.NoError(t, err, "connect with tag %q", tag)
			if how == "set_config" {
				_, err = w.Exec(ctxT(t), `SELECT set_config('pgundo.tag', $1, false)`, tag)
				require.NoError(t, err)
			}
			_, err = w.Exec(ctxT(t), `UPDATE t SET v = 'changed' WHERE id = $1`, id)
			require.NoError(t, err)
			require.Equal(t, []string{tag}, queryStrings(t, admin, `SELECT tag FROM pgundo.stmt WHERE relid = 't'::regclass AND tag = $1`, tag), "tag %q (%s) as logged", tag, how)

			plan, err := undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), undo.Selection{Tag: tag}, undo.Options{}, nil)
			require.NoError(t, err, "undo --tag %q", tag)
			require.Equal(t, int64(1), plan.RowsChanged, "undo --tag %q", tag)
			require.Equal(t, want, tableRows(t, admin, "t"), "after undo --tag %q (%s)", tag, how)
		}
	}
	require.Equal(t, []string{"change", "change_log", "journal", "session", "stmt", "stmt_log", "t"}, queryStrings(t, admin,
		`SELECT relname::text FROM pg_class WHERE relname IN ('t', 'change', 'change_log', 'journal', 'stmt', 'stmt_log', 'session') AND relkind IN ('r', 'p', 'v') ORDER BY 1`))
}

// cut returns at most n bytes of s, cut at a character boundary.
func cut(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// connectConfig opens a connection with cfg, closed when the test ends.
func connectConfig(t *testing.T, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	t.Helper()
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	if err == nil {
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	}
	return conn, err
}

// TestUndoHostileApplicationNames: application_name values with injection
// strings are logged as PostgreSQL holds them (it keeps printable ASCII and
// cuts at 63 bytes), and undo --app of that value undoes exactly that
// session.
func TestUndoHostileApplicationNames(t *testing.T) {
	t.Parallel()
	cfg := newDB(t)
	admin := connect(t, cfg, "pgundo-test-admin")
	_, err := admin.Exec(ctxT(t), `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'orig' FROM generate_series(1, 20) g`)
	require.NoError(t, err)
	_, err = triggers.Track(ctxT(t), admin, []string{"t"})
	require.NoError(t, err)
	want := tableRows(t, admin, "t")

	for i, inj := range injections {
		app := cut(fmt.Sprintf("%d %s", i+1, inj), 300)
		w := connect(t, cfg, app)
		held := queryOne[string](t, w, `SELECT current_setting('application_name')`)
		_, err := w.Exec(ctxT(t), `UPDATE t SET v = 'changed' WHERE id = $1`, i+1)
		require.NoError(t, err)
		require.Equal(t, []string{held}, queryStrings(t, admin, `SELECT s.application_name FROM pgundo.stmt s WHERE s.relid = 't'::regclass AND s.application_name = $1`, held), "application_name %q as logged", app)

		plan, err := undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), undo.Selection{App: held}, undo.Options{}, nil)
		require.NoError(t, err, "undo --app %q", held)
		require.Equal(t, int64(1), plan.RowsChanged, "undo --app %q", held)
		require.Equal(t, want, tableRows(t, admin, "t"), "after undo --app %q", held)
	}
}

// TestUndoWideTable: a 500-column table of mixed types (text with quotes
// and commas, numbers, json, arrays, timestamps, NULLs), where the session
// updates a few columns of some rows, all columns of others, deletes and
// inserts rows, comes back exactly.
func TestUndoWideTable(t *testing.T) {
	t.Parallel()
	types := []struct{ typ, expr string }{
		{"text", `'c%[1]d "q", (p) ' || g`},
		{"int", `g * %[1]d`},
		{"numeric", `(g * %[1]d)::numeric / 7`},
		{"jsonb", `jsonb_build_object('c', %[1]d, 'g', g)`},
		{"text[]", `ARRAY['a,' || g, NULL, '%[1]d']`},
		{"timestamptz", `'2024-01-01 00:00:00+00'::timestamptz + (g * %[1]d) * interval '1 second'`},
		{"float8", `CASE WHEN g = 3 THEN '-0'::float8 ELSE g / %[1]d.0 END`},
		{"bytea", `decode(md5(g::text || %[1]d), 'hex')`},
	}
	var cols, vals, nulls []string
	for i := 1; i < 500; i++ {
		ty := types[i%len(types)]
		cols = append(cols, fmt.Sprintf(`"col %d" %s`, i, ty.typ))
		vals = append(vals, fmt.Sprintf(ty.expr, i))
		nulls = append(nulls, "NULL")
	}
	setAll := make([]string, 0, 499)
	for i := 1; i < 500; i++ {
		setAll = append(setAll, fmt.Sprintf(`"col %d" = DEFAULT`, i))
	}
	res := checkUndo(t, scenario{
		Setup: fmt.Sprintf(`
			CREATE TABLE wide (id int PRIMARY KEY, %s);
			INSERT INTO wide SELECT g, %s FROM generate_series(1, 60) g;
			INSERT INTO wide VALUES (0, %s);`,
			strings.Join(cols, ", "), strings.Join(vals, ", "), strings.Join(nulls, ", ")),
		Steps: seq(
			on(0,
				`UPDATE wide SET "col 8" = 'changed', "col 250" = -1, "col 499" = '{}' WHERE id BETWEEN 1 AND 20`,
				`UPDATE wide SET `+strings.Join(setAll, ", ")+` WHERE id IN (0, 30)`,
				`DELETE FROM wide WHERE id BETWEEN 40 AND 49`,
				`INSERT INTO wide (id, "col 7", "col 400") VALUES (100, 'new', 'new too')`),
			on(1, `UPDATE wide SET "col 2" = 99 WHERE id = 55`, `INSERT INTO wide (id) VALUES (101)`),
		),
		Target: 0,
	})
	require.Equal(t, counts{Restore: 21, Reinsert: 10, Delete: 1}, countsOf(tablePlan(t, res.Plan, "public.wide")))
}

// TestUndoLargeValues: 10 MB text (unicode) and bytea values, stored out
// of line (TOAST), updated and deleted by a session, come back exactly
// (compared by length and md5 of the values and of the row images). Kept to
// three 10 MB images: capture and undo of one such row take seconds.
func TestUndoLargeValues(t *testing.T) {
	t.Parallel()
	cfg := newDB(t)
	admin := connect(t, cfg, "pgundo-test-admin")
	// 10 MB of hard-to-compress text: md5 hex with unicode mixed in.
	big := func(seed int) string {
		return fmt.Sprintf(`(SELECT string_agg(md5((g * %d)::text) || CASE WHEN g %% 97 = 0 THEN 'ñ日😀' ELSE '' END, '') FROM generate_series(1, 320000) g)`, seed)
	}
	_, err := admin.Exec(ctxT(t), fmt.Sprintf(`
		CREATE TABLE blob (id int PRIMARY KEY, t text, b bytea);
		INSERT INTO blob VALUES (1, %[1]s, convert_to(%[2]s, 'UTF8')), (2, 'small', '\x00'), (3, 'kept', NULL);`, big(1), big(2)))
	require.NoError(t, err)
	_, err = triggers.Track(ctxT(t), admin, []string{"blob"})
	require.NoError(t, err)
	fingerprint := func() []string {
		return queryStrings(t, admin, `SELECT id || ' ' || coalesce(octet_length(t), -1) || ' ' || coalesce(md5(t), '-') || ' ' ||
			coalesce(octet_length(b), -1) || ' ' || coalesce(md5(b), '-') || ' ' || md5(x::text) FROM blob x ORDER BY id`)
	}
	before := fingerprint()
	require.Greater(t, queryOne[int64](t, admin, `SELECT least(octet_length(t), octet_length(b)) FROM blob WHERE id = 1`), int64(10_000_000))
	require.Greater(t, queryOne[int64](t, admin, `SELECT pg_total_relation_size('blob')`), int64(10_000_000), "values are stored out of line")

	w := connect(t, cfg, "pgundo-test-big")
	sid := queryOne[string](t, w, sessionIDQuery)
	_, err = w.Exec(ctxT(t), fmt.Sprintf(`UPDATE blob SET t = 'small now', b = convert_to(%s, 'UTF8') WHERE id = 1`, big(3)))
	require.NoError(t, err)
	_, err = w.Exec(ctxT(t), fmt.Sprintf(`UPDATE blob SET t = %s WHERE id = 2`, big(4)))
	require.NoError(t, err)
	_, err = w.Exec(ctxT(t), `DELETE FROM blob WHERE id = 3`)
	require.NoError(t, err)
	require.NotEqual(t, before, fingerprint())

	plan, err := undo.Apply(context.Background(), connect(t, cfg, "pgundo-test-undo"), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Restore: 2, Reinsert: 1}, countsOf(tablePlan(t, plan, "public.blob")))
	require.Equal(t, before, fingerprint(), "after the undo")
}

// TestTrackOverlongNames: names longer than PostgreSQL's 63 bytes are
// truncated by PostgreSQL itself (at a character boundary), in CREATE TABLE
// and wherever the name is read again: given the long name, track finds the
// same table psql would, the log names it as stored, and the undo is exact.
func TestTrackOverlongNames(t *testing.T) {
	t.Parallel()
	cfg := newDB(t)
	conn := connect(t, cfg, "pgundo-test-admin")
	schema, table, col := strings.Repeat("ß", 40), strings.Repeat("t", 70), strings.Repeat("日本", 20)
	q := pgx.Identifier{schema, table}.Sanitize()
	pgtest := func(sql string, args ...any) {
		t.Helper()
		_, err := conn.Exec(ctxT(t), sql, args...)
		require.NoError(t, err, sql)
	}
	pgtest(`CREATE SCHEMA ` + pgx.Identifier{schema}.Sanitize())
	pgtest(`CREATE TABLE ` + q + ` (id int PRIMARY KEY, ` + pgx.Identifier{col}.Sanitize() + ` text)`)
	pgtest(`INSERT INTO ` + q + ` VALUES (1, 'a'), (2, 'b')`)
	tracked, err := triggers.Track(ctxT(t), conn, []string{q})
	require.NoError(t, err)
	require.Len(t, tracked, 1)
	stored := queryStrings(t, conn, `SELECT n.nspname || '|' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass`, q)
	require.Len(t, stored, 1)
	require.LessOrEqual(t, len(stored[0]), 63+1+63)
	before := tableRows(t, conn, q)

	w := connect(t, cfg, "pgundo-test-long")
	sid := queryOne[string](t, w, sessionIDQuery)
	_, err = w.Exec(ctxT(t), `UPDATE `+q+` SET `+pgx.Identifier{col}.Sanitize()+` = 'changed'; DELETE FROM `+q+` WHERE id = 2`)
	require.NoError(t, err)
	require.Equal(t, stored, queryStrings(t, conn, `SELECT DISTINCT schema_name || '|' || table_name FROM pgundo.stmt WHERE session_id = $1`, sid), "the log names the table as stored")
	_, err = undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, before, tableRows(t, conn, q))
}
