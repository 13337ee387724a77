package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// Undo through the command line: selections other than a session id,
// --on-conflict skip, conflicts in rows holding NULLs, a schema changed
// since capture, and a role that may not set session_replication_role.

// ---------------------------------------------------------------------------
// Helpers (prefixed uc, as the package's test files share one namespace).

// only is "ONLY " for a table, "" for the log's views pgundo.stmt and
// pgundo.change (the journal and the log tables together).
func only(name string) string {
	if name == "pgundo.stmt" || name == "pgundo.change" {
		return ""
	}
	return "ONLY "
}

// ucState returns every user table and every table of schema pgundo (the
// log through its views): per table its rows as text sorted bytewise, or for
// a table of more than 2000 rows its count and an md5 of the sorted rows. Two states compare equal
// only if every row of the data and of the log is the same.
func ucState(t *testing.T, conn *pgx.Conn) map[string][]string {
	t.Helper()
	ctx := context.Background()
	_, err := conn.Exec(ctx, `SET datestyle = 'ISO, YMD'; SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET intervalstyle = 'postgres'`)
	require.NoError(t, err)
	rows, err := conn.Query(ctx, `
		SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
		   AND CASE WHEN n.nspname = 'pgundo' AND c.relname IN ('stmt', 'change') THEN true -- the log's views
		            WHEN n.nspname = 'pgundo' AND c.relname ~ '^(journal|(stmt|change)_c[0-9]+)$' THEN false -- where the views read (pgundo folds)
		            ELSE c.relkind = 'r' END
		 ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	out := map[string][]string{}
	for _, n := range names {
		var cnt int64
		require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s%s`, only(n), n)).Scan(&cnt))
		if cnt > 2000 {
			var sum string
			require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf(
				`SELECT md5(string_agg(x::text, E'\n' ORDER BY x::text COLLATE "C")) FROM %s%s x`, only(n), n)).Scan(&sum))
			out[n] = []string{fmt.Sprintf("%d rows, md5 %s", cnt, sum)}
			continue
		}
		rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT x::text FROM %s%s x`, only(n), n))
		require.NoError(t, err)
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		slices.Sort(texts)
		out[n] = append([]string{}, texts...)
	}
	return out
}

// ucRandom returns n random bytes in hex.
func ucRandom(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ucRole creates a LOGIN role with a unique name (roles are cluster-wide)
// and a password, dropped when the test ends (after what it owns and was
// granted in this database, and any parameter grant, is dropped too). It
// returns the name and a connection string for conn's database as it.
func ucRole(t *testing.T, connString string, admin *pgx.Conn, prefix string) (name, asRole string) {
	t.Helper()
	name = prefix + "_" + ucRandom(5)
	password := ucRandom(12)
	pgtest.Exec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, pgx.Identifier{name}.Sanitize(), password))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, connString)
		if err != nil {
			t.Errorf("drop role %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		// End any backend still logged in as the role before dropping it.
		_, _ = c.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, name)
		if _, err := c.Exec(ctx, fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, pgx.Identifier{name}.Sanitize())); err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
	return name, ucAsUser(connString, name, password)
}

// ucAsUser returns connString (URL or keyword/value) with user and
// password replaced.
func ucAsUser(connString, user, password string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err == nil {
			u.User = url.UserPassword(user, password)
			return u.String()
		}
	}
	// In keyword/value strings the last occurrence of a keyword wins.
	return connString + " user=" + user + " password=" + password
}

// ucServerVersion returns server_version_num.
func ucServerVersion(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var v int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&v))
	return v
}

// ucPlan is the part of undo --json's output the tests look at.
type ucPlan struct {
	Sessions []string `json:"sessions"`
	Tables   []struct {
		Table    string `json:"table"`
		Restore  int64  `json:"restore"`
		Reinsert int64  `json:"reinsert"`
		Delete   int64  `json:"delete"`
		Skipped  int64  `json:"skipped"`
	} `json:"tables"`
	Conflicts []struct {
		Table     string   `json:"table"`
		Key       string   `json:"key"`
		Reason    string   `json:"reason"`
		Columns   []string `json:"columns"`
		ChangedBy *string  `json:"changed_by"`
		Skipped   bool     `json:"skipped"`
	} `json:"conflicts"`
	Applied     bool   `json:"applied"`
	UndoSession string `json:"undo_session"`
	RowsChanged int64  `json:"rows_changed"`
}

func ucDecodePlan(t *testing.T, out string) ucPlan {
	t.Helper()
	var p ucPlan
	require.NoError(t, json.Unmarshal([]byte(out), &p), out)
	return p
}

// ---------------------------------------------------------------------------
// --on-conflict skip.

// skipScenario: the patch session sets v on every row of a, deletes row 5,
// inserts row 6 and changes b; a later session edits w of row 2, which
// makes row 2 a conflict. It returns the connection string, an inspection
// connection, the two session ids and a's rows before the patch.
func skipScenario(t *testing.T) (url string, conn *pgx.Conn, patch, later string, before []string) {
	t.Helper()
	url, conn = setup(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text, w text);
		INSERT INTO a SELECT i, 'v' || i, 'w' || i FROM generate_series(1, 5) i;
		CREATE TABLE b (id int PRIMARY KEY, n int);
		INSERT INTO b VALUES (1, 10), (2, 20);`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a", "b").code)
	before = tableText(t, conn, "a")
	p := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, p, `UPDATE a SET v = 'patched'`)
	pgtest.Exec(t, p, `DELETE FROM a WHERE id = 5`)
	pgtest.Exec(t, p, `INSERT INTO a VALUES (6, 'new', 'new')`)
	pgtest.Exec(t, p, `UPDATE b SET n = n + 1`)
	o := pgtest.Connect(t, withApp(url, "webapp"))
	pgtest.Exec(t, o, `UPDATE a SET w = 'user edit' WHERE id = 2`)
	return url, conn, sessionID(t, p), sessionID(t, o), before
}

// skipWant is a and b after undoing the patch with row 2 skipped.
var skipWant = map[string][]string{
	"a": {"(1,v1,w1)", `(2,patched,"user edit")`, "(3,v3,w3)", "(4,v4,w4)", "(5,v5,w5)"},
	"b": {"(1,10)", "(2,20)"},
}

// TestUndoCLIOnConflictSkip: --on-conflict skip undoes every row but the
// conflicting one, exits 0 and reports the skipped row, in text and JSON.
func TestUndoCLIOnConflictSkip(t *testing.T) {
	t.Parallel()
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		url, conn, patch, _, before := skipScenario(t)
		require.Equal(t, []string{"(1,v1,w1)", "(2,v2,w2)", "(3,v3,w3)", "(4,v4,w4)", "(5,v5,w5)"}, before)

		// Without skip: refused, nothing changed.
		state := ucState(t, conn)
		r := run(t, url, "undo", patch, "--yes")
		require.Equal(t, 3, r.code, r.stderr)
		require.Equal(t, state, ucState(t, conn))

		r = run(t, url, "undo", patch, "--yes", "--on-conflict", "skip")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "skipped: conflict: public.a id=2: changed since (columns w)")
		require.Regexp(t, `public\.a\s+3\s+1\s+1\s+0\s+1\n`, r.stdout, "the plan table: restore 3, re-insert 1, delete 1, skip 1")
		require.Contains(t, r.stdout, "undone: ")
		for tbl, want := range skipWant {
			require.Equal(t, want, tableText(t, conn, tbl), tbl)
		}
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		url, conn, patch, later, _ := skipScenario(t)
		r := run(t, url, "undo", patch, "--yes", "--on-conflict", "skip", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		p := ucDecodePlan(t, r.stdout)
		require.True(t, p.Applied)
		require.NotEmpty(t, p.UndoSession)
		require.Equal(t, []string{patch}, p.Sessions)
		require.Len(t, p.Tables, 2)
		require.Equal(t, "public.a", p.Tables[0].Table)
		require.EqualValues(t, [4]int64{3, 1, 1, 1}, [4]int64{p.Tables[0].Restore, p.Tables[0].Reinsert, p.Tables[0].Delete, p.Tables[0].Skipped})
		require.Equal(t, "public.b", p.Tables[1].Table)
		require.EqualValues(t, 2, p.Tables[1].Restore)
		require.Len(t, p.Conflicts, 1)
		c := p.Conflicts[0]
		require.Equal(t, "public.a", c.Table)
		require.Equal(t, "id=2", c.Key)
		require.Equal(t, []string{"w"}, c.Columns)
		require.True(t, c.Skipped)
		require.EqualValues(t, 3+1+1+2, p.RowsChanged)
		for tbl, want := range skipWant {
			require.Equal(t, want, tableText(t, conn, tbl), tbl)
		}
		// The skipped row was left alone: undoing the later session still
		// works and gives row 2 as the patch left it.
		r = run(t, url, "undo", later, "--yes")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, "(2,patched,w2)", tableText(t, conn, "a")[1])
	})
}

// ---------------------------------------------------------------------------
// Selections: --user, --app with --since.

// TestUndoCLIByUser: two roles change the same tables in interleaved
// sessions; undo --user undoes exactly one role's changes (all its
// sessions), leaving the other's.
func TestUndoCLIByUser(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text);
		INSERT INTO a SELECT i, 'v' || i FROM generate_series(1, 6) i;`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	clerk, clerkURL := ucRole(t, url, conn, "pgundo_clerk")
	other, otherURL := ucRole(t, url, conn, "pgundo_other")
	pgtest.Exec(t, conn, fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON a TO %s, %s`, pgx.Identifier{clerk}.Sanitize(), pgx.Identifier{other}.Sanitize()))

	c1 := pgtest.Connect(t, clerkURL)
	o1 := pgtest.Connect(t, otherURL)
	c2 := pgtest.Connect(t, clerkURL)
	pgtest.Exec(t, c1, `UPDATE a SET v = 'clerk' WHERE id IN (1, 2)`)
	pgtest.Exec(t, o1, `UPDATE a SET v = 'other' WHERE id = 3`)
	pgtest.Exec(t, c2, `DELETE FROM a WHERE id = 4`)
	pgtest.Exec(t, c2, `INSERT INTO a VALUES (7, 'clerk new')`)
	pgtest.Exec(t, o1, `INSERT INTO a VALUES (8, 'other new')`)
	// A superuser session acting as the clerk (SET ROLE): the clerk is its
	// effective role, so it is the clerk's change too.
	s := pgtest.Connect(t, url)
	sID := sessionID(t, s) // before SET ROLE: pg_stat_activity hides a superuser's backend from the clerk
	pgtest.Exec(t, s, `SET ROLE `+pgx.Identifier{clerk}.Sanitize())
	pgtest.Exec(t, s, `UPDATE a SET v = 'clerk via set role' WHERE id = 5`)

	r := run(t, url, "undo", "--user", clerk, "--dry-run", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	p := ucDecodePlan(t, r.stdout)
	want := []string{sessionID(t, c1), sessionID(t, c2), sID}
	slices.Sort(want)
	require.Equal(t, want, p.Sessions)

	r = run(t, url, "undo", "--user", clerk, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{"(1,v1)", "(2,v2)", "(3,other)", "(4,v4)", "(5,v5)", "(6,v6)", `(8,"other new")`}, tableText(t, conn, "a"))

	r = run(t, url, "undo", "--user", clerk, "--yes")
	require.Equal(t, 3, r.code, "a second undo of the same changes: %s", r.stderr)
	require.Contains(t, r.stderr, "already undone")

	r = run(t, url, "undo", "--user", "pgundo_nobody_"+ucRandom(4), "--yes")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "no changes for user")
}

// TestUndoCLIByAppSince: the same application ran before and after time T;
// undo --app A --since T undoes only its changes at or after T, not its
// earlier ones and not another application's later ones.
func TestUndoCLIByAppSince(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text);
		INSERT INTO a SELECT i, 'v' || i FROM generate_series(1, 6) i;`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	early := pgtest.Connect(t, withApp(url, "patch.py"))
	pgtest.Exec(t, early, `UPDATE a SET v = 'early' WHERE id = 1`)
	pgtest.Exec(t, early, `INSERT INTO a VALUES (7, 'early new')`)
	var at time.Time
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT clock_timestamp()`).Scan(&at))
	// The same connection keeps working after T: only its later
	// statements are selected, not the whole session.
	pgtest.Exec(t, early, `UPDATE a SET v = 'early, after T' WHERE id = 2`)
	late := pgtest.Connect(t, withApp(url, "patch.py"))
	pgtest.Exec(t, late, `UPDATE a SET v = 'late' WHERE id = 3`)
	pgtest.Exec(t, late, `DELETE FROM a WHERE id = 4`)
	web := pgtest.Connect(t, withApp(url, "webapp"))
	pgtest.Exec(t, web, `UPDATE a SET v = 'web' WHERE id = 5`)
	after := tableText(t, conn, "a")

	since := at.UTC().Format(time.RFC3339Nano)
	r := run(t, url, "undo", "--app", "patch.py", "--since", since, "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "dry run: nothing was changed")
	require.Equal(t, after, tableText(t, conn, "a"))

	r = run(t, url, "undo", "--app", "patch.py", "--since", since, "--yes", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	p := ucDecodePlan(t, r.stdout)
	want := []string{sessionID(t, early), sessionID(t, late)}
	slices.Sort(want)
	require.Equal(t, want, p.Sessions)
	require.Len(t, p.Tables, 1)
	require.EqualValues(t, [3]int64{2, 1, 0}, [3]int64{p.Tables[0].Restore, p.Tables[0].Reinsert, p.Tables[0].Delete})
	require.Equal(t, []string{"(1,early)", "(2,v2)", "(3,v3)", "(4,v4)", "(5,web)", "(6,v6)", `(7,"early new")`}, tableText(t, conn, "a"))

	// --since alone names nothing to undo.
	r = run(t, url, "undo", "--since", since, "--yes")
	require.Equal(t, 2, r.code, r.stderr)
}

// ---------------------------------------------------------------------------
// Conflicts in rows holding NULLs.

// TestUndoCLIConflictColumnsWithNulls: a conflicting row that holds a NULL
// (in the current row, in the row as the session left it, or both) still
// has its differing columns listed, in the message and in --json.
func TestUndoCLIConflictColumnsWithNulls(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text, w text, n int);
		INSERT INTO a VALUES (1, 'x', NULL, NULL), (2, 'x', 'y', NULL), (3, 'x', NULL, 1), (4, 'x', 'y', 1);`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	p := pgtest.Connect(t, url)
	pgtest.Exec(t, p, `UPDATE a SET v = 'patched'`)
	patch := sessionID(t, p)
	o := pgtest.Connect(t, url)
	pgtest.Exec(t, o, `UPDATE a SET w = 'edit' WHERE id = 1`) // NULL -> value; n stays NULL
	pgtest.Exec(t, o, `UPDATE a SET w = NULL WHERE id = 2`)   // value -> NULL
	pgtest.Exec(t, o, `UPDATE a SET n = NULL WHERE id = 3`)   // value -> NULL, w NULL throughout
	pgtest.Exec(t, o, `UPDATE a SET w = 'edit' WHERE id = 4`) // no NULL anywhere (control)
	later := sessionID(t, o)
	state := ucState(t, conn)

	r := run(t, url, "undo", patch, "--yes")
	require.Equal(t, 3, r.code, r.stderr)
	for _, c := range []struct{ key, cols string }{{"id=1", "w"}, {"id=2", "w"}, {"id=3", "n"}, {"id=4", "w"}} {
		require.Contains(t, r.stderr, "conflict: public.a "+c.key+": changed since (columns "+c.cols+") by session "+later, "row %s", c.key)
	}
	require.Equal(t, state, ucState(t, conn), "refused: nothing changed")

	r = run(t, url, "undo", patch, "--yes", "--json")
	require.Equal(t, 3, r.code, r.stderr)
	plan := ucDecodePlan(t, r.stdout)
	got := map[string][]string{}
	for _, c := range plan.Conflicts {
		got[c.Key] = c.Columns
	}
	require.Equal(t, map[string][]string{"id=1": {"w"}, "id=2": {"w"}, "id=3": {"n"}, "id=4": {"w"}}, got)
	require.Equal(t, state, ucState(t, conn), "refused: nothing changed")
}

// ---------------------------------------------------------------------------
// Schema changed since capture.

// TestUndoCLISchemaChanged: a column the session's rows hold was dropped
// since: the undo is refused with exit 3 and the column named, data and
// log unchanged.
func TestUndoCLISchemaChanged(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text, b text);
		INSERT INTO a SELECT i, 'v' || i, 'b' || i FROM generate_series(1, 4) i;`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	p := pgtest.Connect(t, url)
	pgtest.Exec(t, p, `UPDATE a SET v = 'patched', b = 'patched' WHERE id <= 2`)
	pgtest.Exec(t, p, `DELETE FROM a WHERE id = 3`)
	patch := sessionID(t, p)
	pgtest.Exec(t, conn, `ALTER TABLE a DROP COLUMN b`)
	state := ucState(t, conn)
	for _, args := range [][]string{{"--yes"}, {"--yes", "--json"}, {"--dry-run"}, {"--yes", "--on-conflict", "skip"}, {"--yes", "--on-conflict", "merge"}} {
		r := run(t, url, append([]string{"undo", patch}, args...)...)
		require.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		require.Regexp(t, `column "?b"? was dropped`, r.stderr, args)
		require.Contains(t, r.stderr, "nothing was changed", args)
		require.Equal(t, state, ucState(t, conn), "%v: data and log unchanged", args)
	}
}

// ---------------------------------------------------------------------------
// A role that may not set session_replication_role.

// TestUndoCLIReplicationRolePrivilege: a non-superuser role owns the
// application's tables (one of them with a stamping BEFORE UPDATE trigger
// and an FK to the other) and pgundo (it installed it). Without the right
// to set session_replication_role:
//   - an undo touching only a table without triggers goes ahead;
//   - an undo touching the table with triggers is refused with exit 3,
//     naming the exact grant (PostgreSQL 15+) and changing nothing;
//
// then, on PostgreSQL 15+, after GRANT SET ON PARAMETER
// session_replication_role TO the role, the same undo succeeds and puts
// back exactly the rows as they were (the trigger does not re-stamp them).
func TestUndoCLIReplicationRolePrivilege(t *testing.T) {
	t.Parallel()
	url, admin := setup(t, "")
	ver := ucServerVersion(t, admin)
	owner, ownerURL := ucRole(t, url, admin, "pgundo_owner")
	q := pgx.Identifier{owner}.Sanitize()
	pgtest.Exec(t, admin, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s`, pgx.Identifier{admin.Config().Database}.Sanitize(), q))
	// pgundo install asks for it: capture, running with its installer's
	// rights, reads other roles' backend start times.
	pgtest.Exec(t, admin, `GRANT pg_read_all_stats TO `+q)

	oc := pgtest.Connect(t, ownerURL)
	require.False(t, queryBool(t, oc, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`))
	pgtest.Exec(t, oc, `
		CREATE SCHEMA app;
		CREATE TABLE app.customer (id int PRIMARY KEY, name text);
		CREATE TABLE app.doc (id int PRIMARY KEY, customer_id int REFERENCES app.customer, body text, stamp text NOT NULL);
		CREATE TABLE app.note (id int PRIMARY KEY, body text);
		CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN NEW.stamp := 'stamped by trigger'; RETURN NEW; END $$;
		CREATE TRIGGER doc_stamp BEFORE UPDATE ON app.doc FOR EACH ROW EXECUTE FUNCTION app.stamp();
		INSERT INTO app.customer VALUES (1, 'c1'), (2, 'c2');
		INSERT INTO app.doc SELECT g, 1 + g % 2, 'body ' || g, 'original' FROM generate_series(1, 6) g;
		INSERT INTO app.note VALUES (1, 'n1'), (2, 'n2');`)

	// The owner installs pgundo (without event triggers: they need a
	// superuser, install only warns) and tracks its tables.
	r := run(t, ownerURL, "install")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, ownerURL, "track", "app.customer", "app.doc", "app.note")
	require.Equal(t, 0, r.code, r.stderr)
	pristine := map[string][]string{}
	for _, tbl := range []string{"app.customer", "app.doc", "app.note"} {
		pristine[tbl] = tableText(t, admin, tbl)
	}

	patch := pgtest.Connect(t, withApp(ownerURL, "patch"))
	pgtest.Exec(t, patch, `UPDATE app.doc SET body = 'patched' WHERE id <= 3`)
	pgtest.Exec(t, patch, `DELETE FROM app.doc WHERE id = 4`)
	pgtest.Exec(t, patch, `INSERT INTO app.doc VALUES (7, 2, 'new', 'new')`)
	pgtest.Exec(t, patch, `UPDATE app.customer SET name = 'patched' WHERE id = 2`)
	patchID := sessionID(t, patch)
	notes := pgtest.Connect(t, withApp(ownerURL, "notes"))
	pgtest.Exec(t, notes, `UPDATE app.note SET body = 'changed' WHERE id = 1`)
	pgtest.Exec(t, notes, `INSERT INTO app.note VALUES (3, 'n3')`)
	notesID := sessionID(t, notes)
	require.Contains(t, tableText(t, admin, "app.doc"), "(1,2,patched,\"stamped by trigger\")")

	// No trigger on app.note: nothing to keep quiet, the undo goes ahead.
	r = run(t, ownerURL, "undo", notesID, "--yes")
	require.Equal(t, 0, r.code, "undo of a session on a table without triggers, without the privilege: %s", r.stderr)
	require.Equal(t, pristine["app.note"], tableText(t, admin, "app.note"))

	// app.doc has a trigger (and FK triggers): refused.
	state := ucState(t, admin)
	for _, args := range [][]string{{"--yes"}, {"--yes", "--json"}, {"--yes", "--on-conflict", "skip"}} {
		r = run(t, ownerURL, append([]string{"undo", patchID}, args...)...)
		require.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "session_replication_role", args)
		require.Contains(t, r.stderr, "doc_stamp", "%v: the message names the trigger", args)
		require.Contains(t, r.stderr, "nothing was changed", args)
		if ver >= 150000 {
			require.Contains(t, r.stderr, "GRANT SET ON PARAMETER session_replication_role TO "+q, args)
		} else {
			require.NotContains(t, r.stderr, "GRANT SET ON PARAMETER", "%v: PostgreSQL %d has no parameter grants", args, ver)
			require.Contains(t, r.stderr, "superuser", args)
		}
		require.Equal(t, state, ucState(t, admin), "%v: data and log unchanged", args)
	}

	if ver < 150000 {
		// Not skipped silently: the grant must really be missing here.
		_, err := admin.Exec(context.Background(), `GRANT SET ON PARAMETER session_replication_role TO `+q)
		require.Error(t, err, "server_version_num %d accepts GRANT SET ON PARAMETER: test the undo after it", ver)
		return
	}
	pgtest.Exec(t, admin, `GRANT SET ON PARAMETER session_replication_role TO `+q)
	r = run(t, ownerURL, "undo", patchID, "--yes")
	require.Equal(t, 0, r.code, "after the grant: %s", r.stderr)
	for tbl, want := range pristine {
		require.Equal(t, want, tableText(t, admin, tbl), "%s after the undo", tbl)
	}
}

// queryBool runs a query returning one boolean.
func queryBool(t *testing.T, conn *pgx.Conn, sql string) bool {
	t.Helper()
	var b bool
	require.NoError(t, conn.QueryRow(context.Background(), sql).Scan(&b), sql)
	return b
}
