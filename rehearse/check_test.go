package rehearse_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/rehearse"
)

// TestCheckRefusals: every statement that cannot run inside the rehearsal's
// transaction is named with its reason; what can run is not refused.
func TestCheckRefusals(t *testing.T) {
	t.Parallel()
	for stmt, want := range map[string]string{
		"BEGIN":                             "BEGIN manages transactions",
		"abort":                             "ABORT manages transactions",
		"RELEASE SAVEPOINT a":               "RELEASE manages transactions",
		"PREPARE TRANSACTION 'x'":           "PREPARE TRANSACTION manages transactions",
		"VACUUM FULL t":                     "VACUUM cannot run inside a transaction block",
		"ALTER SYSTEM SET work_mem = '1MB'": "ALTER SYSTEM cannot run inside a transaction block",
		"ALTER TABLE p DETACH PARTITION c CONCURRENTLY": "DETACH PARTITION ... CONCURRENTLY cannot run",
		"ALTER SUBSCRIPTION s REFRESH PUBLICATION":      "ALTER SUBSCRIPTION cannot be rehearsed",
		"CREATE DATABASE d":                             "CREATE DATABASE cannot run inside a transaction block",
		"drop tablespace x":                             "DROP TABLESPACE cannot run inside a transaction block",
		"DROP INDEX CONCURRENTLY i":                     "DROP INDEX CONCURRENTLY cannot run",
		"REINDEX TABLE CONCURRENTLY t":                  "REINDEX TABLE cannot run inside a transaction block",
		"REINDEX DATABASE d":                            "REINDEX DATABASE cannot run inside a transaction block",
		"CLUSTER":                                       "CLUSTER without a table cannot run",
		"DISCARD ALL":                                   "DISCARD ALL cannot run inside a transaction block",
		"COPY t TO STDOUT":                              "COPY ... FROM STDIN / TO STDOUT needs psql's data stream",
	} {
		_, err := rehearse.Check("s.sql", "SELECT 1;\n"+stmt+";\n", true)
		var ce *rehearse.CheckError
		require.True(t, errors.As(err, &ce), stmt)
		require.Len(t, ce.Refused, 1, stmt)
		require.Equal(t, 2, ce.Refused[0].Line, stmt)
		require.Contains(t, ce.Refused[0].Refusal(), want, stmt)
		require.Contains(t, err.Error(), "try s.sql: refused, nothing was run: the script has 1 statement(s)", stmt)
	}
	for _, ok := range []string{
		"ALTER TABLE p DETACH PARTITION c", "CLUSTER t USING i", "REINDEX TABLE t", "DISCARD TEMP",
		"COPY t FROM '/tmp/x'", "CREATE INDEX i ON t (a)", "PREPARE q AS SELECT 1", "SELECT 'BEGIN'",
	} {
		stmts, err := rehearse.Check("s.sql", ok, true)
		require.NoError(t, err, ok)
		require.Len(t, stmts, 1, ok)
	}

	_, err := rehearse.Check("s.sql", "-- only a comment\n;\n", true)
	require.EqualError(t, err, "try s.sql: the script has no statements; nothing was run")
	_, err = rehearse.Check("s.sql", "SELECT 'x", true)
	var se *rehearse.SyntaxError
	require.True(t, errors.As(err, &se))
	require.Equal(t, 1, se.Line)
	require.EqualError(t, err, "try s.sql: line 1: unterminated string (opened with '); nothing was run")
}

func ExampleCheck() {
	_, err := rehearse.Check("fix.sql", "UPDATE orders SET note = NULL WHERE id = 7;\nCOMMIT;\n", true)
	fmt.Println(err)
	// Output:
	// try fix.sql: refused, nothing was run: the script has 1 statement(s) that cannot run inside try's transaction:
	//   line 2: COMMIT
	//     COMMIT manages transactions: try runs the whole script in one transaction of its own (rolled back, or committed with --commit); remove the script's transaction control
}

func ExampleSplit() {
	stmts, _ := rehearse.Split("-- notes; all of them\nUPDATE t SET note = 'a;b';\nSELECT $$;$$", true)
	for _, s := range stmts {
		fmt.Printf("line %d: %s\n", s.Line, s.Text)
	}
	// Output:
	// line 2: UPDATE t SET note = 'a;b'
	// line 3: SELECT $$;$$
}
