package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseTime reads a --since/--until value: an RFC 3339 time
// (2026-11-25T10:00:00Z), a local date and time (2026-11-25 10:00[:05]), a
// local date (2026-11-25), or a duration back from now (90m, 2h, 7d).
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read time %q: give RFC 3339 (2026-11-25T10:00:00Z), a local '2026-11-25 10:00', a date, or a duration back from now (90m, 2h, 7d)", s)
}
