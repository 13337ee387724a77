package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

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
