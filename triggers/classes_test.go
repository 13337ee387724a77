package triggers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
)

// captureArgs lists each UPDATE, INSERT and DELETE capture trigger of the
// tables named like pattern with its arguments: "t pgundo_capture_update
// 'none'".
func captureArgs(t *testing.T, conn triggers.DBTX, pattern string) []string {
	t.Helper()
	return queryStrings(t, conn, `
		SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || substring(pg_get_triggerdef(oid) from 'EXECUTE FUNCTION pgundo\.\w+\((.*)\)$')
		  FROM pg_trigger
		 WHERE tgname IN ('pgundo_capture_insert', 'pgundo_capture_update', 'pgundo_capture_delete') AND tgrelid::regclass::text LIKE $1
		 ORDER BY 1`, pattern)
}

// argsOf is captureArgs' expected output for rel with arguments args.
func argsOf(rel, args string) []string {
	return []string{rel + " pgundo_capture_delete " + args, rel + " pgundo_capture_insert " + args, rel + " pgundo_capture_update " + args}
}

const timeArgs = "'DateStyle', 'IntervalStyle', 'TimeZone'"

// localArgs are the arguments of the class 'local' (schema 14: date and time
// types that print the same whatever TimeZone).
const localArgs = "'DateStyle', 'IntervalStyle'"

// fiveArgs are the arguments of the class 'five' (schema 13: floats, bytea,
// xml, geometric types).
const fiveArgs = timeArgs + ", 'extra_float_digits', 'bytea_output'"

// sixArgs are the arguments of the class 'six' (schema 12: all of the five's
// types and money; schema 13: money).
const sixArgs = fiveArgs + ", 'lc_monetary'"

// TestOutputClasses: pgundo._output_class reads a table's column types
// through domains, arrays and ranges: 'none' where no output setting changes
// how its rows print, 'local' where only DateStyle and IntervalStyle can
// (date, time, timetz, timestamp, interval; schema 14), 'time' where
// TimeZone can too (timestamptz), 'five' where those and extra_float_digits and bytea_output
// can (floats, bytea, xml, geometric types; schema 13), 'six' where
// lc_monetary can too (money), NULL for anything else (reg* types print by
// search_path; composites and unknown types).
func TestOutputClasses(t *testing.T) {
	t.Parallel()
	_, conn := setup(t)
	execAll(t, conn,
		`CREATE TYPE c_mood AS ENUM ('a', 'b')`,
		`CREATE DOMAIN c_txt AS text`,
		`CREATE DOMAIN c_ts AS timestamptz`,
		`CREATE DOMAIN c_f AS float8`,
		`CREATE DOMAIN c_txts AS c_txt[]`,
		`CREATE TYPE c_pair AS (a int, b text)`,
		`CREATE TABLE c_plain (id int8 PRIMARY KEY, s smallint, i int, n numeric(10,2), t text, v varchar(9), c char(3), q "char", nm name,
			b bool, u uuid, j json, jb jsonb, ip inet, net cidr, m macaddr, m8 macaddr8, bits bit(3), vb varbit, tv tsvector, tq tsquery,
			o oid, e c_mood, d c_txt, arr text[], arr2 int[], darr c_txts, r int4range, rn numrange, r8 int8range)`,
		`CREATE TABLE c_empty ()`,
		`CREATE TABLE c_dropped (id int, f float8)`,
		`ALTER TABLE c_dropped DROP COLUMN f`,
		`CREATE TABLE c_date (id int, d date)`,
		`CREATE TABLE c_times (id int, t time, tz timetz, ts timestamp, tstz timestamptz, iv interval)`,
		`CREATE TABLE c_dom_ts (id int, d c_ts)`,
		`CREATE TABLE c_ts_arr (id int, d timestamptz[])`,
		`CREATE TABLE c_tsrange (id int, r tstzrange)`,
		`CREATE TABLE c_float (id int, f float4)`,
		`CREATE TABLE c_dom_float (id int, f c_f)`,
		`CREATE TABLE c_bytea (id int, b bytea[])`,
		`CREATE TABLE c_money (id int, m money)`,
		`CREATE TABLE c_xml (id int, x xml)`,
		`CREATE TABLE c_composite (id int, p c_pair)`,
		`CREATE TABLE c_regclass (id int, r regclass)`,
		`CREATE TABLE c_reg_arr (id int, f float8, r regtype[])`,
		`CREATE TABLE c_point (id int, p point)`,
		`CREATE TABLE c_mixed (id int, at timestamptz, f float8)`,
		`CREATE DOMAIN c_day AS date`,
		`CREATE TABLE c_local (id int, t time, tz timetz, ts timestamp, iv interval, tr tsrange, dr daterange, da c_day[])`,
		`CREATE TABLE c_local_tz (id int, ts timestamp, tr tstzrange[])`,
		`CREATE TABLE c_local_float (id int, d date, f float8)`,
		`CREATE DOMAIN c_cash AS money`,
		`CREATE TABLE c_money_arr (id int, f float8, m c_cash[])`,
	)
	require.Equal(t, []string{
		"c_bytea five", "c_composite all", "c_date local", "c_dom_float five", "c_dom_ts time", "c_dropped none", "c_empty none",
		"c_float five", "c_local local", "c_local_float five", "c_local_tz time", "c_mixed five", "c_money six", "c_money_arr six",
		"c_plain none", "c_point five", "c_reg_arr all", "c_regclass all", "c_times time", "c_ts_arr time", "c_tsrange time", "c_xml five",
	}, queryStrings(t, conn, `SELECT c.relname || ' ' || coalesce(pgundo._output_class(c.oid), 'all')
		FROM pg_class c WHERE c.relname LIKE 'c\_%' AND c.relkind = 'r' ORDER BY 1`))
}

// TestCaptureArgsFollowTheColumns: track gives the capture triggers the
// settings their table's rows depend on; an ALTER TABLE that changes them
// re-attaches the triggers (on a partitioned table's partitions too, and
// under session_replication_role = replica); every image written under
// hostile output settings in between reads back exactly; without the event
// trigger pgundo_reclass the triggers check everything, and a trigger left
// stale by DDL while it was disabled is reported by status and repaired by
// track.
func TestCaptureArgsFollowTheColumns(t *testing.T) {
	t.Parallel()
	dsn, conn := setup(t)
	execAll(t, conn,
		`CREATE TABLE k (id int PRIMARY KEY, name text)`,
		`CREATE TABLE kp (id int, k int, note text, PRIMARY KEY (id, k)) PARTITION BY LIST (k)`,
		`CREATE TABLE kp1 PARTITION OF kp FOR VALUES IN (1)`)
	track(t, conn, "k", "kp")
	require.Equal(t, argsOf("k", "'none'"), captureArgs(t, conn, "k"))
	require.Equal(t, append(argsOf("kp", "'none'"), argsOf("kp1", "'none'")...), captureArgs(t, conn, "kp%"))

	w := pgtest.Connect(t, dsn)
	execAll(t, w, hostileSettings...)
	// The images, as pgundo reads them back: each must equal the row's text
	// form in pgundo's own output settings.
	logged := func() []string {
		return queryStrings(t, conn, `SELECT st.op::text || ' ' || coalesce(c.old, '') || ' ' || coalesce(c.new, '')
			FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id WHERE st.relid = 'k'::regclass ORDER BY st.id`)
	}
	execAll(t, w, `INSERT INTO k VALUES (1, 'a')`)

	execAll(t, conn, `ALTER TABLE k ADD COLUMN at timestamptz`)
	require.Equal(t, argsOf("k", timeArgs), captureArgs(t, conn, "k"))
	execAll(t, w, `UPDATE k SET at = '2024-05-06 07:08:09.5+02' WHERE id = 1`)

	execAll(t, conn, `ALTER TABLE k ADD COLUMN f float8`)
	require.Equal(t, argsOf("k", fiveArgs), captureArgs(t, conn, "k"))
	execAll(t, w, `UPDATE k SET f = 0.1 WHERE id = 1`)
	execAll(t, conn, `ALTER TABLE k ADD COLUMN m money`)
	require.Equal(t, argsOf("k", sixArgs), captureArgs(t, conn, "k"))
	execAll(t, w, `UPDATE k SET m = 1234.5 WHERE id = 1`)
	execAll(t, conn, `ALTER TABLE k DROP COLUMN m`)
	require.Equal(t, argsOf("k", fiveArgs), captureArgs(t, conn, "k"))

	execAll(t, conn, `SET session_replication_role = replica`, `ALTER TABLE k DROP COLUMN f`, `RESET session_replication_role`)
	require.Equal(t, argsOf("k", timeArgs), captureArgs(t, conn, "k"), "DDL under session_replication_role = replica")
	execAll(t, conn, `ALTER TABLE k DROP COLUMN at`)
	require.Equal(t, argsOf("k", "'none'"), captureArgs(t, conn, "k"))
	execAll(t, w, `UPDATE k SET name = 'b'`, `DELETE FROM k`)
	require.Equal(t, []string{
		"I  (1,a)",
		`U (1,a,) (1,a,"2024-05-06 05:08:09.5+00")`,
		`U (1,a,"2024-05-06 05:08:09.5+00",) (1,a,"2024-05-06 05:08:09.5+00",0.1)`,
		`U (1,a,"2024-05-06 05:08:09.5+00",0.1,) (1,a,"2024-05-06 05:08:09.5+00",0.1,"$1,234.50")`,
		"U (1,a) (1,b)",
		"D (1,b) ",
	}, logged())

	// A partitioned table: the partitions follow their parent.
	execAll(t, conn, `ALTER TABLE kp ADD COLUMN d date`)
	require.Equal(t, append(argsOf("kp", localArgs), argsOf("kp1", localArgs)...), captureArgs(t, conn, "kp%"))
	execAll(t, w, `INSERT INTO kp VALUES (1, 1, 'x', '2024-12-31')`)
	require.Equal(t, []string{"(1,1,x,2024-12-31)"},
		queryStrings(t, conn, `SELECT c.new FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id WHERE st.relid IN ('kp'::regclass, 'kp1'::regclass)`))

	// With the event trigger disabled, DDL leaves the arguments stale:
	// status says so, track repairs them (all six settings checked, since
	// nothing would re-attach them after the next ALTER TABLE).
	execAll(t, conn, `ALTER EVENT TRIGGER pgundo_reclass DISABLE`, `ALTER TABLE k ADD COLUMN b bytea`)
	require.Equal(t, argsOf("k", "'none'"), captureArgs(t, conn, "k"))
	ss, err := triggers.Status(ctxT(t), conn)
	require.NoError(t, err)
	var problems []string
	for _, s := range ss {
		problems = append(problems, s.Problems...)
	}
	stale := " checks fewer output settings than the table's columns depend on (a column was added or retyped while event trigger pgundo_reclass did not fire), so a value could be logged as the writer's DateStyle, TimeZone or similar prints it"
	require.Equal(t, []string{
		"trigger pgundo_capture_delete" + stale, "trigger pgundo_capture_insert" + stale, "trigger pgundo_capture_update" + stale,
	}, problems)
	again := track(t, conn, "k")
	var repaired []string
	for _, tr := range again {
		for _, p := range tr.Repaired {
			repaired = append(repaired, p.Repaired())
		}
	}
	was := " was stale (re-attached with the output settings its columns depend on)"
	require.Equal(t, []string{"pgundo_capture_delete" + was, "pgundo_capture_insert" + was, "pgundo_capture_update" + was}, repaired)
	require.Equal(t, argsOf("k", ""), captureArgs(t, conn, "k"))
	require.Equal(t, wantTriggers("k", "kp", "kp1"), captureTriggers(t, conn))
	execAll(t, w, `INSERT INTO k VALUES (2, 'c', '\x00ff')`)
	require.Equal(t, `I  (2,c,"\\x00ff")`, logged()[6])

	// A table tracked while the event trigger is disabled checks everything.
	execAll(t, conn, `CREATE TABLE k2 (id int PRIMARY KEY)`)
	track(t, conn, "k2")
	require.Equal(t, argsOf("k2", ""), captureArgs(t, conn, "k2"))
	execAll(t, conn, `ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS`, `ALTER TABLE k2 ADD COLUMN n int`)
	require.Equal(t, argsOf("k2", "'none'"), captureArgs(t, conn, "k2"))
	ss, err = triggers.Status(ctxT(t), conn)
	require.NoError(t, err)
	var names []string
	for _, s := range ss {
		require.True(t, s.Healthy(), "%s: %v", s.Name, s.Problems)
		names = append(names, s.Name)
	}
	require.Equal(t, "k k2 kp", strings.Join(names, " "))

	// Five arguments (floats) go stale when a money column (lc_monetary) is
	// added while the event trigger is disabled, and six (money) when a reg*
	// column, which prints by search_path, is.
	problemsOf := func(table string) []string {
		ss, err := triggers.Status(ctxT(t), conn)
		require.NoError(t, err)
		var problems []string
		for _, s := range ss {
			if s.Name == table {
				problems = append(problems, s.Problems...)
			}
		}
		return problems
	}
	allStale := []string{"trigger pgundo_capture_delete" + stale, "trigger pgundo_capture_insert" + stale, "trigger pgundo_capture_update" + stale}
	execAll(t, conn, `CREATE TABLE k3 (id int PRIMARY KEY, f float8)`)
	track(t, conn, "k3")
	require.Equal(t, argsOf("k3", fiveArgs), captureArgs(t, conn, "k3"))
	execAll(t, conn, `ALTER EVENT TRIGGER pgundo_reclass DISABLE`, `ALTER TABLE k3 ADD COLUMN m money`, `ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS`)
	require.Equal(t, argsOf("k3", fiveArgs), captureArgs(t, conn, "k3"))
	require.Equal(t, allStale, problemsOf("k3"))
	track(t, conn, "k3")
	require.Equal(t, argsOf("k3", sixArgs), captureArgs(t, conn, "k3"))
	require.Empty(t, problemsOf("k3"))
	execAll(t, conn, `ALTER EVENT TRIGGER pgundo_reclass DISABLE`, `ALTER TABLE k3 ADD COLUMN r regclass`, `ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS`)
	require.Equal(t, argsOf("k3", sixArgs), captureArgs(t, conn, "k3"))
	require.Equal(t, allStale, problemsOf("k3"))
	track(t, conn, "k3")
	require.Equal(t, argsOf("k3", ""), captureArgs(t, conn, "k3"))
}

// hijackSQL creates schema evil with a function or operator of the same
// name and argument types as each one capture's common path calls, and a
// type text: each raises "hijacked: ...". With evil first in a caller's
// search_path, a name that capture did not qualify would run the caller's
// code as pgundo's owner (capture is SECURITY DEFINER).
var hijackSQL = []string{
	`CREATE SCHEMA evil`,
	`CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: current_setting(text)'; END$$`,
	`CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: current_setting(text, boolean)'; END$$`,
	`CREATE FUNCTION evil.set_config(text, text, boolean) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: set_config'; END$$`,
	`CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: nextval'; END$$`,
	`CREATE FUNCTION evil.currval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: currval'; END$$`,
	`CREATE FUNCTION evil.to_hex(bigint) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: to_hex(bigint)'; END$$`,
	`CREATE FUNCTION evil.to_hex(integer) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: to_hex(integer)'; END$$`,
	`CREATE FUNCTION evil.pg_backend_pid() RETURNS integer LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: pg_backend_pid'; END$$`,
	`CREATE FUNCTION evil.pg_current_xact_id() RETURNS xid8 LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: pg_current_xact_id'; END$$`,
	`CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: statement_timestamp'; END$$`,
	`CREATE FUNCTION evil.tt_bool(text, text) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: a text comparison'; END$$`,
	`CREATE FUNCTION evil.tt_text(text, text) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: ||'; END$$`,
	`CREATE FUNCTION evil.ii_bool(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: an integer comparison'; END$$`,
	`CREATE FUNCTION evil.neg(numeric) RETURNS numeric LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: -numeric'; END$$`,
	`CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tt_bool)`,
	`CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tt_bool)`,
	`CREATE OPERATOR evil.~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tt_bool)`,
	`CREATE OPERATOR evil.!~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tt_bool)`,
	`CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tt_text)`,
	`CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.ii_bool)`,
	`CREATE OPERATOR evil.<> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.ii_bool)`,
	`CREATE OPERATOR evil.- (RIGHTARG = numeric, FUNCTION = evil.neg)`,
	`CREATE FUNCTION evil.bb_bool(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: a bigint comparison'; END$$`,
	`CREATE FUNCTION evil.bi_bool(bigint, integer) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked: a bigint comparison'; END$$`,
	`CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.bb_bool)`,
	`CREATE OPERATOR evil.<> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.bb_bool)`,
	`CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = evil.bi_bool)`,
	`CREATE DOMAIN evil.text AS integer`,
	`GRANT USAGE ON SCHEMA evil TO PUBLIC`,
}

// TestCaptureUnderHostileSearchPath: capture of UPDATE, INSERT and DELETE
// runs with the caller's search_path (no SET clause, for speed): with a
// schema that shadows every function, operator and type its common path
// uses first in that path, one-row and many-row statements on tables of
// each output class, under output settings that make capture pin its own,
// are captured exactly, nothing of the caller's runs, and the caller's
// search_path is as it was after each statement (also when set LOCAL). A
// writer whose only unusual setting is TimeZone takes the path that pins it
// inline with the caller's search_path in force: it too runs none of evil's.
func TestCaptureUnderHostileSearchPath(t *testing.T) {
	t.Parallel()
	dsn, conn := setup(t)
	execAll(t, conn, hijackSQL...)
	execAll(t, conn,
		`CREATE TABLE h_none (id int PRIMARY KEY, v text)`,
		`CREATE TABLE h_time (id int PRIMARY KEY, at timestamptz)`,
		`CREATE TABLE h_all (id int PRIMARY KEY, f float8)`,
		`CREATE TABLE h_money (id int PRIMARY KEY, m money)`,
		`CREATE TABLE h_local (id int PRIMARY KEY, ts timestamp)`)
	track(t, conn, "h_none", "h_time", "h_all", "h_money", "h_local")
	require.Equal(t, argsOf("h_local", localArgs), captureArgs(t, conn, "h_local"))
	require.Equal(t, argsOf("h_all", fiveArgs), captureArgs(t, conn, "h_all"))
	require.Equal(t, argsOf("h_money", sixArgs), captureArgs(t, conn, "h_money"))
	require.Equal(t, argsOf("h_none", "'none'"), captureArgs(t, conn, "h_none"))
	require.Equal(t, argsOf("h_time", timeArgs), captureArgs(t, conn, "h_time"))

	w := pgtest.Connect(t, dsn)
	hostile := `evil, pg_catalog, public`
	execAll(t, w, `SET search_path = `+hostile)
	// The writer's own statements qualify what evil shadows.
	eq := ` OPERATOR(pg_catalog.=) `
	// Three rounds: pgundo's own settings; only TimeZone not UTC (pinned
	// inline, search_path left as the caller's); all of them hostile.
	for _, round := range []struct{ settings []string }{{nil}, {[]string{`SET TimeZone = 'Europe/Berlin'`}}, {hostileSettings}} {
		execAll(t, w, round.settings...)
		execAll(t, w,
			`INSERT INTO h_none VALUES (1, 'a')`, `UPDATE h_none SET v = 'b' WHERE id`+eq+`1`, `DELETE FROM h_none WHERE id`+eq+`1`,
			`INSERT INTO h_none VALUES (1, 'a'), (2, 'b'), (3, 'c')`, `UPDATE h_none SET v = 'x'`, `DELETE FROM h_none`,
			`INSERT INTO h_time VALUES (1, '2024-05-06 07:08:09+00')`, `UPDATE h_time SET at = '2024-12-31 23:00:00+00' WHERE id`+eq+`1`,
			`INSERT INTO h_time VALUES (2, '2024-01-01 00:00:00+00'), (3, NULL)`, `DELETE FROM h_time`,
			`INSERT INTO h_all VALUES (1, 0.1)`, `UPDATE h_all SET f = 0.25`, `INSERT INTO h_all VALUES (2, 1e300), (3, -0.5)`, `DELETE FROM h_all`,
			`INSERT INTO h_money VALUES (1, 12.5)`, `UPDATE h_money SET m = -1234567.5`, `INSERT INTO h_money VALUES (2, 0), (3, 1)`, `DELETE FROM h_money`,
			`INSERT INTO h_local VALUES (1, '2024-05-06 07:08:09')`, `UPDATE h_local SET ts = '2024-12-31 23:00:00.5'`,
			`INSERT INTO h_local VALUES (2, '2024-01-01 00:00:00'), (3, NULL)`, `DELETE FROM h_local`)
		require.Equal(t, hostile, queryOne[string](t, w, `SHOW search_path`))
	}
	execAll(t, w, `BEGIN`, `SET LOCAL search_path = evil, public, pg_catalog`,
		`INSERT INTO h_none VALUES (7, 'tx'), (8, 'tx')`, `UPDATE h_none SET v = 'ty' WHERE id`+eq+`7`)
	require.Equal(t, "evil, public, pg_catalog", queryOne[string](t, w, `SHOW search_path`))
	execAll(t, w, `COMMIT`)
	require.Equal(t, hostile, queryOne[string](t, w, `SHOW search_path`))

	once := []string{
		"h_none I  (1,a)", "h_none U (1,a) (1,b)", "h_none D (1,b) ",
		"h_none I  (1,a)", "h_none I  (2,b)", "h_none I  (3,c)",
		"h_none U (1,a) (1,x)", "h_none U (2,b) (2,x)", "h_none U (3,c) (3,x)",
		"h_none D (1,x) ", "h_none D (2,x) ", "h_none D (3,x) ",
		`h_time I  (1,"2024-05-06 07:08:09+00")`, `h_time U (1,"2024-05-06 07:08:09+00") (1,"2024-12-31 23:00:00+00")`,
		`h_time I  (2,"2024-01-01 00:00:00+00")`, `h_time I  (3,)`,
		`h_time D (1,"2024-12-31 23:00:00+00") `, `h_time D (2,"2024-01-01 00:00:00+00") `, `h_time D (3,) `,
		"h_all I  (1,0.1)", "h_all U (1,0.1) (1,0.25)", "h_all I  (2,1e+300)", "h_all I  (3,-0.5)",
		"h_all D (1,0.25) ", "h_all D (2,1e+300) ", "h_all D (3,-0.5) ",
		`h_money I  (1,$12.50)`, `h_money U (1,$12.50) (1,"-$1,234,567.50")`, `h_money I  (2,$0.00)`, `h_money I  (3,$1.00)`,
		`h_money D (1,"-$1,234,567.50") `, `h_money D (2,$0.00) `, `h_money D (3,$1.00) `,
		`h_local I  (1,"2024-05-06 07:08:09")`, `h_local U (1,"2024-05-06 07:08:09") (1,"2024-12-31 23:00:00.5")`,
		`h_local I  (2,"2024-01-01 00:00:00")`, `h_local I  (3,)`,
		`h_local D (1,"2024-12-31 23:00:00.5") `, `h_local D (2,"2024-01-01 00:00:00") `, `h_local D (3,) `,
	}
	want := append(append(append(append([]string{}, once...), once...), once...),
		"h_none I  (7,tx)", "h_none I  (8,tx)", "h_none U (7,tx) (7,ty)")
	require.Equal(t, want, queryStrings(t, conn, `
		SELECT st.relid::regclass::text || ' ' || st.op::text || ' ' || coalesce(c.old, '') || ' ' || coalesce(c.new, '')
		  FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
		 ORDER BY st.id, c.old, c.new`))
}

// TestCaptureRegTypesUnderWritersSearchPath: a reg* value prints by
// search_path (public.orders is "orders" where public is on the path), so
// capture of a table with one sets pgundo's search_path before writing the
// images, whatever the writer's output settings (schema 12; schema 11 wrote
// "orders" for a writer whose settings were pgundo's own), for one-row and
// many-row statements, and leaves the writer's search_path as it was.
func TestCaptureRegTypesUnderWritersSearchPath(t *testing.T) {
	t.Parallel()
	dsn, conn := setup(t)
	execAll(t, conn, `CREATE TABLE orders (id int)`, `CREATE TABLE regs (id int PRIMARY KEY, r regclass, rs regclass[])`)
	track(t, conn, "regs")
	require.Equal(t, argsOf("regs", ""), captureArgs(t, conn, "regs"))
	for i, settings := range [][]string{
		{`SET search_path = public`},
		{`SET search_path = public`, `SET TimeZone = 'Europe/Berlin'`},
		{`SET search_path = public`, `SET DateStyle = 'SQL, DMY'`},
	} {
		w := pgtest.Connect(t, dsn)
		execAll(t, w, settings...)
		require.Equal(t, "orders", queryOne[string](t, w, `SELECT 'orders'::regclass::text`), "the writer sees the short name")
		id := 10 * (i + 1)
		execAll(t, w, fmt.Sprintf(`INSERT INTO regs VALUES (%d, 'orders', '{orders,regs}')`, id),
			fmt.Sprintf(`UPDATE regs SET rs = '{regs}' WHERE id = %d`, id),
			fmt.Sprintf(`INSERT INTO regs VALUES (%d, 'regs', NULL), (%d, NULL, '{orders}')`, id+1, id+2))
		require.Equal(t, "public", queryOne[string](t, w, `SHOW search_path`))
	}
	var want []string
	for i := 1; i <= 3; i++ {
		want = append(want,
			fmt.Sprintf(`I  (%d,public.orders,"{public.orders,public.regs}")`, 10*i),
			fmt.Sprintf(`U (%d,public.orders,"{public.orders,public.regs}") (%d,public.orders,{public.regs})`, 10*i, 10*i),
			fmt.Sprintf(`I  (%d,public.regs,)`, 10*i+1),
			fmt.Sprintf(`I  (%d,,{public.orders})`, 10*i+2))
	}
	require.Equal(t, want, queryStrings(t, conn, `
		SELECT st.op::text || ' ' || coalesce(c.old, '') || ' ' || coalesce(c.new, '')
		  FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id ORDER BY st.id, c.new`))
}

// TestEventTriggerWarnings: one line per kind of trouble (absent, disabled,
// pgundo_reclass not ALWAYS), each naming what it costs and what restores
// it; none when all are there.
func TestEventTriggerWarnings(t *testing.T) {
	t.Parallel()
	all := map[string]string{"pgundo_ddl": "O", "pgundo_drop": "O", "pgundo_reclass": "A"}
	require.Empty(t, triggers.EventTriggerWarnings(all))
	require.Equal(t, []string{
		"event triggers absent (pgundo_ddl): partitions created from now on are not captured until pgundo track runs again on their parent; pgundo install run as a superuser creates them",
		"event triggers disabled (pgundo_drop): a dropped tracked table stays in the tracked list until pgundo untrack; as a superuser, ALTER EVENT TRIGGER ... ENABLE re-enables each",
		"event trigger pgundo_reclass not enabled ALWAYS: tables tracked or altered from now on get the check of every output setting (about 60% more CPU per captured statement); as a superuser, ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS restores it",
	}, triggers.EventTriggerWarnings(map[string]string{"pgundo_ddl": "", "pgundo_drop": "D", "pgundo_reclass": "O"}))
	require.Equal(t, []string{
		"event triggers absent (pgundo_ddl, pgundo_drop): partitions created from now on are not captured until pgundo track runs again on their parent; a dropped tracked table stays in the tracked list until pgundo untrack; pgundo install run as a superuser creates them",
		"event trigger pgundo_reclass absent: capture checks every output setting on every table (about 60% more CPU per captured statement); pgundo install run as a superuser creates it",
	}, triggers.EventTriggerWarnings(map[string]string{}))
}

// TestCaptureEachSettingAlone: a writer whose output settings are pgundo's
// but one (each of DateStyle, IntervalStyle, TimeZone, extra_float_digits
// and bytea_output in turn) writes tables of class local, time, five and six,
// one-row and two-row statements: every image is the row's text form in
// pgundo's settings. (hostileSettings changes them all at once, so a check
// that missed one setting would still pin it through another; lc_monetary
// cannot be varied on a machine with only C locales.)
func TestCaptureEachSettingAlone(t *testing.T) {
	t.Parallel()
	dsn, conn := setup(t)
	execAll(t, conn,
		`CREATE TABLE s_time (id int PRIMARY KEY, at timestamptz, d date, iv interval)`,
		`CREATE TABLE s_five (id int PRIMARY KEY, f float8, b bytea, at timestamptz, iv interval)`,
		`CREATE TABLE s_six (id int PRIMARY KEY, m money, f float8, b bytea, at timestamptz, iv interval)`,
		`CREATE TABLE s_local (id int PRIMARY KEY, d date, ts timestamp, tz timetz, iv interval, tr tsrange)`)
	track(t, conn, "s_time", "s_five", "s_six", "s_local")
	require.Equal(t, argsOf("s_local", localArgs), captureArgs(t, conn, "s_local"))
	require.Equal(t, argsOf("s_five", fiveArgs), captureArgs(t, conn, "s_five"))
	require.Equal(t, argsOf("s_six", sixArgs), captureArgs(t, conn, "s_six"))
	require.Equal(t, argsOf("s_time", timeArgs), captureArgs(t, conn, "s_time"))
	vals := map[string]string{
		"s_time": `'2024-05-06 07:08:09.5+00', '2024-12-31', '1 day 02:03:04.5'`,
		"s_five": `0.1::float8 + 0.2::float8, '\x00ff', '2024-05-06 07:08:09.5+00', '-1 mon 2 days'`,
		"s_six":  `1234.5, 1::float8 / 3, '\x7f', '1999-01-08 04:05:06+00', '3 hours'`,
		// timetz without an offset takes the writer's TimeZone as it is
		// stored, and prints the offset it stored: the image must match.
		"s_local": `'2024-12-31', '2024-05-06 07:08:09.5', '12:00:00', '1 day 02:03:04.5', '[2024-01-01 00:00,2024-01-02 00:00)'`,
	}
	for w, set := range []string{`SET DateStyle = 'SQL, DMY'`, `SET IntervalStyle = 'sql_standard'`, `SET TimeZone = 'Asia/Kathmandu'`,
		`SET extra_float_digits = 0`, `SET bytea_output = 'escape'`} {
		wc := pgtest.Connect(t, dsn)
		execAll(t, wc, captureSettings...)
		execAll(t, wc, set)
		for _, table := range []string{"s_time", "s_five", "s_six", "s_local"} {
			id := 10 * (w + 1)
			execAll(t, wc,
				fmt.Sprintf(`INSERT INTO %s VALUES (%d, %s)`, table, id, vals[table]),
				fmt.Sprintf(`INSERT INTO %s VALUES (%d, %s), (%d, %s)`, table, id+1, vals[table], id+2, vals[table]),
				fmt.Sprintf(`UPDATE %s SET id = id WHERE id = %d`, table, id))
		}
	}
	execAll(t, conn, captureSettings...)
	// Every image equals its row's text form now, in pgundo's settings
	// (the UPDATE changed nothing); rows found by the id an image starts with.
	require.Equal(t, []string{}, queryStrings(t, conn, `
		SELECT st.table_name || ' ' || st.op::text || ' ' || coalesce(c.old, '-') || ' ' || coalesce(c.new, '-') || ' <> ' || coalesce(r.img, 'no row')
		  FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
		  LEFT JOIN LATERAL (
		       SELECT ROW(t.*)::text AS img, t.id FROM s_time t WHERE st.table_name = 's_time'
		       UNION ALL SELECT ROW(t.*)::text, t.id FROM s_five t WHERE st.table_name = 's_five'
		       UNION ALL SELECT ROW(t.*)::text, t.id FROM s_six t WHERE st.table_name = 's_six'
		       UNION ALL SELECT ROW(t.*)::text, t.id FROM s_local t WHERE st.table_name = 's_local') r
		    ON r.id = split_part(ltrim(coalesce(c.new, c.old), '('), ',', 1)::int
		 WHERE (st.op = 'U' AND c.old IS DISTINCT FROM r.img) OR c.new IS DISTINCT FROM r.img`))
	require.Equal(t, 5*4*(1+2+1), queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.change`))
}
