package cli_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// connectAs connects to url's database as role.
// newRole creates a login role named prefix and the end of the test
// database's name, dropped (with what it owns) after the test.
func newRole(t *testing.T, url string, conn *pgx.Conn, prefix string) string {
	t.Helper()
	role := prefix + conn.Config().Database[len(conn.Config().Database)-8:]
	pgtest.Exec(t, conn, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), url)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
			c.Close(context.Background())
		}
	})
	return role
}

func connectAs(t *testing.T, url, role string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.User = role
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestGrantAuditor(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text, j jsonb)`)
	ctx := context.Background()
	role := newRole(t, url, conn, "auditor_")
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	w := pgtest.Connect(t, withApp(url, "shop"))
	pgtest.Exec(t, w, "SET pgundo.tag = 't-1'")
	pgtest.Exec(t, w, `INSERT INTO a VALUES (1, 'x', '{"n": 1}')`)
	pgtest.Exec(t, w, "UPDATE a SET id = 2, v = NULL WHERE id = 1")
	sid := sessionID(t, w)

	r := run(t, url, "grant", "auditor", role, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var g map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &g))
	require.Equal(t, []any{"pgundo.changes", "pgundo.row_history", "pgundo.sessions", "pgundo.session_totals", "pgundo.statements"}, g["select_on"])

	aud := connectAs(t, url, role)
	// The views.
	rows, err := aud.Query(ctx, `SELECT op, schema_name, table_name, session_id, login_user, role, application_name, tag, old, new,
		old_data::text, new_data::text FROM pgundo.changes ORDER BY stmt_id`)
	require.NoError(t, err)
	type change struct {
		Op, Schema, Table, Session, Login, Role, App string
		Tag                                          *string
		Old, New, OldData, NewData                   *string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (change, error) {
		var c change
		return c, r.Scan(&c.Op, &c.Schema, &c.Table, &c.Session, &c.Login, &c.Role, &c.App, &c.Tag, &c.Old, &c.New, &c.OldData, &c.NewData)
	})
	require.NoError(t, err)
	s := func(v string) *string { return &v }
	require.Equal(t, []change{
		{"INSERT", "public", "a", sid, "postgres", "postgres", "shop", s("t-1"), nil, s(`(1,x,"{""n"": 1}")`), nil, s(`{"j": {"n": 1}, "v": "x", "id": 1}`)},
		{"UPDATE", "public", "a", sid, "postgres", "postgres", "shop", s("t-1"), s(`(1,x,"{""n"": 1}")`), s(`(2,,"{""n"": 1}")`),
			s(`{"j": {"n": 1}, "v": "x", "id": 1}`), s(`{"j": {"n": 1}, "v": null, "id": 2}`)},
	}, got)

	var n int64
	require.NoError(t, aud.QueryRow(ctx, "SELECT pgundo.refresh_history()").Scan(&n))
	require.EqualValues(t, 3, n) // id 1 inserted; the update moves it from 1 to 2
	rows, err = aud.Query(ctx, `SELECT key || '|' || coalesce(previous_key, '-') || '|' || coalesce(next_key, '-') || '|' || op
		FROM pgundo.row_history WHERE relid = 'public.a'::regclass ORDER BY stmt_id, key`)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"1|-|-|INSERT", "1|-|2|UPDATE", "2|1|-|UPDATE"}, lines)
	var sess string
	var changes int64
	var tables []string
	require.NoError(t, aud.QueryRow(ctx, "SELECT id, changes, tables FROM pgundo.sessions").Scan(&sess, &changes, &tables))
	require.Equal(t, sid, sess)
	require.EqualValues(t, 2, changes)
	require.Equal(t, []string{"public.a"}, tables)
	var stmts, xacts int64
	var tags []string
	require.NoError(t, aud.QueryRow(ctx, "SELECT id, statements, changes, transactions, tables, tags FROM pgundo.session_totals").Scan(&sess, &stmts, &changes, &xacts, &tables, &tags))
	require.Equal(t, sid, sess)
	require.EqualValues(t, []int64{2, 2, 2}, []int64{stmts, changes, xacts})
	require.Equal(t, []string{"public.a"}, tables)
	require.Equal(t, []string{"t-1"}, tags)
	require.NoError(t, aud.QueryRow(ctx, "SELECT pgundo.refresh_summaries()").Scan(&n))
	rows, err = aud.Query(ctx, `SELECT op || ' ' || table_name || ' ' || rows FROM pgundo.statements WHERE session_id = $1 ORDER BY stmt_id`, sid)
	require.NoError(t, err)
	lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"INSERT a 1", "UPDATE a 1"}, lines)

	// Nothing else: the log's tables, writes through the views, pgundo's
	// functions, DDL in schema pgundo, the application's tables.
	for _, q := range []string{
		"SELECT * FROM pgundo.change",
		"SELECT * FROM pgundo.stmt",
		"SELECT * FROM pgundo.session",
		"SELECT * FROM pgundo.hist_key",
		"SELECT * FROM pgundo.sum_session",
		"SELECT * FROM pgundo.size_sample",
		"SELECT pgundo.sample_size()",
		"INSERT INTO pgundo.change (stmt_id, old) VALUES (1, '(9,x,)')",
		"UPDATE pgundo.stmt SET tag = 'forged'",
		"DELETE FROM pgundo.session",
		"TRUNCATE pgundo.change_log",
		"SELECT * FROM pgundo.journal",
		"DELETE FROM pgundo.journal",
		"INSERT INTO pgundo.changes (stmt_id) VALUES (1)",
		"UPDATE pgundo.changes SET tag = 'forged'",
		"DELETE FROM pgundo.row_history",
		"SELECT pgundo.track('a'::regclass)",
		"SELECT pgundo._hist_index('a'::regclass::oid, ARRAY[1::bigint])",
		"SELECT pgundo._hist_forget(100)",
		"SELECT * FROM pgundo._hist_entries('a'::regclass::oid, ARRAY[1::bigint])",
		"CREATE TABLE pgundo.mine (x int)",
		"SELECT * FROM a",
		"UPDATE a SET v = 'y'",
	} {
		_, err := aud.Exec(ctx, q)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, q)
		// 42501: permission denied; 55000: the view cannot be written at all.
		require.Contains(t, []string{"42501", "55000"}, pe.Code, "%s: %s", q, pe.Message)
	}

	// Revoke takes it back.
	r = run(t, url, "grant", "auditor", role, "--revoke")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `REVOKE SELECT ON pgundo.changes FROM "`+role+`";`)
	_, err = aud.Exec(ctx, "SELECT * FROM pgundo.changes")
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "42501", pe.Code)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"grant", "auditor", "no_such_role_x"}, `role "no_such_role_x" does not exist; create it first`},
		{[]string{"grant", "admin", role}, `unknown grant "admin"`},
		{[]string{"grant", "auditor"}, "usage: pgundo grant auditor ROLE"},
	} {
		r := run(t, url, c.args...)
		require.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want)
	}
}
