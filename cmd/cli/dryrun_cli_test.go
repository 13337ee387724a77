package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// undo --dry-run runs every check --yes runs and exits as --yes would:
// the same exit code and the same output on stderr, no line saying rows
// were written, and every table (data and log) as it was. --sql writes no
// script for an undo --yes would refuse.

// drWriteLine matches a progress line saying rows were written.
var drWriteLine = regexp.MustCompile(`(?i)^(applied|undone|restored)\b|\d+ restored|rows written`)

// requireDryRunAsYes runs undo SESSION with --dry-run and with --yes (and
// each with extra), and requires both to exit with code, with the same
// stderr, containing every part, with no progress line (any line but the
// error's) saying rows were written, and with every table as before.
func requireDryRunAsYes(t *testing.T, url string, conn *pgx.Conn, session string, code int, extra []string, parts ...string) string {
	t.Helper()
	state := ucState(t, conn)
	var stderr [2]string
	for i, mode := range []string{"--dry-run", "--yes"} {
		r := run(t, url, append([]string{"undo", session, mode}, extra...)...)
		require.Equal(t, code, r.code, "%s: %s", mode, r.stderr)
		require.Empty(t, r.stdout, mode)
		for _, p := range parts {
			require.Contains(t, r.stderr, p, mode)
		}
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if !strings.HasPrefix(l, "pgundo: ") {
				require.NotRegexp(t, drWriteLine, l, "%s: a line before the refusal says rows were written", mode)
			}
		}
		require.Equal(t, state, ucState(t, conn), "%s: data and log unchanged", mode)
		stderr[i] = r.stderr
	}
	require.Equal(t, stderr[1], stderr[0], "--dry-run's stderr vs --yes's")
	return stderr[0]
}

// drSession returns the pgundo session id of conn.
func drSession(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var sid string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT pgundo._session()").Scan(&sid))
	return sid
}

// TestUndoCLIDryRunForeignKey: the patch inserted a customer, a later
// session an order referencing it. --dry-run and --yes refuse alike (exit
// 3), naming the customer's key, the order and the later session, with the
// command that undoes it; --sql writes no script, to a file or to stdout.
// After the later session is undone as suggested, both go through.
func TestUndoCLIDryRunForeignKey(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TABLE customer (id int PRIMARY KEY, name text);
		CREATE TABLE orders (id int, region text, customer_id int CONSTRAINT orders_customer_fk REFERENCES customer, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
		CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
		CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
		INSERT INTO customer VALUES (1, 'a');
		INSERT INTO orders VALUES (1, 'us', 1);`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "customer", "orders").code)
	pristine := ucState(t, conn)
	p := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, p, `INSERT INTO customer VALUES (10, 'new')`)
	pgtest.Exec(t, p, `UPDATE customer SET name = 'b' WHERE id = 1`)
	patch := drSession(t, p)
	o := pgtest.Connect(t, withApp(url, "orders"))
	pgtest.Exec(t, o, `INSERT INTO orders VALUES (2, 'eu', 10)`)
	later := drSession(t, o)

	msg := requireDryRunAsYes(t, url, conn, patch, 3, nil,
		"pgundo: undo refused: the undo would remove public.customer id=10, which public.orders id=2, region=eu still references (foreign key orders_customer_fk; that row was last written by session "+later+" at ",
		"nothing was changed; undo session "+later+" first (pgundo undo "+later+"), or change or delete that row, then run this undo again\n")
	require.NotContains(t, msg, "orders_eu", "the refusal names the partitioned table")

	state := ucState(t, conn)
	path := filepath.Join(t.TempDir(), "undo.sql")
	refusal := msg[strings.Index(msg, "pgundo: "):]
	r := run(t, url, "undo", patch, "--sql", path)
	require.Equal(t, 3, r.code, r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, refusal), "--sql refuses as --yes does: %s", r.stderr)
	_, err := os.Stat(path)
	require.True(t, os.IsNotExist(err), "no script written: %v", err)
	r = run(t, url, "undo", patch, "--sql", "-")
	require.Equal(t, 3, r.code, r.stderr)
	require.Empty(t, r.stdout, "no script on stdout")
	require.True(t, strings.HasSuffix(r.stderr, refusal), r.stderr)
	require.Equal(t, state, ucState(t, conn), "--sql: data and log unchanged")

	// As the refusal says: undo the later session, then the patch.
	r = run(t, url, "undo", later, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, url, "undo", patch, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "dry run: nothing was changed")
	r = run(t, url, "undo", patch, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	// Everything is back as before both sessions, but for the log.
	now := ucState(t, conn)
	for tbl, rows := range pristine {
		if !strings.HasPrefix(tbl, "pgundo.") {
			require.Equal(t, rows, now[tbl], tbl)
		}
	}
}

// TestUndoCLIDryRunOtherRefusals: a conflict and an application trigger
// that fires in replica mode refuse --dry-run as they refuse --yes, with
// the same output.
func TestUndoCLIDryRunOtherRefusals(t *testing.T) {
	t.Parallel()
	t.Run("conflict", func(t *testing.T) {
		t.Parallel()
		url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text, w text); INSERT INTO a VALUES (1, 'x', 'y'), (2, 'x', 'y')`)
		require.Equal(t, 0, run(t, url, "install").code)
		require.Equal(t, 0, run(t, url, "track", "a").code)
		w := pgtest.Connect(t, url)
		pgtest.Exec(t, w, "UPDATE a SET v = 'patched'")
		patch := drSession(t, w)
		o := pgtest.Connect(t, url)
		pgtest.Exec(t, o, "UPDATE a SET w = 'user edit' WHERE id = 2")
		later := drSession(t, o)
		requireDryRunAsYes(t, url, conn, patch, 3, nil, "conflict: public.a id=2: changed since (columns w) by session "+later, "nothing was changed")
	})
	t.Run("trigger", func(t *testing.T) {
		t.Parallel()
		url, conn := setup(t, `
			CREATE TABLE doc (id int PRIMARY KEY, body text);
			CREATE TABLE hist (doc_id int, body text);
			CREATE FUNCTION doc_hist() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO hist VALUES (NEW.id, NEW.body); RETURN NULL; END $$;
			CREATE TRIGGER doc_history AFTER UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION doc_hist();
			ALTER TABLE doc ENABLE ALWAYS TRIGGER doc_history;
			INSERT INTO doc VALUES (1, 'a');`)
		require.Equal(t, 0, run(t, url, "install").code)
		require.Equal(t, 0, run(t, url, "track", "doc").code)
		w := pgtest.Connect(t, url)
		pgtest.Exec(t, w, "UPDATE doc SET body = 'b'")
		requireDryRunAsYes(t, url, conn, drSession(t, w), 3, nil, "public.doc (doc_history, ENABLE ALWAYS)", "nothing was changed")
	})
}

// TestUndoCLIDryRunPrivileges: the role running the undo owns the table
// and pgundo but took its own UPDATE right away: --yes fails on the write,
// and so does --dry-run, with the same error, where it used to show the
// plan and exit 0.
func TestUndoCLIDryRunPrivileges(t *testing.T) {
	t.Parallel()
	url, admin := setup(t, "")
	owner, ownerURL := ucRole(t, url, admin, "pgundo_dry")
	q := pgx.Identifier{owner}.Sanitize()
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s`, pgx.Identifier{admin.Config().Database}.Sanitize(), q))
	pgtest.Exec(t, admin, `GRANT pg_read_all_stats TO `+q)
	oc := pgtest.Connect(t, ownerURL)
	pgtest.Exec(t, oc, `CREATE SCHEMA app; CREATE TABLE app.note (id int PRIMARY KEY, body text); INSERT INTO app.note VALUES (1, 'n1'), (2, 'n2')`)
	r := run(t, ownerURL, "install")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, ownerURL, "track", "app.note")
	require.Equal(t, 0, r.code, r.stderr)
	w := pgtest.Connect(t, withApp(ownerURL, "patch"))
	pgtest.Exec(t, w, `UPDATE app.note SET body = 'changed' WHERE id = 1`)
	patch := drSession(t, w)
	pgtest.Exec(t, oc, `REVOKE UPDATE ON app.note FROM `+q)
	requireDryRunAsYes(t, ownerURL, admin, patch, 1, nil, "permission denied for table note")
}
