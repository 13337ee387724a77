package rehearse_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/rehearse"
	"github.com/pgundo/pgundo/triggers"
)

// setup gives a test its own database with a tracked table t and an
// untracked table u, and a fresh connection to it (the untracked-write
// counts of a connection include its own recent writes until they are
// flushed to the statistics system, as the CLI's fresh connection never
// has).
func setup(t *testing.T) *pgx.Conn {
	t.Helper()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	pgtest.Exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text);
		CREATE TABLE u (n int);
		INSERT INTO t VALUES (1, 'a'), (2, 'b');
		INSERT INTO u VALUES (1)`)
	_, err := triggers.Track(context.Background(), conn, []string{"t"})
	require.NoError(t, err)
	require.NoError(t, conn.Close(context.Background()))
	return pgtest.Connect(t, url)
}

func rows(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rs, err := conn.Query(context.Background(), `SELECT format('%s:%s', id, v) FROM t UNION ALL SELECT format('u:%s', n) FROM u ORDER BY 1`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rs, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// TestRunRollbackAndCommit: a rehearsal reports the statements, the row
// changes of tracked tables and the untracked tables written; Rollback
// leaves everything as before, Commit keeps it as a session.
func TestRunRollbackAndCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := setup(t)
	before := rows(t, conn)
	script := "UPDATE t SET v = 'x' WHERE id = 2;\nDELETE FROM u;\nINSERT INTO t VALUES (3, 'c')"

	reh, err := rehearse.Run(ctx, conn, "s.sql", script, rehearse.Options{LockTimeout: rehearse.DefaultLockTimeout, Tag: "t-1"})
	require.NoError(t, err)
	res := reh.Result
	require.Equal(t, []rehearse.StatementResult{
		{Line: 1, Statement: "UPDATE t SET v = 'x' WHERE id = 2", Result: "UPDATE 1"},
		{Line: 2, Statement: "DELETE FROM u", Result: "DELETE 1"},
		{Line: 3, Statement: "INSERT INTO t VALUES (3, 'c')", Result: "INSERT 0 1"},
	}, res.Statements)
	require.NotEmpty(t, res.XID)
	require.Len(t, res.Changes, 2)
	require.Equal(t, []rehearse.UntrackedWrite{{Table: "public.u", Deleted: 1}}, res.Untracked)
	require.Equal(t, "1 row deleted", res.Untracked[0].Describe())
	require.NoError(t, reh.Rollback(ctx))
	require.False(t, res.Committed)
	require.Equal(t, before, rows(t, conn))

	reh, err = rehearse.Run(ctx, conn, "s.sql", script, rehearse.Options{})
	require.NoError(t, err)
	require.NoError(t, reh.Commit(ctx))
	require.True(t, reh.Result.Committed)
	require.NoError(t, reh.Rollback(ctx), "Rollback after Commit is a no-op")
	require.Equal(t, []string{"1:a", "2:x", "3:c"}, rows(t, conn))
}

// TestRunFailingStatement: a failing statement is a *StatementError naming
// the line its error position points at; the transaction was rolled back
// and the connection is usable again.
func TestRunFailingStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := setup(t)
	before := rows(t, conn)

	_, err := rehearse.Run(ctx, conn, "s.sql", "UPDATE t SET v = 'y';\nDELETE FROM t\n WHERE id = = 1;\n", rehearse.Options{})
	var se *rehearse.StatementError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, 2, se.Stmt.Line)
	require.Equal(t, 3, se.ErrLine)
	require.Contains(t, err.Error(), "try s.sql: the statement at line 2 (error at line 3) failed: ERROR: syntax error")
	require.Equal(t, before, rows(t, conn))

	// Refused scripts are refused by Run too, before anything runs.
	_, err = rehearse.Run(ctx, conn, "s.sql", "UPDATE t SET v = 'y';\nCOMMIT", rehearse.Options{})
	var ce *rehearse.CheckError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Equal(t, before, rows(t, conn))
}
