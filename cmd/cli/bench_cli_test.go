package cli_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestBenchRefusesRealLog: the benches empty pgundo's log, so where it holds
// other tables' history they refuse (exit 3) and change nothing; without a
// benchmark named, bench is bad usage.
func TestBenchRefusesRealLog(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep VALUES (1)`)
	require.Equal(t, cli.ExitOK, run(t, url, "install").code)
	require.Equal(t, cli.ExitOK, run(t, url, "track", "keep").code)
	pgtest.Exec(t, conn, `UPDATE keep SET id = 2`)
	for _, b := range []string{"undo", "capture"} {
		r := run(t, url, "bench", b, "--rows", "10")
		require.Equal(t, cli.ExitRefused, r.code, r.stderr)
		require.Contains(t, r.stderr, "is in real use: pgundo there holds changes to public.keep")
	}
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pgundo.stmt`).Scan(&n))
	require.Equal(t, 1, n, "the log is untouched")
	r := run(t, url, "bench")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "choose a benchmark")
}
