package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

type result struct {
	code           int
	stdout, stderr string
}

// run runs pgundo in-process against url with no terminal on stdin.
func run(t *testing.T, url string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--database-url", url}, args...)
	code := cli.Run(context.Background(), full, strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func setup(t *testing.T, sql string) (string, *pgx.Conn) {
	t.Helper()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	if sql != "" {
		pgtest.Exec(t, conn, sql)
	}
	return url, conn
}

// withApp sets application_name in a URL or keyword/value conn string.
func withApp(conn, app string) string {
	switch {
	case strings.HasPrefix(conn, "postgres") && strings.Contains(conn, "?"):
		return conn + "&application_name=" + app
	case strings.HasPrefix(conn, "postgres"):
		return conn + "?application_name=" + app
	}
	return conn + " application_name=" + app
}

func tableText(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), fmt.Sprintf("SELECT x::text FROM %s x ORDER BY 1", table))
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func TestNoServer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now
	r := run(t, fmt.Sprintf("postgres://nobody@127.0.0.1:%d/shop?connect_timeout=5", port), "status")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, fmt.Sprintf("cannot connect to PostgreSQL at 127.0.0.1:%d", port))
	require.Contains(t, r.stderr, "check that the server is running")
	require.Empty(t, r.stdout)
}

func TestNotInstalled(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY)")
	for _, args := range [][]string{{"status"}, {"track", "a"}, {"sessions"}, {"show", "x.1"}, {"undo", "x.1", "--yes"}} {
		r := run(t, url, args...)
		require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "pgundo is not installed in this database; run pgundo install", args)
	}
	// Nothing was created by the failed commands.
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'a'::regclass").Scan(&n))
	require.Zero(t, n)
	r := run(t, url, "uninstall", "--yes")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "nothing to uninstall")
}

func TestInstallIdempotentAndUninstall(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	r := run(t, url, "install", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var ir map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ir))
	require.Equal(t, true, ir["changed"])
	require.EqualValues(t, 0, ir["from_version"])

	r = run(t, url, "install", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ir))
	require.Equal(t, false, ir["changed"], "second install must be a no-op")

	require.Equal(t, 0, run(t, url, "track", "a").code)
	pgtest.Exec(t, conn, "INSERT INTO a VALUES (1, 'x')")

	r = run(t, url, "uninstall")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "run again with --yes")
	var exists bool
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT to_regnamespace('pgundo') IS NOT NULL").Scan(&exists))
	require.True(t, exists, "uninstall without --yes must change nothing")

	r = run(t, url, "uninstall", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT to_regnamespace('pgundo') IS NOT NULL").Scan(&exists))
	require.False(t, exists)
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgundo%'").Scan(&n))
	require.Zero(t, n, "capture triggers must be gone")
	pgtest.Exec(t, conn, "INSERT INTO a VALUES (2, 'y')") // writes still work
	require.Equal(t, []string{"(1,x)", "(2,y)"}, tableText(t, conn, "a"))
}

func TestTrackBadInput(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE VIEW v AS SELECT 1 AS x;
		CREATE TABLE p (id int) PARTITION BY LIST (id); CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);`)
	require.Equal(t, 0, run(t, url, "install").code)
	r := run(t, url, "track", "a", "v", "p1", "nope", `"unterminated`, "pgundo.change")
	require.Equal(t, 2, r.code, r.stderr)
	for _, want := range []string{"nothing was changed", "v: public.v is a view", "p1: public.p1 is a partition of public.p",
		"nope: no such table", `"unterminated: not a valid table name`, "pgundo.change: pgundo.change is one of pgundo's own tables"} {
		require.Contains(t, r.stderr, want)
	}
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pgundo.tracked").Scan(&n))
	require.Zero(t, n, "a refused list tracks nothing")

	r = run(t, url, "track")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "name at least one table")
	r = run(t, url, "untrack", "a")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "a: not tracked")
	r = run(t, url, "track", "--schema", "nosuch")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `schema "nosuch" does not exist`)
	r = run(t, url, "sessions", "--table", "nope")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "table nope: no such table")
	r = run(t, url, "sessions", "--since", "last tuesday")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `cannot read time "last tuesday"`)
	r = run(t, url, "frobnicate")
	require.Equal(t, 2, r.code)
	r = run(t, url, "status", "--bogus")
	require.Equal(t, 2, r.code)
}

func TestOddIdentifiersThroughCLI(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE SCHEMA "Billing Ops"; CREATE TABLE "Billing Ops"."Order ""Items""" ("Line No" int PRIMARY KEY, "ünï" text);`)
	require.Equal(t, 0, run(t, url, "install").code)
	r := run(t, url, "track", `"Billing Ops"."Order ""Items"""`, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"qualified_name": "\"Billing Ops\".\"Order \"\"Items\"\"\""`)
	pgtest.Exec(t, conn, `INSERT INTO "Billing Ops"."Order ""Items""" VALUES (1, 'ça')`)
	r = run(t, url, "sessions", "--table", `"Billing Ops"."Order ""Items"""`, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var ss []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 1)
	require.Equal(t, []any{`"Billing Ops"."Order ""Items"""`}, ss[0]["tables"])
	r = run(t, url, "status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"Billing Ops"."Order ""Items"""`)
}

// TestSessionsJSONAndFilters checks the fields PRODUCT.md names and each
// filter, with two sessions of known content.
func TestSessionsJSONAndFilters(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY)")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a", "b").code)
	ctx := context.Background()
	c1 := pgtest.Connect(t, withApp(url, "app-one"))
	pgtest.Exec(t, c1, "SET pgundo.tag = 'ticket-1'")
	pgtest.Exec(t, c1, "INSERT INTO a SELECT i, 'v' FROM generate_series(1, 3) i")
	pgtest.Exec(t, c1, "UPDATE a SET v = 'w' WHERE id = 1")
	c2 := pgtest.Connect(t, withApp(url, "app-two"))
	pgtest.Exec(t, c2, "INSERT INTO b VALUES (1)")
	var id1, id2 string
	q := "SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()"
	require.NoError(t, c1.QueryRow(ctx, q).Scan(&id1))
	require.NoError(t, c2.QueryRow(ctx, q).Scan(&id2))

	sessions := func(args ...string) []map[string]any {
		r := run(t, url, append([]string{"sessions", "--json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var ss []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
		return ss
	}
	all := sessions()
	require.Len(t, all, 2)
	require.Equal(t, id2, all[0]["id"], "newest first")
	require.Equal(t, id1, all[1]["id"])
	s1 := all[1]
	for _, k := range []string{"id", "application_name", "user", "started_at", "changes", "tables", "undo_of", "undone_by"} {
		require.Contains(t, s1, k)
	}
	require.Equal(t, "app-one", s1["application_name"])
	require.Equal(t, "postgres", s1["user"])
	require.EqualValues(t, 4, s1["changes"])
	require.Equal(t, []any{"public.a"}, s1["tables"])
	require.Equal(t, []any{"ticket-1"}, s1["tags"])
	require.Nil(t, s1["undo_of"])
	require.Nil(t, s1["undone_by"])

	ids := func(ss []map[string]any) []any {
		out := []any{}
		for _, s := range ss {
			out = append(out, s["id"])
		}
		return out
	}
	require.Equal(t, []any{id1}, ids(sessions("--app", "app-one")))
	require.Equal(t, []any{id1}, ids(sessions("--tag", "ticket-1")))
	require.Equal(t, []any{id2}, ids(sessions("--table", "b")))
	require.Equal(t, []any{id2, id1}, ids(sessions("--user", "postgres")))
	require.Equal(t, []any{}, ids(sessions("--user", "nobody")))
	require.Equal(t, []any{}, ids(sessions("--since", "2999-01-01")))
	require.Equal(t, []any{id2, id1}, ids(sessions("--since", "1h")))
	require.Equal(t, []any{}, ids(sessions("--until", "1h")))
	require.Equal(t, []any{id2}, ids(sessions("--limit", "1")))
}

func TestShowAndUndoUnknownSession(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, "")
	require.Equal(t, 0, run(t, url, "install").code)
	r := run(t, url, "show", "6b06.1")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `session "6b06.1": no such session`)
	r = run(t, url, "undo", "6b06.1", "--yes")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `no session "6b06.1" in the log`)
	r = run(t, url, "undo")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "say what to undo")
	r = run(t, url, "undo", "x", "--on-conflict", "maybe")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `unknown conflict mode "maybe"`)
}

// TestUndoCLI runs the whole flow through the command line: plan, the
// refusal without --yes and without a terminal, apply, the second undo
// refused, the redo.
func TestUndoCLI(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT i, 'v' || i FROM generate_series(1, 5) i")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	before := tableText(t, conn, "a")
	w := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, w, "UPDATE a SET v = NULL WHERE id <= 2")
	pgtest.Exec(t, w, "DELETE FROM a WHERE id = 5")
	pgtest.Exec(t, w, "INSERT INTO a VALUES (6, 'new')")
	after := tableText(t, conn, "a")
	var sid string
	require.NoError(t, w.QueryRow(context.Background(), "SELECT pgundo._session()").Scan(&sid))

	r := run(t, url, "undo", sid, "--dry-run", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var plan map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &plan))
	require.Equal(t, []any{map[string]any{"table": "public.a", "restore": 2.0, "reinsert": 1.0, "delete": 1.0, "merged": 0.0, "skipped": 0.0, "key_columns": []any{"id"}}}, plan["tables"])
	require.Equal(t, after, tableText(t, conn, "a"), "dry run changes nothing")

	r = run(t, url, "undo", sid)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "add --yes")
	require.Equal(t, after, tableText(t, conn, "a"))

	r = run(t, url, "undo", sid, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, before, tableText(t, conn, "a"))

	r = run(t, url, "undo", sid, "--yes")
	require.Equal(t, 3, r.code)
	require.Contains(t, r.stderr, "already undone by session")

	r = run(t, url, "sessions", "--json")
	var ss []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 2)
	undoID := ss[0]["id"].(string)
	require.Equal(t, sid, ss[0]["undo_of"])
	require.Equal(t, undoID, ss[1]["undone_by"])
	require.Equal(t, "undone", ss[1]["undo_state"])
	require.Equal(t, []any{undoID}, ss[1]["undone_by_all"])
	require.Nil(t, ss[0]["undo_state"])
	r = run(t, url, "sessions")
	require.Regexp(t, sid+`\s.*\sundone by `+regexp.QuoteMeta(undoID), r.stdout)

	r = run(t, url, "undo", undoID, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, after, tableText(t, conn, "a"), "undoing the undo is a redo")
}

// TestUndoConflictCLI shows the refusal a user sees.
func TestUndoConflictCLI(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text, w text); INSERT INTO a VALUES (1, 'x', 'y'), (2, 'x', 'y')")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	w := pgtest.Connect(t, url)
	pgtest.Exec(t, w, "UPDATE a SET v = 'patched'")
	var sid, later string
	require.NoError(t, w.QueryRow(context.Background(), "SELECT pgundo._session()").Scan(&sid))
	o := pgtest.Connect(t, url)
	pgtest.Exec(t, o, "UPDATE a SET w = 'user edit' WHERE id = 2")
	require.NoError(t, o.QueryRow(context.Background(), "SELECT pgundo._session()").Scan(&later))
	current := tableText(t, conn, "a")

	r := run(t, url, "undo", sid, "--yes")
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "conflict: public.a id=2: changed since (columns w) by session "+later)
	require.Contains(t, r.stderr, "nothing was changed")
	require.Equal(t, current, tableText(t, conn, "a"))

	r = run(t, url, "undo", sid, "--yes", "--on-conflict", "merge")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{"(1,x,y)", `(2,x,"user edit")`}, tableText(t, conn, "a"))
}

func TestHelpHasExamples(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"install", "uninstall", "track", "untrack", "status", "sessions", "show", "undo", "demo"} {
		var out bytes.Buffer
		code := cli.Run(context.Background(), []string{c, "--help"}, strings.NewReader(""), &out, &out)
		require.Equal(t, 0, code, c)
		require.Contains(t, out.String(), "Examples:", c)
	}
}
