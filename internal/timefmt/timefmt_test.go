package timefmt_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/timefmt"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParse(t *testing.T) {
	t.Parallel()
	now := utc("2026-12-04T03:17:43.123456789Z")
	for _, c := range []struct {
		in   string
		want string // RFC 3339 in UTC
	}{
		// As pgundo prints.
		{"2026-12-04 03:17:43.123456 UTC", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 03:17:43.000000 UTC", "2026-12-04T03:17:43Z"},
		{"  2026-12-04 03:17:43.123456 UTC\n", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 03:17:43.123456 utc", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 03:17:43.123456UTC", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 03:17:43 GMT", "2026-12-04T03:17:43Z"},
		// RFC 3339.
		{"2026-12-04T03:17:43Z", "2026-12-04T03:17:43Z"},
		{"2026-12-04t03:17:43z", "2026-12-04T03:17:43Z"},
		{"2026-12-04T03:17:43.5Z", "2026-12-04T03:17:43.5Z"},
		{"2026-12-04T03:17:43.123456789Z", "2026-12-04T03:17:43.123456789Z"},
		{"2026-12-03T22:17:43.123456-05:00", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04T08:47:43+05:30", "2026-12-04T03:17:43Z"},
		{"2026-12-04 08:47:43+05:30", "2026-12-04T03:17:43Z"},
		{"2026-12-04 03:17:43Z", "2026-12-04T03:17:43Z"},
		// psql's timestamptz output.
		{"2026-12-04 03:17:43.123456+00", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-03 22:17:43.123456-05", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 08:47:43+05:30", "2026-12-04T03:17:43Z"},
		{"2026-12-04 08:47:43+0530", "2026-12-04T03:17:43Z"},
		{"1883-11-18 12:03:57-04:56:02", "1883-11-18T16:59:59Z"},
		{"2026-12-04 03:17:43 +00", "2026-12-04T03:17:43Z"},
		// No zone: UTC.
		{"2026-12-04 03:17:43.123456", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04T03:17:43.123456", "2026-12-04T03:17:43.123456Z"},
		{"2026-12-04 03:17:43", "2026-12-04T03:17:43Z"},
		{"2026-12-04 03:17", "2026-12-04T03:17:00Z"},
		{"2026-12-04T03:17", "2026-12-04T03:17:00Z"},
		{"2026-12-04", "2026-12-04T00:00:00Z"},
		{"2028-02-29", "2028-02-29T00:00:00Z"},
		// Ages back from now.
		{"0s", "2026-12-04T03:17:43.123456789Z"},
		{"90s", "2026-12-04T03:16:13.123456789Z"},
		{"1m", "2026-12-04T03:16:43.123456789Z"},
		{"15m", "2026-12-04T03:02:43.123456789Z"},
		{"2h", "2026-12-04T01:17:43.123456789Z"},
		{"2h30m", "2026-12-04T00:47:43.123456789Z"},
		{"3d", "2026-12-01T03:17:43.123456789Z"},
		{"1w", "2026-11-27T03:17:43.123456789Z"},
		{"1mo", "2026-11-04T03:17:43.123456789Z"},
		{"2mo", "2026-10-04T03:17:43.123456789Z"},
		{"12mo", "2025-12-04T03:17:43.123456789Z"},
		{"1y", "2025-12-04T03:17:43.123456789Z"},
		{"1y1mo1d", "2025-11-03T03:17:43.123456789Z"},
		{"90m", "2026-12-04T01:47:43.123456789Z"},
		{"720h", "2026-11-04T03:17:43.123456789Z"},
		{"2h ago", "2026-12-04T01:17:43.123456789Z"},
		{"2hago", "2026-12-04T01:17:43.123456789Z"},
		{"1 mo ago", "2026-11-04T03:17:43.123456789Z"},
		{"1MO", "2026-11-04T03:17:43.123456789Z"},
		{"100y", "1926-12-04T03:17:43.123456789Z"},
	} {
		got, err := timefmt.Parse(c.in, now)
		require.NoError(t, err, c.in)
		require.Equal(t, utc(c.want), got.UTC(), c.in)
	}

	// A calendar month back from the end of a longer month is the end of
	// the shorter one, as in PostgreSQL; from a time in another zone, it
	// counts in UTC.
	for _, c := range []struct{ now, in, want string }{
		{"2026-03-31T12:00:00Z", "1mo", "2026-02-28T12:00:00Z"},
		{"2028-03-31T12:00:00Z", "1mo", "2028-02-29T12:00:00Z"},
		{"2026-03-15T12:00:00Z", "1mo", "2026-02-15T12:00:00Z"},
		{"2026-01-31T00:00:00Z", "2mo", "2025-11-30T00:00:00Z"},
		{"2028-02-29T00:00:00Z", "1y", "2027-02-28T00:00:00Z"},
		{"2026-03-08T12:00:00-04:00", "1d", "2026-03-07T16:00:00Z"},
		{"2026-04-01T01:00:00+02:00", "1mo", "2026-02-28T23:00:00Z"},
	} {
		got, err := timefmt.Parse(c.in, utc(c.now))
		require.NoError(t, err, "%s from %s", c.in, c.now)
		require.Equal(t, utc(c.want), got.UTC(), "%s from %s", c.in, c.now)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	now := utc("2026-12-04T03:17:43Z")
	forms := `give a time as pgundo prints it (2026-12-04 03:17:43.123456 UTC), RFC 3339 (2026-12-04T03:17:43Z, 2026-12-03T22:17:43.5-05:00), ` +
		`psql's timestamptz output (2026-12-04 03:17:43.123456+00, +05:30, -05), a date and time or a date without a zone, read as UTC ` +
		`(2026-12-04 03:17, 2026-12-04), or an age back from now (90s, 15m, 2h, 3d, 1w, 1mo, 1y, 2h30m, optionally followed by "ago"; m is minutes, mo months)`
	for _, c := range []struct{ in, want string }{
		{"", `cannot read time "": ` + forms},
		{"soon", `cannot read time "soon": ` + forms},
		{"last tuesday", `cannot read time "last tuesday": ` + forms},
		{"yesterday", `cannot read time "yesterday": ` + forms},
		{"-2h", `cannot read time "-2h": ` + forms},
		{"1.5h", `cannot read time "1.5h": ` + forms},
		{"2h later", `cannot read time "2h later": ` + forms},
		{"3 days", `cannot read time "3 days": ` + forms},
		{"1ms", `cannot read time "1ms": ` + forms},
		{"12/04/2026", `cannot read time "12/04/2026": ` + forms},
		{"2026-12-4", `cannot read time "2026-12-4": ` + forms},
		{"2026-12-04 3:17", `cannot read time "2026-12-04 3:17": ` + forms},
		{"2026-12-04 03", `cannot read time "2026-12-04 03": ` + forms},
		{"2026-12-04T03:17:43.1234567890Z", `cannot read time "2026-12-04T03:17:43.1234567890Z": ` + forms},
		{"1733282263", `cannot read time "1733282263": ` + forms},
		{"2026-02-30", `cannot read time "2026-02-30": no such date 2026-02-30`},
		{"2026-13-01 00:00", `cannot read time "2026-13-01 00:00": no such date 2026-13-01`},
		{"2027-02-29", `cannot read time "2027-02-29": no such date 2027-02-29`},
		{"2026-12-04 24:00", `cannot read time "2026-12-04 24:00": hours go to 23, minutes and seconds to 59`},
		{"2026-12-04 03:60", `cannot read time "2026-12-04 03:60": hours go to 23, minutes and seconds to 59`},
		{"2026-12-04 03:17:60", `cannot read time "2026-12-04 03:17:60": hours go to 23, minutes and seconds to 59`},
		{"2026-12-04 03:17+16", `cannot read time "2026-12-04 03:17+16": offset +16 is out of range (-15:59:59 to +15:59:59)`},
		{"2026-12-04 03:17:43 EST", `cannot read time "2026-12-04 03:17:43 EST": zone "EST" is not one pgundo takes (names and abbreviations are ambiguous); give UTC or a numeric offset such as -05:00`},
		{"2026-12-04 03:17 America/New_York", `cannot read time "2026-12-04 03:17 America/New_York": zone "America/New_York" is not one pgundo takes (names and abbreviations are ambiguous); give UTC or a numeric offset such as -05:00`},
		{"101y", `cannot read time "101y": give an age of at most 100 years`},
		{"1201mo", `cannot read time "1201mo": give an age of at most 100 years`},
		{"99999999999999999999s", `cannot read time "99999999999999999999s": give an age of at most 100 years`},
		{"60y60y", `cannot read time "60y60y": give an age of at most 100 years`},
	} {
		_, err := timefmt.Parse(c.in, now)
		require.EqualError(t, err, c.want, c.in)
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	for _, c := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 12, 3, 22, 17, 43, 123456789, ny), "2026-12-04 03:17:43.123456 UTC"},
		{time.Date(2026, 7, 3, 22, 17, 43, 0, ny), "2026-07-04 02:17:43.000000 UTC"},
		{time.Date(2026, 12, 4, 3, 17, 43, 500, time.UTC), "2026-12-04 03:17:43.000000 UTC"},
	} {
		s := timefmt.Format(c.in)
		require.Equal(t, c.want, s)
		// What pgundo prints, it reads back as the same instant (to the
		// microsecond, PostgreSQL's resolution).
		back, err := timefmt.Parse(s, time.Now())
		require.NoError(t, err)
		require.True(t, back.Equal(c.in.Truncate(time.Microsecond)), "%s -> %s", s, back)
	}
}
