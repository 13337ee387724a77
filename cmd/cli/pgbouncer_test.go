package cli_test

import (
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestRunTagThroughPgBouncer: pgundo run --tag passes the tag in PGOPTIONS,
// i.e. the startup packet's "options". PgBouncer (1.18, transaction
// pooling) refuses such connections by default, so the command fails loudly
// instead of running untagged; with options in ignore_startup_parameters it
// connects and the tag is dropped, but the application_name (PGAPPNAME =
// the tag, which PgBouncer does pass on) still marks the changes, so undo
// --app takes them back. The README's "Connection poolers" section says
// this.
func TestRunTagThroughPgBouncer(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
	for _, args := range [][]string{{"install"}, {"track", "t"}} {
		r := run(t, url, args...)
		require.Equal(t, 0, r.code, r.stderr)
	}
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	before := tableText(t, conn, "t")
	psql := filepath.Join(pgtest.BinDir(), "psql")

	strict := pgtest.StartPgBouncer(t, pgtest.BouncerOptions{})
	r := run(t, url, "run", "--tag", "ticket-9", "--", psql, "-X", "-v", "ON_ERROR_STOP=1", "-c", "UPDATE t SET v = 'x' WHERE id = 1", strict.ConnString(cfg.Database))
	require.NotEqual(t, 0, r.code, "psql through pgbouncer with PGOPTIONS must fail")
	require.Contains(t, r.stderr, "unsupported startup parameter: options")
	require.Equal(t, before, tableText(t, conn, "t"))

	lax := pgtest.StartPgBouncer(t, pgtest.BouncerOptions{IgnoreStartupParameters: []string{"options"}})
	r = run(t, url, "run", "--tag", "ticket-9", "--", psql, "-X", "-v", "ON_ERROR_STOP=1", "-c", "UPDATE t SET v = 'x' WHERE id = 1", lax.ConnString(cfg.Database))
	require.Equal(t, 0, r.code, r.stderr)
	var tag *string
	var app string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT tag, application_name FROM pgundo.stmt ORDER BY id DESC LIMIT 1`).Scan(&tag, &app))
	require.Nil(t, tag, "PgBouncer dropped the options, and the tag with them")
	require.Equal(t, "ticket-9", app, "PGAPPNAME passes through PgBouncer")

	r = run(t, url, "undo", "--app", "ticket-9", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, before, tableText(t, conn, "t"))
}
