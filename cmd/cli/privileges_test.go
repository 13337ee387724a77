package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
)

// asRole returns connString (URL or keyword/value) logging in as role.
func asRole(t *testing.T, connString, role string) string {
	t.Helper()
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		require.NoError(t, err)
		u.User = url.User(role)
		return u.String()
	}
	return connString + " user=" + role
}

// newRoles creates login roles with unique names (roles are cluster-wide)
// and drops them, with what they own in the test database, when the test
// ends.
func newRoles(t *testing.T, conn *pgx.Conn, prefixes ...string) []string {
	t.Helper()
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	var names []string
	for _, p := range prefixes {
		n := p + "_" + hex.EncodeToString(b)
		pgtest.Exec(t, conn, "CREATE ROLE "+n+" LOGIN")
		names = append(names, n)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		list := strings.Join(names, ", ")
		_, _ = conn.Exec(ctx, "REASSIGN OWNED BY "+list+" TO CURRENT_USER")
		_, _ = conn.Exec(ctx, "DROP OWNED BY "+list)
		_, _ = conn.Exec(ctx, "DROP ROLE "+list)
	})
	return names
}

// TestInstallAsNonSuperuser: a database owner without pg_read_all_stats is
// refused at install with the grant to run (capture derives session ids from
// connection start times it could not read); with the grant, another role's
// writes are captured under that role's real session id; and if the grant is
// revoked later, capture falls back to an id of its own rather than failing
// the application's writes.
func TestInstallAsNonSuperuser(t *testing.T) {
	t.Parallel()
	url, admin := setup(t, "")
	roles := newRoles(t, admin, "app", "clerk")
	app, clerk := roles[0], roles[1]
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s`,
		pgx.Identifier{admin.Config().Database}.Sanitize(), app))
	appURL, clerkURL := asRole(t, url, app), asRole(t, url, clerk)

	r := run(t, appURL, "install")
	require.Equal(t, cli.ExitError, r.code, r.stderr)
	require.Contains(t, r.stderr, "GRANT pg_read_all_stats TO "+app)
	require.Contains(t, r.stderr, "nothing was installed")
	require.False(t, privScalar[bool](t, admin, `SELECT to_regnamespace('pgundo') IS NOT NULL`), "schema pgundo after a refused install")

	pgtest.Exec(t, admin, "GRANT pg_read_all_stats TO "+app)
	r = run(t, appURL, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	appConn := pgtest.Connect(t, appURL)
	pgtest.Exec(t, appConn, fmt.Sprintf(`CREATE SCHEMA s; CREATE TABLE s.doc (id int PRIMARY KEY, body text);
		INSERT INTO s.doc VALUES (1, 'a'), (2, 'b');
		GRANT USAGE ON SCHEMA s TO %[1]s; GRANT SELECT, UPDATE ON s.doc TO %[1]s`, clerk))
	r = run(t, appURL, "track", "s.doc")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)

	clerkConn := pgtest.Connect(t, clerkURL)
	pgtest.Exec(t, clerkConn, `UPDATE s.doc SET body = 'A' WHERE id = 1`)
	own := privScalar[string](t, clerkConn, `SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()`)
	require.Equal(t, []string{own + " " + clerk}, privStrings(t, admin, `SELECT session_id || ' ' || role FROM pgundo.stmt`))

	// The clerk, who writes tracked tables, cannot read or write the log,
	// nor call the functions that write it, nor forge entries with a trigger
	// of its own calling pgundo's capture function.
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON SCHEMA s TO %s`, clerk))
	pgtest.Exec(t, clerkConn, `CREATE TABLE s.mine (id int)`)
	for _, q := range []string{
		`INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role) VALUES (1, 'x', '1', now(), 'I', 1, 's', 't', 1, 'x')`,
		`INSERT INTO pgundo.change_log (stmt_id, new) VALUES (1, '(1,x)')`,
		`INSERT INTO pgundo.journal (id, session_id, xid, at, op, relid, schema_name, table_name, role, new) VALUES (1, 'x', '1', now(), 'I', 1, 's', 't', 'x', '(1,x)')`,
		`UPDATE pgundo.change_log SET new = NULL`,
		`UPDATE pgundo.journal SET new = NULL`,
		`DELETE FROM pgundo.change_log`,
		`DELETE FROM pgundo.journal`,
		`TRUNCATE pgundo.change_log`,
		`TRUNCATE pgundo.journal`,
		`TRUNCATE pgundo.stmt_c0`,
		`SELECT count(*) FROM pgundo.change`,
		`SELECT count(*) FROM pgundo.stmt`,
		`SELECT count(*) FROM pgundo.journal`,
		`SELECT count(*) FROM pgundo.session`,
		`SELECT pgundo.fold()`,
		`SELECT pgundo._session()`,
		`SELECT pgundo._stmt(1, 'I', 1, 's', 't', 1)`,
		`SELECT pgundo.seal()`,
		`SELECT * FROM pgundo.prune(now())`,
		`SELECT pgundo.rotate()`,
		`CREATE TRIGGER forge AFTER INSERT ON s.mine REFERENCING NEW TABLE AS pgundo_new FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_insert()`,
	} {
		_, err := clerkConn.Exec(context.Background(), q)
		require.ErrorContains(t, err, "permission denied", q)
	}

	// Granted as an auditor, a role reads the views and still writes nothing.
	r = run(t, appURL, "grant", "auditor", clerk)
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, "1", privScalar[string](t, clerkConn, `SELECT count(*)::text FROM pgundo.changes`))
	_, err := clerkConn.Exec(context.Background(), `DELETE FROM pgundo.change_log`)
	require.ErrorContains(t, err, "permission denied")

	pgtest.Exec(t, admin, "REVOKE pg_read_all_stats FROM "+app)
	clerk2 := pgtest.Connect(t, clerkURL)
	pgtest.Exec(t, clerk2, `UPDATE s.doc SET body = 'B' WHERE id = 2`)
	pgtest.Exec(t, clerk2, `UPDATE s.doc SET body = 'BB' WHERE id = 2`)
	pid := privScalar[string](t, clerk2, `SELECT to_hex(pg_backend_pid())`)
	ids := privStrings(t, admin, `SELECT DISTINCT session_id FROM pgundo.stmt WHERE session_id <> $1`, own)
	require.Len(t, ids, 1, "one fallback session id for the second connection's two statements")
	require.True(t, strings.HasSuffix(ids[0], "."+pid), "fallback id %s ends with the pid", ids[0])
	require.Equal(t, []string{"(1,A)", "(2,BB)"}, tableText(t, admin, "s.doc"))
}

func privScalar[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, conn.QueryRow(context.Background(), sql, args...).Scan(&v), sql)
	return v
}

func privStrings(t *testing.T, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	require.NoError(t, err, sql)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err, sql)
	return out
}

// TestEventTriggersAddedLater: pgundo installed by a role that may not
// create event triggers works without them (every capture trigger checks
// every output setting, status says what that costs and how to fix it, and
// install run again by that role warns); install run later by a superuser
// creates them exactly as a superuser's install does, and attaches every
// tracked table's and partition's capture again with the settings its
// columns depend on; run again, it changes nothing.
func TestEventTriggersAddedLater(t *testing.T) {
	t.Parallel()
	url, admin := setup(t, "")
	app := newRoles(t, admin, "owner")[0]
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s; GRANT pg_read_all_stats TO %[2]s; GRANT CREATE ON SCHEMA public TO %[2]s`,
		pgx.Identifier{admin.Config().Database}.Sanitize(), app))
	appURL := asRole(t, url, app)
	r := run(t, appURL, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "could not create event trigger pgundo_reclass")
	appConn := pgtest.Connect(t, appURL)
	pgtest.Exec(t, appConn, `CREATE TABLE n (id int PRIMARY KEY, v text);
		CREATE TABLE tm (id int PRIMARY KEY, at timestamptz);
		CREATE TABLE fl (id int PRIMARY KEY, x float8);
		CREATE TABLE pt (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
		CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1)`)
	r = run(t, appURL, "track", "n", "tm", "fl", "pt")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	args := func() []string {
		return privStrings(t, admin, `SELECT tgrelid::regclass::text || ' ' || substring(pg_get_triggerdef(oid) from 'EXECUTE FUNCTION pgundo\.\w+\((.*)\)$')
			FROM pg_trigger WHERE tgname = 'pgundo_capture_update' ORDER BY 1`)
	}
	require.Equal(t, []string{"fl ", "n ", "pt ", "pt1 ", "tm "}, args(), "no event trigger: every table checks everything")
	eventTriggers := func(conn *pgx.Conn) []string {
		return privStrings(t, conn, `SELECT concat_ws(' ', evtname, evtevent, evtfoid::regprocedure::text, evttags::text, evtenabled)
			FROM pg_event_trigger WHERE evtname LIKE 'pgundo%' ORDER BY 1`)
	}
	require.Empty(t, eventTriggers(admin))

	r = run(t, appURL, "status")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "event triggers absent (pgundo_ddl, pgundo_drop): partitions created from now on are not captured until pgundo track runs again on their parent; a dropped tracked table stays in the tracked list until pgundo untrack; pgundo install run as a superuser creates them\n")
	require.Contains(t, r.stdout, "event trigger pgundo_reclass absent: capture checks every output setting on every table (about 60% more CPU per captured statement); pgundo install run as a superuser creates it\n")
	r = run(t, appURL, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "is up to date")
	require.Contains(t, r.stderr, "pgundo: warning: could not create event triggers pgundo_ddl, pgundo_drop, pgundo_reclass (permission denied")
	require.Contains(t, r.stderr, "): partitions created from now on are not captured until pgundo track runs again on their parent; a dropped tracked table stays in the tracked list until pgundo untrack; capture checks every output setting on every table (about 60% more CPU per captured statement); run pgundo install as a superuser to create them\n")
	require.Empty(t, eventTriggers(admin))

	// A partition created meanwhile gets no capture (no pgundo_ddl).
	pgtest.Exec(t, appConn, `CREATE TABLE pt2 PARTITION OF pt FOR VALUES IN (2)`)
	require.Zero(t, privScalar[int64](t, admin, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pt2'::regclass`))

	r = run(t, url, "install", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
	require.Equal(t, []any{"pgundo_ddl", "pgundo_drop", "pgundo_reclass"}, out["event_triggers_created"])
	require.EqualValues(t, 1, out["partitions_attached"], "pt2")
	require.EqualValues(t, 4, out["reattached"], "n, tm, fl and pt (its partitions follow it)")
	require.Equal(t, false, out["changed"])
	five := "'DateStyle', 'IntervalStyle', 'TimeZone', 'extra_float_digits', 'bytea_output'"
	require.Equal(t, []string{"fl " + five, "n 'none'", "pt 'none'", "pt1 'none'", "pt2 'none'", "tm 'DateStyle', 'IntervalStyle', 'TimeZone'"}, args())
	pgtest.Exec(t, appConn, `INSERT INTO pt2 VALUES (1, 2)`) // addressed to the partition: its own capture
	require.Equal(t, []string{"pt2 I (1,2)"}, privStrings(t, admin, `SELECT st.table_name || ' ' || st.op::text || ' ' || c.new FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id`))

	// As a superuser's install creates them.
	url2, admin2 := setup(t, "")
	r = run(t, url2, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Len(t, eventTriggers(admin2), 3)
	require.Equal(t, eventTriggers(admin2), eventTriggers(admin))

	r = run(t, url, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("pgundo is up to date in database %s (schema version %d); nothing to do\n", admin.Config().Database, pgsql.Latest()), r.stdout)
	r = run(t, appURL, "status", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r.stdout)
	require.Equal(t, true, st["event_triggers"])
	require.Equal(t, true, st["reclass_trigger"])
	// A column retyped now re-attaches capture by itself.
	pgtest.Exec(t, appConn, `ALTER TABLE n ADD COLUMN at date`)
	require.Equal(t, "n 'DateStyle', 'IntervalStyle'", args()[1]) // a date prints the same whatever TimeZone (class local)

	// In text: what was created, and what was attached again.
	pgtest.Exec(t, admin, `DROP EVENT TRIGGER pgundo_ddl; DROP EVENT TRIGGER pgundo_reclass`)
	pgtest.Exec(t, appConn, `ALTER TABLE fl DROP COLUMN x`) // unseen: fl's capture still checks five settings where none matter
	r = run(t, url, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("pgundo is up to date in database %s (schema version %d); nothing to do\n", admin.Config().Database, pgsql.Latest())+
		"created event triggers pgundo_ddl, pgundo_reclass\n"+
		"capture on 1 tracked table (and partitions) now checks only the output settings their columns depend on\n", r.stdout)
	require.Equal(t, "fl 'none'", args()[0])
	require.Equal(t, eventTriggers(admin2), eventTriggers(admin))

	// A table busy past the lock timeout keeps its triggers, and is named.
	pgtest.Exec(t, admin, `DROP EVENT TRIGGER pgundo_reclass`)
	pgtest.Exec(t, appConn, `ALTER TABLE fl ADD COLUMN y float4`) // unseen: fl stays 'none' (stale)
	holder := pgtest.Connect(t, appURL)
	pgtest.Exec(t, holder, `BEGIN; SELECT count(*) FROM fl`)
	r = run(t, url, "install")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, fmt.Sprintf("pgundo is up to date in database %s (schema version %d); nothing to do\n", admin.Config().Database, pgsql.Latest())+
		"created event triggers pgundo_reclass\n", r.stdout)
	require.Equal(t, "pgundo: warning: capture on public.fl was not brought up to date (canceling statement due to lock timeout); run pgundo track public.fl as a role that owns it\n", r.stderr)
	require.Equal(t, "fl 'none'", args()[0])
	pgtest.Exec(t, holder, `COMMIT`)
	r = run(t, url, "track", "fl")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Equal(t, "fl "+five, args()[0])

	// A tracked table that pgundo's owner does not own: an ALTER TABLE after
	// which capture must check more settings is refused, saying what to do;
	// one that needs no change, or leaves capture checking more than
	// needed, passes.
	other := newRoles(t, admin, "other")[0]
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON SCHEMA public TO %s`, other))
	otherConn := pgtest.Connect(t, asRole(t, url, other))
	pgtest.Exec(t, otherConn, `CREATE TABLE theirs (id int PRIMARY KEY, f float8)`)
	r = run(t, url, "track", "theirs")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	theirs := func() string {
		return privScalar[string](t, admin, `SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'theirs'::regclass AND tgname = 'pgundo_capture_update'`)
	}
	require.Contains(t, theirs(), "capture_update("+five+")")
	pgtest.Exec(t, otherConn, `ALTER TABLE theirs ADD COLUMN note text`)
	_, err := otherConn.Exec(context.Background(), `ALTER TABLE theirs ADD COLUMN m money`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	// (PostgreSQL's own reason, in brackets, is worded differently by version.)
	require.Contains(t, pgErr.Message, "pgundo: capture on public.theirs must check more output settings for its new column types, and pgundo's owner "+app+" may not attach it again (must be owner of ")
	require.Equal(t, fmt.Sprintf("Grant the table's owner to pgundo's owner (GRANT %s TO %s), then run the ALTER TABLE again; or stop capturing it first (pgundo untrack public.theirs).", other, app), pgErr.Hint)
	require.Equal(t, []string{"(id,integer)", "(f,\"double precision\")", "(note,text)"}, privStrings(t, admin, `SELECT ROW(attname, format_type(atttypid, atttypmod))::text FROM pg_attribute WHERE attrelid = 'theirs'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`), "the refused ALTER TABLE changed nothing")
	pgtest.Exec(t, otherConn, `ALTER TABLE theirs DROP COLUMN f`)
	require.Contains(t, theirs(), "capture_update("+five+")", "five settings still cover the columns left")
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT %s TO %s`, other, app))
	pgtest.Exec(t, otherConn, `ALTER TABLE theirs ADD COLUMN m money`)
	require.Contains(t, theirs(), "capture_update("+five+", 'lc_monetary')")
}
