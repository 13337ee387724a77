package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

func ndjsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var vs []map[string]any
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		vs = append(vs, v)
	}
	return vs
}

func TestLogFiltersAndFormats(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (k text PRIMARY KEY);
		CREATE ROLE log_writer; GRANT ALL ON a, b TO log_writer`)
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a", "b").code)
	ctx := context.Background()
	c1 := pgtest.Connect(t, withApp(url, "app-one"))
	pgtest.Exec(t, c1, "SET pgundo.tag = 'ticket-1'")
	pgtest.Exec(t, c1, "INSERT INTO a VALUES (1, 'x'), (2, 'a,b \"q\"')")
	c2 := pgtest.Connect(t, withApp(url, "app-two"))
	id1, id2 := sessionID(t, c1), sessionID(t, c2)
	pgtest.Exec(t, c2, "SET ROLE log_writer")
	pgtest.Exec(t, c2, "BEGIN")
	pgtest.Exec(t, c2, "UPDATE a SET v = '' WHERE id = 1")
	pgtest.Exec(t, c2, "INSERT INTO b VALUES ('k1')")
	pgtest.Exec(t, c2, "COMMIT")
	pgtest.Exec(t, c1, "DELETE FROM a WHERE id = 2")
	var xid string
	require.NoError(t, conn.QueryRow(ctx, "SELECT xid::text FROM pgundo.stmt WHERE table_name = 'b'").Scan(&xid))

	r := run(t, url, "log", "--format", "ndjson")
	require.Equal(t, 0, r.code, r.stderr)
	all := ndjsonLines(t, r.stdout)
	require.Len(t, all, 5)
	summary := func(vs []map[string]any) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v["op"].(string)+" "+v["table"].(string)+" "+v["key"].(string))
		}
		return out
	}
	require.Equal(t, []string{"INSERT public.a id=1", "INSERT public.a id=2", "UPDATE public.a id=1", "INSERT public.b k=k1", "DELETE public.a id=2"}, summary(all))
	upd := all[2]
	require.Equal(t, id2, upd["session"])
	require.Equal(t, "postgres", upd["user"])
	require.Equal(t, "log_writer", upd["role"])
	require.Equal(t, "app-two", upd["application_name"])
	require.Nil(t, upd["tag"])
	require.Equal(t, []any{col("v", "x", "")}, upd["columns"])
	require.Equal(t, "(1,x)", upd["old"])
	require.Equal(t, `(1,"")`, upd["new"])
	require.Equal(t, "ticket-1", all[0]["tag"])

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--table", "b"}, []string{"INSERT public.b k=k1"}},
		{[]string{"--session", id1}, []string{"INSERT public.a id=1", "INSERT public.a id=2", "DELETE public.a id=2"}},
		{[]string{"--tx", xid}, []string{"UPDATE public.a id=1", "INSERT public.b k=k1"}},
		{[]string{"--user", "log_writer"}, []string{"UPDATE public.a id=1", "INSERT public.b k=k1"}},
		{[]string{"--user", "postgres", "--op", "delete"}, []string{"DELETE public.a id=2"}},
		{[]string{"--app", "app-one", "--op", "update,delete"}, []string{"DELETE public.a id=2"}},
		{[]string{"--tag", "ticket-1"}, []string{"INSERT public.a id=1", "INSERT public.a id=2", "DELETE public.a id=2"}},
		{[]string{"--op", "UPDATE", "--op", "insert", "--table", "a"}, []string{"INSERT public.a id=1", "INSERT public.a id=2", "UPDATE public.a id=1"}},
		{[]string{"--since", "1h"}, summary(all)},
		{[]string{"--until", "1h"}, nil},
		{[]string{"--since", "2999-01-01"}, nil},
		{[]string{"--limit", "2"}, summary(all)[:2]},
	} {
		r := run(t, url, append([]string{"log", "--format", "ndjson"}, c.args...)...)
		require.Equal(t, 0, r.code, "%v: %s", c.args, r.stderr)
		require.Equal(t, c.want, summary(ndjsonLines(t, r.stdout)), c.args)
	}

	// json is one array of the same objects.
	r = run(t, url, "log", "--json", "--table", "b")
	require.Equal(t, 0, r.code, r.stderr)
	var arr []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &arr))
	require.Equal(t, []map[string]any{all[3]}, arr)
	r = run(t, url, "log", "--format", "json", "--table", "b", "--op", "delete")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "[]\n", r.stdout)

	// csv: PostgreSQL's conventions (NULL empty, empty string "").
	r = run(t, url, "log", "--format", "csv", "--table", "a", "--op", "insert,update")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, "stmt_id,xid,at,op,table,key,previous_key,session,user,role,application_name,client_addr,tag,columns,old,new", lines[0])
	require.True(t, strings.HasSuffix(lines[2], `,INSERT,public.a,id=2,,`+id1+`,postgres,postgres,app-one,,ticket-1,"[{""column"":""id"",""old"":null,""new"":""2""},{""column"":""v"",""old"":null,""new"":""a,b \""q\""""}]",,"(2,""a,b """"q"""""")"`), lines[2])
	require.True(t, strings.HasSuffix(lines[3], `,"(1,x)","(1,"""")"`), lines[3])

	// table: one line per change, for people (its layout: TestLogTableAlignedWithXID).
	r = run(t, url, "log", "--table", "a", "--op", "update")
	require.Equal(t, 0, r.code, r.stderr)
	lines = strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, []string{xid, id2, "postgres/log_writer", "app-two", "-", "UPDATE", "public.a", "id=1", "v:", "x", "->", "''"}, strings.Fields(lines[1])[3:]) // same transaction as the insert into b

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "xml"}, `unknown --format "xml"`},
		{[]string{"--op", "merge"}, `--op "merge": use insert, update, delete or truncate`},
		{[]string{"--tx", "abc"}, `--tx "abc": give a transaction id as a number`},
		{[]string{"--table", "nope"}, "table nope: no such table"},
		{[]string{"--since", "soon"}, `cannot read time "soon"`},
	} {
		r := run(t, url, append([]string{"log"}, c.args...)...)
		require.Equal(t, 2, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want)
	}
}

// TestLogStreamsAcrossBatches reads a log larger than one page of statements
// and one chunk of change rows: everything arrives once, in order.
func TestLogStreamsAcrossBatches(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, "CREATE TABLE a (id int PRIMARY KEY, v int)")
	r0 := run(t, url, "install")
	require.Equal(t, 0, r0.code, r0.stderr)
	require.Equal(t, 0, run(t, url, "track", "a").code)
	pgtest.Exec(t, conn, "INSERT INTO a SELECT i, 0 FROM generate_series(1, 60000) i")
	pgtest.Exec(t, conn, "DO $$ BEGIN FOR i IN 1..1500 LOOP UPDATE a SET v = v + 1 WHERE id = i; END LOOP; END $$")
	r := run(t, url, "log", "--format", "csv")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 1+60000+1500)
	for i := 1; i <= 60000; i++ {
		require.Contains(t, lines[i], ",INSERT,public.a,id=")
	}
	for i := 1; i <= 1500; i++ {
		require.Contains(t, lines[60000+i], ",UPDATE,public.a,id="+itoa(i)+",")
	}
	r = run(t, url, "log", "--format", "ndjson", "--op", "update", "--limit", "1001")
	require.Equal(t, 0, r.code, r.stderr)
	vs := ndjsonLines(t, r.stdout)
	require.Len(t, vs, 1001)
	require.Equal(t, "id=1001", vs[1000]["key"])
}
