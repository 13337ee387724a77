// Package timefmt is how pgundo writes and reads times, so that a time one
// command prints means the same instant when pasted into another, in any TZ.
//
// pgundo prints every time in UTC, to the microsecond, with the zone shown
// (Format: "2026-12-04 03:17:43.123456 UTC"), and reads a time given without
// a zone as UTC too (Parse). JSON output keeps RFC 3339.
package timefmt

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Layout is the one form pgundo prints times in: UTC, microseconds (what
// PostgreSQL stores), the zone spelled out. PostgreSQL reads it as well.
const Layout = "2006-01-02 15:04:05.000000 UTC"

// Format renders t as pgundo prints every time: in UTC, with Layout.
func Format(t time.Time) string { return t.UTC().Format(Layout) }

// Forms describes, with examples, what Parse accepts; flag help and error
// messages quote it.
const Forms = `a time as pgundo prints it (2026-12-04 03:17:43.123456 UTC), RFC 3339 (2026-12-04T03:17:43Z, 2026-12-03T22:17:43.5-05:00), ` +
	`psql's timestamptz output (2026-12-04 03:17:43.123456+00, +05:30, -05), a date and time or a date without a zone, read as UTC ` +
	`(2026-12-04 03:17, 2026-12-04), or an age back from now (90s, 15m, 2h, 3d, 1w, 1mo, 1y, 2h30m, optionally followed by "ago"; m is minutes, mo months)`

// absolute is a date, optionally a time, optionally a zone: RFC 3339 with
// T or a space, psql's ISO output, and pgundo's own.
var absolute = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})` +
	`(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?` +
	`(?: ?([Zz]|[Uu][Tt][Cc]|[Gg][Mm][Tt]|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?))?)?$`)

// namedZone is a date and time followed by a zone name pgundo does not take.
var namedZone = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)? ?([A-Za-z][A-Za-z_/+-]*)$`)

// age is one or more number-unit pairs, optionally followed by "ago".
var (
	age     = regexp.MustCompile(`^((?:\d+ ?(?:mo|[smhdwy]) ?)+)(?:ago)?$`)
	agePart = regexp.MustCompile(`(\d+) ?(mo|[smhdwy])`)
)

// maxAgeYears bounds an age, so that a typo cannot overflow a duration.
const maxAgeYears = 100

// Parse reads a time as every pgundo flag that takes one does:
//
//   - a time as pgundo prints it: 2026-12-04 03:17:43.123456 UTC;
//   - RFC 3339, with T or a space between date and time, fractional
//     seconds (up to nanoseconds), Z or a numeric offset;
//   - psql's timestamptz output: 2026-12-04 03:17:43.123456+00, +05:30, -05
//     (and the -04:56:02 of historical zones);
//   - a date and time (seconds optional) or a date alone, without a zone:
//     read as UTC, the zone pgundo prints in (a date is its midnight UTC);
//   - an age back from now: a number and a unit, s (seconds), m (minutes),
//     h (hours), d (days of 24 hours), w (weeks), mo (calendar months), y
//     (calendar years), several combined (2h30m, 1y6mo), optionally followed
//     by "ago". A month back from March 31 is the last day of February, as
//     in PostgreSQL.
//
// Zone names and abbreviations other than UTC, GMT and Z are refused (EST,
// IST, CST each mean several offsets); give the offset. Anything else is
// refused with an error that lists the accepted forms.
func Parse(s string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(s)
	if m := age.FindStringSubmatch(strings.ToLower(v)); m != nil {
		return parseAge(s, m[1], now)
	}
	if m := absolute.FindStringSubmatch(v); m != nil {
		return parseAbsolute(s, m)
	}
	if m := namedZone.FindStringSubmatch(v); m != nil {
		return time.Time{}, fmt.Errorf("cannot read time %q: zone %q is not one pgundo takes (names and abbreviations are ambiguous); give UTC or a numeric offset such as -05:00", s, m[1])
	}
	return time.Time{}, fmt.Errorf("cannot read time %q: give %s", s, Forms)
}

func parseAge(s, parts string, now time.Time) (time.Time, error) {
	const maxAge = maxAgeYears * 366 * 24 * time.Hour
	units := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}
	var months int64
	var d time.Duration
	for _, p := range agePart.FindAllStringSubmatch(parts, -1) {
		n, err := strconv.ParseInt(p[1], 10, 64)
		switch {
		case err != nil:
			n = -1
		case p[2] == "mo" && n <= 12*maxAgeYears:
			months += n
		case p[2] == "y" && n <= maxAgeYears:
			months += 12 * n
		case units[p[2]] != 0 && n <= int64(maxAge/units[p[2]]):
			d += time.Duration(n) * units[p[2]]
		default:
			n = -1
		}
		if n < 0 || months > 12*maxAgeYears || d > maxAge {
			return time.Time{}, fmt.Errorf("cannot read time %q: give an age of at most %d years", s, maxAgeYears)
		}
	}
	return monthsBack(now.UTC(), int(months)).Add(-d), nil
}

// monthsBack returns t n calendar months earlier, on the same day of the
// month or, when that month is shorter, on its last day (as PostgreSQL's
// timestamp - interval does).
func monthsBack(t time.Time, n int) time.Time {
	if n == 0 {
		return t
	}
	y, m, d := t.Date()
	first := time.Date(y, m-time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	if d > last {
		d = last
	}
	return first.AddDate(0, 0, d-1)
}

func parseAbsolute(s string, m []string) (time.Time, error) {
	num := func(i int) int {
		if m[i] == "" {
			return 0
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	year, month, day := num(1), num(2), num(3)
	hour, minute, sec := num(4), num(5), num(6)
	nsec := 0
	if m[7] != "" {
		nsec, _ = strconv.Atoi((m[7] + "00000000")[:9])
	}
	bad := func(what string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("cannot read time %q: %s", s, what)
	}
	if month < 1 || month > 12 || day < 1 || day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return bad(fmt.Sprintf("no such date %s-%s-%s", m[1], m[2], m[3]))
	}
	if hour > 23 || minute > 59 || sec > 59 {
		return bad("hours go to 23, minutes and seconds to 59")
	}
	offset := 0
	if z := m[8]; z != "" && (z[0] == '+' || z[0] == '-') {
		digits := strings.ReplaceAll(z[1:], ":", "")
		oh, _ := strconv.Atoi(digits[:2])
		var om, os int
		if len(digits) >= 4 {
			om, _ = strconv.Atoi(digits[2:4])
		}
		if len(digits) == 6 {
			os, _ = strconv.Atoi(digits[4:6])
		}
		if oh > 15 || om > 59 || os > 59 {
			return bad(fmt.Sprintf("offset %s is out of range (-15:59:59 to +15:59:59)", z))
		}
		offset = oh*3600 + om*60 + os
		if z[0] == '-' {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), nil
}
