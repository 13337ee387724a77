package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// sessionID returns the pgundo session id of conn.
func sessionID(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var id string
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT to_hex(floor(extract(epoch FROM backend_start))::bigint) || '.' || to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&id))
	return id
}

// historyJSON runs pgundo history --json and decodes it.
func historyJSON(t *testing.T, url string, args ...string) map[string]any {
	t.Helper()
	r := run(t, url, append([]string{"history", "--json"}, args...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var h map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	return h
}

// versionSummary keeps the fields of a history version that a test can
// predict exactly (not times and xids).
func versionSummary(v any) map[string]any {
	m := v.(map[string]any)
	out := map[string]any{}
	for _, k := range []string{"op", "table", "key", "previous_key", "session", "user", "role", "application_name", "client_addr", "tag", "columns", "old", "new"} {
		out[k] = m[k]
	}
	return out
}

func col(name string, old, new any) map[string]any {
	return map[string]any{"column": name, "old": old, "new": new}
}

func TestHistoryOfOneRow(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, `CREATE TABLE orders (id int PRIMARY KEY, note text, qty int);
		CREATE TABLE other (id int PRIMARY KEY)`)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "orders", "other").code)

	clerk := pgtest.Connect(t, withApp(url, "shop"))
	pgtest.Exec(t, clerk, "INSERT INTO orders VALUES (1, 'fragile', 2), (2, 'x', 1)")
	pgtest.Exec(t, clerk, "INSERT INTO other VALUES (1)")
	patch := pgtest.Connect(t, withApp(url, "psql"))
	pgtest.Exec(t, patch, "SET pgundo.tag = 'ticket-9'")
	pgtest.Exec(t, patch, "UPDATE orders SET note = NULL, qty = qty + 1")
	pgtest.Exec(t, patch, "UPDATE orders SET id = 10 WHERE id = 1") // a key change
	pgtest.Exec(t, clerk, "UPDATE orders SET note = 'it''s back' WHERE id = 10")
	pgtest.Exec(t, clerk, "UPDATE orders SET qty = 3 WHERE id = 2")
	clerkID, patchID := sessionID(t, clerk), sessionID(t, patch)

	h := historyJSON(t, url, "orders", "10")
	require.Equal(t, "public.orders", h["table"])
	require.Equal(t, map[string]any{"columns": []any{"id"}, "values": []any{"10"}}, h["key"])
	require.Equal(t, "(10,\"it's back\",3)", h["current"])
	require.Equal(t, true, h["tracked"])
	var got []map[string]any
	for _, v := range h["versions"].([]any) {
		got = append(got, versionSummary(v))
	}
	who := func(sess, app string, tag any) map[string]any {
		return map[string]any{"session": sess, "user": "postgres", "role": "postgres", "application_name": app, "client_addr": "", "tag": tag}
	}
	merge := func(a, b map[string]any) map[string]any {
		for k, v := range b {
			a[k] = v
		}
		return a
	}
	require.Equal(t, []map[string]any{
		merge(who(clerkID, "shop", nil), map[string]any{"op": "INSERT", "table": "public.orders", "key": "id=1", "previous_key": nil,
			"columns": []any{col("id", nil, "1"), col("note", nil, "fragile"), col("qty", nil, "2")}, "old": nil, "new": "(1,fragile,2)"}),
		merge(who(patchID, "psql", "ticket-9"), map[string]any{"op": "UPDATE", "table": "public.orders", "key": "id=1", "previous_key": nil,
			"columns": []any{col("note", "fragile", nil), col("qty", "2", "3")}, "old": "(1,fragile,2)", "new": "(1,,3)"}),
		merge(who(patchID, "psql", "ticket-9"), map[string]any{"op": "UPDATE", "table": "public.orders", "key": "id=10", "previous_key": "id=1",
			"columns": []any{col("id", "1", "10")}, "old": "(1,,3)", "new": "(10,,3)"}),
		merge(who(clerkID, "shop", nil), map[string]any{"op": "UPDATE", "table": "public.orders", "key": "id=10", "previous_key": nil,
			"columns": []any{col("note", nil, "it's back")}, "old": "(10,,3)", "new": "(10,\"it's back\",3)"}),
	}, got)

	// The old key on its own: the row left it.
	h = historyJSON(t, url, "orders", "id=1")
	require.Nil(t, h["current"])
	vs := h["versions"].([]any)
	require.Len(t, vs, 3)
	last := versionSummary(vs[2])
	require.Equal(t, "id=10", last["key"], "the last version of id=1 moved the row to id=10")
	require.Equal(t, "id=1", last["previous_key"])

	// Human output names who, what and from what to what.
	r := run(t, url, "history", "public.orders", "id=10")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{
		"history of public.orders id=10: 4 recorded versions",
		"INSERT public.orders id=1",
		"session " + patchID + `, user postgres, application "psql", from local socket, tag ticket-9`,
		"    note: fragile -> NULL",
		"    qty: 2 -> 3",
		"UPDATE public.orders id=10 (was id=1)",
		"    id: 1 -> 10",
		"    note: NULL -> 'it''s back'",
		"now: id=10 note='it''s back' qty=3",
	} {
		require.Contains(t, r.stdout, want)
	}

	// A delete and a re-insert under the same key: both lives are shown.
	pgtest.Exec(t, clerk, "DELETE FROM orders WHERE id = 2")
	pgtest.Exec(t, clerk, "INSERT INTO orders VALUES (2, 'again', 5)")
	h = historyJSON(t, url, "orders", "2")
	var ops []any
	for _, v := range h["versions"].([]any) {
		ops = append(ops, v.(map[string]any)["op"])
	}
	require.Equal(t, []any{"INSERT", "UPDATE", "UPDATE", "DELETE", "INSERT"}, ops)
	require.Equal(t, "(2,again,5)", h["current"])
}

func TestHistoryErrors(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE nokey (v text);
		CREATE TABLE two (x int, y text, v text, PRIMARY KEY (x, y)); CREATE TABLE untracked (id int PRIMARY KEY)`)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a", "nokey", "two").code)
	pgtest.Exec(t, conn, "INSERT INTO a VALUES (1, 'x'); INSERT INTO two VALUES (1, 'a b', 'v'); INSERT INTO untracked VALUES (1)")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nope", "1"}, "table nope: no such table"},
		{[]string{"a"}, "give the key of a row of a"},
		{[]string{"a", "2"}, "table public.a has no row with id=2, and pgundo's log has no change of one"},
		{[]string{"a", "x"}, `key id=x of public.a: invalid input syntax for type integer: "x" (the key columns are id integer)`},
		{[]string{"a", "v=x"}, "column v is not part of the primary key of public.a (id)"},
		{[]string{"a", "w=x"}, "table public.a has no column w; its primary key is id"},
		{[]string{"a", "id=1", "id=1"}, "key column id given twice"},
		{[]string{"nokey", "v=x"}, "table public.nokey has no primary key"},
		{[]string{"two", "1"}, "the primary key of public.two has 2 columns (x, y): give each as col=value"},
		{[]string{"two", "x=1"}, "the key of public.two is incomplete: give y too"},
		{[]string{"untracked", "2"}, "table public.untracked is not tracked"},
	} {
		r := run(t, url, append([]string{"history"}, c.args...)...)
		require.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want, c.args)
		require.Empty(t, r.stdout)
	}
	h := historyJSON(t, url, "two", "y=a b", "x=01")
	require.Equal(t, map[string]any{"columns": []any{"x", "y"}, "values": []any{"1", "a b"}}, h["key"])
	require.Len(t, h["versions"], 1)
	// A row that exists but was never changed since tracking: no versions.
	h = historyJSON(t, url, "untracked", "1")
	require.Equal(t, []any{}, h["versions"])
	require.Equal(t, "(1)", h["current"])
	require.Equal(t, false, h["tracked"])
}

// TestHistorySeesLateCommits checks that the row-history index does not
// pass over a transaction that was still open when it was refreshed.
func TestHistorySeesLateCommits(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	ctx := context.Background()
	slow := pgtest.Connect(t, url)
	tx, err := slow.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO a VALUES (1, 'slow')") // takes a statement id first
	require.NoError(t, err)
	for i := 2; i <= 4; i++ {
		pgtest.Exec(t, conn, "INSERT INTO a VALUES ($1, 'fast')", i)
		require.Len(t, historyJSON(t, url, "a", "2")["versions"], 1) // refreshes the index
	}
	require.NoError(t, tx.Commit(ctx))
	pgtest.Exec(t, conn, "UPDATE a SET v = 'later' WHERE id = 1")
	for i := 0; i < 3; i++ {
		h := historyJSON(t, url, "a", "1")
		require.Len(t, h["versions"], 2, "run %d", i)
	}
	var entries int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pgundo.hist_key").Scan(&entries))
	require.Equal(t, 5, entries, "every change indexed exactly once")
}

// loadPagila loads pagila into a fresh database, installs pgundo and tracks
// every table of schema public.
func loadPagila(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	url := pgtest.NewDB(t)
	psql := filepath.Join(pgtest.BinDir(), "psql")
	dir := pgtest.PagilaDir(t)
	for _, f := range pgtest.PagilaFiles {
		cmd := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", filepath.Join(dir, f))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Run(), "psql -f %s: %s", f, stderr.String())
	}
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	r := run(t, url, "track", "--schema", "public")
	require.Equal(t, 0, r.code, r.stderr)
	return url, pgtest.Connect(t, url)
}

// TestHistoryPagila follows a category and one of its film_category rows
// through the cascading key change of a real schema.
func TestHistoryPagila(t *testing.T) {
	t.Parallel()
	url, conn := loadPagila(t)
	ctx := context.Background()
	var filmID int
	require.NoError(t, conn.QueryRow(ctx, "SELECT min(film_id) FROM film_category WHERE category_id = 16").Scan(&filmID))
	w := pgtest.Connect(t, withApp(url, "catalog-fix"))
	pgtest.Exec(t, w, "UPDATE category SET name = 'Travels' WHERE category_id = 16")
	pgtest.Exec(t, w, "update category set category_id = 116 where category_id = 16")
	pgtest.Exec(t, w, "UPDATE category SET name = 'Travel' WHERE category_id = 116")

	h := historyJSON(t, url, "category", "116")
	vs := h["versions"].([]any)
	require.Len(t, vs, 3)
	var keys, prev []any
	for _, v := range vs {
		m := v.(map[string]any)
		require.Equal(t, "catalog-fix", m["application_name"])
		require.Equal(t, "UPDATE", m["op"])
		keys = append(keys, m["key"])
		prev = append(prev, m["previous_key"])
	}
	require.Equal(t, []any{"category_id=16", "category_id=116", "category_id=116"}, keys)
	require.Equal(t, []any{nil, "category_id=16", nil}, prev)
	first := vs[0].(map[string]any)["columns"].([]any)
	require.Equal(t, col("name", "Travel", "Travels"), first[0])
	// The last_update trigger stamps every update: name and last_update change.
	require.Equal(t, "last_update", first[1].(map[string]any)["column"])
	require.Equal(t, col("category_id", "16", "116"), vs[1].(map[string]any)["columns"].([]any)[0])
	require.True(t, strings.HasPrefix(h["current"].(string), "(116,Travel,"), h["current"])

	// The cascade moved film_category rows to the new key: followed back.
	h = historyJSON(t, url, "film_category", "film_id="+itoa(filmID), "category_id=116")
	vs = h["versions"].([]any)
	require.Len(t, vs, 1)
	m := vs[0].(map[string]any)
	require.Equal(t, "UPDATE", m["op"])
	require.Equal(t, "public.film_category", m["table"])
	require.Equal(t, "film_id="+itoa(filmID)+" category_id=16", m["previous_key"])
	require.Equal(t, col("category_id", "16", "116"), m["columns"].([]any)[0])

	// payment is partitioned with a primary key on some partitions only: no
	// key identifies its rows, and history says so.
	r := run(t, url, "history", "payment", "payment_id=1")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "table public.payment has no primary key")
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestHistoryPartitionedAndRewritten follows a row that moved between
// partitions (its key includes the partition key), then checks that a
// rewritten log is detected and --reindex repairs the index, and that
// statements whose images no longer read as the table's row type are
// counted, not silently dropped.
func TestHistoryPartitionedAndRewritten(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE p (region text, id int, v text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
		CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu'); CREATE TABLE p_us PARTITION OF p FOR VALUES IN ('us');
		CREATE TABLE w (id int PRIMARY KEY, v text, gone text)`)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "p", "w").code)
	pgtest.Exec(t, conn, "INSERT INTO p VALUES ('us', 3, 'a'), ('us', 4, 'b')")
	pgtest.Exec(t, conn, "UPDATE p SET region = 'eu' WHERE id = 3")
	pgtest.Exec(t, conn, "UPDATE p SET v = 'c' WHERE id = 3")
	h := historyJSON(t, url, "p", "region=eu", "id=3")
	var got []string
	for _, v := range h["versions"].([]any) {
		m := v.(map[string]any)
		prev, _ := m["previous_key"].(string)
		got = append(got, m["op"].(string)+" "+m["table"].(string)+" "+m["key"].(string)+" <"+prev+">")
	}
	require.Equal(t, []string{"INSERT public.p region=us id=3 <>", "UPDATE public.p region=eu id=3 <region=us id=3>", "UPDATE public.p region=eu id=3 <>"}, got)

	// Change rows rewritten in place (as pg_repack, or a careless manual
	// fix, would do): their physical places change, and the index says so.
	// (VACUUM FULL moves them too, but keeps rows any snapshot may still see,
	// so it is not deterministic in a test.)
	pgtest.Exec(t, conn, "UPDATE pgundo.change_log SET new = new WHERE stmt_id > (SELECT min(id) FROM pgundo.stmt)")
	r := run(t, url, "history", "p", "region=eu", "id=3")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "the row-history index is out of step with pgundo.change")
	require.Contains(t, r.stderr, "run pgundo history --reindex")
	r = run(t, url, "history", "--reindex", "p", "region=eu", "id=3", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "row-history index rebuilt")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	require.Len(t, h["versions"], 3, "every change is found again")

	// A column dropped without pgundo being able to read the old images as
	// the new row type: those statements are counted as unreadable.
	pgtest.Exec(t, conn, "INSERT INTO w VALUES (1, 'x', 'y')")
	pgtest.Exec(t, conn, "UPDATE w SET v = 'z'")
	pgtest.Exec(t, conn, "ALTER TABLE w DROP COLUMN gone")
	pgtest.Exec(t, conn, "UPDATE w SET v = 'after'")
	h = historyJSON(t, url, "w", "1")
	require.EqualValues(t, 2, h["unreadable_statements"])
	require.Len(t, h["versions"], 1)
	r = run(t, url, "history", "w", "1")
	require.Contains(t, r.stdout, "note: 2 logged statements of public.w could not be read")
}

func TestHistoryLogAsofGrantHelp(t *testing.T) {
	t.Parallel()
	for _, c := range [][]string{{"history"}, {"log"}, {"asof"}, {"grant"}, {"bench", "history"}} {
		var out bytes.Buffer
		code := cli.Run(context.Background(), append(c, "--help"), strings.NewReader(""), &out, &out)
		require.Equal(t, 0, code, c)
		require.Contains(t, out.String(), "Examples:", c)
	}
}

// TestHistoryStatementNumberedBeforeXID reproduces a TRUNCATE that is its
// transaction's first write: capture numbers the statement (holding its lock
// on pgundo.change) before the transaction has an xid. Refreshes in between
// must not move the watermark past it.
func TestHistoryStatementNumberedBeforeXID(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	ctx := context.Background()
	pgtest.Exec(t, conn, "INSERT INTO a VALUES (1, 'x')")
	slow := pgtest.Connect(t, url)
	tx, err := slow.Begin(ctx)
	require.NoError(t, err)
	var sid int64
	_, err = tx.Exec(ctx, "LOCK TABLE ONLY pgundo.change_log IN ROW EXCLUSIVE MODE")
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, "SELECT nextval('pgundo.stmt_id_seq')").Scan(&sid))
	// Other work and refreshes while it has a number but no xid.
	for i := 2; i <= 4; i++ {
		pgtest.Exec(t, conn, "INSERT INTO a VALUES ($1, 'y')", i)
		require.Len(t, historyJSON(t, url, "a", "1")["versions"], 1)
	}
	// Now it writes (and gets an xid), then more refreshes, then it commits.
	_, err = tx.Exec(ctx, `INSERT INTO pgundo.change_log (stmt_id, old) VALUES ($1, '(1,x)')`, sid)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO pgundo.stmt_log (id, session_id, xid, at, op, relid, schema_name, table_name, rows, role)
		VALUES ($1, pgundo._session(), pg_current_xact_id(), statement_timestamp(), 'T', 'a'::regclass, 'public', 'a', 1, current_user)`, sid)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.Len(t, historyJSON(t, url, "a", "1")["versions"], 1)
	}
	require.NoError(t, tx.Commit(ctx))
	for i := 0; i < 3; i++ {
		h := historyJSON(t, url, "a", "1")
		require.Len(t, h["versions"], 2, "run %d", i)
		require.Equal(t, "TRUNCATE", h["versions"].([]any)[1].(map[string]any)["op"])
	}
}
