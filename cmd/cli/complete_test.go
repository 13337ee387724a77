package cli_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestCompletionFromTheDatabase drives cobra's hidden __complete command
// (what the shell scripts of pgundo completion call) against a database.
func TestCompletionFromTheDatabase(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE "Order Items" (id int PRIMARY KEY);
		CREATE TABLE untracked (id int PRIMARY KEY)`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "orders", `"Order Items"`).code)
	c1 := pgtest.Connect(t, withApp(url, "loader"))
	pgtest.Exec(t, c1, "SET pgundo.tag = 'ticket-1'; INSERT INTO orders VALUES (1)")
	c2 := pgtest.Connect(t, url)
	pgtest.Exec(t, c2, "SET pgundo.tag = 'ticket-2'; INSERT INTO \"Order Items\" VALUES (1)")
	pgtest.Exec(t, c2, "SET application_name = ''; INSERT INTO orders VALUES (2)")
	id1, id2 := sessionID(t, c1), sessionID(t, c2)
	last := func(id string) string {
		var at time.Time
		require.NoError(t, conn.QueryRow(context.Background(), "SELECT max(at) FROM pgundo.stmt WHERE session_id = $1", id).Scan(&at))
		return at.UTC().Format("2006-01-02 15:04:05.000000 UTC")
	}
	complete := func(args ...string) string {
		t.Helper()
		r := run(t, url, append([]string{"__complete"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		return r.stdout
	}
	const keepOrder = ":36\n" // NoFileComp | KeepOrder
	// Sessions, the most recently active first, with application and time.
	require.Equal(t, id2+"\tno application_name, "+last(id2)+"\n"+id1+"\tloader, "+last(id1)+"\n"+keepOrder, complete("show", ""))
	require.Equal(t, ":4\n", complete("show", id1, ""), "show takes one session")
	require.Equal(t, id2+"\tno application_name, "+last(id2)+"\n"+keepOrder, complete("undo", id1, ""), "undo leaves out the sessions given")
	require.Equal(t, id1+"\tloader, "+last(id1)+"\n"+keepOrder, complete("log", "--session", id1))

	// Tracked tables, as psql takes their names.
	require.Equal(t, "public.\"Order Items\"\npublic.orders\n"+keepOrder, complete("history", ""))
	require.Equal(t, "public.orders\n"+keepOrder, complete("untrack", "public.o"))
	require.Equal(t, "public.\"Order Items\"\npublic.orders\n"+keepOrder, complete("sessions", "--table", ""))
	require.Equal(t, "public.\"Order Items\"\npublic.orders\n"+keepOrder, complete("show", id1, "--table", ""))

	// Tags, the most recently used first.
	require.Equal(t, "ticket-2\nticket-1\n"+keepOrder, complete("undo", "--tag", "tick"))
	require.Equal(t, "ticket-1\n"+keepOrder, complete("log", "--tag", "ticket-1"))
	require.Equal(t, keepOrder, complete("sessions", "--tag", "ticket_"), "_ is not a wildcard")
}

// TestCompletionWithoutADatabase: no server, or no pgundo installed:
// nothing offered, nothing said, exit 0.
func TestCompletionWithoutADatabase(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	url, _ := setup(t, "")
	for _, u := range []string{fmt.Sprintf("postgres://nobody@127.0.0.1:%d/x?connect_timeout=5", port), url} {
		for _, args := range [][]string{{"show", ""}, {"history", ""}, {"undo", "--tag", ""}} {
			r := run(t, u, append([]string{"__complete"}, args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, ":4\n", r.stdout, args)
			require.Equal(t, "Completion ended with directive: ShellCompDirectiveNoFileComp\n", r.stderr, args)
		}
	}
	// The completion scripts come from cobra.
	r := run(t, url, "completion", "bash")
	require.Equal(t, 0, r.code, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "# bash completion V2 for pgundo"), r.stdout[:80])
}
