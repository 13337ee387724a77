package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// errorJSON is an error under --json.
type errorJSON struct {
	Error *struct {
		Code    int     `json:"code"`
		Message string  `json:"message"`
		Hint    *string `json:"hint"`
	} `json:"error"`
}

// onlyJSON decodes stdout as exactly one JSON value into v: nothing before
// it, nothing after it.
func onlyJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(stdout)))
	require.NoError(t, dec.Decode(v), "stdout: %q", stdout)
	var extra json.RawMessage
	require.ErrorIs(t, dec.Decode(&extra), io.EOF, "more on stdout after the JSON value: %q", stdout)
}

// requireJSONError checks that r failed with code and printed exactly one
// error object with that code, message and hint (nil: null) on stdout, and
// the message on stderr.
func requireJSONError(t *testing.T, r result, code int, message string, hint *string) {
	t.Helper()
	require.Equal(t, code, r.code, "stdout %q, stderr %q", r.stdout, r.stderr)
	var e errorJSON
	onlyJSON(t, r.stdout, &e)
	require.NotNil(t, e.Error, r.stdout)
	require.Equal(t, code, e.Error.Code)
	require.Equal(t, message, e.Error.Message)
	require.Equal(t, hint, e.Error.Hint)
	var shape map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shape))
	require.Len(t, shape, 1, "one key, error: %s", r.stdout)
	require.Len(t, shape["error"], 3, "code, message and hint: %s", r.stdout)
	require.Equal(t, "pgundo: "+message+"\n", r.stderr)
}

func str(s string) *string { return &s }

// TestJSONErrors: under --json an error is one JSON object on stdout
// ({"error": {"code", "message", "hint"}}) with the exit code as its code,
// whichever way it failed; a result that tells of the failure (status's
// report, exit 4) is the only thing on stdout.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x'), (2, 'y')")

	// Not installed: an error (1), with the next step as the hint.
	r := run(t, url, "sessions", "--json")
	requireJSONError(t, r, 1, `database `+conn.Config().Database+`: pgundo is not installed in this database; run pgundo install`, str("run pgundo install"))

	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)

	// Bad usage (2): an unknown flag, --json after it on the line; an
	// unknown command; contradicting flags.
	requireJSONError(t, run(t, url, "log", "--bogus", "--json"), 2, "unknown flag: --bogus", str("see pgundo log --help"))
	requireJSONError(t, run(t, url, "--json", "frobnicate"), 2, `unknown command "frobnicate" for "pgundo"`, str("see pgundo --help"))
	requireJSONError(t, run(t, url, "log", "--format", "csv", "--json"), 2,
		"--json and --format csv contradict: --json is --format json; give one of them", str("see pgundo log --help"))
	requireJSONError(t, run(t, url, "asof", "a", "--at", "1h", "--json", "--format", "ndjson"), 2,
		"--json and --format ndjson contradict: --json is --format json; give one of them", str("see pgundo asof --help"))
	// ... which is no contradiction when they agree.
	r = run(t, url, "log", "--format", "json", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)

	// Not found (2): an unknown session, an unknown table.
	requireJSONError(t, run(t, url, "show", "deadbeef.1", "--json"), 2, `session "deadbeef.1": no such session (pgundo sessions lists the recorded ones)`, str("see pgundo show --help"))
	requireJSONError(t, run(t, url, "history", "nosuch", "1", "--json"), 2, "table nosuch: no such table (search_path schemas: public); check the name, or qualify it with its schema", str("see pgundo history --help"))

	// Refused (3): undoing a session already undone.
	w := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, w, "UPDATE a SET v = 'z'")
	var sid string
	require.NoError(t, w.QueryRow(context.Background(), "SELECT pgundo._session()").Scan(&sid))
	r = run(t, url, "undo", sid, "--yes", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var applied struct {
		UndoSession string `json:"undo_session"`
	}
	onlyJSON(t, r.stdout, &applied)
	requireJSONError(t, run(t, url, "undo", sid, "--yes", "--json"), 3, fmt.Sprintf("session %s was already undone by session %s, and nothing of the selected changes is left to undo; nothing was changed (to put the changes back, undo %s: that is a redo)",
		sid, applied.UndoSession, applied.UndoSession), nil)

	// Status exit 4: the report, and nothing else, on stdout.
	pgtest.Exec(t, conn, "ALTER TABLE a DISABLE TRIGGER pgundo_capture_update")
	r = run(t, url, "status", "--json")
	require.Equal(t, 4, r.code, r.stderr)
	var report struct {
		Healthy  bool  `json:"healthy"`
		Problems []any `json:"problems"`
		Error    any   `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	dec := json.NewDecoder(bytes.NewReader([]byte(r.stdout)))
	var first, second json.RawMessage
	require.NoError(t, dec.Decode(&first))
	require.ErrorIs(t, dec.Decode(&second), io.EOF, "only the report on stdout: %s", r.stdout)
	require.False(t, report.Healthy)
	require.Len(t, report.Problems, 1)
	require.Nil(t, report.Error)
	require.Contains(t, r.stderr, "pgundo: capture is broken on 1 tracked table (public.a)")

	// No server: an error (1) with what to check.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	r = run(t, fmt.Sprintf("postgres://nobody@127.0.0.1:%d/shop?connect_timeout=5", port), "sessions", "--json")
	var e errorJSON
	onlyJSON(t, r.stdout, &e)
	require.Equal(t, 1, r.code)
	require.Equal(t, 1, e.Error.Code)
	require.Contains(t, e.Error.Message, fmt.Sprintf("cannot connect to PostgreSQL at 127.0.0.1:%d", port))
	require.Equal(t, str("check that the server is running and reachable, and --database-url, DATABASE_URL or PGHOST/PGPORT"), e.Error.Hint)
}
