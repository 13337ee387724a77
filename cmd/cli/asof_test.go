package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

const pinned = `SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; SET extra_float_digits = 3;
	SET bytea_output = 'hex'; SET lc_monetary = 'C'; SET xmloption = 'content'; SET timezone = 'UTC'`

// copyCSV returns COPY (query) TO STDOUT WITH (FORMAT csv, HEADER) under
// pgundo's pinned output settings.
func copyCSV(t *testing.T, conn *pgx.Conn, query string) string {
	t.Helper()
	pgtest.Exec(t, conn, pinned)
	var buf bytes.Buffer
	_, err := conn.PgConn().CopyTo(context.Background(), &buf, "COPY ("+query+") TO STDOUT WITH (FORMAT csv, HEADER)")
	require.NoError(t, err)
	pgtest.Exec(t, conn, "RESET ALL")
	return buf.String()
}

// saveCopy copies table into a new table named copy and returns the time
// just after, as --at takes it.
func saveCopy(t *testing.T, conn *pgx.Conn, table, copy string) string {
	t.Helper()
	pgtest.Exec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT * FROM %s", copy, table))
	var at time.Time
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT clock_timestamp()").Scan(&at))
	time.Sleep(5 * time.Millisecond)
	return at.UTC().Format(time.RFC3339Nano)
}

func TestAsofAgainstSavedCopies(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TABLE t (id int PRIMARY KEY, note text, price numeric(10,3), tags text[], at timestamptz, data json,
		                b bytea, f float8, m mood, iv interval);
		CREATE TABLE p (region text, id int, v text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
		CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu');
		CREATE TABLE p_us PARTITION OF p FOR VALUES IN ('us');
		INSERT INTO t SELECT i, 'note ' || i, i * 1.5, ARRAY['a', NULL, 'c,d'], '2026-01-01 10:00+02'::timestamptz + i * interval '1 hour',
		                     '{"k": [1, 2],  "k": "dup"}', '\x00ff', '-0', 'ok', '1 day 02:00'
		  FROM generate_series(1, 50) i;
		INSERT INTO p SELECT CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, i, 'v' || i FROM generate_series(1, 20) i`)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "t", "p").code)
	w := pgtest.Connect(t, withApp(url, "writer"))
	pgtest.Exec(t, w, "UPDATE t SET note = NULL WHERE id <= 5")
	pgtest.Exec(t, w, "INSERT INTO t (id, note) VALUES (100, ''), (101, E'x\"y\\ny')")
	pgtest.Exec(t, w, "UPDATE p SET v = 'early' WHERE id <= 4")
	at1 := saveCopy(t, conn, "t", "t_at1")
	pAt1 := saveCopy(t, conn, "p", "p_at1")

	pgtest.Exec(t, w, "UPDATE t SET price = price * 2, tags = '{}' WHERE id BETWEEN 3 AND 30")
	pgtest.Exec(t, w, "DELETE FROM t WHERE id IN (7, 8, 100)")
	pgtest.Exec(t, w, "UPDATE t SET id = id + 1000 WHERE id BETWEEN 40 AND 45") // key changes
	pgtest.Exec(t, w, "INSERT INTO t (id, note) VALUES (7, 're-created')")
	pgtest.Exec(t, w, "UPDATE p SET region = 'eu' WHERE region = 'us' AND id < 10") // rows move between partitions
	pgtest.Exec(t, w, "DELETE FROM p WHERE id = 2")
	at2 := saveCopy(t, conn, "t", "t_at2")
	pgtest.Exec(t, w, "TRUNCATE t")
	pgtest.Exec(t, w, "INSERT INTO t (id, note) VALUES (1, 'after truncate')")
	pgtest.Exec(t, w, "UPDATE p SET v = 'late'")

	for _, c := range []struct{ table, at, copy, order string }{
		{"t", at1, "t_at1", "id"}, {"t", at2, "t_at2", "id"}, {"p", pAt1, "p_at1", "region, id"},
	} {
		want := copyCSV(t, conn, "SELECT * FROM "+c.copy+" ORDER BY "+c.order)
		r := run(t, url, "asof", c.table, "--at", c.at, "--format", "csv")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, want, r.stdout, "asof %s --at %s", c.table, c.at)

		// json and ndjson carry the same rows.
		var n int
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM "+c.copy).Scan(&n))
		r = run(t, url, "asof", c.table, "--at", c.at, "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var rows []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rows))
		require.Len(t, rows, n)
		r = run(t, url, "asof", c.table, "--at", c.at, "--format", "ndjson")
		require.Equal(t, 0, r.code, r.stderr)
		require.Len(t, ndjsonLines(t, r.stdout), n)
	}
	// Times as history and log print them, and as psql prints them, work too.
	at1Time, err := time.Parse(time.RFC3339Nano, at1)
	require.NoError(t, err)
	for _, form := range []string{at1Time.Format("2006-01-02 15:04:05.999999 UTC"), at1Time.Format("2006-01-02 15:04:05.999999-07")} {
		r := run(t, url, "asof", "t", "--at", form, "--format", "csv")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, copyCSV(t, conn, "SELECT * FROM t_at1 ORDER BY id"), r.stdout, form)
	}

	// The values are PostgreSQL's text forms (json kept as written).
	r := run(t, url, "asof", "t", "--at", at1, "--json", "id=3")
	require.Equal(t, 0, r.code, r.stderr)
	var one []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &one))
	require.Equal(t, []map[string]any{{"id": "3", "note": nil, "price": "4.500", "tags": `{a,NULL,"c,d"}`, "at": "2026-01-01 11:00:00+00",
		"data": `{"k": [1, 2],  "k": "dup"}`, "b": `\x00ff`, "f": "-0", "m": "ok", "iv": "1 day 02:00:00"}}, one)

	// One key: the row as it was, via the row-history index.
	for _, c := range []struct {
		at, copy string
		keys     []string
	}{
		{at1, "t_at1", []string{"1", "3", "7", "8", "40", "45", "100", "101", "1040", "999"}},
		{at2, "t_at2", []string{"1", "3", "7", "8", "40", "1040", "1045", "100"}},
	} {
		for _, k := range c.keys {
			want := copyCSV(t, conn, "SELECT * FROM "+c.copy+" WHERE id = "+k)
			r := run(t, url, "asof", "t", "--at", c.at, "--format", "csv", k)
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, want, r.stdout, "asof t --at %s %s", c.at, k)
		}
	}
	want := copyCSV(t, conn, "SELECT * FROM p_at1 WHERE region = 'us' AND id = 3")
	r = run(t, url, "asof", "p", "--at", pAt1, "--format", "csv", "region=us", "id=3")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, want, r.stdout)

	// Human output.
	r = run(t, url, "asof", "t", "--at", at1, "101")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "id: 101\nnote: x\"y\\ny\nprice: NULL\n")
	r = run(t, url, "asof", "t", "--at", at1, "999")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "public.t had no row with id=999 at ")
	r = run(t, url, "asof", "p", "--at", pAt1)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "region  id  v\n")
	require.Contains(t, r.stdout, "(20 rows)\n")
}

func TestAsofRefusals(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
		CREATE TABLE c (id int PRIMARY KEY, v text); CREATE TABLE u (id int PRIMARY KEY);
		INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1, 'x'); INSERT INTO c VALUES (1, 'x');
		CREATE VIEW av AS SELECT * FROM a WHERE v <> 'hidden'; CREATE VIEW abv AS SELECT a.id, b.v FROM a JOIN b USING (id);
		CREATE VIEW uv AS SELECT * FROM u; CREATE MATERIALIZED VIEW am AS SELECT * FROM a`)
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a", "b", "c").code)
	at := saveCopy(t, conn, "a", "a_copy")
	pgtest.Exec(t, conn, "UPDATE b SET v = 'y'")
	pgtest.Exec(t, conn, "ALTER TABLE b ADD COLUMN w int")
	pgtest.Exec(t, conn, "UPDATE b SET w = 1")
	// Capture off for a while: the log does not account for the row now.
	pgtest.Exec(t, conn, "UPDATE c SET v = 'y'")
	pgtest.Exec(t, conn, "ALTER TABLE c DISABLE TRIGGER pgundo_capture_update")
	pgtest.Exec(t, conn, "UPDATE c SET v = 'unlogged'")
	pgtest.Exec(t, conn, "ALTER TABLE c ENABLE ALWAYS TRIGGER pgundo_capture_update")
	pgtest.Exec(t, conn, "UPDATE c SET v = 'logged'")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"asof", "a"}, 2, "say when: pgundo asof a --at TIME"},
		{[]string{"asof", "a", "--at", "yesterday-ish"}, 2, `for "--at" flag: cannot read time "yesterday-ish"`},
		{[]string{"asof", "nope", "--at", at}, 2, "table nope: no such table"},
		{[]string{"asof", "u", "--at", at}, 2, "table public.u is not tracked, so pgundo cannot rebuild its past rows"},
		{[]string{"asof", "a", "--at", before}, 2, "table public.a is tracked since "},
		{[]string{"asof", "b", "--at", at}, 2, "the columns of public.b changed after "},
		{[]string{"asof", "a", "--at", at, "v=x"}, 2, "column v is not part of the primary key of public.a"},
		{[]string{"asof", "a", "--at", at, "--format", "yaml"}, 2, `unknown --format "yaml"`},
		{[]string{"asof", "c", "--at", at}, 1, "public.c: 1 row image(s) logged since then are not in the table now"},
		{[]string{"asof", "c", "--at", at, "1"}, 1, "public.c id=1: 1 row image(s) logged since then are not in the table now"},
		// A failure leaves stdout empty, whatever the format: no header
		// in a redirected CSV.
		{[]string{"asof", "u", "--at", at, "--format", "csv"}, 2, "table public.u is not tracked"},
		{[]string{"asof", "b", "--at", at, "--format", "csv"}, 2, "the columns of public.b changed after "},
		{[]string{"asof", "b", "--at", at, "--json"}, 2, "the columns of public.b changed after "},
		{[]string{"asof", "a", "--at", before, "--format", "ndjson"}, 2, "table public.a is tracked since "},
		{[]string{"asof", "c", "--at", at, "--format", "csv"}, 1, "public.c: 1 row image(s) logged since then are not in the table now"},
		{[]string{"asof", "c", "--at", at, "--json"}, 1, "public.c: 1 row image(s) logged since then are not in the table now"},
		{[]string{"asof", "c", "--at", at, "--format", "csv", "1"}, 1, "public.c id=1: 1 row image(s) logged since then are not in the table now"},
		// Views cannot be tracked: no advice to track them.
		{[]string{"asof", "av", "--at", at, "--format", "csv"}, 2,
			"pgundo: public.av is a view: views cannot be tracked, so pgundo has no log of its rows; its base table public.a is tracked: use public.a instead\n"},
		{[]string{"asof", "abv", "--at", at}, 2, "pgundo: public.abv is a view: views cannot be tracked, so pgundo has no log of its rows\n"},
		{[]string{"asof", "uv", "--at", at}, 2, "pgundo: public.uv is a view: views cannot be tracked, so pgundo has no log of its rows\n"},
		{[]string{"asof", "am", "--at", at}, 2,
			"pgundo: public.am is a materialized view: materialized views cannot be tracked, so pgundo has no log of its rows; its base table public.a is tracked: use public.a instead\n"},
		{[]string{"history", "av", "1"}, 2,
			"pgundo: public.av is a view: views cannot be tracked, so pgundo has no log of its rows; its base table public.a is tracked: use public.a instead\n"},
	} {
		r := run(t, url, c.args...)
		require.Equal(t, c.code, r.code, "%v: %s", c.args, r.stderr)
		if strings.HasPrefix(c.want, "pgundo: ") {
			require.Equal(t, c.want, r.stderr, c.args)
		} else {
			require.Contains(t, r.stderr, c.want, c.args)
		}
		if slices.Contains(c.args, "--json") {
			// Under --json: the error object, and nothing else.
			var e errorJSON
			onlyJSON(t, r.stdout, &e)
			require.Equal(t, c.code, e.Error.Code, c.args)
			require.Contains(t, e.Error.Message, c.want, c.args)
			continue
		}
		require.Empty(t, r.stdout, c.args)
	}
	r := run(t, url, "asof", "a", "--at", at, "--format", "csv")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, copyCSV(t, conn, "SELECT * FROM a_copy"), r.stdout)
	require.True(t, strings.HasPrefix(r.stdout, "id,v\n"))
}

// TestAsofTableFormat: the table format aligns the header with the columns
// and prints values as PostgreSQL prints them, unquoted.
func TestAsofTableFormat(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE t (id int PRIMARY KEY, at timestamptz, note text, n int);
		INSERT INTO t VALUES (1, '2026-01-01 10:00+00', 'hello world', 1), (2, NULL, '', NULL),
		                     (10, '2026-01-02 00:00:00.5+00', E'tab\there, it''s', 3)`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "t").code)
	at := saveCopy(t, conn, "t", "t_copy")
	pgtest.Exec(t, conn, "UPDATE t SET note = 'changed'")
	r := run(t, url, "asof", "t", "--at", at)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, ""+
		"id  at                        note             n\n"+
		"1   2026-01-01 10:00:00+00    hello world      1\n"+
		"2   NULL                                       NULL\n"+
		"10  2026-01-02 00:00:00.5+00  tab\\there, it's  3\n"+
		"(3 rows)\n", r.stdout)
	r = run(t, url, "asof", "t", "--at", at, "10")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "id: 10\nat: 2026-01-02 00:00:00.5+00\nnote: tab\\there, it's\nn: 3\n", r.stdout)

	// A long table is laid out in blocks of 500 rows; when a later block
	// needs wider columns, the header is printed again above it, aligned.
	pgtest.Exec(t, conn, `CREATE TABLE long (id int PRIMARY KEY, v text, w text);
		INSERT INTO long SELECT i, 'x', 'y' FROM generate_series(1, 500) i;
		INSERT INTO long VALUES (501, 'a longer value', 'z')`)
	require.Equal(t, 0, run(t, url, "track", "long").code)
	at = saveCopy(t, conn, "long", "long_copy")
	pgtest.Exec(t, conn, "DELETE FROM long")
	r = run(t, url, "asof", "long", "--at", at)
	require.Equal(t, 0, r.code, r.stderr)
	var want strings.Builder
	want.WriteString("id   v  w\n")
	for i := 1; i <= 500; i++ {
		fmt.Fprintf(&want, "%-3d  x  y\n", i)
	}
	want.WriteString("id   v               w\n501  a longer value  z\n(501 rows)\n")
	require.Equal(t, want.String(), r.stdout)
}
