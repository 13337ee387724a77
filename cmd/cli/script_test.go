package cli_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

const scriptSchema = `
CREATE TABLE orders (id int PRIMARY KEY, note text, tags text[], doc json, version int NOT NULL DEFAULT 1);
CREATE TABLE items (order_id int REFERENCES orders ON DELETE CASCADE, line int, sku text, PRIMARY KEY (order_id, line));
CREATE TABLE events (kind text, payload text);  -- no primary key
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$;
CREATE TRIGGER bump BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION bump();
INSERT INTO orders (id, note, tags, doc) SELECT i, 'note ' || i, ARRAY['a', 'b,c'], '{"k" :  1}' FROM generate_series(1, 10) i;
INSERT INTO items SELECT o, l, 'sku' || l FROM generate_series(1, 10) o, generate_series(1, 2) l;
INSERT INTO events VALUES ('x', 'same'), ('x', 'same'), ('y', E'tab\there\nnewline \\ backslash');
`

const scriptPatch = `
UPDATE orders SET note = E'patched\t"quoted"\n\\', doc = '{"k":2,  "k":3}' WHERE id <= 4;
DELETE FROM orders WHERE id IN (5, 6);
INSERT INTO orders (id, note) VALUES (1005, 'recreated'), (1006, NULL);
DELETE FROM events WHERE kind = 'x';
INSERT INTO events VALUES ('z', E'new\\row');
`

// TestUndoSQLScript checks that --sql writes a script that, run with psql,
// gives exactly what applying the undo gives, and is recorded the same way.
func TestUndoSQLScript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prepare := func() (string, *pgx.Conn, string) {
		url, conn := setup(t, scriptSchema)
		require.Equal(t, 0, run(t, url, "install").code)
		require.Equal(t, 0, run(t, url, "track", "orders", "items", "events").code)
		w := pgtest.Connect(t, url)
		pgtest.Exec(t, w, scriptPatch)
		var sid string
		require.NoError(t, w.QueryRow(ctx, "SELECT pgundo._session()").Scan(&sid))
		pgtest.Exec(t, conn, "UPDATE orders SET note = 'later edit' WHERE id = 9") // another session, other row
		return url, conn, sid
	}
	urlA, connA, sidA := prepare()
	urlB, connB, sidB := prepare()

	r := run(t, urlA, "undo", sidA, "--yes")
	require.Equal(t, 0, r.code, r.stderr)

	path := filepath.Join(t.TempDir(), "undo.sql")
	r = run(t, urlB, "undo", sidB, "--sql", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "nothing was changed")
	before := map[string][]string{}
	for _, tbl := range []string{"orders", "items", "events"} {
		before[tbl] = tableText(t, connB, tbl)
	}
	script, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(script), "BEGIN;")
	require.Contains(t, string(script), "SET LOCAL session_replication_role = replica;")
	// Writing the script changed nothing.
	for tbl, rows := range before {
		require.Equal(t, rows, tableText(t, connB, tbl), tbl)
	}

	out, err := exec.Command(filepath.Join(pgtest.BinDir(), "psql"), "-X", "-q", "-d", urlB, "-f", path).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, tbl := range []string{"orders", "items", "events"} {
		require.Equal(t, tableText(t, connA, tbl), tableText(t, connB, tbl), tbl)
	}
	// Recorded like an applied undo: the patch session is undone, a second
	// undo is refused, and running the script again fails without change.
	r = run(t, urlB, "undo", sidB, "--yes")
	require.Equal(t, 3, r.code, r.stderr)
	out, err = exec.Command(filepath.Join(pgtest.BinDir(), "psql"), "-X", "-q", "-d", urlB, "-f", path).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "undone since this script was written")
}

// TestUndoSQLScriptRefusesChangedRows: a row changed between writing and
// running the script makes it raise, changing nothing.
func TestUndoSQLScriptRefusesChangedRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn := setup(t, scriptSchema)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "orders", "items", "events").code)
	w := pgtest.Connect(t, url)
	pgtest.Exec(t, w, scriptPatch)
	var sid string
	require.NoError(t, w.QueryRow(ctx, "SELECT pgundo._session()").Scan(&sid))
	path := filepath.Join(t.TempDir(), "undo.sql")
	r := run(t, url, "undo", sid, "--sql", path)
	require.Equal(t, 0, r.code, r.stderr)
	pgtest.Exec(t, conn, "UPDATE orders SET note = 'edited after the script' WHERE id = 2")
	snapshot := map[string][]string{}
	for _, tbl := range []string{"orders", "items", "events"} {
		snapshot[tbl] = tableText(t, conn, tbl)
	}
	out, err := exec.Command(filepath.Join(pgtest.BinDir(), "psql"), "-X", "-q", "-d", url, "-f", path).CombinedOutput()
	require.Error(t, err)
	require.True(t, strings.Contains(string(out), "rows of public.orders changed since this script was written"), string(out))
	for tbl, rows := range snapshot {
		require.Equal(t, rows, tableText(t, conn, tbl), tbl)
	}
}
