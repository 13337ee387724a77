package rehearse_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/rehearse"
)

func TestSplitScript(t *testing.T) {
	src := "-- header; comment\n" +
		"SELECT 'a;b', E'it\\'s;', \"q;\"\"x\" FROM t;\n" + // line 2
		"/* one /* nested; */ still; */ UPDATE t\n" + // line 3
		"   SET v = $$x;$$ || $tag$ $$ ; $tag$;\n" +
		"SELECT $1, a$b$c FROM t WHERE (x = ';');\n" + // line 5
		"CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\n" + // line 6
		"BEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n  SELECT 2;\nEND;\n" +
		"CREATE FUNCTION g() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;\n" + // line 11
		";;\n" +
		"select 'no semicolon at the end'" // line 13
	stmts, err := rehearse.Split(src, true)
	require.NoError(t, err)
	var lines []int
	var first []string
	for _, s := range stmts {
		lines = append(lines, s.Line)
		first = append(first, s.Words[0])
	}
	require.Equal(t, []int{2, 3, 5, 6, 11, 13}, lines)
	require.Equal(t, []string{"SELECT", "UPDATE", "SELECT", "CREATE", "CREATE", "SELECT"}, first)
	require.Equal(t, "UPDATE t\n   SET v = $$x;$$ || $tag$ $$ ; $tag$", stmts[1].Text)
	require.Equal(t, "END", stmts[3].LastWord)
	require.Equal(t, 4, stmts[1].LineOf(20)) // "SET v" is on line 4
	require.Equal(t, 3, stmts[1].LineOf(1))

	// With standard_conforming_strings off, a backslash escapes in plain strings too.
	stmts, err = rehearse.Split(`SELECT 'a\';b'; SELECT 2`, false)
	require.NoError(t, err)
	require.Len(t, stmts, 2)

	for src, want := range map[string]string{
		"SELECT 1;\nSELECT 'x":       "line 2: unterminated string",
		"SELECT \"x":                 "line 1: unterminated quoted identifier",
		"SELECT $a$ x":               "line 1: unterminated dollar-quoted string (opened with $a$)",
		"SELECT 1;\n/* x":            "line 2: unterminated /* comment",
		"SELECT 1;\n\\i other.sql\n": `line 2: psql meta-command \i`,
		"SELECT 1 \\gset\n":          `line 1: psql meta-command \gset`,
	} {
		_, err := rehearse.Split(src, true)
		require.ErrorContains(t, err, want, src)
	}
}
