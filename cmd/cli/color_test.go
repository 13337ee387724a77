package cli_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// ANSI SGR sequences as fatih/color writes them.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	bold   = "\x1b[1m"
	boldRd = "\x1b[31;1m"
	reset  = "\x1b[0m"
	unbold = "\x1b[22m"
	rsBold = "\x1b[0;22m"
)

// colorSession records one session on t with an update, an insert and a
// delete, and returns the url and its id.
func colorSession(t *testing.T) (string, string) {
	t.Helper()
	url, conn := setup(t, `CREATE TABLE t (id int PRIMARY KEY, name text, qty int);
		INSERT INTO t VALUES (1, 'apple', 5), (2, 'pear', 7)`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "t").code)
	pgtest.Exec(t, conn, "UPDATE t SET qty = 6 WHERE id = 1")
	pgtest.Exec(t, conn, "INSERT INTO t VALUES (3, 'plum', 1)")
	pgtest.Exec(t, conn, "DELETE FROM t WHERE id = 2")
	return url, sessionID(t, conn)
}

// changeLines returns the lines of out from the first row change on, with
// the (xid, time) suffix of show's headers cut off.
func changeLines(out string) []string {
	var lines []string
	on := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "UPDATE ") || strings.HasPrefix(l, "INSERT ") || strings.HasPrefix(l, "DELETE ") {
			on = true
			if i := strings.Index(l, "  (xid "); i > 0 {
				l = l[:i]
			}
		}
		if on && l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestColorAlwaysShow(t *testing.T) {
	t.Parallel()
	url, id := colorSession(t)
	r := run(t, url, "show", id, "--color=always")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{
		"UPDATE public.t " + bold + "id=1" + unbold,
		"    qty: " + red + "5" + reset + " -> " + green + "6" + reset,
		"INSERT public.t",
		"    id: " + green + "3" + reset,
		"    name: " + green + "plum" + reset,
		"    qty: " + green + "1" + reset,
		"DELETE public.t",
		"    id: " + red + "2" + reset,
		"    name: " + red + "pear" + reset,
		"    qty: " + red + "7" + reset,
	}, changeLines(r.stdout))
	// The session header and the table of counts stay plain.
	require.NotContains(t, strings.SplitN(r.stdout, "UPDATE", 2)[0], "\x1b[")

	for _, args := range [][]string{{"--color=never"}, {}, {"--color=always", "--json"}} {
		r := run(t, url, append([]string{"show", id}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		require.NotContains(t, r.stdout, "\x1b[", args)
	}
}

func TestColorAlwaysHistoryAndTry(t *testing.T) {
	t.Parallel()
	url, _ := colorSession(t)
	r := run(t, url, "history", "t", "1", "--color=always")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, " UPDATE public.t "+bold+"id=1"+unbold+"\n")
	require.Contains(t, r.stdout, "    qty: "+red+"5"+reset+" -> "+green+"6"+reset+"\n")

	script := filepath.Join(t.TempDir(), "fix.sql")
	require.NoError(t, os.WriteFile(script, []byte("UPDATE t SET name = 'fig' WHERE id = 3;\n"), 0o600))
	r = run(t, url, "try", script, "--color=always")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{
		"UPDATE public.t " + bold + "id=3" + unbold,
		"    name: " + red + "plum" + reset + " -> " + green + "fig" + reset,
		"rolled back: nothing was changed (sequences the script used stay advanced); pgundo try --commit keeps these changes",
	}, changeLines(r.stdout))
}

func TestColorUndoPlanConflicts(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "t").code)
	pgtest.Exec(t, conn, "UPDATE t SET v = 'x'")
	id := sessionID(t, conn)
	other := pgtest.Connect(t, url)
	pgtest.Exec(t, other, "UPDATE t SET v = 'y' WHERE id = 2")

	r := run(t, url, "undo", id, "--dry-run", "--on-conflict", "skip", "--color=always")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "\n  "+yellow+"skipped: conflict: public.t id=2: changed since (columns v)"+reset+"\n")
	require.Equal(t, 2, strings.Count(r.stdout, "\x1b["), r.stdout) // the skipped line alone

	// A refusal stands out on stderr: its message is bold red.
	r = run(t, url, "undo", id, "--dry-run", "--color=always")
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "\npgundo: "+boldRd+"undo of "+id+" refused: 1 conflict (rows changed since by someone else):\n")
	require.True(t, strings.HasSuffix(r.stderr, rsBold+"\n"), r.stderr)
	r = run(t, url, "undo", id, "--dry-run")
	require.Equal(t, 3, r.code, r.stderr)
	require.NotContains(t, r.stderr, "\x1b[")
}

// runTo runs pgundo with stdout and stderr going to the given files.
func runTo(url string, stdout, stderr io.Writer, args ...string) int {
	return cli.Run(context.Background(), append([]string{"--database-url", url}, args...), strings.NewReader(""), stdout, stderr)
}

// TestColorAuto: with --color=auto (the default), a terminal gets colour,
// a file or pipe does not, and NO_COLOR turns it off on a terminal too.
// Not parallel: it sets NO_COLOR for the process.
func TestColorAuto(t *testing.T) {
	url, id := colorSession(t)

	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	onTerminal := func(args ...string) string {
		t.Helper()
		var got bytes.Buffer
		done := make(chan struct{})
		go func() { _, _ = io.Copy(&got, ptmx); close(done) }()
		var errb bytes.Buffer
		code := runTo(url, tty, &errb, args...)
		require.Equal(t, 0, code, errb.String())
		require.NoError(t, tty.Close())
		<-done
		return got.String()
	}
	out := onTerminal("show", id)
	require.Contains(t, out, "    qty: "+red+"5"+reset+" -> "+green+"6"+reset)

	// A file is not a terminal: no colour with auto.
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	var errb bytes.Buffer
	require.Equal(t, 0, runTo(url, f, &errb, "show", id, "--color=auto"), errb.String())
	require.NoError(t, f.Close())
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Contains(t, string(b), "    qty: 5 -> 6\n")
	require.NotContains(t, string(b), "\x1b[")

	// NO_COLOR on a terminal: no colour with auto; --color=always still
	// colours (a flag given on the command line wins, as no-color.org asks).
	t.Setenv("NO_COLOR", "1")
	ptmx2, tty2, err := pty.Open()
	require.NoError(t, err)
	defer ptmx2.Close()
	ptmx, tty = ptmx2, tty2
	out = onTerminal("show", id)
	require.Contains(t, out, "    qty: 5 -> 6")
	require.NotContains(t, out, "\x1b[")
	ptmx3, tty3, err := pty.Open()
	require.NoError(t, err)
	defer ptmx3.Close()
	ptmx, tty = ptmx3, tty3
	out = onTerminal("show", id, "--color=always")
	require.Contains(t, out, "    qty: "+red+"5"+reset+" -> "+green+"6"+reset)
}

func TestColorBadMode(t *testing.T) {
	t.Parallel()
	r := run(t, "postgres://unused", "sessions", "--color=sometimes")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, `"sometimes" is not a colour mode: use auto, always or never`)
}
