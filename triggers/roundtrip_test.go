package triggers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// rtCase is one column of the round-trip table: its name and type, and the
// values (SQL expressions) written to it. Row i is inserted with
// vals[i%len(vals)] and updated to vals[(i+1)%len(vals)], so every value
// appears in an INSERT's new image and in an UPDATE's old and new images.
type rtCase struct {
	name string
	typ  string
	// gen is a GENERATED clause; such a column gets no values (an identity
	// column is set to DEFAULT by the update, so it changes).
	gen  string
	vals []string
	// noEq marks types without an equality operator (json, xml, most
	// geometric types): the whole-row comparison compares their text.
	noEq bool
	// minVersion is the first server_version_num that has the type (0:
	// every supported version); on older servers the column is left out
	// and reported as a skipped subtest.
	minVersion int
}

// bigText is a ~1 MB text value that does not compress to nothing.
func bigText(seed string) string {
	return fmt.Sprintf(`(SELECT string_agg(md5(g::text || '%s'), '') FROM generate_series(1, 32768) g)`, seed)
}

// bigBytea is a 512 kB bytea of pseudo-random bytes (zeros included).
func bigBytea(seed string) string {
	return fmt.Sprintf(`(SELECT decode(string_agg(md5(g::text || '%s'), ''), 'hex') FROM generate_series(1, 16384) g)`, seed)
}

// roundTripTypes are created in public before the table.
var roundTripTypes = []string{
	`CREATE TYPE rt_mood AS ENUM ('sad', 'happy', 'with ''quote', 'a,b (c)', ' ')`,
	`CREATE DOMAIN rt_posnum AS numeric CHECK (VALUE >= 0)`,
	`CREATE DOMAIN rt_short AS text CHECK (length(VALUE) < 100)`,
	`CREATE TYPE rt_pair AS (a int, b text, c float8[], d rt_mood)`,
}

var roundTripCases = []rtCase{
	{name: "enum", typ: "rt_mood", vals: []string{`'sad'`, `'with ''quote'`, `'a,b (c)'`, `NULL`, `' '`, `'happy'`}},
	{name: "domain_numeric", typ: "rt_posnum", vals: []string{`1.500`, `0.000001000`, `0`, `NULL`, `123456789012345678901234567890.000000000000000000001`}},
	{name: "domain_text", typ: "rt_short", vals: []string{`''`, `'x'`, `'a"b\c'`, `NULL`, `'NULL'`}},
	{name: "int_2d", typ: "int[]", vals: []string{`'{{1,2},{3,4}}'`, `'{{1,NULL},{NULL,4}}'`, `'{}'`, `'[0:1]={5,6}'`,
		`'[-2:-1][3:4]={{1,2},{3,4}}'`, `NULL`, `'{NULL}'`, `'{{{1}},{{2}}}'`}},
	{name: "int_nulls", typ: "int4[]", vals: []string{`'{1,NULL,3}'`, `'{NULL,NULL}'`, `'{}'`, `ARRAY[]::int[]`}},
	{name: "text_arr", typ: "text[]", vals: []string{
		`ARRAY['a"b', 'c,d', '{e}', 'f\g', '', NULL, 'NULL', ' sp ', 'x)y(']`, `'{}'`,
		`ARRAY[E'new\nline', 'é', '😀']`, `NULL`, `'{{a,b},{"c d",NULL}}'`}},
	{name: "json_odd", typ: "json", noEq: true, vals: []string{
		`'{"a" : 1,  "a":2 ,"b":[1 , 2.50]}'`, `E' {\n\t"k":\t"v"\n} '`, `'"\u00e9 \ud83d\ude00 \u0000"'`,
		`'null'`, `NULL`, `'[]'`, `'1E+2'`, `'{"dup":1,"dup":1}'`}},
	{name: "jsonb", typ: "jsonb", vals: []string{`'{"b":1,"a":[1,2.50,{"c":null}]}'`, `'null'`, `NULL`, `'"😀"'`, `'{}'`,
		`'-0.0'`, `'1e100'`}},
	{name: "bytea", typ: "bytea", vals: []string{`'\x00ff00'`, `'\x'`, `NULL`, `'\x5c2722'`, `decode('000102030405', 'hex')`, `'\x00'`}},
	{name: "numeric", typ: "numeric", vals: []string{`1.500`, `0.000001000`, `'NaN'`, `-0.0`, `NULL`, `1e-20`}},
	// numeric has infinities from PostgreSQL 14 on.
	{name: "numeric_infinity", typ: "numeric", minVersion: 140000, vals: []string{`'Infinity'`, `'-Infinity'`, `'NaN'`, `2.50`, `NULL`}},
	{name: "numeric_scaled", typ: "numeric(10,4)", vals: []string{`1.5`, `-0.0001`, `'NaN'`, `NULL`}},
	{name: "float4", typ: "real", vals: []string{`'NaN'`, `'Infinity'`, `'-Infinity'`, `'-0'`, `'0.1'`, `'1e-45'`, `'3.4028235e38'`, `NULL`}},
	{name: "float8", typ: "double precision", vals: []string{`'NaN'`, `'Infinity'`, `'-Infinity'`, `'-0'`, `'1e-320'`, `'0.1'`,
		`'1.7976931348623157e308'`, `0.1::float8 + 0.2`}},
	{name: "ts", typ: "timestamp", vals: []string{`'2024-02-29 23:59:59.999999'`, `'infinity'`, `'-infinity'`,
		`'0044-03-15 12:00:00.000001 BC'`, `'1970-01-01 00:00:00'`, `NULL`, `'294276-12-31 23:59:59.999999'`}},
	{name: "tstz", typ: "timestamptz", vals: []string{`'2024-06-30 23:59:59.123456+05:45'`, `'infinity'`, `'-infinity'`,
		`'1999-12-31 18:15:00.000001-12'`, `'2000-01-01 00:00:00'`, `NULL`, `'1900-01-01 00:00:00+00'`}},
	{name: "date", typ: "date", vals: []string{`'infinity'`, `'-infinity'`, `'2000-02-29'`, `'0001-01-01 BC'`, `NULL`}},
	{name: "time", typ: "time", vals: []string{`'23:59:59.999999'`, `'00:00'`, `'24:00:00'`, `NULL`}},
	{name: "timetz", typ: "timetz", vals: []string{`'12:34:56.789012+05:45'`, `'00:00:00-15:59'`, `'23:59:59.999999+14'`, `NULL`}},
	{name: "interval", typ: "interval", vals: []string{
		`make_interval(years => 1, months => 2, days => 3, hours => 4, mins => 5, secs => 6.789012)`,
		`make_interval(years => -1, months => 2, days => -3, secs => -0.000001)`,
		`make_interval(days => 40)`, `make_interval(hours => 1000)`, `make_interval()`,
		`make_interval(months => -14)`, `NULL`, `make_interval(days => 1, secs => -1)`}},
	{name: "int4range", typ: "int4range", vals: []string{`'[1,10)'`, `'empty'`, `'(,5]'`, `'[3,)'`, `NULL`}},
	{name: "tstzrange", typ: "tstzrange", vals: []string{`'["2024-01-01 00:00:00.000001+00","2024-01-02 00:00+05:45")'`, `'empty'`,
		`'(,infinity]'`, `NULL`}},
	{name: "numrange", typ: "numrange", vals: []string{`'[1.50,2.500]'`, `'empty'`, `'(,0.000)'`, `NULL`}},
	{name: "int4multirange", typ: "int4multirange", minVersion: 140000, vals: []string{`'{}'`, `'{[1,3),[5,7)}'`, `'{(,0),[10,)}'`, `NULL`}},
	{name: "tsvector", typ: "tsvector", vals: []string{`$$'a' 'fat':1A,2B 'cat''s':3 'quoted word':4 'back\\slash'$$`,
		`to_tsvector('english', 'The quick brown foxes jumped')`, `''`, `NULL`}},
	{name: "composite", typ: "rt_pair", vals: []string{`ROW(1, 'quo"te, (paren) \ back', '{1.5,-0}', 'with ''quote')`,
		`ROW(NULL, NULL, NULL, NULL)`, `ROW(2, '', '{}', 'sad')`, `ROW(3, 'NULL', '{NaN,Infinity,1e-320}', NULL)`, `NULL`}},
	// XMLPARSE: the writer's xmloption is DOCUMENT.
	{name: "xml", typ: "xml", noEq: true, vals: []string{`XMLPARSE(CONTENT '<a x="1">t &amp; u</a>tail<b/>')`,
		`XMLPARSE(CONTENT 'plain text')`, `XMLPARSE(CONTENT '  <c>  spaced  </c>  ')`, `XMLPARSE(CONTENT '')`, `NULL`,
		`XMLPARSE(DOCUMENT '<?xml version="1.0"?><r/>')`}},
	{name: "money", typ: "money", vals: []string{`'12.34'`, `'-1000000.01'`, `'0'`, `NULL`, `'92233720368547758.07'`}},
	{name: "point", typ: "point", noEq: true, vals: []string{`'(1.5,-2)'`, `point(1/3.0, -0.0)`, `'(NaN,Infinity)'`, `NULL`}},
	{name: "line", typ: "line", noEq: true, vals: []string{`'{1,-1,0}'`, `'{0.1,2,-3.5}'`, `NULL`}},
	{name: "lseg", typ: "lseg", noEq: true, vals: []string{`'[(0,0),(1,1)]'`, `'[(0.1,0.2),(-0.3,1e-300)]'`, `NULL`}},
	{name: "box", typ: "box", noEq: true, vals: []string{`'(1,1),(0,0)'`, `'(0.1,0.2),(-0.3,-0.4)'`, `NULL`}},
	{name: "path", typ: "path", noEq: true, vals: []string{`'[(0,0),(1,1),(2,0)]'`, `'((0,0),(1,1),(0.5,0.1))'`, `NULL`}},
	{name: "polygon", typ: "polygon", noEq: true, vals: []string{`'((0,0),(1,0),(0,1))'`, `'((0.1,0.2))'`, `NULL`}},
	{name: "circle", typ: "circle", noEq: true, vals: []string{`'<(0,0),1.5>'`, `'<(0.1,-0.2),0.3>'`, `NULL`}},
	{name: "inet", typ: "inet", vals: []string{`'192.168.0.1/24'`, `'::1'`, `'10.0.0.1'`, `'::ffff:1.2.3.4/128'`, `NULL`}},
	{name: "cidr", typ: "cidr", vals: []string{`'10.0.0.0/8'`, `'2001:db8::/32'`, `NULL`}},
	{name: "macaddr", typ: "macaddr", vals: []string{`'08:00:2b:01:02:03'`, `'ff-ff-ff-ff-ff-ff'`, `NULL`}},
	{name: "macaddr8", typ: "macaddr8", vals: []string{`'08:00:2b:01:02:03:04:05'`, `'08002b010203'`, `NULL`}},
	{name: "uuid", typ: "uuid", vals: []string{`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`, `'00000000-0000-0000-0000-000000000000'`, `NULL`}},
	{name: "bit", typ: "bit(8)", vals: []string{`B'10101010'`, `B'00000000'`, `NULL`}},
	{name: "varbit", typ: "varbit", vals: []string{`B''`, `B'1'`, `B'101'`, `NULL`}},
	{name: "char", typ: "char(10)", vals: []string{`'ab  '`, `''`, `'x'`, `'0123456789'`, `NULL`, `' '`}},
	{name: "varchar", typ: "varchar(20)", vals: []string{`'abc'`, `''`, `' lead and trail '`, `NULL`}},
	{name: "text", typ: "text", vals: []string{`'😀 emoji'`, `E'e\u0301 combining'`, `'שלום עולם'`,
		`U&'\200F rtl mark \202E override'`, `''`, `NULL`, `E'tab\tnl\ncr\r'`, `'back\slash "dq" ''sq'' (p) ,c'`}},
	{name: "big_text", typ: "text", vals: []string{bigText("a"), `NULL`, `'small'`, `''`, `'x'`, `'y'`, `'z'`, bigText("b")}},
	{name: "big_bytea", typ: "bytea", vals: []string{bigBytea("a"), `'\x'`, `NULL`, `'\x00'`, `'\x01'`, `'\x02'`, `'\x03'`, bigBytea("b")}},
	{name: `Mixed Case "col"`, typ: "text", vals: []string{`'m1'`, `'M2'`, `NULL`}},
	{name: "order", typ: "int", vals: []string{`1`, `-2147483648`, `2147483647`, `NULL`}},
	{name: "generated", typ: "text", gen: `GENERATED ALWAYS AS (k::text || '/' || coalesce("order"::text, '-')) STORED`},
	{name: "identity", typ: "bigint", gen: `GENERATED ALWAYS AS IDENTITY`},
}

// roundTripTable is the tracked table, named the hard way.
var roundTripTable = pgx.Identifier{"Round Trip", `All "Types"`}.Sanitize()

// casesFor returns the round-trip cases the server (server_version_num
// ver) has types or values for, and those it has not.
func casesFor(ver int) (cases, missing []rtCase) {
	for _, c := range roundTripCases {
		if ver < c.minVersion {
			missing = append(missing, c)
			continue
		}
		cases = append(cases, c)
	}
	return cases, missing
}

// roundTripRows is how many rows are written: the longest value list.
func roundTripRows(cases []rtCase) int {
	n := 0
	for _, c := range cases {
		n = max(n, len(c.vals))
	}
	return n
}

func qi(name string) string { return pgx.Identifier{name}.Sanitize() }

// rtValue is the SQL expression for column c in row i after step (0:
// insert, 1: update).
func rtValue(c rtCase, i, step int) string {
	return fmt.Sprintf("CAST((%s) AS %s)", c.vals[(i+step)%len(c.vals)], c.typ)
}

// captureSettings are the output settings pgundo's capture functions pin.
var captureSettings = []string{
	`SET TimeZone = 'UTC'`, `SET DateStyle = 'ISO, YMD'`, `SET IntervalStyle = 'postgres'`,
	`SET extra_float_digits = 3`, `SET bytea_output = 'hex'`, `SET lc_monetary = 'C'`,
}

// hostileSettings are output settings under which a naive row image would
// not read back exactly (or at all).
var hostileSettings = []string{
	`SET DateStyle = 'SQL, DMY'`, `SET IntervalStyle = 'sql_standard'`, `SET extra_float_digits = -15`,
	`SET bytea_output = 'escape'`, `SET TimeZone = 'Asia/Kathmandu'`, `SET xmloption = 'document'`,
}

// TestRoundTripEveryType writes rows with values of every kind in the
// product's exact-round-trip list from a session with hostile output
// settings, then checks every logged image against the row as it was: each
// column's value, the row as a whole (IS NOT DISTINCT FROM), and the row's
// text form byte for byte.
func TestRoundTripEveryType(t *testing.T) {
	t.Parallel()
	dsn, check := setup(t)
	ver := queryOne[int](t, check, `SELECT current_setting('server_version_num')::int`)
	cases, missing := casesFor(ver)
	for _, c := range missing {
		// Not skipped silently: the type must really be missing here.
		t.Logf("column %s (%s) needs server_version_num >= %d, this server has %d: left out of the table", c.name, c.typ, c.minVersion, ver)
		failed := false
		for _, v := range c.vals {
			if _, err := check.Exec(ctxT(t), fmt.Sprintf("SELECT (%s)::%s", v, c.typ)); err != nil {
				failed = true
			}
		}
		require.True(t, failed, "every value of column %s reads as %s on this server: test it", c.name, c.typ)
	}
	execAll(t, check, roundTripTypes...)
	var cols []string
	for _, c := range cases {
		cols = append(cols, qi(c.name)+" "+c.typ+" "+c.gen)
	}
	execAll(t, check,
		`CREATE SCHEMA "Round Trip"`,
		`CREATE TABLE `+roundTripTable+` (k int PRIMARY KEY, dropped_early text, `+strings.Join(cols, ", ")+`)`,
		// A dropped column leaves a hole in the row type.
		`ALTER TABLE `+roundTripTable+` DROP COLUMN dropped_early`)
	track(t, check, `"Round Trip"."All ""Types"""`)

	writer := pgtest.Connect(t, dsn)
	execAll(t, writer, hostileSettings...)

	n := roundTripRows(cases)
	var insertCols, valueRows, setCols, updCols []string
	insertCols = append(insertCols, "k")
	for _, c := range cases {
		if c.gen == "" {
			insertCols = append(insertCols, qi(c.name))
			setCols = append(setCols, qi(c.name)+" = v."+qi(c.name))
			updCols = append(updCols, qi(c.name))
		} else if strings.Contains(c.gen, "IDENTITY") {
			setCols = append(setCols, qi(c.name)+" = DEFAULT")
		}
	}
	var updRows []string
	for i := range n {
		ins := []string{fmt.Sprint(i)}
		upd := []string{fmt.Sprint(i)}
		for _, c := range cases {
			if c.gen == "" {
				ins = append(ins, rtValue(c, i, 0))
				upd = append(upd, rtValue(c, i, 1))
			}
		}
		valueRows = append(valueRows, "("+strings.Join(ins, ", ")+")")
		updRows = append(updRows, "("+strings.Join(upd, ", ")+")")
	}

	// Each step is one statement; after each, the check session keeps the
	// table's rows (as values of the table's row type) as they were.
	steps := []struct {
		op, sql string
		rows    int
	}{
		{"I", `INSERT INTO ` + roundTripTable + ` (` + strings.Join(insertCols, ", ") + `) VALUES ` + strings.Join(valueRows, ", "), n},
		{"U", `UPDATE ` + roundTripTable + ` t SET ` + strings.Join(setCols, ", ") + ` FROM (VALUES ` + strings.Join(updRows, ", ") +
			`) v(k, ` + strings.Join(updCols, ", ") + `) WHERE t.k = v.k`, n},
		// Touches one small column: the big values stay TOASTed as they were.
		{"U", `UPDATE ` + roundTripTable + ` SET "order" = coalesce("order", 0) / 2 WHERE k % 2 = 1`, n / 2},
		{"D", `DELETE FROM ` + roundTripTable + ` WHERE k % 3 = 0`, (n + 2) / 3},
	}
	pgtest.Exec(t, check, `CREATE TEMP TABLE snap (step int, k int, r `+roundTripTable+`, PRIMARY KEY (step, k))`)
	pgtest.Exec(t, check, `INSERT INTO snap SELECT 0, t.k, t FROM `+roundTripTable+` t`)
	for i, s := range steps {
		tag := pgtest.Exec(t, writer, s.sql)
		require.EqualValues(t, s.rows, tag.RowsAffected(), s.sql)
		pgtest.Exec(t, check, `INSERT INTO snap SELECT $1, t.k, t FROM `+roundTripTable+` t`, i+1)
	}

	logged := stmts(t, check, roundTripTable)
	require.Len(t, logged, len(steps))
	for i, s := range steps {
		require.Equal(t, s.op, logged[i].Op, "step %d", i+1)
		require.EqualValues(t, s.rows, logged[i].Rows, "step %d", i+1)
	}

	// The comparison query: every image of a statement next to the row it
	// must equal (the old image: the row before the step; the new image:
	// the row after it).
	var imgCols, wantCols, imgEq, wantEq []string
	// A value's text is taken as ROW(v)::text: the type's own output
	// function (a plain ::text cast would trim char(n) and skip xml_out),
	// and NULL ("()") stays apart from an empty or all-NULL value.
	for _, name := range append([]string{"k"}, caseNames(cases)...) {
		imgCols = append(imgCols, "ROW((x.r)."+qi(name)+")::text")
		wantCols = append(wantCols, "ROW((e.r)."+qi(name)+")::text")
	}
	imgEq = append(imgEq, "(x.r).k")
	wantEq = append(wantEq, "(e.r).k")
	for _, c := range cases {
		if c.noEq {
			imgEq = append(imgEq, "ROW((x.r)."+qi(c.name)+")::text")
			wantEq = append(wantEq, "ROW((e.r)."+qi(c.name)+")::text")
		} else {
			imgEq = append(imgEq, "(x.r)."+qi(c.name))
			wantEq = append(wantEq, "(e.r)."+qi(c.name))
		}
	}
	compare := `
		WITH x AS MATERIALIZED (
		  SELECT 'old' AS side, c.old AS raw, c.old::` + roundTripTable + ` AS r, $2 - 1 AS step
		    FROM pgundo.change c WHERE c.stmt_id = $1 AND c.old IS NOT NULL
		  UNION ALL
		  SELECT 'new', c.new, c.new::` + roundTripTable + `, $2
		    FROM pgundo.change c WHERE c.stmt_id = $1 AND c.new IS NOT NULL)
		SELECT x.side, (x.r).k, e.k IS NOT NULL, x.raw, x.r::text, e.r::text,
		       ARRAY[` + strings.Join(imgCols, ", ") + `], ARRAY[` + strings.Join(wantCols, ", ") + `],
		       ROW(` + strings.Join(imgEq, ", ") + `) IS NOT DISTINCT FROM ROW(` + strings.Join(wantEq, ", ") + `)
		  FROM x LEFT JOIN snap e ON e.step = x.step AND e.k = (x.r).k
		 ORDER BY 1, 2`
	type image struct {
		side               string
		k                  int
		found              bool
		raw, text, want    string
		cols, wantCols     []*string
		rowNotDistinct     bool
		stmtIndex, stepNum int
	}
	// readImages runs the comparison for every statement, in the check
	// session's current settings.
	readImages := func() []image {
		var out []image
		for i, s := range logged {
			rows, err := check.Query(ctxT(t), compare, s.ID, i+1)
			require.NoError(t, err)
			for rows.Next() {
				im := image{stmtIndex: i, stepNum: i + 1}
				var want *string
				require.NoError(t, rows.Scan(&im.side, &im.k, &im.found, &im.raw, &im.text, &want, &im.cols, &im.wantCols, &im.rowNotDistinct))
				if want != nil {
					im.want = *want
				}
				out = append(out, im)
			}
			require.NoError(t, rows.Err())
		}
		return out
	}

	// With the check session's default settings: each value, the row as
	// a whole, and its text form.
	images := readImages()
	require.Len(t, images, n+2*n+2*(n/2)+(n+2)/3)
	for _, im := range images {
		require.True(t, im.found, "step %d: %s image of k=%d matches no row of the table", im.stepNum, im.side, im.k)
	}
	for ci, name := range caseNames(cases) {
		t.Run(name, func(t *testing.T) {
			for _, im := range images {
				requireSameText(t, im.wantCols[ci+1], im.cols[ci+1], "step %d (%s), %s image, k=%d", im.stepNum, logged[im.stmtIndex].Op, im.side, im.k)
			}
		})
	}
	for _, im := range images {
		where := fmt.Sprintf("step %d (%s), %s image, k=%d", im.stepNum, logged[im.stmtIndex].Op, im.side, im.k)
		require.True(t, im.rowNotDistinct, "%s: row IS DISTINCT FROM the table's row", where)
		requireSameText(t, &im.want, &im.text, "%s: row text", where)
	}

	// With capture's own output settings, the logged text is the row's
	// text form, byte for byte.
	execAll(t, check, captureSettings...)
	for _, im := range readImages() {
		requireSameText(t, &im.want, &im.raw, "step %d, %s image, k=%d: logged text vs the row's text form", im.stepNum, im.side, im.k)
	}
	execAll(t, check, `RESET ALL`)

	// The last new image of every remaining row is the live row.
	live := queryOne[int](t, check, `SELECT count(*) FROM `+roundTripTable)
	require.Equal(t, n-(n+2)/3, live)
	require.Equal(t, live, queryOne[int](t, check, `
		WITH last AS MATERIALIZED (
		  SELECT DISTINCT ON ((c.new::`+roundTripTable+`).k) c.new::`+roundTripTable+` AS r
		    FROM pgundo.change c WHERE c.stmt_id = ANY ($1) AND c.new IS NOT NULL
		   ORDER BY (c.new::`+roundTripTable+`).k, c.stmt_id DESC)
		SELECT count(*) FROM last JOIN `+roundTripTable+` t ON t.k = (last.r).k
		 WHERE last.r::text = t::text
		   AND ROW(`+strings.Join(eqProjection(cases, "last.r"), ", ")+`) IS NOT DISTINCT FROM ROW(`+strings.Join(eqProjection(cases, "t"), ", ")+`)`,
		stmtIDs(logged)))
}

func caseNames(cases []rtCase) []string {
	var out []string
	for _, c := range cases {
		out = append(out, c.name)
	}
	return out
}

// eqProjection lists the columns of row expression r for a whole-row
// comparison, as text where the type has no equality operator.
func eqProjection(cases []rtCase, r string) []string {
	out := []string{"(" + r + ").k"}
	for _, c := range cases {
		e := "(" + r + ")." + qi(c.name)
		if c.noEq {
			e = "ROW(" + e + ")::text"
		}
		out = append(out, e)
	}
	return out
}

func stmtIDs(ss []stmtLog) []int64 {
	out := make([]int64, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// requireSameText compares two possibly NULL, possibly huge texts and
// reports where they first differ rather than dumping megabytes.
func requireSameText(t *testing.T, want, got *string, msgAndArgs ...any) {
	t.Helper()
	if want == nil || got == nil {
		if want != got {
			require.Equal(t, want, got, msgAndArgs...)
		}
		return
	}
	if *want == *got {
		return
	}
	w, g := *want, *got
	if len(w) < 400 && len(g) < 400 {
		require.Equal(t, w, g, msgAndArgs...)
	}
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	from := max(0, i-40)
	require.Fail(t, fmt.Sprintf("texts differ at byte %d (lengths %d and %d):\nwant ...%q...\ngot  ...%q...",
		i, len(w), len(g), w[from:min(len(w), i+80)], g[from:min(len(g), i+80)]), msgAndArgs...)
}
