package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// printedTime matches a time as any pgundo command prints it (and, so that
// this test fails rather than panics on older output, without a zone).
var printedTime = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: ?(?:UTC|Z|[+-]\d\d(?::\d\d)?))?`)

// runTZ runs the pgundo binary bin with TZ set to tz, as a user in that
// zone would.
func runTZ(t *testing.T, bin, tz, url string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--database-url", url}, args...)...)
	cmd.Env = append(os.Environ(), "TZ="+tz)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, out.String(), errb.String()}
}

// firstColumn returns the first field of each line of a table after its
// header.
func firstColumn(out string) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	ids := []string{}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// TestTimesPastedBetweenCommands: under TZ=America/New_York, a time that
// log, sessions, show or history prints means the same instant when pasted
// into sessions --since/--until or asof --at; a zone-less time is read in
// the zone pgundo prints in (UTC); relative ages count back from now, with
// m minutes and mo calendar months.
func TestTimesPastedBetweenCommands(t *testing.T) {
	t.Parallel()
	bin := buildPgundo(t)
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	early := pgtest.Connect(t, withApp(url, "early"))
	pgtest.Exec(t, early, "INSERT INTO a VALUES (1, 'a')")
	mid := pgtest.Connect(t, withApp(url, "mid"))
	pgtest.Exec(t, mid, "UPDATE a SET v = 'b' WHERE id = 1")
	late := pgtest.Connect(t, withApp(url, "late"))
	pgtest.Exec(t, late, "INSERT INTO a VALUES (2, 'c')")
	idEarly, idMid, idLate := sessionID(t, early), sessionID(t, mid), sessionID(t, late)

	ny := func(args ...string) string {
		t.Helper()
		r := runTZ(t, bin, "America/New_York", url, args...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		return r.stdout
	}
	sessions := func(args ...string) []string {
		t.Helper()
		return firstColumn(ny(append([]string{"sessions"}, args...)...))
	}
	// checkPasted checks that at, the printed time of mid's update, finds
	// and excludes exactly what it should.
	checkPasted := func(from, at string) {
		t.Helper()
		require.Equal(t, []string{idLate, idMid}, sessions("--since", at), "sessions --since %q (from %s)", at, from)
		require.Equal(t, []string{idEarly}, sessions("--until", at), "sessions --until %q (from %s)", at, from)
		require.Equal(t, "id,v\n1,a\n", ny("asof", "a", "--at", at, "--format", "csv"), "asof --at %q (from %s)", at, from)
	}

	// From pgundo log: the second change is mid's update.
	logOut := ny("log")
	lines := strings.Split(logOut, "\n")
	require.GreaterOrEqual(t, len(lines), 3, logOut)
	require.Contains(t, lines[2], idMid)
	atMid := printedTime.FindString(lines[2])
	checkPasted("log", atMid)

	// From pgundo sessions: mid's last change.
	for _, l := range strings.Split(ny("sessions"), "\n") {
		if strings.HasPrefix(l, idMid+" ") {
			checkPasted("sessions", printedTime.FindString(l))
		}
	}

	// From pgundo show: "changes FIRST .. LAST".
	showOut := ny("show", idMid)
	m := regexp.MustCompile(`changes (.*) \.\. (.*) in \d+ transactions`).FindStringSubmatch(showOut)
	require.NotNil(t, m, showOut)
	checkPasted("show (first change)", m[1])
	checkPasted("show (last change)", m[2])

	// From pgundo history: the version mid made.
	histOut := ny("history", "a", "1")
	var fromHistory string
	for _, l := range strings.Split(histOut, "\n") {
		if strings.Contains(l, "UPDATE public.a id=1") {
			fromHistory = printedTime.FindString(l)
		}
	}
	checkPasted("history", fromHistory)

	// psql's timestamptz output in New York, and RFC 3339.
	ctx := context.Background()
	var psqlNY string
	var at time.Time
	pgtest.Exec(t, conn, "SET TimeZone = 'America/New_York'")
	require.NoError(t, conn.QueryRow(ctx, "SELECT at::text, at FROM pgundo.stmt WHERE application_name = 'mid'").Scan(&psqlNY, &at))
	require.True(t, strings.HasSuffix(psqlNY, "-05") || strings.HasSuffix(psqlNY, "-04"), psqlNY)
	checkPasted("psql", psqlNY)
	checkPasted("RFC 3339", at.UTC().Format(time.RFC3339Nano))
	checkPasted("RFC 3339 with offset", at.In(time.FixedZone("", -5*3600)).Format(time.RFC3339Nano))

	// A time without a zone is read as UTC, the zone pgundo prints in.
	checkPasted("zone-less", at.UTC().Format("2006-01-02 15:04:05.999999"))
	checkPasted("zone-less with T", at.UTC().Format("2006-01-02T15:04:05.999999"))

	// Every command prints times the same way: UTC, microseconds, the zone
	// shown; whatever TZ says.
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000 UTC") }
	stmts := map[string]struct {
		at  time.Time
		xid string
	}{}
	rows, err := conn.Query(ctx, "SELECT application_name, at, xid::text FROM pgundo.stmt")
	require.NoError(t, err)
	for rows.Next() {
		var app, xid string
		var at time.Time
		require.NoError(t, rows.Scan(&app, &at, &xid))
		stmts[app] = struct {
			at  time.Time
			xid string
		}{at, xid}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, aligned(
		[]string{"AT", "XID", "SESSION", "USER", "APPLICATION", "TAG", "OP", "TABLE", "KEY", "CHANGES"},
		[]string{utc(stmts["early"].at), stmts["early"].xid, idEarly, "postgres", "early", "-", "INSERT", "public.a", "id=1", "id=1, v=a"},
		[]string{utc(stmts["mid"].at), stmts["mid"].xid, idMid, "postgres", "mid", "-", "UPDATE", "public.a", "id=1", "v: a -> b"},
		[]string{utc(stmts["late"].at), stmts["late"].xid, idLate, "postgres", "late", "-", "INSERT", "public.a", "id=2", "id=2, v=c"},
	), logOut)

	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tLAST CHANGE\tUSER\tAPPLICATION\tCLIENT\tCHANGES\tTABLES\tTAG\tUNDO")
	for _, s := range []struct{ id, app string }{{idLate, "late"}, {idMid, "mid"}, {idEarly, "early"}} {
		fmt.Fprintf(tw, "%s\t%s\tpostgres\t%s\tlocal\t1\tpublic.a\t-\t-\n", s.id, utc(stmts[s.app].at), s.app)
	}
	require.NoError(t, tw.Flush())
	require.Equal(t, want.String(), ny("sessions"))

	var started time.Time
	var pid int
	require.NoError(t, conn.QueryRow(ctx, "SELECT backend_start, pid FROM pgundo.session WHERE id = $1", idMid).Scan(&started, &pid))
	require.Equal(t, fmt.Sprintf(`session %s: user postgres, application "mid", from local socket, pid %d
connected %s; changes %s .. %s in 1 transactions

TABLE     INSERTED  UPDATED  DELETED  TRUNCATED
public.a  0         1        0        0

UPDATE public.a id=1  (xid %s, %s)
    v: a -> b
`, idMid, pid, utc(started), utc(stmts["mid"].at), utc(stmts["mid"].at), stmts["mid"].xid, utc(stmts["mid"].at)), showOut)

	require.Equal(t, fmt.Sprintf(`history of public.a id=1: 2 recorded versions

%s  INSERT public.a id=1
    session %s, user postgres, application "early", from local socket, xid %s
    id: 1
    v: a

%s  UPDATE public.a id=1
    session %s, user postgres, application "mid", from local socket, xid %s
    v: a -> b

now: id=1 v=b
`, utc(stmts["early"].at), idEarly, stmts["early"].xid, utc(stmts["mid"].at), idMid, stmts["mid"].xid), histOut)

	// asof at the time of late's insert: mid's update, not late's insert.
	atLate := printedTime.FindString(lines[3])
	require.Equal(t, "id,v\n1,b\n", ny("asof", "a", "--at", atLate, "--format", "csv"))
	require.Equal(t, "public.a had no row with id=2 at "+utc(stmts["late"].at)+"\n", ny("asof", "a", "--at", atLate, "2"))

	// Relative ages count back from now: 1m is a minute, 1mo a month.
	pgtest.Exec(t, conn, `SELECT pgundo.fold()`)
	pgtest.Exec(t, conn, `UPDATE pgundo.stmt_log SET at = now() - CASE application_name WHEN 'early' THEN interval '40 days'
		WHEN 'mid' THEN interval '20 days' ELSE interval '0' END`)
	require.Equal(t, []string{idLate}, sessions("--since", "1m"))
	require.Equal(t, []string{idLate}, sessions("--since", "1h"))
	require.Equal(t, []string{idLate, idMid}, sessions("--since", "1mo"))
	require.Equal(t, []string{idLate, idMid}, sessions("--since", "3w"))
	require.Equal(t, []string{idLate, idMid}, sessions("--since", "30d"))
	require.Equal(t, []string{idLate, idMid, idEarly}, sessions("--since", "1y"))
	require.Equal(t, []string{idMid, idEarly}, sessions("--until", "1m"))
	require.Equal(t, []string{idEarly}, sessions("--until", "1mo"))
	require.Equal(t, []string{idEarly}, sessions("--until", "1mo ago"))

	// Bad input is refused with the accepted forms.
	r = runTZ(t, bin, "America/New_York", url, "sessions", "--since", "soon")
	require.Equal(t, 2, r.code, r.stderr)
	require.Equal(t, `pgundo: invalid argument "soon" for "--since" flag: cannot read time "soon": give a time as pgundo prints it `+
		`(2026-12-04 03:17:43.123456 UTC), RFC 3339 (2026-12-04T03:17:43Z, 2026-12-03T22:17:43.5-05:00), psql's timestamptz output `+
		`(2026-12-04 03:17:43.123456+00, +05:30, -05), a date and time or a date without a zone, read as UTC (2026-12-04 03:17, 2026-12-04), `+
		`or an age back from now (90s, 15m, 2h, 3d, 1w, 1mo, 1y, 2h30m, optionally followed by "ago"; m is minutes, mo months)`+"\n", r.stderr)
	require.Empty(t, r.stdout)
}
