package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/bench"
)

// TestRenderBenchCaptureEMaj: E-Maj's columns (time and ratio after the
// floor's, its log bytes per row last) and its line appear only when E-Maj
// was measured; the other columns stay where they were.
func TestRenderBenchCaptureEMaj(t *testing.T) {
	t.Parallel()
	tm := func(s, r, b float64) bench.Timing { return bench.Timing{Seconds: s, Ratio: r, LogBytesPerRow: b} }
	tp := func(tps, r float64) bench.Throughput { return bench.Throughput{TPS: tps, Ratio: r} }
	res := &bench.CaptureResult{Database: "scratch", Rows: 1000, Repeat: 1, Checkpoints: true,
		Steps: []bench.StepResult{{Step: "update", Rows: 1000, Untracked: tm(1, 1, 0), Pgundo: tm(2.25, 2.25, 242),
			RowLevel: tm(3, 3, 482), Floor: tm(1.5, 1.5, 141), Goal: 1.5, LogBytesGoal: 200}},
		OLTP: []*bench.OLTPResult{{Script: "tpcb-like", Clients: 1, Untracked: tp(2000, 1), Pgundo: tp(1500, 0.75),
			RowLevel: tp(1600, 0.8), Floor: tp(1800, 0.9), Goal: 0.85, FloorRatio: 0.83, FloorGoal: 0.95}}}
	var plain strings.Builder
	require.NoError(t, renderBenchCapture(&plain, res))
	require.NotContains(t, plain.String(), "EMAJ")
	require.NotContains(t, plain.String(), "emaj:")

	res.EMajVersion = "4.7.1"
	e := tm(4.6, 4.6, 427)
	res.Steps[0].EMaj = &e
	o := tp(1400, 0.7)
	res.OLTP[0].EMaj = &o
	var out strings.Builder
	require.NoError(t, renderBenchCapture(&out, res))
	fields := func(prefix string) []string {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return strings.Fields(l)
			}
		}
		t.Fatalf("no line starting with %q in:\n%s", prefix, out.String())
		return nil
	}
	require.Equal(t, []string{"STEP", "ROWS", "UNTRACKED", "PGUNDO", "RATIO", "ROWLEVEL", "RATIO", "FLOOR", "RATIO", "EMAJ", "RATIO",
		"GOAL", "LOG", "B/ROW", "ROWLEVEL", "LOG", "B/ROW", "EMAJ", "LOG", "B/ROW"}, fields("STEP"))
	require.Equal(t, []string{"update", "1000", "1.000", "s", "2.250", "s", "2.25", "3.000", "s", "3.00", "1.500", "s", "1.50",
		"4.600", "s", "4.60", "≤", "1.50", "MISSED", "242", "(≤", "200", "MISSED)", "482", "427"}, fields("update"))
	require.Equal(t, []string{"tpcb-like", "1", "2000", "tps", "1500", "tps", "0.75", "1600", "tps", "0.80", "1800", "tps", "0.90",
		"1400", "tps", "0.70", "≥", "0.85", "MISSED", "0.83", "≥", "0.95", "MISSED", "0"}, fields("tpcb-like "))
	require.Contains(t, out.String(), "emaj: E-Maj 4.7.1, row-level log triggers")
}
