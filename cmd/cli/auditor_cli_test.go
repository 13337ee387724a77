package cli_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// asUser returns the connection string dsn (a URL or keyword/value pairs)
// with its user replaced by role.
func asUser(t *testing.T, dsn, role string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		u.User = url.User(role)
		return u.String()
	}
	return dsn + " user=" + role
}

// TestAuditorReadCommands: a role granted auditor may read pgundo's views,
// not the log tables pgundo's read commands use. Each read command run as
// that role says so in one line (what it may use, and what to do), exit 1,
// nothing on stdout; under --json the same as an error object. A role with
// no grant at all is told how to get one.
func TestAuditorReadCommands(t *testing.T) {
	t.Parallel()
	dsn, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x')`)
	db := conn.Config().Database
	suffix := db[len(db)-8:]
	aud, other := "aud_"+suffix, "other_"+suffix
	pgtest.Exec(t, conn, "CREATE ROLE "+aud+" LOGIN; CREATE ROLE "+other+" LOGIN")
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP OWNED BY "+aud+", "+other+"; DROP ROLE "+aud+"; DROP ROLE "+other)
			c.Close(context.Background())
		}
	})
	require.Equal(t, 0, run(t, dsn, "install").code)
	require.Equal(t, 0, run(t, dsn, "track", "a").code)
	w := pgtest.Connect(t, withApp(dsn, "patch"))
	pgtest.Exec(t, w, "UPDATE a SET v = 'y'")
	sid := sessionID(t, w)
	r := run(t, dsn, "grant", "auditor", aud)
	require.Equal(t, 0, r.code, r.stderr)

	// The views work for the auditor, as granted.
	var n int64
	require.NoError(t, connectAs(t, dsn, aud).QueryRow(context.Background(), "SELECT count(*) FROM pgundo.changes").Scan(&n))
	require.EqualValues(t, 1, n)

	commands := [][]string{
		{"sessions"},
		{"show", sid},
		{"history", "a", "1"},
		{"log"},
		{"asof", "a", "--at", "1s"},
	}
	for _, args := range commands {
		name := "pgundo " + args[0]
		want := fmt.Sprintf("role %s is a pgundo auditor in database %s: it may read the views pgundo.changes, pgundo.row_history, pgundo.sessions, pgundo.session_totals, pgundo.statements, not run %s, which reads pgundo's log tables; query the views (psql, BI tools), or run %s as the role that installed pgundo",
			aud, db, name, name)
		r := run(t, asUser(t, dsn, aud), args...)
		require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
		require.Empty(t, r.stdout, args)
		require.Equal(t, "pgundo: "+want+"\n", r.stderr, args)

		r = run(t, asUser(t, dsn, aud), append(args, "--json")...)
		requireJSONError(t, r, 1, want, str("query pgundo.changes, pgundo.row_history, pgundo.sessions, pgundo.session_totals, pgundo.statements with psql"))

		want = fmt.Sprintf("role %s has no access to pgundo in database %s (permission denied for schema pgundo); run %s as the role that installed pgundo, or let it read pgundo's views: pgundo grant auditor %s",
			other, db, name, other)
		r = run(t, asUser(t, dsn, other), args...)
		require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
		require.Empty(t, r.stdout, args)
		require.Equal(t, "pgundo: "+want+"\n", r.stderr, args)
	}
}
