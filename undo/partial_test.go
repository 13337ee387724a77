package undo_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/undo"
)

// What was undone is per statement and row: undoing one transaction, or
// skipping conflicts, leaves the rest of the session to a later undo, which
// undoes exactly that and refuses only when nothing is left.

const acctSetup = `
	CREATE TABLE acct (id int PRIMARY KEY, v text);
	INSERT INTO acct SELECT g, 'v' || g FROM generate_series(1, 5) g;`

// undoState returns the session's undo state and the undos that undid it.
func undoState(t *testing.T, w *world, id string) (string, []string) {
	t.Helper()
	s, err := history.GetSession(ctxT(t), w.Conn, id)
	require.NoError(t, err)
	state := ""
	if s.UndoState != nil {
		state = *s.UndoState
	}
	// The view auditors read says the same.
	view := queryOne[*string](t, w.Conn, `SELECT undo_state FROM pgundo.sessions WHERE id = $1`, id)
	require.Equal(t, s.UndoState, view, "pgundo.sessions.undo_state vs history.GetSession")
	return state, s.UndoneByAll
}

// sessionTxs returns the session's transaction ids in order.
func sessionTxs(t *testing.T, w *world, id string) []uint64 {
	t.Helper()
	var out []uint64
	for _, x := range queryStrings(t, w.Conn, `SELECT xid::text FROM pgundo.stmt WHERE session_id = $1 GROUP BY xid ORDER BY min(id)`, id) {
		n, err := strconv.ParseUint(x, 10, 64)
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// TestUndoTxThenSession: undoing one transaction of a session marks it
// partly undone; undoing the session then undoes the other transaction
// only; a third undo is refused (nothing left).
func TestUndoTxThenSession(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: acctSetup, Apps: []string{"s0"}}, nil)
	original := tableRows(t, w.Conn, "acct")
	w.run(on(0,
		`BEGIN; UPDATE acct SET v = 'one' WHERE id IN (1, 2); COMMIT`,
		`BEGIN; DELETE FROM acct WHERE id = 3; INSERT INTO acct VALUES (9, 'nine'); UPDATE acct SET v = 'two' WHERE id = 1; COMMIT`,
	), nil)
	txs := sessionTxs(t, w, w.IDs[0])
	require.Len(t, txs, 2)

	// Undo the second transaction alone: row 1 back to 'one', 3 back, 9 gone.
	p1, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{TxIDs: txs[1:]}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"(1,one)", "(2,one)", "(3,v3)", "(4,v4)", "(5,v5)"}, tableRows(t, w.Conn, "acct"))
	state, by := undoState(t, w, w.IDs[0])
	require.Equal(t, "partly undone", state)
	require.Equal(t, []string{p1.UndoSession}, by)

	// Undo the session: what is left is the first transaction.
	plan, err := undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{})
	require.NoError(t, err)
	require.Equal(t, counts{Restore: 2}, countsOf(tablePlan(t, plan, "public.acct")))
	require.Equal(t, int64(2), plan.Changes)
	p2, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, original, tableRows(t, w.Conn, "acct"))
	state, by = undoState(t, w, w.IDs[0])
	require.Equal(t, "undone", state)
	require.Equal(t, []string{p1.UndoSession, p2.UndoSession}, by)

	// Nothing is left.
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrAlreadyUndone)
	require.Contains(t, err.Error(), "nothing of the selected changes is left")
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{TxIDs: txs[:1]}, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrAlreadyUndone)
}

// TestUndoSkipThenRest: a skip leaves the conflicting row; once the other
// session's change is undone, undoing the session again undoes exactly that
// row (on a keyed table, a partitioned one, and one without a key).
func TestUndoSkipThenRest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, setup, table, session, other string
		first, second                      counts
	}{
		{
			name:    "keyed",
			setup:   acctSetup,
			table:   "acct",
			session: `UPDATE acct SET v = v || '!' WHERE id <= 3`,
			other:   `UPDATE acct SET v = 'other' WHERE id = 2`,
			first:   counts{Restore: 2, Skipped: 1},
			second:  counts{Restore: 1},
		},
		{
			name: "partitioned",
			setup: `
				CREATE TABLE pacct (id int, v text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
				CREATE TABLE pacct_lo PARTITION OF pacct FOR VALUES FROM (0) TO (100);
				CREATE TABLE pacct_hi PARTITION OF pacct FOR VALUES FROM (100) TO (1000);
				INSERT INTO pacct SELECT g, 'v' || g FROM generate_series(1, 5) g;`,
			table:   "pacct",
			session: `UPDATE pacct SET id = id + 100 WHERE id <= 3`,
			other:   `UPDATE pacct SET v = 'other' WHERE id = 102`,
			first:   counts{Reinsert: 2, Delete: 2, Skipped: 2},
			second:  counts{Reinsert: 1, Delete: 1},
		},
		{
			name:    "keyless",
			setup:   ledgerSetup,
			table:   "ledger",
			session: `UPDATE ledger SET note = 'patched'`,
			other:   `UPDATE ledger SET note = 'user' WHERE ctid = (SELECT min(ctid) FROM ledger WHERE acct = 3)`,
			first:   counts{Reinsert: 4, Delete: 4, Skipped: 1},
			second:  counts{Reinsert: 1, Delete: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, scenario{Setup: tc.setup, Apps: []string{"s0", "s1"}}, nil)
			original := tableRows(t, w.Conn, tc.table)
			w.run(seq(on(0, tc.session), on(1, tc.other)), nil)

			p1, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
			require.NoError(t, err)
			require.Equal(t, tc.first, countsOf(tablePlan(t, p1, "public."+tc.table)))
			state, _ := undoState(t, w, w.IDs[0])
			require.Equal(t, "partly undone", state)

			// Refused while the other session's change is still there.
			_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
			var ce *undo.ConflictError
			require.ErrorAs(t, err, &ce)

			// Undo the other session, then the rest of the first.
			_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[1:2]}, undo.Options{}, nil)
			require.NoError(t, err)
			p2, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
			require.NoError(t, err)
			require.Equal(t, tc.second, countsOf(tablePlan(t, p2, "public."+tc.table)))
			require.Equal(t, original, tableRows(t, w.Conn, tc.table))
			state, by := undoState(t, w, w.IDs[0])
			require.Equal(t, "undone", state)
			require.Equal(t, []string{p1.UndoSession, p2.UndoSession}, by)
			_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
			require.ErrorIs(t, err, undo.ErrAlreadyUndone)
		})
	}
}

// TestUndoLeftTogether: rows an undo of two sessions left can only be
// undone with both selected again.
func TestUndoLeftTogether(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: acctSetup, Apps: []string{"s0", "s1", "s2"}}, nil)
	original := tableRows(t, w.Conn, "acct")
	w.run(seq(
		on(0, `UPDATE acct SET v = 'zero' WHERE id = 1`),
		on(1, `UPDATE acct SET v = 'one' WHERE id = 2`),
		on(2, `UPDATE acct SET v = 'two' WHERE id = 2`),
	), nil)
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:2]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[2:3]}, undo.Options{}, nil)
	require.NoError(t, err)
	before := w.all()
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[1:2]}, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrUndoneTogether)
	require.Contains(t, err.Error(), w.IDs[0])
	require.Contains(t, err.Error(), w.IDs[1])
	requireSameTables(t, before, w.all(), "after a refused undo")
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:2]}, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, original, tableRows(t, w.Conn, "acct"))
}

// TestUndoSkipThenRestByScript: the same through --sql scripts run with
// psql: the script records what it skipped, and a later script undoes it.
func TestUndoSkipThenRestByScript(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{Setup: acctSetup, Apps: []string{"s0", "s1"}}, nil)
	original := tableRows(t, w.Conn, "acct")
	w.run(seq(on(0, `UPDATE acct SET v = v || '!' WHERE id <= 3`), on(1, `UPDATE acct SET v = 'other' WHERE id = 2`)), nil)
	script := func(opts undo.Options) {
		t.Helper()
		var buf bytes.Buffer
		_, err := undo.WriteScript(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, opts, &buf)
		require.NoError(t, err)
		cmd := exec.CommandContext(ctxT(t), filepath.Join(pgtest.BinDir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", w.cfg.ConnString())
		cmd.Stdin = &buf
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "psql: %s", out)
	}
	script(undo.Options{OnConflict: undo.Skip})
	require.Equal(t, []string{"(1,v1)", "(2,other)", "(3,v3)", "(4,v4)", "(5,v5)"}, tableRows(t, w.Conn, "acct"))
	state, _ := undoState(t, w, w.IDs[0])
	require.Equal(t, "partly undone", state)
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[1:2]}, undo.Options{}, nil)
	require.NoError(t, err)
	script(undo.Options{})
	require.Equal(t, original, tableRows(t, w.Conn, "acct"))
	state, by := undoState(t, w, w.IDs[0])
	require.Equal(t, "undone", state)
	require.Len(t, by, 2)
}
