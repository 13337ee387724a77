package undo_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// Fuzz tests: hostile identifiers and random values go through track ->
// write -> undo, and must come back exactly (or be refused with a message
// naming what is wrong). The seed corpus runs in the normal suite; fuzz with
//
//	go test -run '^$' -fuzz FuzzIdentifiers -fuzztime 500x -fuzzminimizetime 10x ./undo/
//	go test -run '^$' -fuzz FuzzValueRoundTrip -fuzztime 500x -fuzzminimizetime 10x ./undo/
//
// An input takes a fraction of a second (several round trips and an undo),
// so budgets are counts: with a duration, Go 1.26's coordinator can report
// a bare "context deadline exceeded" at the end of the window on a busy
// machine, with no failing input (golang/go#75804, fixed in Go 1.27), and
// minimizing an interesting input with the default 60s budget stalls the
// count for a minute.
//
// Each fuzz process (every fuzzing worker runs TestMain, so has its own
// cluster) uses one database for all its iterations, since cloning one per
// input would dominate the time.

// fuzzConn opens a connection to cfg with application_name app, closed when
// tb ends (a fuzz target's connections outlive its iterations).
func fuzzConn(tb testing.TB, cfg *pgx.ConnConfig, app string, params map[string]string) *pgx.Conn {
	tb.Helper()
	c := cfg.Copy()
	c.RuntimeParams = map[string]string{"application_name": app}
	for k, v := range params {
		c.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		tb.Fatalf("connect as %s: %v", app, err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// identFrom turns fuzz input into a name PostgreSQL can hold exactly as a
// quoted identifier: no NUL, valid UTF-8, 1 to 63 bytes (longer names are
// cut at a character boundary, as PostgreSQL itself would truncate them).
func identFrom(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	for len(s) > 63 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s == "" {
		s = "x"
	}
	return s
}

// reservedSchema reports names CREATE SCHEMA refuses or that belong to the
// system or to pgundo.
func reservedSchema(s string) bool {
	return strings.HasPrefix(s, "pg_") || s == "pgundo" || s == "information_schema"
}

var fuzzSeq atomic.Int64

// FuzzIdentifiers: a schema, table and column named by the fuzzer (quotes,
// spaces, dots, unicode, reserved words, 63-byte names, names like the
// undo's own aliases). The table is tracked by its psql-quoted name; a
// session inserts, updates, changes a key and deletes; the log names the
// table exactly; the undo puts the table back exactly.
func FuzzIdentifiers(f *testing.F) {
	for _, s := range [][3]string{
		{"public", "t", "v"},
		{"Billing Ops", `Order "Items"`, "note"},
		{"a.b", "c.d", "e.f"},
		{"ünïcödé", "日本語テーブル", "😀 col"},
		{"select", "from", "order"},
		{"user", "table", "group"},
		{strings.Repeat("s", 63), strings.Repeat("t", 63), strings.Repeat("c", 63)},
		{strings.Repeat("é", 31) + "s", strings.Repeat("表", 21), strings.Repeat("ü", 40)},
		{strings.Repeat("x", 80), strings.Repeat("y", 64), strings.Repeat("z", 100)},
		{"cur", "pgundo_c", "cur"},
		{"k", "pgundo_net", "pgundo_img"},
		{"s", "t", "a_img"},
		{" ", "  ", "\t"},
		{`s";DROP TABLE t;--`, `t'); DROP SCHEMA public CASCADE; --`, `x"y`},
		{"%s%d", "$1", `\`},
		{"public", "ctid", "xmin"},
		{"PUBLIC", "T", "V"},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	cfg, err := pgx.ParseConfig(pgtest.NewDB(f))
	require.NoError(f, err)
	admin := fuzzConn(f, cfg, "fuzz-admin", nil)

	f.Fuzz(func(t *testing.T, schema, table, col string) {
		ctx := t.Context()
		schema, table, col = identFrom(schema), identFrom(table), identFrom(col)
		if reservedSchema(schema) {
			schema = identFrom("x" + schema)
		}
		key := "k"
		if col == key {
			key = "kk"
		}
		q := pgx.Identifier{schema, table}.Sanitize()
		qc, qk := pgx.Identifier{col}.Sanitize(), pgx.Identifier{key}.Sanitize()

		var existed bool
		require.NoError(t, admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&existed))
		if !existed {
			pgtest.Exec(t, admin, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (%s int PRIMARY KEY, %s text)`, q, qk, qc)); err != nil {
			// PostgreSQL itself refuses the name (e.g. a column named like
			// a system column): nothing for pgundo to do.
			require.ErrorContains(t, err, "system column", "CREATE TABLE %s", q)
			if !existed {
				pgtest.Exec(t, admin, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize())
			}
			return
		}
		t.Cleanup(func() {
			ctx := context.Background()
			_, _ = admin.Exec(ctx, "DROP TABLE IF EXISTS "+q)
			if !existed {
				_, _ = admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			}
		})
		pgtest.Exec(t, admin, fmt.Sprintf(`INSERT INTO %s VALUES (1, 'one'), (2, $1), (3, NULL)`, q), col)

		tracked, err := triggers.Track(ctx, admin, []string{q})
		require.NoError(t, err, "track %s", q)
		require.Len(t, tracked, 1)

		before := tableRowsTB(t, admin, q)
		writer := fuzzConn(t, cfg, "fuzz-writer", nil)
		var sid string
		require.NoError(t, writer.QueryRow(ctx, sessionIDQuery).Scan(&sid))
		for _, sql := range []string{
			fmt.Sprintf(`UPDATE %s SET %s = %s || '!' WHERE %s = 1`, q, qc, qc, qk),
			fmt.Sprintf(`DELETE FROM %s WHERE %s = 2`, q, qk),
			fmt.Sprintf(`INSERT INTO %s VALUES (4, 'four')`, q),
			fmt.Sprintf(`UPDATE %s SET %s = 5 WHERE %s = 3`, q, qk, qk),
		} {
			pgtest.Exec(t, writer, sql)
		}

		// The log names the table exactly and holds one change per row.
		var n int64
		require.NoError(t, admin.QueryRow(ctx, `
			SELECT count(*) FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
			 WHERE s.session_id = $1 AND s.schema_name = $2 AND s.table_name = $3`, sid, schema, table).Scan(&n))
		require.EqualValues(t, 4, n, "changes logged for %s", q)

		plan, err := undo.Apply(ctx, fuzzConn(t, cfg, "fuzz-undo", nil), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
		require.NoError(t, err, "undo of %s", q)
		require.True(t, plan.Applied)
		require.Equal(t, before, tableRowsTB(t, admin, q), "%s after the undo", q)
	})
}

// tableRowsTB returns a table's rows as text under pinned output settings,
// sorted bytewise.
func tableRowsTB(tb testing.TB, conn *pgx.Conn, table string) []string {
	tb.Helper()
	ctx := context.Background()
	_, err := conn.Exec(ctx, `SET datestyle = 'ISO, YMD'; SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET intervalstyle = 'postgres'`)
	require.NoError(tb, err)
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT ROW(x.*)::text FROM %s x`, table)) // x.*: a column named x cannot shadow it
	require.NoError(tb, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(tb, err)
	slices.Sort(out)
	return out
}

// valueColumns are the columns of FuzzValueRoundTrip's table; each value is
// made by the first of its candidate expressions PostgreSQL accepts for the
// input (see fuzzValues). A nil input gives NULL, an empty one an empty
// string or array.
var valueColumns = []struct{ name, typ string }{
	{"t", "text"}, {"n", "numeric"}, {"f8", "float8"}, {"f4", "float4"}, {"by", "bytea"},
	{"ts", "timestamp"}, {"tstz", "timestamptz"}, {"d", "date"}, {"iv", "interval"},
	{"ta", "text[]"}, {"ia", "int[]"}, {"j", "json"}, {"jb", "jsonb"},
}

// fuzzInput is one input of FuzzValueRoundTrip.
type fuzzInput struct {
	S string
	B []byte
	X float64
	I int64
	U uint8
}

// fuzzValues turns an input into one text value per column of
// valueColumns, each as PostgreSQL prints it under pinned output settings
// (conn has them), so that `text::type` on any connection gives the value.
func fuzzValues(tb testing.TB, conn *pgx.Conn, in fuzzInput) []*string {
	tb.Helper()
	s := strings.ToValidUTF8(strings.ReplaceAll(in.S, "\x00", ""), "\uFFFD")
	var ta []*string
	for _, part := range strings.Split(s, ",") {
		if part == "NULL" || (part == "" && in.U%2 == 0) {
			ta = append(ta, nil)
		} else {
			ta = append(ta, &part)
		}
	}
	var ia []*int32
	for _, b := range in.B {
		if b == 0 {
			ia = append(ia, nil)
		} else {
			v := int32(b)*int32(in.I%100000+1) - 128
			ia = append(ia, &v)
		}
	}
	type cand struct {
		sql string
		arg any
	}
	ts, tstz := []cand(nil), []cand(nil)
	switch in.U % 8 {
	case 0:
		ts = append(ts, cand{`'infinity'`, nil})
	case 1:
		ts = append(ts, cand{`'-infinity'`, nil})
	case 2:
		tstz = append(tstz, cand{`'infinity'`, nil})
	case 3:
		tstz = append(tstz, cand{`'-infinity'`, nil})
	}
	ts = append(ts, cand{`'2000-01-01'::timestamp + $1::bigint * interval '1 microsecond'`, in.I},
		cand{`'2000-01-01'::timestamp + ($1::bigint % 9000000000000000) * interval '1 microsecond'`, in.I})
	tstz = append(tstz, cand{`'2000-01-01 00:00:00+00'::timestamptz + $1::bigint * interval '1 microsecond'`, in.I},
		cand{`'2000-01-01 00:00:00+00'::timestamptz + ($1::bigint % 9000000000000000) * interval '1 microsecond'`, in.I})
	ia2 := "$1::int[]"
	if in.U%3 == 0 && len(ia) > 0 {
		ia2 = "ARRAY[$1::int[], $1::int[]]" // two dimensions
	}
	cands := map[string][]cand{
		"t":    {{`$1::text`, s}},
		"n":    {{`$1::text::numeric`, s}, {`($1::numeric / 10000)`, in.I}},
		"f8":   {{`$1::float8`, in.X}},
		"f4":   {{`$1::float4`, float32(in.X)}},
		"by":   {{`$1::bytea`, in.B}},
		"ts":   ts,
		"tstz": tstz,
		"d":    {{`'2000-01-01'::date + ($1::bigint % 2000000)::int`, in.I}},
		"iv":   {{`($1::bigint % 100000000000000) * interval '1 microsecond' + (($1::bigint / 7) % 10000)::int * interval '1 mon' - (($1::bigint / 13) % 1000)::int * interval '1 day'`, in.I}},
		"ta":   {{`$1::text[]`, ta}},
		"ia":   {{ia2, ia}},
		"j":    {{`$1::text::json`, s}, {`to_json($1::text)`, s}},
		"jb":   {{`$1::text::jsonb`, s}, {`to_jsonb($1::text)`, s}},
	}
	out := make([]*string, len(valueColumns))
	for i, col := range valueColumns {
		var last error
		found := false
		for _, c := range cands[col.name] {
			var args []any
			if strings.Contains(c.sql, "$1") {
				args = append(args, c.arg)
			}
			if last = conn.QueryRow(context.Background(), fmt.Sprintf(`SELECT (%s)::%s::text`, c.sql, col.typ), args...).Scan(&out[i]); last == nil {
				found = true
				break
			}
		}
		require.True(tb, found, "no value for column %s from %+v: %v", col.name, in, last)
	}
	return out
}

// FuzzValueRoundTrip: random values of every kind (text with unicode,
// numeric incl. NaN and huge scales, float4/float8 incl. NaN, ±Infinity and
// -0, bytea, timestamps incl. infinity and the range ends, dates,
// intervals, text and int arrays with NULLs and two dimensions, json kept
// byte for byte, jsonb) are written by a session with odd output settings,
// which updates a row to them, deletes another and inserts a third; the
// undo of that session puts back exactly the rows as they were, and the
// redo (undo of the undo) exactly the rows the session left.
func FuzzValueRoundTrip(f *testing.F) {
	for _, in := range []fuzzInput{
		{"plain", []byte("bytes"), 1.5, 42, 1},
		{"ñandú 日本 😀, \"quoted\" \\ back\\slash", []byte{0, 1, 2, 255}, math.NaN(), -1, 0},
		{`{"b" : 1,   "a":[1, 2 ,3],"a": "dup"}`, nil, math.Inf(1), math.MaxInt64, 2},
		{`[1, 2.50, "x\u00e9"]`, []byte{}, math.Inf(-1), math.MinInt64, 3},
		{"-0.000", []byte{0}, math.Copysign(0, -1), 0, 4},
		{"12345678901234567890.000000000000000000001", []byte{9, 0, 9}, 5e-324, 86400000000, 5},
		{"1e-300", []byte{0x5c, 0x78}, math.MaxFloat64, -86400000000, 6},
		{"NaN", []byte("\\x00"), -math.MaxFloat32 * 2, 1 << 53, 7},
		{"NULL,,a,NULL,", []byte{0, 0}, 0.1, 211813488000000000, 8},
		{"", nil, 1e38, -211813488000000000, 9},
		{"line\nbreak\ttab\r", []byte("\n"), 3.4028235e38, 1, 10},
		{`"just a string"`, []byte{0x80, 0xff}, 1.401298464324817e-45, 2, 11},
		{"Infinity", nil, 123456.789, 3, 12},
		{"{\"k\": \"\\u0000\"}", nil, -1, 4, 13},
	} {
		f.Add(in.S, in.B, in.X, in.I, in.U)
	}
	cfg, err := pgx.ParseConfig(pgtest.NewDB(f))
	require.NoError(f, err)
	setup := fuzzConn(f, cfg, "fuzz-setup", nil)
	pinned := `SET datestyle = 'ISO, YMD'; SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET intervalstyle = 'postgres'`
	pgtest.Exec(f, setup, pinned)
	var cols []string
	for _, c := range valueColumns {
		cols = append(cols, c.name+" "+c.typ)
	}
	pgtest.Exec(f, setup, `CREATE TABLE vals (k int PRIMARY KEY, `+strings.Join(cols, ", ")+`)`)
	_, err = triggers.Track(context.Background(), setup, []string{"vals"})
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, s string, b []byte, x float64, i int64, u uint8) {
		ctx := t.Context()
		v1 := fuzzValues(t, setup, fuzzInput{s, b, x, i, u})
		rs := []rune(s)
		slices.Reverse(rs)
		rb := slices.Clone(b)
		slices.Reverse(rb)
		v2 := fuzzValues(t, setup, fuzzInput{string(rs), rb, -x / 3, i/7 + 1, u + 3})

		k0 := int(fuzzSeq.Add(3))
		k1, k2 := k0+1, k0+2
		var casts, sets []string
		for j, c := range valueColumns {
			casts = append(casts, fmt.Sprintf("$%d::text::%s", j+2, c.typ))
			sets = append(sets, fmt.Sprintf("%s = $%d::text::%s", c.name, j+2, c.typ))
		}
		insert := `INSERT INTO vals VALUES ($1, ` + strings.Join(casts, ", ") + `)`
		args := func(k int, v []*string) []any {
			a := []any{k}
			for _, x := range v {
				a = append(a, x)
			}
			return a
		}
		pgtest.Exec(t, setup, insert, args(k0, v1)...)
		pgtest.Exec(t, setup, insert, args(k2, v2)...)
		rowsOf := func() []string {
			return queryStringsTB(t, setup, `SELECT x::text FROM vals x WHERE k IN ($1, $2, $3) ORDER BY k`, k0, k1, k2)
		}
		before := rowsOf()

		// The writer prints values differently: capture must not care.
		writer := fuzzConn(t, cfg, "fuzz-writer", map[string]string{
			"datestyle": "SQL, DMY", "timezone": "Asia/Kathmandu", "extra_float_digits": "-15",
			"bytea_output": "escape", "intervalstyle": "iso_8601", "lc_monetary": "C",
		})
		var sid string
		require.NoError(t, writer.QueryRow(ctx, sessionIDQuery).Scan(&sid))
		pgtest.Exec(t, writer, `UPDATE vals SET `+strings.Join(sets, ", ")+` WHERE k = $1`, args(k0, v2)...)
		pgtest.Exec(t, writer, `DELETE FROM vals WHERE k = $1`, k2)
		pgtest.Exec(t, writer, insert, args(k1, v1)...)
		after := rowsOf()

		plan, err := undo.Apply(ctx, fuzzConn(t, cfg, "fuzz-undo", nil), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
		require.NoError(t, err, "undo")
		require.Equal(t, before, rowsOf(), "rows after the undo vs before the session")

		_, err = undo.Apply(ctx, fuzzConn(t, cfg, "fuzz-redo", nil), undo.Selection{Sessions: []string{plan.UndoSession}}, undo.Options{}, nil)
		require.NoError(t, err, "redo")
		require.Equal(t, after, rowsOf(), "rows after the redo vs after the session")
	})
}

// queryStringsTB runs a query returning one text column.
func queryStringsTB(tb testing.TB, conn *pgx.Conn, sql string, args ...any) []string {
	tb.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	require.NoError(tb, err, sql)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(tb, err, sql)
	return out
}
