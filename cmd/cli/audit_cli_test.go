package cli_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestVerifyAndPruneCLI: verify exits 0 on an untouched log and 3, naming
// the first bad entry, after a superuser edits it; prune asks for --yes
// without a terminal, shows its plan with --dry-run, refuses a cut-off in
// the future, and reports what it removed.
func TestVerifyAndPruneCLI(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE note (id int PRIMARY KEY, body text); INSERT INTO note VALUES (1, 'a'), (2, 'b')`)
	require.Equal(t, cli.ExitOK, run(t, url, "install").code)
	require.Equal(t, cli.ExitOK, run(t, url, "track", "note").code)
	w := pgtest.Connect(t, url)
	pgtest.Exec(t, w, `UPDATE note SET body = 'patched'`)
	pgtest.Exec(t, w, `DELETE FROM note WHERE id = 2`)

	r := run(t, url, "verify")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "sealed 2 new statements")
	require.Contains(t, r.stdout, "ok: every sealed statement matches its seal; 2 statements in 1 seals checked, 0 logged since the last seal")
	require.Regexp(t, `head: seal 1, hash [0-9a-f]{64}`, r.stdout)

	var first int64
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT min(id) FROM pgundo.stmt`).Scan(&first))
	pgtest.Exec(t, conn, `UPDATE pgundo.change_log SET new = '(1,innocent)' WHERE new = '(1,patched)'`)
	r = run(t, url, "verify", "--no-seal")
	require.Equal(t, cli.ExitRefused, r.code, r.stderr)
	require.Contains(t, r.stdout, "TAMPERED: 1 problems")
	require.Contains(t, r.stderr, fmt.Sprintf("the first at statement %d (public.note, session ", first))
	require.Contains(t, r.stderr, "edited (statement, session or change rows differ from what was sealed)")
	r = run(t, url, "verify", "--no-seal", "--json")
	require.Equal(t, cli.ExitRefused, r.code)
	var vres struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Statement int64  `json:"statement"`
			Kind      string `json:"kind"`
			Table     string `json:"table"`
		} `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &vres), r.stdout)
	require.False(t, vres.OK)
	require.Equal(t, first, vres.Problems[0].Statement)
	require.Equal(t, "public.note", vres.Problems[0].Table)

	time.Sleep(10 * time.Millisecond)
	cut := time.Now().UTC().Format(time.RFC3339Nano)
	r = run(t, url, "prune", "--before", cut)
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "prune needs confirmation: no terminal to ask on, so nothing was removed; add --yes")
	require.Contains(t, r.stderr, "would remove 2 statements, 3 row changes")
	r = run(t, url, "prune", "--before", "2h", "--dry-run")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "nothing to prune before")
	r = run(t, url, "prune", "--before", time.Now().Add(time.Hour).Format(time.RFC3339), "--yes")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "is in the future; nothing was changed")
	r = run(t, url, "prune")
	require.Equal(t, cli.ExitUsage, r.code)
	require.Contains(t, r.stderr, "--before is required")
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pgundo.stmt`).Scan(&n))
	require.Equal(t, 2, n, "nothing pruned yet")

	r = run(t, url, "prune", "--before", cut, "--yes", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.stderr)
	var pres struct {
		Statements int64 `json:"statements"`
		Changes    int64 `json:"changes"`
		Removed    []any `json:"removed"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pres), r.stdout)
	require.Equal(t, int64(2), pres.Statements)
	require.Equal(t, int64(3), pres.Changes)
	require.Len(t, pres.Removed, 1)
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pgundo.stmt`).Scan(&n))
	require.Zero(t, n)
	require.Equal(t, []string{"(1,patched)"}, tableText(t, conn, "note"), "prune never touches the data")
	r = run(t, url, "verify")
	require.Equal(t, cli.ExitOK, r.code, "the tampered entry was pruned: %s %s", r.stdout, r.stderr)
}
