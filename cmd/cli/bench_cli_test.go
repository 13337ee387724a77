package cli_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/bench"
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

// TestBenchUndoPairsRuns: bench undo divides each run's undo by the session
// it undid and reports the median of those ratios, listing every run's
// ratio in the text output and in --json; it measures three runs unless
// told otherwise.
func TestBenchUndoPairsRuns(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, "")
	r := run(t, url, "bench", "undo", "--rows", "50", "--repeat", "3", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var res bench.UndoResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.Len(t, res.Sizes, 1)
	s := res.Sizes[0]
	require.Len(t, s.RunRatios, 3)
	sorted := slices.Clone(s.RunRatios)
	slices.Sort(sorted)
	require.Equal(t, sorted[1], s.Ratio, "the median of the runs' ratios")
	require.Equal(t, s.Ratio <= bench.GoalUndo, s.GoalMet)
	found := false
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.Contains(line, "rows run 1/3") {
			require.Contains(t, line, fmt.Sprintf("(%.2f of the tracked update)", s.RunRatios[0]))
			found = true
		}
	}
	require.True(t, found, "a progress line for run 1: %s", r.stderr)

	r = run(t, url, "bench", "undo", "--rows", "50")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "median of 3 runs per figure", "three runs by default")
	require.Regexp(t, `(?m)^UNDO÷FORWARD is the median of each run's undo ÷ the session it undid:\n  50 rows: \d+\.\d\d \d+\.\d\d \d+\.\d\d$`, r.stdout)
}

// TestBenchCaptureEMajMissing: --emaj where E-Maj is not installed is an
// error (exit 1) that says how to install it, and nothing is changed:
// pgundo is not installed, schema pgundo_bench not created.
func TestBenchCaptureEMajMissing(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "")
	for _, args := range [][]string{{}, {"--json"}} {
		r := run(t, url, append([]string{"bench", "capture", "--rows", "10", "--oltp-seconds", "0", "--emaj"}, args...)...)
		require.Equal(t, cli.ExitError, r.code, r.stderr)
		out := r.stderr
		if len(args) > 0 {
			var e struct {
				Error struct{ Message string } `json:"error"`
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &e), r.stdout)
			out = e.Error.Message
		}
		require.Contains(t, out, "E-Maj is not installed in database")
		require.Contains(t, out, "nothing was changed")
		require.Contains(t, out, "emaj-<version>.sql")
	}
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_namespace WHERE nspname IN ('pgundo', 'pgundo_bench')`).Scan(&n))
	require.Zero(t, n, "nothing created")
}
