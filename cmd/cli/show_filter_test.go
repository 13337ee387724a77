package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestShowFiltersAndKeyOrder: show lists the rows of a statement in
// primary-key order (numbers by value), and --table and --key narrow it to
// a table or one row of it, counts included.
func TestShowFiltersAndKeyOrder(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text);
		CREATE TABLE b (x int, y int, w text, PRIMARY KEY (x, y))`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "a", "b").code)
	pgtest.Exec(t, conn, "INSERT INTO a VALUES (10, 'j'), (9, 'i'), (100, 'k')")
	pgtest.Exec(t, conn, "INSERT INTO b VALUES (2, 1, 'p'), (1, 2, 'q'), (1, 1, 'r')")
	pgtest.Exec(t, conn, "UPDATE a SET id = 11 WHERE id = 10")
	id := sessionID(t, conn)

	r := run(t, url, "show", id)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{
		"INSERT public.a", "    id: 9", "    v: i",
		"INSERT public.a", "    id: 10", "    v: j",
		"INSERT public.a", "    id: 100", "    v: k",
		"INSERT public.b", "    x: 1", "    y: 1", "    w: r",
		"INSERT public.b", "    x: 1", "    y: 2", "    w: q",
		"INSERT public.b", "    x: 2", "    y: 1", "    w: p",
		"UPDATE public.a", "    id: 10 -> 11",
	}, changeLines(r.stdout))

	r = run(t, url, "show", id, "--table", "b", "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "\nTABLE     INSERTED  UPDATED  DELETED  TRUNCATED\npublic.b  3         0        0        0\n\n")
	// The limit keeps the first rows logged (2,1 and 1,2), listed in key order.
	require.Equal(t, []string{
		"INSERT public.b", "    x: 1", "    y: 2", "    w: q",
		"INSERT public.b", "    x: 2", "    y: 1", "    w: p",
	}, changeLines(r.stdout))
	require.Equal(t, "pgundo: output cut at --limit 2: 1 more row change not shown; --limit 0 shows them all\n", r.stderr)

	// The row with key 10: its insert, and the update that gave it key 11.
	// The key is read as the column's type: 010 is 10.
	for _, key := range []string{"10", "010", "id=10"} {
		r = run(t, url, "show", id, "--table", "public.a", "--key", key)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "\nTABLE     INSERTED  UPDATED  DELETED  TRUNCATED\npublic.a  1         1        0        0\n\n")
		require.Equal(t, []string{
			"INSERT public.a", "    id: 10", "    v: j",
			"UPDATE public.a", "    id: 10 -> 11",
		}, changeLines(r.stdout), key)
	}
	r = run(t, url, "show", id, "--table", "b", "--key", "x=1", "--key", "y=2", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var d struct {
		Tables  []map[string]any `json:"tables"`
		Changes []struct {
			Op      string           `json:"op"`
			Columns []map[string]any `json:"columns"`
		} `json:"changes"`
		More int `json:"more"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &d))
	require.Equal(t, []map[string]any{{"table": "public.b", "inserts": 1.0, "updates": 0.0, "deletes": 0.0, "truncated": 0.0}}, d.Tables)
	require.Len(t, d.Changes, 1)
	require.Equal(t, []map[string]any{
		{"column": "x", "old": nil, "new": "1"}, {"column": "y", "old": nil, "new": "2"}, {"column": "w", "old": nil, "new": "q"},
	}, d.Changes[0].Columns)
	require.Zero(t, d.More)

	// No such row in this session: the counts say so, no rows.
	r = run(t, url, "show", id, "--table", "a", "--key", "7")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, changeLines(r.stdout))
	require.True(t, strings.HasSuffix(r.stdout, "\nTABLE  INSERTED  UPDATED  DELETED  TRUNCATED\n\n"), r.stdout)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "10"}, "--key needs --table"},
		{[]string{"--table", "a", "--key", "ten"}, "key id=ten of public.a: invalid input syntax for type integer"},
		{[]string{"--table", "b", "--key", "1"}, "the primary key of public.b has 2 columns (x, y): give each as col=value"},
		{[]string{"--table", "nope"}, "table nope: no such table"},
	} {
		r := run(t, url, append([]string{"show", id}, c.args...)...)
		require.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want, c.args)
		require.Empty(t, r.stdout, c.args)
	}
}
