package console

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConsoleChartTicks(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for max, want := range map[int64][]string{
		3:   {"0", "1", "2", "3", "4"},
		7:   {"0", "2", "4", "6", "8", "10"},
		17:  {"0", "4", "8", "12", "16", "20"},
		420: {"0", "100", "200", "300", "400", "500"},
	} {
		c := layoutChart([]point{{Bucket: start, Series: "a", Count: max}}, []string{"a"}, start, start.Add(time.Hour), time.Minute)
		var got []string
		for _, tk := range c.YTicks {
			got = append(got, tk.Label)
		}
		require.Equal(t, want, got, "max %d", max)
		require.Len(t, c.Bars, 1)
		bar := c.Bars[0]
		require.InDelta(t, float64(c.Top+c.PlotH)-bar.H, bar.Y, 1e-9)
		require.InDelta(t, float64(c.PlotH)*float64(max)/float64(niceMax(max)), bar.H, 1e-9, "bar height to scale")
	}
}

func TestConsoleMakeValue(t *testing.T) {
	t.Parallel()
	s := func(v string) *string { return &v }
	require.Equal(t, Value{Null: true}, MakeValue(nil))
	require.Equal(t, Value{Short: ""}, MakeValue(s("")))
	require.Equal(t, Value{Short: `a\nb\tc\u0000d\x80e\u202e`}, MakeValue(s("a\nb\tc\x00d\x80e\u202e")))
	long := make([]byte, FullLen+100)
	for i := range long {
		long[i] = 'y'
	}
	v := MakeValue(s(string(long)))
	require.True(t, v.Cut)
	require.Len(t, v.Short, ShortLen)
	require.Len(t, v.Full, FullLen)
	require.Equal(t, 100, v.Omitted)
	u := MakeValue(s(string(make([]rune, 0)) + "ünïcødé " + string(long[:ShortLen])))
	require.True(t, u.Cut)
	require.Equal(t, ShortLen, len([]rune(u.Short)), "cut on a rune boundary")
}
