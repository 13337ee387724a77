package console

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/humanize"
	"github.com/pgundo/pgundo/internal/timefmt"
)

// Lengths at which values are cut: ShortLen runes are shown in place, up to
// FullLen more behind a "show all" disclosure; beyond that the page says
// how much is left out and where to read it whole.
const (
	ShortLen = 120
	FullLen  = 20000
)

// Value is a column value made safe to show: control characters and
// invalid UTF-8 spelled out (\n, \t, \x01), cut at ShortLen runes (Short)
// with the rest up to FullLen in Full.
type Value struct {
	Null  bool
	Short string
	// Full is set when Short is cut: the value up to FullLen runes.
	Full string
	// Cut is true when Short is cut; Omitted counts the bytes not shown
	// even in Full.
	Cut     bool
	Omitted int
}

// visible spells out control characters and invalid UTF-8.
func visible(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			// C0/C1 controls, line separators and bidi overrides, which
			// could disguise what is shown.
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// cutRunes returns s cut to n runes and the number of bytes left out.
func cutRunes(s string, n int) (string, int) {
	i := 0
	for k := 0; k < n && i < len(s); k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i], len(s) - i
}

// MakeValue makes a Value of a nullable column value.
func MakeValue(p *string) Value {
	if p == nil {
		return Value{Null: true}
	}
	v := visible(*p)
	short, rest := cutRunes(v, ShortLen)
	if rest == 0 {
		return Value{Short: v}
	}
	full, omitted := cutRunes(v, FullLen)
	return Value{Short: short, Full: full, Cut: true, Omitted: omitted}
}

var funcs = template.FuncMap{
	"val":  MakeValue,
	"time": func(t time.Time) string { return timefmt.Format(t) },
	"timep": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return timefmt.Format(*t)
	},
	"bytes": humanBytes,
	"join":  strings.Join,
	"q":     url.QueryEscape,
	"add":   func(a, b int) int { return a + b },
	"deref": func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	},
}

// humanBytes renders a size in bytes as 1.5 MiB (internal/humanize).
func humanBytes(n int64) string { return humanize.Bytes(n) }

// Chart is an activity chart laid out for SVG: stacked bars, one Bar (a
// rect) per data point.
type Chart struct {
	Width, Height int
	// Plot area.
	Left, Top, PlotW, PlotH int
	Bars                    []Bar
	XTicks                  []Tick
	YTicks                  []Tick
	Legend                  []LegendItem
	Max                     int64
}

// Bar is one data point: the changes of one series in one bucket.
type Bar struct {
	X, Y, W, H float64
	Fill       string
	Series     string
	Bucket     string
	Count      int64
}

// Tick is an axis label.
type Tick struct {
	X, Y  float64
	Label string
}

// LegendItem names one series' colour.
type LegendItem struct {
	Name  string
	Fill  string
	Total int64
	X, Y  float64
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// point is one aggregated row of the activity query.
type point struct {
	Bucket time.Time
	Series string
	Count  int64
}

// layoutChart lays out points over buckets from start to end (exclusive)
// of width step. Series are coloured in the order of their totals,
// largest first.
func layoutChart(points []point, series []string, start, end time.Time, step time.Duration) Chart {
	c := Chart{Width: 960, Height: 300, Left: 60, Top: 10}
	c.PlotW, c.PlotH = c.Width-c.Left-30, c.Height-c.Top-40
	n := int(end.Sub(start) / step)
	if n < 1 {
		n = 1
	}
	stack := map[int64]int64{}
	for _, p := range points {
		stack[p.Bucket.Unix()] += p.Count
		c.Max = max(c.Max, stack[p.Bucket.Unix()])
	}
	top := niceMax(c.Max)
	colour := map[string]string{}
	for i, s := range series {
		colour[s] = palette[i%len(palette)]
	}
	bw := float64(c.PlotW) / float64(n)
	base := map[int64]float64{}
	for _, p := range points {
		i := int(p.Bucket.Sub(start) / step)
		h := float64(c.PlotH) * float64(p.Count) / float64(top)
		k := p.Bucket.Unix()
		y := float64(c.Top+c.PlotH) - base[k] - h
		base[k] += h
		c.Bars = append(c.Bars, Bar{X: float64(c.Left) + float64(i)*bw, Y: y, W: math.Max(bw-1, 1), H: h,
			Fill: colour[p.Series], Series: p.Series, Bucket: timefmt.Format(p.Bucket), Count: p.Count})
	}
	// niceMax gives 4 or 1, 2 or 5 times a power of ten: one of 4 and 5
	// divides it, so every tick is a whole number at its true height.
	ticks := int64(4)
	if top%5 == 0 {
		ticks = 5
	}
	for k := int64(0); k <= ticks; k++ {
		c.YTicks = append(c.YTicks, Tick{X: float64(c.Left - 6), Y: float64(c.Top+c.PlotH) - float64(c.PlotH)*float64(k)/float64(ticks) + 4, Label: fmt.Sprint(top * k / ticks)})
	}
	labels := 6
	for k := 0; k <= labels; k++ {
		t := start.Add(time.Duration(float64(end.Sub(start)) * float64(k) / float64(labels)))
		layout := "15:04"
		if end.Sub(start) > 36*time.Hour {
			layout = "01-02 15:04"
		}
		c.XTicks = append(c.XTicks, Tick{X: float64(c.Left) + float64(c.PlotW)*float64(k)/float64(labels), Y: float64(c.Top + c.PlotH + 16), Label: t.UTC().Format(layout)})
	}
	return c
}

// niceMax rounds a chart's maximum up to 1, 2 or 5 times a power of ten.
func niceMax(v int64) int64 {
	if v <= 4 {
		return 4
	}
	p := int64(1)
	for p*10 < v {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// SizeChart is the log's size over time laid out for SVG: one Dot (a
// circle) per sample, joined by a line.
type SizeChart struct {
	Width, Height int
	// Plot area.
	Left, Top, PlotW, PlotH int
	Dots                    []Dot
	// Line is the polyline's points ("x,y x,y ...").
	Line   string
	XTicks []Tick
	YTicks []Tick
}

// Dot is one sample of the log's size.
type Dot struct {
	X, Y            float64
	At              string
	Bytes           int64
	ChangesEstimate int64
}

// layoutSizeChart lays out samples (oldest first) over the time from start
// to end, from 0 bytes up.
func layoutSizeChart(samples []history.SizeSample, start, end time.Time) SizeChart {
	c := SizeChart{Width: 960, Height: 240, Left: 80, Top: 10}
	c.PlotW, c.PlotH = c.Width-c.Left-45, c.Height-c.Top-40
	span := end.Sub(start)
	if span <= 0 {
		span = time.Second
	}
	var most int64
	for _, s := range samples {
		most = max(most, s.Bytes)
	}
	// A round number of the largest binary unit below the maximum (500
	// KiB, 2 MiB), so that the ticks read as whole units.
	unit := int64(1)
	for unit*1024 <= most {
		unit *= 1024
	}
	top := niceMax((most+unit-1)/unit) * unit
	var line strings.Builder
	for i, s := range samples {
		x := float64(c.Left) + float64(c.PlotW)*float64(s.At.Sub(start))/float64(span)
		y := float64(c.Top+c.PlotH) - float64(c.PlotH)*float64(s.Bytes)/float64(top)
		c.Dots = append(c.Dots, Dot{X: x, Y: y, At: timefmt.Format(s.At), Bytes: s.Bytes, ChangesEstimate: s.ChangesEstimate})
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%.2f,%.2f", x, y)
	}
	c.Line = line.String()
	ticks := int64(4)
	if top%5 == 0 {
		ticks = 5
	}
	for k := int64(0); k <= ticks; k++ {
		c.YTicks = append(c.YTicks, Tick{X: float64(c.Left - 6), Y: float64(c.Top+c.PlotH) - float64(c.PlotH)*float64(k)/float64(ticks) + 4, Label: humanBytes(top * k / ticks)})
	}
	labels := 6
	for k := 0; k <= labels; k++ {
		t := start.Add(time.Duration(float64(span) * float64(k) / float64(labels)))
		layout := "15:04"
		switch {
		case span > 36*time.Hour:
			layout = "01-02 15:04"
		case span < time.Hour:
			layout = "15:04:05"
		}
		c.XTicks = append(c.XTicks, Tick{X: float64(c.Left) + float64(c.PlotW)*float64(k)/float64(labels), Y: float64(c.Top + c.PlotH + 16), Label: t.UTC().Format(layout)})
	}
	return c
}
