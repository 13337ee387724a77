package bench_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/bench"
	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestHistoryBench runs the history bench at a tiny size: the log it builds
// reads back as capture would have written it (ten versions of the row,
// asof consistent with the table), every timing is there, and it cleans up.
func TestHistoryBench(t *testing.T) {
	t.Parallel()
	conn := setup(t)
	// Index the log in bulk (without the index, built afterwards), as the
	// first refresh of a big log does.
	pgtest.Exec(t, conn, "SET pgundo.bulk_index_rows = 100")
	var p progress
	res, err := bench.History(context.Background(), conn, bench.HistoryOptions{Entries: 2000, Runs: 2, NewChanges: 5, Keep: true}, p.add)
	require.NoError(t, err)
	require.EqualValues(t, 2000, res.Entries)
	require.EqualValues(t, 200, res.Rows)
	require.EqualValues(t, 6+800, res.Statements)
	require.Equal(t, "aid=101", res.Key)
	require.GreaterOrEqual(t, res.Versions, 10)
	require.Len(t, res.Timings, 3)
	for _, q := range res.Timings {
		require.Equal(t, 2, q.Runs, q.What)
		require.Greater(t, q.MedianMS, 0.0, q.What)
	}
	require.Greater(t, res.LogBytes, int64(0))
	require.Greater(t, res.IndexBytes, int64(0))
	require.Contains(t, strings.Join(p.lines, "\n"), "row-history index built in")

	// The synthetic log is consistent: every row rebuilt as of the time
	// before the first entry is absent, and the row's full history reads.
	var oid uint32
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT 'pgundo_bench.hist_accounts'::regclass::oid").Scan(&oid))
	tbl, err := history.LoadTable(context.Background(), conn, oid)
	require.NoError(t, err)
	key, err := tbl.ParseKey([]string{"7"})
	require.NoError(t, err)
	h, err := history.History(context.Background(), conn, tbl, key)
	require.NoError(t, err)
	var ops []string
	for _, v := range h.Versions {
		ops = append(ops, v.Op)
	}
	require.Equal(t, []string{"INSERT", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE", "UPDATE"}, ops[:10])
	require.Equal(t, "(7,1,0,\""+strings.Repeat(" ", 84)+"\")", *h.Versions[0].New)
	n := 0
	require.NoError(t, history.AsOf(context.Background(), conn, tbl, h.Versions[5].At, func(string, []*string) error { n++; return nil }))
	require.Equal(t, 200, n)

	// A second run refuses nothing it made itself, and cleans up without --keep.
	res, err = bench.History(context.Background(), conn, bench.HistoryOptions{Entries: 100, Runs: 1, NewChanges: 1}, nil)
	require.NoError(t, err)
	require.False(t, res.Kept)
	requireBenchGone(t, conn)
	require.Zero(t, count(t, conn, "SELECT count(*) FROM pgundo.hist_key"))
}

func TestHistoryBenchRefusesRealLog(t *testing.T) {
	t.Parallel()
	conn := setup(t)
	pgtest.Exec(t, conn, "CREATE TABLE real (id int PRIMARY KEY); SELECT pgundo.track('real'); INSERT INTO real VALUES (1)")
	_, err := bench.History(context.Background(), conn, bench.HistoryOptions{Entries: 100}, nil)
	var inUse *bench.LogInUseError
	require.True(t, errors.As(err, &inUse), "%v", err)
	require.Equal(t, int64(1), count(t, conn, "SELECT count(*) FROM pgundo.change"), "nothing was changed")
	_, err = bench.History(context.Background(), conn, bench.HistoryOptions{Entries: 105}, nil)
	require.ErrorContains(t, err, "entries must be a multiple of 10")
}
