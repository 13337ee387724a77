package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/pgundo/pgundo/internal/timefmt"
)

// timeHelp ends the help of every flag that takes a time.
const timeHelp = ": as pgundo prints it (2026-12-04 03:17:43.123456 UTC), RFC 3339, psql's output (...+00, ...-05), " +
	"a date; without a zone, UTC; or an age back from now: 90s 15m 2h 3d 1w 1mo 1y (m minutes, mo months)"

// timeFlag is the value of every flag that takes a time (--since, --until,
// --at, --before): it reads all that timefmt.Parse reads, ages counting
// back from when the flag is parsed. Its zero value is "not given".
type timeFlag struct {
	text string
	t    time.Time
	set  bool
}

var _ pflag.Value = (*timeFlag)(nil)

// Set parses s; a bad time is a flag error, so bad usage (exit 2).
func (f *timeFlag) Set(s string) error {
	t, err := timefmt.Parse(s, time.Now())
	if err != nil {
		return err
	}
	f.text, f.t, f.set = s, t, true
	return nil
}

// String returns the text given, "" when none was (so help shows no default).
func (f *timeFlag) String() string { return f.text }

// Type names the value in help: --since time.
func (f *timeFlag) Type() string { return "time" }

// ptr returns the time, or nil when the flag was not given.
func (f *timeFlag) ptr() *time.Time {
	if !f.set {
		return nil
	}
	t := f.t
	return &t
}

// timeVar defines a time flag on fs; the accepted forms are appended to usage.
func timeVar(fs *pflag.FlagSet, f *timeFlag, name, usage string) {
	fs.Var(f, name, usage+timeHelp)
}
