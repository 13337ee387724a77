package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// tryShop is a small shop whose customers wrote their own notes; orders
// cascade to items, and a trigger writes an untracked audit table.
const tryShop = `
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, note text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers ON DELETE CASCADE, status text NOT NULL, total numeric(10,2));
CREATE TABLE order_items (order_id int REFERENCES orders ON DELETE CASCADE, line int, sku text, PRIMARY KEY (order_id, line));
CREATE TABLE audit_log (id serial PRIMARY KEY, what text);
CREATE TABLE scratch (v int);
CREATE FUNCTION log_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (what) VALUES ('order ' || NEW.id || ': ' || OLD.status || ' -> ' || NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER log_status AFTER UPDATE OF status ON orders FOR EACH ROW EXECUTE FUNCTION log_status();
INSERT INTO customers VALUES (1, 'Ada', 'call before delivery'), (2, 'Bob', NULL), (3, 'Cy', 'gate code 1234'), (4, 'Di', '');
INSERT INTO orders VALUES (10, 1, 'open', 10.00), (11, 2, 'open', 5.50), (12, 3, 'shipped', 7.25), (13, 4, 'open', 1.00);
INSERT INTO order_items VALUES (10, 1, 'a'), (10, 2, 'b'), (12, 1, 'c'), (13, 1, 'd'), (13, 2, 'e');
INSERT INTO scratch VALUES (1), (2);
`

// tryPatch is a hasty patch: it was meant to set a note only where there
// was none, but overwrites two notes customers wrote; it also deletes an
// order (cascading to its items), and cancels one (the trigger logs it).
const tryPatch = `-- ticket 123: default notes
UPDATE customers
   SET note = 'VIP'   -- meant: WHERE note IS NULL
 WHERE id IN (1, 3);
/* a comment; with a semicolon */
DELETE FROM orders WHERE id = 13;
UPDATE orders SET status = 'cancelled' WHERE id = 11;
SELECT count(*) FROM customers WHERE note = $$VIP; really$$ OR note = E'it\'s';
TRUNCATE scratch;
`

var shopTables = []string{"customers", "orders", "order_items", "audit_log", "scratch"}

func setupShop(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	url, conn := setup(t, tryShop)
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, url, "track", "customers", "orders", "order_items")
	require.Equal(t, 0, r.code, r.stderr)
	return url, conn
}

// snapshot is every row of every shop table as text, and the row count of
// each of pgundo's log tables.
func snapshot(t *testing.T, conn *pgx.Conn) map[string][]string {
	t.Helper()
	s := map[string][]string{}
	for _, tbl := range shopTables {
		s[tbl] = tableText(t, conn, tbl)
	}
	rows, err := conn.Query(context.Background(), `
		SELECT c.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM pgundo.%I', c.relname), false, true, '')))[1]::text
		  FROM pg_class c WHERE c.relnamespace = 'pgundo'::regnamespace AND c.relkind = 'r' ORDER BY 1`)
	require.NoError(t, err)
	counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, n string
		err := r.Scan(&name, &n)
		return name + "=" + n, err
	})
	require.NoError(t, err)
	require.NotEmpty(t, counts)
	s["pgundo log"] = counts
	return s
}

func writeScript(t *testing.T, sql string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "patch.sql")
	require.NoError(t, os.WriteFile(path, []byte(sql), 0o600))
	return path
}

type tryJSON struct {
	Script     string `json:"script"`
	Statements []struct {
		Line   int    `json:"line"`
		Result string `json:"result"`
	} `json:"statements"`
	Session string `json:"session"`
	XID     string `json:"xid"`
	Tables  []struct {
		Table                                string
		Inserts, Updates, Deletes, Truncated int64
	} `json:"tables"`
	changeList
	More      int64 `json:"more"`
	Untracked []struct {
		Table                      string
		Inserted, Updated, Deleted int64
		Rewritten                  bool `json:"truncated_or_rewritten"`
	} `json:"untracked"`
	Committed bool `json:"committed"`
}

// changeList is the row changes of try --json and show --json.
type changeList struct {
	Changes []struct {
		Op      string `json:"op"`
		Table   string `json:"table"`
		Columns []struct {
			Column   string
			Old, New *string
		} `json:"columns"`
	} `json:"changes"`
}

// diffLines renders the JSON changes as one line per row change.
func (r changeList) diffLines() []string {
	var out []string
	for _, c := range r.Changes {
		var cols []string
		for _, col := range c.Columns {
			v := func(p *string) string {
				if p == nil {
					return "NULL"
				}
				return *p
			}
			cols = append(cols, col.Column+":"+v(col.Old)+">"+v(col.New))
		}
		out = append(out, c.Op+" "+c.Table+" "+strings.Join(cols, " "))
	}
	return out
}

// TestTryShowsRowsAndRollsBack: the patch that overwrites customers' notes
// is shown row by row (cascade and trigger effects included), the untracked
// tables it wrote are named, and the database is left exactly as before,
// log included.
func TestTryShowsRowsAndRollsBack(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)
	path := writeScript(t, tryPatch)

	r := run(t, url, "try", path, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res tryJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.False(t, res.Committed)
	require.NotEmpty(t, res.XID)
	require.Len(t, res.Statements, 5)
	var lines, results []string
	for _, st := range res.Statements {
		lines = append(lines, strconv.Itoa(st.Line))
		results = append(results, st.Result)
	}
	require.Equal(t, []string{"2", "6", "7", "8", "9"}, lines)
	require.Equal(t, []string{"UPDATE 2", "DELETE 1", "UPDATE 1", "SELECT 1", "TRUNCATE TABLE"}, results)

	// Exactly the rows the patch touched, cascades and trigger effects included.
	require.ElementsMatch(t, []string{
		"UPDATE public.customers id:1>1 note:call before delivery>VIP",
		"UPDATE public.customers id:3>3 note:gate code 1234>VIP",
		"DELETE public.orders id:13>NULL customer_id:4>NULL status:open>NULL total:1.00>NULL",
		"DELETE public.order_items order_id:13>NULL line:1>NULL sku:d>NULL",
		"DELETE public.order_items order_id:13>NULL line:2>NULL sku:e>NULL",
		"UPDATE public.orders id:11>11 status:open>cancelled",
	}, res.diffLines())
	counts := map[string][4]int64{}
	for _, tc := range res.Tables {
		counts[tc.Table] = [4]int64{tc.Inserts, tc.Updates, tc.Deletes, tc.Truncated}
	}
	require.Equal(t, map[string][4]int64{
		"public.customers":   {0, 2, 0, 0},
		"public.orders":      {0, 1, 1, 0},
		"public.order_items": {0, 0, 2, 0},
	}, counts)
	require.Len(t, res.Untracked, 2, r.stdout)
	require.Equal(t, "public.audit_log", res.Untracked[0].Table)
	require.EqualValues(t, 1, res.Untracked[0].Inserted)
	require.Equal(t, "public.scratch", res.Untracked[1].Table)
	require.True(t, res.Untracked[1].Rewritten)
	require.Contains(t, r.stderr, "warning: the script wrote public.audit_log, which is not tracked")
	require.Contains(t, r.stderr, "pgundo track public.audit_log")
	require.Contains(t, r.stderr, "public.scratch, which is not tracked, so its row changes are not shown (truncated or rewritten)")

	require.Equal(t, before, snapshot(t, conn), "try without --commit must leave data and log exactly as before")

	// The same report for people.
	r = run(t, url, "try", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr, "the report names the untracked tables")
	for _, want := range []string{
		"try " + path + ": 5 statements ran in one transaction",
		"line 2: UPDATE customers ...  -> UPDATE 2",
		"UPDATE public.customers id=1\n    note: call before delivery -> VIP\n",
		"UPDATE public.customers id=3\n    note: gate code 1234 -> VIP\n",
		"DELETE public.order_items\n    order_id: 13\n    line: 1\n    sku: d\n",
		"UPDATE public.orders id=11\n    status: open -> cancelled\n",
		"warning: also written, but not tracked, so their rows are not shown (pgundo track TABLE to see them):\n  public.audit_log: 1 row inserted\n  public.scratch: truncated or rewritten\n",
		"rolled back: nothing was changed",
	} {
		require.Contains(t, r.stdout, want)
	}
	require.Equal(t, before, snapshot(t, conn))
}

// TestTryCommitIsUndoable: --commit --yes keeps exactly what the report
// showed, as a session that pgundo undo puts back.
func TestTryCommitIsUndoable(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)
	path := writeScript(t, strings.Replace(tryPatch, "TRUNCATE scratch;", "", 1))

	// Without a terminal and without --yes: refused up front, nothing run.
	r := run(t, url, "try", path, "--commit")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "try --commit needs confirmation: no terminal to ask on, so nothing was run; add --yes")
	require.Equal(t, before, snapshot(t, conn))

	r = run(t, url, "try", path, "--commit", "--yes", "--tag", "ticket-123", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res tryJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.True(t, res.Committed)
	require.NotEmpty(t, res.Session)
	require.Equal(t, []string{"(1,Ada,VIP)", "(2,Bob,)", "(3,Cy,VIP)", "(4,Di,\"\")"}, tableText(t, conn, "customers"))
	require.Equal(t, []string{"(10,1,a)", "(10,2,b)", "(12,1,c)"}, tableText(t, conn, "order_items"))

	// The session shows the same changes as the report.
	r = run(t, url, "show", res.Session, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var shown changeList
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shown))
	require.ElementsMatch(t, res.diffLines(), shown.diffLines())
	r = run(t, url, "sessions", "--tag", "ticket-123", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var ss []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 1)
	require.Equal(t, res.Session, ss[0]["id"])
	require.Equal(t, "pgundo try", ss[0]["application_name"])

	r = run(t, url, "undo", res.Session, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	after := snapshot(t, conn)
	// Tracked tables are back; the trigger's untracked audit row stays, as
	// the report warned.
	for _, tbl := range []string{"customers", "orders", "order_items", "scratch"} {
		require.Equal(t, before[tbl], after[tbl], tbl)
	}
	require.Equal(t, []string{"(1,\"order 11: open -> cancelled\")"}, after["audit_log"])
}

// TestTryFailingStatement: the failing statement is named with its line,
// and nothing is changed.
func TestTryFailingStatement(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)

	// A constraint violation (no error position): the statement's line.
	path := writeScript(t, "UPDATE customers SET note = 'x' WHERE id = 1;\n\n-- now the orders\nINSERT INTO orders\n  VALUES (14, 99, 'open', 1);\nUPDATE customers SET note = 'y';\n")
	r := run(t, url, "try", path)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "try "+path+": the statement at line 4 failed: ERROR: insert or update on table \"orders\" violates foreign key constraint")
	require.Contains(t, r.stderr, "detail: Key (customer_id)=(99) is not present in table \"customers\".")
	require.Contains(t, r.stderr, "      4 | INSERT INTO orders\n      5 |   VALUES (14, 99, 'open', 1)\n")
	require.Contains(t, r.stderr, "rolled back: nothing was changed")
	require.Empty(t, r.stdout)
	require.Equal(t, before, snapshot(t, conn))

	// A syntax error on the second line of a statement: its position names that line.
	path = writeScript(t, "UPDATE customers SET note = 'x' WHERE id = 1;\nDELETE FROM orders\n WHERE id = = 12;\n")
	r = run(t, url, "try", path, "--json")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "the statement at line 2 (error at line 3) failed: ERROR: syntax error at or near \"=\" (SQLSTATE 42601)")
	require.Equal(t, before, snapshot(t, conn))

	// A deferred constraint fails where COMMIT would check it.
	pgtest.Exec(t, conn, "CREATE TABLE vip (customer_id int REFERENCES customers DEFERRABLE INITIALLY DEFERRED)")
	path = writeScript(t, "INSERT INTO vip VALUES (42);\nUPDATE customers SET note = 'x' WHERE id = 1;\n")
	r = run(t, url, "try", path)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "every statement ran, but a deferred constraint or trigger failed when checked as COMMIT would check it: ERROR: insert or update on table \"vip\" violates foreign key constraint")
	require.Contains(t, r.stderr, "rolled back: nothing was changed")
	require.Equal(t, before, snapshot(t, conn))

	// A statement that waits for a lock gives up after --lock-timeout.
	locker := pgtest.Connect(t, url)
	pgtest.Exec(t, locker, "BEGIN; SELECT * FROM customers WHERE id = 2 FOR UPDATE")
	path = writeScript(t, "UPDATE customers SET note = 'late' WHERE id = 2;")
	r = run(t, url, "try", path, "--lock-timeout", "200ms")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "the statement at line 1 failed: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)")
	pgtest.Exec(t, locker, "ROLLBACK")
	require.Equal(t, before, snapshot(t, conn))
}

// TestTryRefusesTransactionControl: scripts that manage transactions or
// run what cannot run in one are refused before anything runs; the same
// words inside strings, comments and function bodies are not.
func TestTryRefusesTransactionControl(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)
	first := "UPDATE customers SET note = 'changed' WHERE id = 1;\n"
	for _, tc := range []struct{ script, want string }{
		{"BEGIN;\n" + first + "COMMIT;\n", "line 1: BEGIN\n    BEGIN manages transactions"},
		{first + "commit;", "line 2: commit\n    COMMIT manages transactions"},
		{first + "ROLLBACK;", "line 2: ROLLBACK\n    ROLLBACK manages transactions"},
		{first + "START TRANSACTION ISOLATION LEVEL SERIALIZABLE;", "START manages transactions"},
		{first + "SAVEPOINT a;", "SAVEPOINT manages transactions"},
		{first + "end;", "END manages transactions"},
		{first + "VACUUM ANALYZE customers;", "line 2: VACUUM ANALYZE customers\n    VACUUM cannot run inside a transaction block"},
		{first + "CREATE INDEX CONCURRENTLY ON customers (note);", "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"},
		{first + "create unique index concurrently i on customers (name);", "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"},
		{first + "COPY customers FROM STDIN;", "COPY ... FROM STDIN / TO STDOUT needs psql"},
		{first + "\\set ON_ERROR_STOP on\n", "line 2: psql meta-command \\set: try runs plain SQL only"},
		{first + "SELECT 'unterminated;\n", "line 2: unterminated string"},
	} {
		r := run(t, url, "try", writeScript(t, tc.script))
		require.Equal(t, 2, r.code, "%s: %s", tc.script, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.script)
		require.Contains(t, r.stderr, "nothing was run", tc.script)
	}
	require.Equal(t, before, snapshot(t, conn))

	// Not refused: the same words in strings, comments, identifiers and
	// routine bodies (BEGIN ATOMIC bodies exist from PostgreSQL 14 on).
	atomic := `CREATE FUNCTION pg_temp.g(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;
  SELECT x;
END;
`
	var version int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 140000 {
		atomic = "CREATE FUNCTION pg_temp.g(x int) RETURNS int LANGUAGE sql AS 'SELECT x';\n"
	}
	ok := `-- BEGIN; COMMIT;
UPDATE customers SET note = 'COMMIT; ROLLBACK;' WHERE id = 2;
/* VACUUM; /* nested; */ BEGIN; */
CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN ROLLBACK; RETURN 1; END $body$;
` + atomic + `SELECT "commit" FROM (SELECT 1 AS "commit") s;
`
	r := run(t, url, "try", writeScript(t, ok), "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res tryJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Len(t, res.Statements, 4)
	require.Equal(t, []string{"UPDATE public.customers id:2>2 note:NULL>COMMIT; ROLLBACK;"}, res.diffLines())
	require.Equal(t, before, snapshot(t, conn))

	// Bad usage.
	r = run(t, url, "try")
	require.Equal(t, 2, r.code)
	r = run(t, url, "try", filepath.Join(t.TempDir(), "missing.sql"))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "cannot read the script")
	r = run(t, url, "try", writeScript(t, "-- nothing\n"))
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "the script has no statements")
}

// TestTryStdin: "-" reads the script from stdin; committing from stdin
// needs --yes, since stdin cannot also answer y/N.
func TestTryStdin(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)
	var out, errb strings.Builder
	code := cli.Run(context.Background(), []string{"--database-url", url, "try", "-", "--json"},
		strings.NewReader("\ufeffUPDATE customers SET note = NULL WHERE id = 3"), &out, &errb)
	require.Equal(t, 0, code, errb.String())
	var res tryJSON
	require.NoError(t, json.Unmarshal([]byte(out.String()), &res))
	require.Equal(t, "(stdin)", res.Script)
	require.Equal(t, []string{"UPDATE public.customers id:3>3 note:gate code 1234>NULL"}, res.diffLines())
	require.Equal(t, before, snapshot(t, conn))

	out.Reset()
	errb.Reset()
	code = cli.Run(context.Background(), []string{"--database-url", url, "try", "-", "--commit"},
		strings.NewReader("UPDATE customers SET note = NULL WHERE id = 3"), &out, &errb)
	require.Equal(t, 2, code)
	require.Contains(t, errb.String(), "try - --commit reads the script from stdin, so it cannot ask for confirmation there; nothing was run; add --yes")
	require.Equal(t, before, snapshot(t, conn))
}
