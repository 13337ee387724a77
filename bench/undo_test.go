package bench_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/bench"
)

// TestUndoBench runs the undo bench on small sessions, on the fast and the
// planned path: every run must put the table back exactly (the bench compares it with a copy and fails
// otherwise), report the times it measured, and clean up after itself.
func TestUndoBench(t *testing.T) {
	t.Parallel()
	conn := setup(t)
	var p progress
	res, err := bench.Undo(t.Context(), conn, bench.UndoOptions{Sizes: []int64{200, 2000}, Repeat: 2, Planned: true}, p.add)
	require.NoError(t, err)
	require.Len(t, res.Sizes, 2)
	for i, n := range []int64{200, 2000} {
		r := res.Sizes[i]
		require.Equal(t, n, r.Rows)
		require.True(t, r.Exact)
		require.Positive(t, r.Forward)
		require.Positive(t, r.Undo)
		require.Positive(t, r.Untracked)
		require.Len(t, r.RunRatios, 2)
		for _, x := range r.RunRatios {
			require.Positive(t, x)
		}
		require.InDelta(t, (r.RunRatios[0]+r.RunRatios[1])/2, r.Ratio, 1e-9, "the median of two runs' ratios")
		require.Equal(t, r.Ratio <= bench.GoalUndo, r.GoalMet)
		require.Positive(t, r.PeakHeapBytes)
		require.Positive(t, r.Planned)
		require.Len(t, r.PlannedRunRatios, 2)
		require.InDelta(t, (r.PlannedRunRatios[0]+r.PlannedRunRatios[1])/2, r.PlannedRatio, 1e-9)
	}
	require.Len(t, p.lines, 8+1, "two progress lines per run (fast and planned undo), then cleanup: %v", p.lines)
	var left bool
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT to_regnamespace('pgundo_bench') IS NOT NULL OR EXISTS (SELECT FROM pgundo.stmt) OR EXISTS (SELECT FROM pgundo.tracked)`).Scan(&left))
	require.False(t, left, "schema pgundo_bench, log entries or tracked tables left behind")
}
