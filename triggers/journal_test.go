package triggers_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestJournalOneRowStatements: a statement that changed one row is written
// to pgundo.journal, a bigger one to the log tables; the views read both;
// pgundo.fold moves committed journal rows into the log tables without the
// log reading any different before, during or after (an uncommitted row
// stays in the journal until a later fold; a fold waiting for another one
// moves nothing twice).
func TestJournalOneRowStatements(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	execAll(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	track(t, conn, "t")
	execAll(t, conn,
		`INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`, // three rows: the log tables
		`UPDATE t SET v = 'B' WHERE id = 2`,                 // one row each: the journal
		`DELETE FROM t WHERE id = 1`,
		`INSERT INTO t VALUES (4, 'd')`,
		`UPDATE t SET v = v || '!' WHERE id IN (3, 4)`, // two rows: the log tables
	)
	const stmtQ = `SELECT concat_ws(' ', id, session_id, xid, at, op, relid, schema_name, table_name, rows, role, application_name, tag) FROM pgundo.stmt ORDER BY id`
	const changeQ = `SELECT concat_ws(' ', stmt_id, coalesce(old, 'NULL'), coalesce(new, 'NULL')) FROM pgundo.change ORDER BY stmt_id, old, new`
	read := func() []string {
		return slices.Concat(queryStrings(t, conn, stmtQ), queryStrings(t, conn, changeQ))
	}
	require.Equal(t, []string{"U (2,b) (2,B)", "D (1,a) NULL", "I NULL (4,d)"}, queryStrings(t, conn,
		`SELECT concat_ws(' ', op, coalesce(old, 'NULL'), coalesce(new, 'NULL')) FROM pgundo.journal ORDER BY id`))
	require.Equal(t, []string{"I 3", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt_log ORDER BY id`))
	require.Equal(t, []string{"I 3", "U 1", "D 1", "I 1", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt ORDER BY id`))
	before := read()
	require.Len(t, before, 5+8)

	// A one-row statement not yet committed stays in the journal.
	w := pgtest.Connect(t, url)
	tx, err := w.Begin(ctxT(t))
	require.NoError(t, err)
	execAll(t, tx, `UPDATE t SET v = 'late' WHERE id = 2`)
	require.Equal(t, 3, queryOne[int](t, conn, `SELECT pgundo.fold()::int`))
	require.Equal(t, before, read())
	require.Zero(t, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))
	require.Equal(t, []string{"I 3", "U 1", "D 1", "I 1", "U 2"}, queryStrings(t, conn, `SELECT op::text || ' ' || rows FROM pgundo.stmt_log ORDER BY id`))
	require.NoError(t, tx.Commit(ctxT(t)))
	withLate := read()
	require.Len(t, withLate, len(before)+2)
	require.Equal(t, 1, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))

	// Two folds at once: the second waits for the first, then finds
	// nothing left; a reader sees the log whole meanwhile.
	f1 := pgtest.Connect(t, url)
	tx1, err := f1.Begin(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, 1, queryOne[int](t, tx1, `SELECT pgundo.fold()::int`))
	require.Equal(t, withLate, read(), "a fold not yet committed")
	f2 := pgtest.Connect(t, url)
	done := make(chan int, 1)
	go func() {
		var n int
		if err := f2.QueryRow(ctxT(t), `SELECT pgundo.fold()::int`).Scan(&n); err != nil {
			n = -1
		}
		done <- n
	}()
	select {
	case n := <-done:
		t.Fatalf("the second fold did not wait for the first: it returned %d", n)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, tx1.Commit(ctxT(t)))
	require.Equal(t, 0, <-done)
	require.Equal(t, withLate, read())
	require.Zero(t, queryOne[int](t, conn, `SELECT count(*)::int FROM pgundo.journal`))
}
