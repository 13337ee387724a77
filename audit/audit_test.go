package audit_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/audit"
	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.Installed))
}

// setup returns a fresh database with pgundo installed, table doc tracked,
// and a superuser connection.
func setup(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	url := pgtest.NewDB(t)
	conn := pgtest.Connect(t, url)
	pgtest.Exec(t, conn, `CREATE TABLE doc (id int PRIMARY KEY, body text);
		INSERT INTO doc SELECT g, 'v' || g FROM generate_series(1, 20) g`)
	_, err := triggers.Track(t.Context(), conn, []string{"doc"})
	require.NoError(t, err)
	return url, conn
}

func one[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, conn.QueryRow(t.Context(), sql, args...).Scan(&v), sql)
	return v
}

// work runs three statements on a connection of its own (and one rolled
// back after the first, which leaves a gap in the ids) and returns their
// statement ids.
func work(t *testing.T, url string) []int64 {
	t.Helper()
	c := pgtest.Connect(t, url)
	pgtest.Exec(t, c, `UPDATE doc SET body = 'edited' WHERE id <= 5`)
	// A statement rolled back leaves a gap in the statement ids.
	pgtest.Exec(t, c, `BEGIN; INSERT INTO doc VALUES (99, 'rolled back'); ROLLBACK`)
	pgtest.Exec(t, c, `DELETE FROM doc WHERE id = 6`)
	pgtest.Exec(t, c, `INSERT INTO doc SELECT greatest(max(id), 99) + 1, 'new' FROM doc`)
	rows, err := c.Query(t.Context(), `SELECT id FROM pgundo.stmt ORDER BY id DESC LIMIT 3`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.NoError(t, c.Close(t.Context()))
	return []int64{ids[2], ids[1], ids[0]}
}

// TestVerifyDetectsTampering seals a log, then tampers with it as a
// superuser in every way (edit, delete and insert, on each log table and on
// the seals themselves; sealing folded the journal, so the sealed statements
// are in the log tables): verify must name the first bad entry each time, and
// find nothing on the untouched log.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tamper string // $1, $2, $3: the three statement ids
		stmt   int    // index of the first statement reported (-1: the seal's)
		kind   string
	}{
		{"edit a row image", `UPDATE pgundo.change_log SET new = '(1,forged)' WHERE stmt_id = $1 AND new = '(1,edited)'`, 0, "edited"},
		{"delete a change row", `DELETE FROM pgundo.change_log WHERE stmt_id = $2`, 1, "edited"},
		{"add a change row", `INSERT INTO pgundo.change_log (stmt_id, old) VALUES ($3, '(7,v7)')`, 2, "edited"},
		{"edit who did it", `UPDATE pgundo.stmt_log SET role = 'someone_else' WHERE id = $2`, 1, "edited"},
		{"edit the session", `UPDATE pgundo.session SET client_addr = '10.0.0.1'`, 0, "edited"},
		{"delete a statement and its rows", `DELETE FROM pgundo.change_log WHERE stmt_id = $2; DELETE FROM pgundo.stmt_log WHERE id = $2`, 1, "deleted"},
		{"forge a statement", `INSERT INTO pgundo.stmt_log SELECT $1 + 1, session_id, xid, at, op, relid, schema_name, table_name, 1, role, application_name, tag FROM pgundo.stmt WHERE id = $1;
			INSERT INTO pgundo.change_log (stmt_id, old) VALUES ($1 + 1, '(8,v8)')`, 0, "inserted"},
		{"forge change rows alone", `INSERT INTO pgundo.change_log (stmt_id, old) VALUES ($1 + 1, '(9,v9)')`, 0, "inserted"},
		{"edit a sealed digest", `UPDATE pgundo.seal_stmt SET digest = digest + 1 WHERE stmt_id = $2`, 1, "edited"},
		{"rewrite a seal", `UPDATE pgundo.seal SET total = total + 1`, -1, "seal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, conn := setup(t)
			ids := work(t, url)
			res, err := audit.Verify(t.Context(), conn, false)
			require.NoError(t, err)
			require.True(t, res.OK, "untouched log: %+v", res.Problems)
			require.Equal(t, int64(3), res.Sealed)
			require.Equal(t, ids[0]+1, ids[1]-1, "a gap between the first two statements")
			require.Zero(t, res.Unsealed)
			require.Len(t, res.Head, 64)

			r := strings.NewReplacer("$1", fmt.Sprint(ids[0]), "$2", fmt.Sprint(ids[1]), "$3", fmt.Sprint(ids[2]))
			for _, q := range strings.Split(tc.tamper, ";") {
				_, err = conn.Exec(t.Context(), r.Replace(q))
				require.NoError(t, err, q)
			}
			res, err = audit.Verify(t.Context(), conn, true)
			require.NoError(t, err)
			require.False(t, res.OK)
			require.NotEmpty(t, res.Problems)
			p := res.Problems[0]
			require.Equal(t, tc.kind, p.Kind, "%+v", res.Problems)
			if tc.stmt >= 0 {
				want := ids[tc.stmt]
				if tc.kind == "inserted" {
					want++ // the gap
				}
				require.Equal(t, want, p.Statement, "%+v", res.Problems)
			}
			if tc.name == "edit a sealed digest" {
				require.Equal(t, "seal", res.Problems[len(res.Problems)-1].Kind, "the seal no longer matches its digests either: %+v", res.Problems)
			}
		})
	}
}

// TestSealWaitsForOpenTransactions: a statement of a transaction still open
// is not sealed (it may still commit or roll back), and nothing is reported
// for it; once it commits, the next verify seals it.
func TestSealWaitsForOpenTransactions(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	before := work(t, url)
	open := pgtest.Connect(t, url)
	tx, err := open.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `UPDATE doc SET body = 'in flight' WHERE id = 10`)
	require.NoError(t, err)
	var inFlight int64
	require.NoError(t, tx.QueryRow(t.Context(), `SELECT max(id) FROM pgundo.stmt`).Scan(&inFlight))
	work(t, url) // later statements, committed
	_, err = audit.Seal(t.Context(), conn, 500*time.Millisecond)
	require.NoError(t, err)
	sealedTo := one[int64](t, conn, `SELECT coalesce(max(to_stmt), 0) FROM pgundo.seal`)
	require.Less(t, sealedTo, inFlight, "a seal passed a statement of an open transaction")
	res, err := audit.Verify(t.Context(), conn, true)
	require.NoError(t, err)
	require.True(t, res.OK, "%+v", res.Problems)
	require.LessOrEqual(t, res.Sealed, int64(len(before)))
	require.NoError(t, tx.Commit(t.Context()))
	res, err = audit.Verify(t.Context(), conn, false)
	require.NoError(t, err)
	require.True(t, res.OK, "%+v", res.Problems)
	// work's second DELETE finds no row (id 6 is gone): 3 + 1 + 2 statements.
	require.Equal(t, int64(6), res.Sealed)
	require.Equal(t, int64(6), one[int64](t, conn, `SELECT count(*) FROM pgundo.stmt`))
	require.Zero(t, res.Unsealed)
}

// TestPrune: prune drops the chunks older than the cut-off and nothing
// newer; a session fully pruned disappears, one partly pruned can no longer
// be undone (and undo says so); the data is never touched; verify stays
// clean; the row history of what is left is intact.
func TestPrune(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	old := work(t, url) // a session entirely before the cut-off
	spanning := pgtest.Connect(t, url)
	pgtest.Exec(t, spanning, `UPDATE doc SET body = 'spanning 1' WHERE id = 15`)
	spanID := one[string](t, spanning, `SELECT session_id FROM pgundo.stmt ORDER BY id DESC LIMIT 1`)
	_, err := audit.Verify(t.Context(), conn, false)
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	cut := one[time.Time](t, conn, `SELECT clock_timestamp()`)

	plan, err := audit.PrunePlan(t.Context(), conn, cut)
	require.NoError(t, err)
	require.Len(t, plan.Removed, 1)
	require.Equal(t, int64(4), plan.Removed[0].Statements)
	logBefore := one[int64](t, conn, `SELECT count(*) FROM pgundo.stmt`)
	require.Equal(t, int64(4), logBefore, "the plan changed nothing")

	res, err := audit.Prune(t.Context(), conn, cut)
	require.NoError(t, err)
	require.Len(t, res.Removed, 1)
	require.Equal(t, old[0], res.Removed[0].FirstStmt)
	require.Equal(t, int64(4), res.Statements)
	require.Equal(t, int64(5+1+1+1), res.Changes)
	require.Positive(t, res.Bytes)
	require.Zero(t, one[int64](t, conn, `SELECT count(*) FROM pgundo.stmt`))
	require.Zero(t, one[int64](t, conn, `SELECT count(*) FROM pgundo.change`))
	require.Equal(t, []string{"(1,edited)", "(5,edited)", "(15,\"spanning 1\")", "(100,new)"},
		func() []string {
			rows, err := conn.Query(t.Context(), `SELECT d::text FROM doc d WHERE id IN (1, 5, 15, 100) ORDER BY id`)
			require.NoError(t, err)
			v, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			return v
		}(), "prune never touches the data")

	// The spanning session writes again after the cut-off: it now has
	// changes left, but its first ones are gone.
	pgtest.Exec(t, spanning, `UPDATE doc SET body = 'spanning 2' WHERE id = 16`)
	require.Equal(t, []string{spanID}, func() []string {
		rows, err := conn.Query(t.Context(), `SELECT id FROM pgundo.session`)
		require.NoError(t, err)
		v, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return v
	}(), "the session wholly before the cut-off (disconnected) is gone; the connected one stays, marked")
	uc := pgtest.Connect(t, url)
	_, err = undo.Apply(t.Context(), uc, undo.Selection{Sessions: []string{spanID}}, undo.Options{}, nil)
	var re *undo.RefusedError
	require.True(t, errors.As(err, &re), "%v", err)
	require.ErrorIs(t, err, undo.ErrPruned)
	require.Contains(t, err.Error(), "session "+spanID+" was partly removed from the log by pgundo prune")
	require.Equal(t, "spanning 2", one[string](t, conn, `SELECT body FROM doc WHERE id = 16`), "nothing changed")

	// Pruning again with the same cut-off removes nothing more.
	res, err = audit.Prune(t.Context(), conn, cut)
	require.NoError(t, err)
	require.Empty(t, res.Removed)
	require.Equal(t, int64(1), one[int64](t, conn, `SELECT count(*) FROM pgundo.stmt`))

	v, err := audit.Verify(t.Context(), conn, false)
	require.NoError(t, err)
	require.True(t, v.OK, "after prune: %+v", v.Problems)
	require.Equal(t, int64(1), v.Sealed)
}

// TestRotateTwiceRolledBack: a transaction that rotates twice (with a
// tracked write in between) and rolls back must not leave the statement
// sequence pointing at a chunk that is gone; capture keeps working.
func TestRotateTwiceRolledBack(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	c := pgtest.Connect(t, url)
	pgtest.Exec(t, c, `BEGIN`)
	pgtest.Exec(t, c, `SELECT pgundo.rotate()`)
	pgtest.Exec(t, c, `UPDATE doc SET body = 'in between' WHERE id = 1`)
	pgtest.Exec(t, c, `SELECT pgundo.rotate()`)
	pgtest.Exec(t, c, `ROLLBACK`)
	pgtest.Exec(t, conn, `UPDATE doc SET body = 'after' WHERE id = 2`)
	pgtest.Exec(t, conn, `SELECT pgundo.rotate()`)
	pgtest.Exec(t, conn, `UPDATE doc SET body = 'after rotate' WHERE id = 3`)
	require.Equal(t, int64(2), one[int64](t, conn, `SELECT count(*) FROM pgundo.stmt`))
}

// TestPruneNeedsReadCommitted: prune's re-check under lock must see what
// committed while it waited; under REPEATABLE READ it refuses.
func TestPruneNeedsReadCommitted(t *testing.T) {
	t.Parallel()
	_, conn := setup(t)
	tx, err := conn.BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	defer tx.Rollback(t.Context()) //nolint:errcheck
	_, err = tx.Exec(t.Context(), `SELECT * FROM pgundo.prune(now())`)
	require.ErrorContains(t, err, "pgundo.prune must run in a READ COMMITTED transaction")
}

// TestUndoByTagAfterPrune: after a prune took part of a long-lived
// connection's changes, a later transaction of that connection can still be
// undone by tag (it is whole); the session as a whole cannot.
func TestUndoByTagAfterPrune(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	pooled := pgtest.Connect(t, url)
	pgtest.Exec(t, pooled, `UPDATE doc SET body = 'old work' WHERE id = 1`)
	sid := one[string](t, conn, `SELECT session_id FROM pgundo.stmt ORDER BY id DESC LIMIT 1`)
	time.Sleep(20 * time.Millisecond)
	res, err := audit.Prune(t.Context(), conn, one[time.Time](t, conn, `SELECT clock_timestamp()`))
	require.NoError(t, err)
	require.Len(t, res.Removed, 1)
	pgtest.Exec(t, pooled, `BEGIN; SET LOCAL pgundo.tag = 'ticket-9'; UPDATE doc SET body = 'tagged' WHERE id = 2; COMMIT`)
	_, err = undo.Apply(t.Context(), pgtest.Connect(t, url), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrPruned)
	plan, err := undo.Apply(t.Context(), pgtest.Connect(t, url), undo.Selection{Tag: "ticket-9"}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(1), plan.RowsChanged)
	require.Equal(t, "v2", one[string](t, conn, `SELECT body FROM doc WHERE id = 2`))
	require.Equal(t, "old work", one[string](t, conn, `SELECT body FROM doc WHERE id = 1`))
}

// TestPruneForgetsWhatUndoLeft: an undo that skipped a conflict keeps the
// rows it left and the statements it selected (pgundo.undo_left and
// undo_scope); pruning those statements removes both, and nothing of the
// statements kept. The pruned statements were in the journal and in the
// log tables (one-row and bigger statements); the plan counts them all.
func TestPruneForgetsWhatUndoLeft(t *testing.T) {
	t.Parallel()
	url, conn := setup(t)
	patch := pgtest.Connect(t, url)
	pgtest.Exec(t, patch, `UPDATE doc SET body = 'patched' WHERE id <= 3`) // three rows: the log tables
	pgtest.Exec(t, patch, `UPDATE doc SET body = 'patched' WHERE id = 4`)  // one row: the journal
	sid := one[string](t, conn, `SELECT session_id FROM pgundo.stmt ORDER BY id DESC LIMIT 1`)
	pgtest.Exec(t, pgtest.Connect(t, url), `UPDATE doc SET body = 'user' WHERE id = 2`)
	_, err := undo.Apply(t.Context(), pgtest.Connect(t, url), undo.Selection{Sessions: []string{sid}}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"(1,v1)", "(2,user)", "(3,v3)", "(4,v4)"}, func() []string {
		rows, err := conn.Query(t.Context(), `SELECT d::text FROM doc d WHERE id <= 4 ORDER BY id`)
		require.NoError(t, err)
		v, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return v
	}())
	// The skipped row as the sessions found it and as they left it.
	require.Equal(t, "(2,v2) NULL; NULL (2,patched)", one[string](t, conn,
		`SELECT string_agg(coalesce(old, 'NULL') || ' ' || coalesce(new, 'NULL'), '; ' ORDER BY old NULLS LAST) FROM pgundo.undo_left`))
	require.Equal(t, int64(2), one[int64](t, conn, `SELECT count(*) FROM pgundo.undo_scope`))

	time.Sleep(20 * time.Millisecond)
	cut := one[time.Time](t, conn, `SELECT clock_timestamp()`)
	plan, err := audit.PrunePlan(t.Context(), conn, cut)
	require.NoError(t, err)
	// The patch's 2, the other session's 1, the undo's 1 (one UPDATE
	// restoring rows 1, 3 and 4; row 2 skipped).
	require.Equal(t, int64(4), plan.Statements)
	res, err := audit.Prune(t.Context(), conn, cut)
	require.NoError(t, err)
	require.Equal(t, plan.Statements, res.Statements)
	require.Zero(t, one[int64](t, conn, `SELECT count(*) FROM pgundo.undo_left`))
	require.Zero(t, one[int64](t, conn, `SELECT count(*) FROM pgundo.undo_scope`))
	// Capture goes on in the next chunk.
	pgtest.Exec(t, patch, `UPDATE doc SET body = 'later' WHERE id = 10`)
	require.Equal(t, []string{"U (10,v10) (10,later)"}, func() []string {
		rows, err := conn.Query(t.Context(), `SELECT concat_ws(' ', s.op, c.old, c.new) FROM pgundo.stmt s JOIN pgundo.change c ON c.stmt_id = s.id`)
		require.NoError(t, err)
		v, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return v
	}())
}
