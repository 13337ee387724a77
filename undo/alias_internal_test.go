package undo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReplaceToken: the live-table alias is rewritten only where it is the
// bare token, never inside quoted identifiers, literals, comments, qualified
// names or longer names (a column may be called "cur", "x cur" or "cur_img").
func TestReplaceToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`SELECT cur::text FROM t cur`, `SELECT cur_1::text FROM t cur_1`},
		{`UPDATE t cur SET "cur" = (u.b)."cur" WHERE cur *= u.a`, `UPDATE t cur_1 SET "cur" = (u.b)."cur" WHERE cur_1 *= u.a`},
		{`SELECT x.cur, cur_img, cur_exists, "x cur y", 'cur''s cur' FROM t cur`, `SELECT x.cur, cur_img, cur_exists, "x cur y", 'cur''s cur' FROM t cur_1`},
		{"-- the log's cur\nSELECT cur.ctid FROM t cur", "-- the log's cur\nSELECT cur_1.ctid FROM t cur_1"},
		{`SELECT "a""cur" FROM t cur`, `SELECT "a""cur" FROM t cur_1`},
		{`SELECT ucur, cur2, $cur FROM t cur`, `SELECT ucur, cur2, $cur FROM t cur_1`},
	} {
		require.Equal(t, tc.want, replaceToken(tc.in, "cur", "cur_1"), tc.in)
	}
	require.Equal(t, "cur_2", liveAlias([]column{{name: "cur"}, {name: "cur_1"}}))
	require.Equal(t, "cur", liveAlias([]column{{name: "Cur"}}))
}
