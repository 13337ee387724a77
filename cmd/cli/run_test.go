package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// sq quotes s for sh.
func sq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestRunTagsEveryConnection: a psql script over two connections, run under
// one tag, is recorded as two sessions carrying the tag and undone together
// by pgundo undo --tag.
func TestRunTagsEveryConnection(t *testing.T) {
	t.Parallel()
	url, conn := setupShop(t)
	before := snapshot(t, conn)
	psql := filepath.Join(pgtest.BinDir(), "psql") + " -X -q -v ON_ERROR_STOP=1 -d " + sq(url)
	tag := `ticket 7 \ "notes"`
	script := psql + ` -c "UPDATE customers SET note = 'VIP' WHERE id IN (1, 3)" && ` +
		psql + ` -c "DELETE FROM orders WHERE id = 13" -c "INSERT INTO customers VALUES (5, 'Eve', 'new')" && ` +
		psql + ` -At -c "SELECT current_setting('pgundo.tag') || '|' || current_setting('application_name')"`
	r := run(t, url, "run", "--tag", tag, "--", "sh", "-c", script)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, tag+"|"+tag+"\n", r.stdout, "the tag reaches the server intact, and is the application_name")
	require.Contains(t, r.stderr, `pgundo: run --tag ticket 7 \ "notes": sh exited with status 0; its changes to tracked tables: pgundo sessions --tag 'ticket 7 \ "notes"'`)
	require.NotEqual(t, before["customers"], tableText(t, conn, "customers"))

	r = run(t, url, "sessions", "--tag", tag, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var ss []struct {
		ID      string   `json:"id"`
		App     string   `json:"application_name"`
		Changes int64    `json:"changes"`
		Tags    []string `json:"tags"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 2, "two psql connections, two sessions")
	var total int64
	for _, s := range ss {
		require.Equal(t, tag, s.App)
		require.Equal(t, []string{tag}, s.Tags)
		total += s.Changes
	}
	require.EqualValues(t, 2+1+2+1, total) // 2 notes; order 13, its 2 items; Eve

	r = run(t, url, "undo", "--tag", tag, "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	after := snapshot(t, conn)
	for _, tbl := range shopTables {
		require.Equal(t, before[tbl], after[tbl], tbl)
	}
}

// TestRunExitCodes: the command's exit code is passed through; signals and
// a missing command get the shell's codes; bad usage is 2.
func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	url := "host=/nonexistent" // run never connects
	r := run(t, url, "run", "--tag", "x", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	require.Equal(t, 7, r.code)
	require.Equal(t, "out\n", r.stdout)
	require.Contains(t, r.stderr, "err\npgundo: run --tag x: sh exited with status 7;")

	r = run(t, url, "--json", "run", "--tag", "x", "sh", "-c", "exit 0")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"tag":"x","command":["sh","-c","exit 0"],"exit_code":0}`, r.stdout)

	r = run(t, url, "run", "--tag", "x", "--", "sh", "-c", "kill -TERM $$")
	require.Equal(t, 128+15, r.code, r.stderr)

	r = run(t, url, "run", "--tag", "x", "--", "/nonexistent/command")
	require.Equal(t, 127, r.code)
	require.Contains(t, r.stderr, "cannot run /nonexistent/command")

	// stdin is the command's.
	var out strings.Builder
	code := runWithStdin(t, "line one\n", &out, "run", "--tag", "x", "--", "sh", "-c", "read l; echo got $l")
	require.Equal(t, 0, code)
	require.Equal(t, "got line one\n", out.String())

	r = run(t, url, "run", "--", "true")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "run needs --tag TAG")
	r = run(t, url, "run", "--tag", "x")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "name the command to run")
}

func runWithStdin(t *testing.T, stdin string, out *strings.Builder, args ...string) int {
	t.Helper()
	var errb strings.Builder
	return cli.Run(context.Background(), args, strings.NewReader(stdin), out, &errb)
}

// TestRunCommandInheritsStdout: the command pgundo run starts gets
// pgundo's own stdout file (a terminal stays a terminal for psql), not a
// pipe through pgundo.
func TestRunCommandInheritsStdout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	var errb strings.Builder
	code := cli.Run(context.Background(), []string{"run", "--tag", "t-1", "--", "sh", "-c", "readlink /proc/self/fd/1"}, strings.NewReader(""), f, &errb)
	require.Equal(t, 0, code, errb.String())
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, path+"\n", string(got))
}
