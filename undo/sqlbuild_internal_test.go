package undo

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestQuotingReadsBack: the literals and dollar-quoted strings scripts hold
// read back, on the server, as exactly the string quoted, with
// standard_conforming_strings on or off, whatever tags the string holds.
func TestQuotingReadsBack(t *testing.T) {
	ctx := t.Context()
	conn := pgtest.Connect(t, pgtest.NewDB(t))
	// Parsed anew each time: a prepared statement would keep the parse
	// made under the other setting.
	fresh := pgx.QueryExecModeExec
	for _, s := range []string{
		"", "plain", "it's", `back\slash`, `\'`, `'\`, `x\'; SELECT 1; --`, "new\nline", `E'\\x41'`, `%s %`,
		"$pgundo$", "x$pgundo", "$pgundo", "a$pgundo$b$pgundo_1$c", "$pgundo_1$pgundo$", "$$", "end$",
	} {
		for _, scs := range []string{"on", "off"} {
			pgtest.Exec(t, conn, "SET standard_conforming_strings = "+scs)
			var lit, dq string
			require.NoError(t, conn.QueryRow(ctx, "SELECT "+quoteLiteral(s), fresh).Scan(&lit), "literal %s", quoteLiteral(s))
			require.Equal(t, s, lit, "literal %s, standard_conforming_strings %s", quoteLiteral(s), scs)
			require.NoError(t, conn.QueryRow(ctx, "SELECT "+dollarQuote(s), fresh).Scan(&dq), "dollar quote %s", dollarQuote(s))
			require.Equal(t, s, dq, "dollar quote %s, standard_conforming_strings %s", dollarQuote(s), scs)
		}
	}
}
