package undo_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// Tables without a primary key under --on-conflict skip and merge. Rows are
// matched by whole value there, so a skipped conflict must skip the whole
// row: the image the session left (which someone changed since) and the
// image it replaced. Skipping only the first and re-inserting the second
// left a duplicate (money counted twice).

// ledgerSetup is the example: acct 3 twice (exact duplicates).
const ledgerSetup = `
	CREATE TABLE ledger (acct int, amount numeric, note text);
	INSERT INTO ledger VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c'), (3, 30, 'c'), (4, 40, NULL);`

// TestUndoKeylessSkipWholeRow: session 0 patches every row, session 1 then
// changes one of the two equal acct 3 rows. The skip undoes every row but
// that one, and leaves no extra copy of it.
func TestUndoKeylessSkipWholeRow(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: ledgerSetup, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `UPDATE ledger SET note = 'patched'`),
		on(1, `UPDATE ledger SET note = 'user' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE acct = 3)`),
	), nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Reinsert: 4, Delete: 4, Skipped: 1}, countsOf(tablePlan(t, plan, "public.ledger")))
	require.Len(t, plan.Conflicts, 1)
	require.True(t, plan.Conflicts[0].Skipped)
	require.Equal(t, []string{"(1,10,a)", "(2,20,b)", "(3,30,c)", "(3,30,user)", "(4,40,)"},
		tableRows(t, w.Conn, "ledger"))
}

// TestUndoKeylessSkipBothCopies: session 1 changes both equal rows (the
// issue's "where acct = 3"): both are skipped, neither is re-inserted.
func TestUndoKeylessSkipBothCopies(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: ledgerSetup, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `UPDATE ledger SET note = 'patched'`),
		on(1, `UPDATE ledger SET note = 'user' WHERE acct = 3`),
	), nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Reinsert: 3, Delete: 3, Skipped: 2}, countsOf(tablePlan(t, plan, "public.ledger")))
	require.Equal(t, []string{"(1,10,a)", "(2,20,b)", "(3,30,user)", "(3,30,user)", "(4,40,)"},
		tableRows(t, w.Conn, "ledger"))
}

// TestUndoKeylessSkipDeletedAndInserted: the rows the session inserted and
// deleted are undone too; a row it inserted that another session deleted
// since is skipped, and so is a row it updated that another deleted.
func TestUndoKeylessSkipDeletedAndInserted(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: ledgerSetup, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `INSERT INTO ledger VALUES (5, 50, 'new'), (6, 60, 'new')`,
			`DELETE FROM ledger WHERE acct = 1`,
			`UPDATE ledger SET amount = amount * 2 WHERE acct IN (2, 4)`),
		on(1, `DELETE FROM ledger WHERE acct IN (5, 4)`),
	), nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Reinsert: 2, Delete: 2, Skipped: 2}, countsOf(tablePlan(t, plan, "public.ledger")))
	require.Equal(t, []string{"(1,10,a)", "(2,20,b)", "(3,30,c)", "(3,30,c)"}, tableRows(t, w.Conn, "ledger"))
}

// TestUndoKeylessSkipPartitioned: the same on a partitioned table without a
// key, with a row the session moved between partitions and another session
// changed since.
func TestUndoKeylessSkipPartitioned(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: `
		CREATE TABLE pledger (acct int, amount numeric, note text) PARTITION BY RANGE (acct);
		CREATE TABLE pledger_lo PARTITION OF pledger FOR VALUES FROM (0) TO (100);
		CREATE TABLE pledger_hi PARTITION OF pledger FOR VALUES FROM (100) TO (1000);
		INSERT INTO pledger VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c'), (3, 30, 'c');`, Track: []string{"public.pledger"}, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `UPDATE pledger SET acct = acct + 100, note = 'moved' WHERE acct IN (1, 3)`),
		on(1, `UPDATE pledger SET note = 'user' WHERE acct = 101`),
	), nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Reinsert: 2, Delete: 2, Skipped: 1}, countsOf(tablePlan(t, plan, "public.pledger")))
	require.Equal(t, []string{"(2,20,b)", "(3,30,c)", "(3,30,c)"}, tableRows(t, w.Conn, "pledger_lo"))
	require.Equal(t, []string{"(101,10,user)"}, tableRows(t, w.Conn, "pledger_hi"))
}

// TestUndoKeylessMergeRefuses: merge cannot tell, without a key, which live
// row to merge into: with a conflict on a table without a key it refuses
// and changes nothing (without a conflict it undoes as usual).
func TestUndoKeylessMergeRefuses(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: ledgerSetup, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `UPDATE ledger SET note = 'patched'`),
		on(1, `UPDATE ledger SET note = 'user' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE acct = 3)`),
	), nil)
	before := w.all()
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Merge}, nil)
	var refused *undo.RefusedError
	require.ErrorAs(t, err, &refused)
	require.ErrorIs(t, err, undo.ErrNoKeyToMerge)
	require.Contains(t, err.Error(), "public.ledger has no primary key")
	require.Contains(t, err.Error(), "--on-conflict skip")
	requireSameTables(t, before, w.all(), "after a refused merge")
	// The dry run says the same.
	_, err = undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Merge})
	require.ErrorIs(t, err, undo.ErrNoKeyToMerge)
}

// TestUndoKeylessSkipAmbiguous: the session changed a row in two
// statements and another session changed it since; without a key the log
// cannot tell whether the second statement changed the first one's row or
// an equal row that was there before, so skipping it is a guess: refused.
func TestUndoKeylessSkipAmbiguous(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: ledgerSetup, Apps: []string{"s0", "s1"}}, nil)
	w.run(seq(
		on(0, `INSERT INTO ledger VALUES (2, 20, 'b')`, `UPDATE ledger SET note = 'x' WHERE ctid = (SELECT max(ctid) FROM ledger WHERE acct = 2)`),
		on(1, `UPDATE ledger SET note = 'user' WHERE note = 'x'`),
	), nil)
	before := w.all()
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.ErrorIs(t, err, undo.ErrAmbiguousRow)
	require.Contains(t, err.Error(), "public.ledger has no primary key")
	requireSameTables(t, before, w.all(), "after a refused skip")
}

// TestUndoIdentityAlwaysChanged: a row deleted and inserted again under its
// key with another GENERATED ALWAYS identity value (found by the property
// test, seed 6): an UPDATE cannot set that column back, so the row is
// replaced whole; another row's key changed to the key (seed 26) too.
func TestUndoIdentityAlwaysChanged(t *testing.T) {
	t.Parallel()
	checkUndo(t, scenario{
		Setup: `
			CREATE TABLE tk (k text PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, v int NOT NULL);
			INSERT INTO tk (k, n, v) OVERRIDING SYSTEM VALUE VALUES ('k4', 2, 2), ('k5', 3, 3), ('k6', 4, 4), ('k7', 5, 5);`,
		Steps: seq(
			on(0, `DELETE FROM tk WHERE k = 'k4'`,
				`INSERT INTO tk (k, n, v) OVERRIDING SYSTEM VALUE VALUES ('k4', 18, 18)`,
				`UPDATE tk SET v = 30 WHERE k = 'k5'`,
				`DELETE FROM tk WHERE k = 'k6'`, `UPDATE tk SET k = 'k6' WHERE k = 'k7'`),
			on(1, `INSERT INTO tk (k, n, v) OVERRIDING SYSTEM VALUE VALUES ('k9', 9, 9)`),
		),
		Target: 0,
	})
}
