package cli_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// onTerminalErr runs pgundo with stderr on a new terminal and returns
// what it printed there, and stdout.
func onTerminalErr(t *testing.T, url string, args ...string) (string, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	require.NoError(t, pty.Setsize(tty, &pty.Winsize{Rows: 50, Cols: 120}))
	var got bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&got, ptmx); close(done) }()
	var out bytes.Buffer
	code := runTo(url, &out, tty, args...)
	require.Equal(t, 0, code, got.String())
	require.NoError(t, tty.Close())
	<-done
	return got.String(), out.String()
}

// TestUndoProgressBar: on a terminal an undo shows a bar per table (rows
// written of rows planned, rate); off a terminal and under --json it
// does not. PGUNDO_PROGRESS_DELAY=0s shows it at once (the default waits
// two seconds, so a quick undo shows none). Not parallel: it sets the
// variable for the process.
func TestUndoProgressBar(t *testing.T) {
	t.Setenv("PGUNDO_PROGRESS_DELAY", "0s")
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY);
		INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a", "b").code)
	session := func() string {
		c := pgtest.Connect(t, url)
		pgtest.Exec(t, c, "UPDATE a SET v = v || '!'; INSERT INTO b VALUES (1), (2)")
		return sessionID(t, c)
	}

	stderr, stdout := onTerminalErr(t, url, "undo", session(), "--yes")
	require.Contains(t, stdout, "undone: 5 rows written in one transaction")
	require.Regexp(t, `public\.a\s+3 / 3 rows \[=+\]\s+\d+ rows/s ETA 0s`, stderr)
	require.Regexp(t, `public\.b\s+2 / 2 rows \[=+\]\s+\d+ rows/s ETA 0s`, stderr)
	require.Equal(t, []string{"(1,x)", "(2,y)", "(3,z)"}, tableText(t, conn, "a"))
	require.Empty(t, tableText(t, conn, "b"))

	// A dry run on a terminal shows the bars too (rows written, then
	// rolled back); --json shows none.
	id := session()
	stderr, _ = onTerminalErr(t, url, "undo", id, "--dry-run")
	require.Regexp(t, `public\.a\s+3 / 3 rows`, stderr)
	stderr, stdout = onTerminalErr(t, url, "undo", id, "--yes", "--json")
	require.Contains(t, stdout, `"applied": true`)
	require.Empty(t, stderr)

	// Off a terminal: no bar.
	r := run(t, url, "undo", session(), "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.NotContains(t, r.stderr, "rows/s")
	require.False(t, strings.Contains(r.stderr, "\x1b["), r.stderr)
}

// TestLongStepSpinner: a step that runs long (here history, waiting for the
// row-history index, which another transaction holds) shows a spinner with
// what it is doing and the time elapsed, on a terminal only; off a terminal
// and under --json, stderr stays empty. Not parallel: it sets
// PGUNDO_PROGRESS_DELAY for the process.
func TestLongStepSpinner(t *testing.T) {
	t.Setenv("PGUNDO_PROGRESS_DELAY", "0s")
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x')`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	pgtest.Exec(t, conn, "UPDATE a SET v = 'y'")
	hold := func() {
		tx, err := pgtest.Connect(t, url).Begin(t.Context())
		require.NoError(t, err)
		_, err = tx.Exec(t.Context(), "SELECT FROM pgundo.hist_state FOR UPDATE")
		require.NoError(t, err)
		go func() {
			time.Sleep(1500 * time.Millisecond)
			_ = tx.Rollback(context.Background())
		}()
	}

	hold()
	stderr, stdout := onTerminalErr(t, url, "history", "a", "1")
	require.Contains(t, stdout, "UPDATE")
	require.Contains(t, stderr, "bringing the row-history index up to date")

	hold()
	r := run(t, url, "history", "a", "1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	hold()
	stderr, _ = onTerminalErr(t, url, "history", "a", "1", "--json")
	require.Empty(t, stderr)
}
