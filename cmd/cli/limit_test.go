package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestLimitZeroMeansAllAndCutsAreSaid: in every command with --limit, 0
// lists everything (it meant the default before), and output cut by the
// limit says so on stderr, and in show and try --json with "truncated".
func TestLimitZeroMeansAllAndCutsAreSaid(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	ctx := context.Background()
	// 51 sessions (one more than sessions' default limit); the last one
	// writes 150 rows (more than show's and try's default limit).
	for i := 1; i <= 50; i++ {
		c, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		_, err = c.Exec(ctx, "INSERT INTO a VALUES ($1, 'x')", i)
		require.NoError(t, err)
		require.NoError(t, c.Close(ctx))
	}
	w := pgtest.Connect(t, url)
	pgtest.Exec(t, w, "INSERT INTO a SELECT i, 'y' FROM generate_series(101, 250) i")
	sid := sessionID(t, w)

	sessions := func(args ...string) ([]map[string]any, string) {
		r := run(t, url, append([]string{"sessions", "--json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var ss []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
		return ss, r.stderr
	}
	ss, stderr := sessions()
	require.Len(t, ss, 50)
	require.Equal(t, "pgundo: output cut at --limit 50: more sessions match; --limit 0 lists them all\n", stderr)
	ss, stderr = sessions("--limit", "0")
	require.Len(t, ss, 51)
	require.Empty(t, stderr)
	ss, stderr = sessions("--limit", "51")
	require.Len(t, ss, 51)
	require.Empty(t, stderr, "exactly the limit is not a cut")
	r := run(t, url, "sessions", "--limit", "1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "pgundo: output cut at --limit 1: more sessions match; --limit 0 lists them all\n", r.stderr)
	require.Contains(t, r.stdout, sid)

	type detail struct {
		Changes   []any `json:"changes"`
		More      int64 `json:"more"`
		Truncated bool  `json:"truncated"`
	}
	show := func(args ...string) (detail, string) {
		r := run(t, url, append([]string{"show", sid, "--json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var d detail
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &d))
		return d, r.stderr
	}
	d, stderr := show()
	require.Equal(t, 100, len(d.Changes))
	require.Equal(t, int64(50), d.More)
	require.True(t, d.Truncated)
	require.Equal(t, "pgundo: output cut at --limit 100: 50 more row changes not shown; --limit 0 shows them all\n", stderr)
	d, stderr = show("--limit", "0")
	require.Equal(t, 150, len(d.Changes))
	require.Equal(t, int64(0), d.More)
	require.False(t, d.Truncated)
	require.Empty(t, stderr)
	r = run(t, url, "show", sid, "--limit", "149")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "pgundo: output cut at --limit 149: 1 more row change not shown; --limit 0 shows them all\n", r.stderr)
	require.NotContains(t, r.stdout, "more row change")

	script := filepath.Join(t.TempDir(), "many.sql")
	require.NoError(t, os.WriteFile(script, []byte("UPDATE a SET v = 'z' WHERE id > 100;\n"), 0o600))
	try := func(args ...string) (detail, string) {
		r := run(t, url, append([]string{"try", script, "--json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var d detail
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &d))
		return d, r.stderr
	}
	d, stderr = try()
	require.Equal(t, 100, len(d.Changes))
	require.Equal(t, int64(50), d.More)
	require.True(t, d.Truncated)
	require.Equal(t, "pgundo: output cut at --limit 100: 50 more row changes not shown; --limit 0 shows them all\n", stderr)
	d, stderr = try("--limit", "0")
	require.Equal(t, 150, len(d.Changes))
	require.False(t, d.Truncated)
	require.Empty(t, stderr)

	r = run(t, url, "log", "--format", "csv", "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "pgundo: output cut at --limit 2: more changes match; --limit 0 lists them all\n", r.stderr)
	require.Len(t, csvLines(r.stdout), 3, "header and two changes")
	r = run(t, url, "log", "--json", "--limit", "200")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr, "exactly the limit is not a cut")
	var all []any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &all))
	require.Len(t, all, 200)
	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM a").Scan(&n))
	require.Equal(t, 200, n, "try rolled back")
}

// csvLines splits CSV output with no quoted line breaks into lines.
func csvLines(out string) []string {
	var lines []string
	start := 0
	for i := 0; i < len(out); i++ {
		if out[i] == '\n' {
			lines = append(lines, out[start:i])
			start = i + 1
		}
	}
	return lines
}
