package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// aligned lays rows out as pgundo's tables are: columns as wide as their
// widest cell, two spaces apart, nothing after the last cell.
func aligned(rows ...[]string) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	return b.String()
}

// TestLogTableAlignedWithXID: log's table format lines its columns up and
// names each change's transaction, which undo --tx takes.
func TestLogTableAlignedWithXID(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE bb (k text PRIMARY KEY)`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a", "bb").code)
	c1 := pgtest.Connect(t, withApp(url, "loader"))
	pgtest.Exec(t, c1, "INSERT INTO a VALUES (1, 'x')")
	pgtest.Exec(t, c1, "SET pgundo.tag = 'ticket-77'")
	pgtest.Exec(t, c1, "INSERT INTO bb VALUES ('line one\nline two')")
	pgtest.Exec(t, c1, "UPDATE a SET v = 'yy' WHERE id = 1")
	id := sessionID(t, c1)

	type stmt struct {
		at  time.Time
		xid string
	}
	var st []stmt
	rows, err := conn.Query(context.Background(), "SELECT at, xid::text FROM pgundo.stmt ORDER BY id")
	require.NoError(t, err)
	for rows.Next() {
		var s stmt
		require.NoError(t, rows.Scan(&s.at, &s.xid))
		st = append(st, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, st, 3)
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000 UTC") }

	r := run(t, url, "log")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, aligned(
		[]string{"AT", "XID", "SESSION", "USER", "APPLICATION", "TAG", "OP", "TABLE", "KEY", "CHANGES"},
		[]string{utc(st[0].at), st[0].xid, id, "postgres", "loader", "-", "INSERT", "public.a", "id=1", "id=1, v=x"},
		[]string{utc(st[1].at), st[1].xid, id, "postgres", "loader", "ticket-77", "INSERT", "public.bb", `k=line one\nline two`, `k='line one\nline two'`},
		[]string{utc(st[2].at), st[2].xid, id, "postgres", "loader", "ticket-77", "UPDATE", "public.a", "id=1", "v: x -> yy"},
	), r.stdout)

	// The XID column is what undo --tx takes: undo the one transaction.
	line := strings.Split(r.stdout, "\n")[2]
	xid := strings.Fields(line)[3]
	require.Equal(t, st[1].xid, xid)
	u := run(t, url, "undo", "--tx", xid, "--yes")
	require.Equal(t, 0, u.code, u.stderr)
	require.Empty(t, tableText(t, conn, "bb"))
	require.Equal(t, []string{"(1,yy)"}, tableText(t, conn, "a"))

	r = run(t, url, "log", "--app", "nobody")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "(no changes match)\n", r.stdout)
}

// onTerminal runs pgundo with stdout on a new terminal of the given width
// and returns what it printed there (line ends as \n).
func onTerminal(t *testing.T, url string, cols uint16, args ...string) string {
	t.Helper()
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	require.NoError(t, pty.Setsize(tty, &pty.Winsize{Rows: 50, Cols: cols}))
	var got bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&got, ptmx); close(done) }()
	var errb bytes.Buffer
	code := runTo(url, tty, &errb, args...)
	require.Equal(t, 0, code, errb.String())
	require.NoError(t, tty.Close())
	<-done
	return strings.ReplaceAll(got.String(), "\r\n", "\n")
}

// TestSessionsTablesFitTheTerminal: on a terminal, a TABLES list too long
// for the width is cut to the tables that fit and a count of the rest;
// off a terminal, and in --json, every table is listed.
func TestSessionsTablesFitTheTerminal(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE aaaa (id int PRIMARY KEY); CREATE TABLE bbbb (id int PRIMARY KEY);
		CREATE TABLE cccc (id int PRIMARY KEY); CREATE TABLE dddd (id int PRIMARY KEY)`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "aaaa", "bbbb", "cccc", "dddd").code)
	c1 := pgtest.Connect(t, withApp(url, "x"))
	pgtest.Exec(t, c1, "INSERT INTO aaaa VALUES (1); INSERT INTO bbbb VALUES (1); INSERT INTO cccc VALUES (1); INSERT INTO dddd VALUES (1)")
	id1 := sessionID(t, c1)
	c2 := pgtest.Connect(t, withApp(url, "x"))
	pgtest.Exec(t, c2, "INSERT INTO aaaa VALUES (2)")
	id2 := sessionID(t, c2)
	var last1, last2 time.Time
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT max(at) FILTER (WHERE session_id = $1), max(at) FILTER (WHERE session_id = $2) FROM pgundo.stmt", id1, id2).Scan(&last1, &last2))
	utc := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000 UTC") }
	all := "public.aaaa,public.bbbb,public.cccc,public.dddd"
	lines := func(tables1 string) string {
		return aligned(
			[]string{"SESSION", "LAST CHANGE", "USER", "APPLICATION", "CLIENT", "CHANGES", "TABLES", "TAG", "UNDO"},
			[]string{id2, utc(last2), "postgres", "x", "local", "1", "public.aaaa", "-", "-"},
			[]string{id1, utc(last1), "postgres", "x", "local", "4", tables1, "-", "-"},
		)
	}
	// Every column but TABLES, with the gaps between them.
	others := len(aligned([]string{strings.Repeat("x", max(len(id1), len(id2))), utc(last1), "postgres", "APPLICATION", "CLIENT", "CHANGES", "", "TAG", "UNDO"})) - 1

	// Room for two tables and the count of the other two.
	out := onTerminal(t, url, uint16(others+len("public.aaaa,public.bbbb +2")), "sessions")
	require.Equal(t, lines("public.aaaa,public.bbbb +2"), out)
	// One column less: one table and the count.
	out = onTerminal(t, url, uint16(others+len("public.aaaa,public.bbbb +2")-1), "sessions")
	require.Equal(t, lines("public.aaaa +3"), out)
	// Wide enough for all: nothing cut.
	out = onTerminal(t, url, uint16(others+len(all)), "sessions")
	require.Equal(t, lines(all), out)

	// Not a terminal, and --json even on a narrow terminal: every table.
	r := run(t, url, "sessions")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, lines(all), r.stdout)
	out = onTerminal(t, url, 80, "sessions", "--json")
	require.Contains(t, out, `"tables": [
      "public.aaaa",
      "public.bbbb",
      "public.cccc",
      "public.dddd"
    ]`)
}
