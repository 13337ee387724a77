package undo_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/undo"
)

// conflictSetup is a table where session 0 (the patch) changes rows 1-3
// and deletes row 4; later sessions then touch some of the same rows.
const conflictSetup = `
	CREATE TABLE t (id int PRIMARY KEY, a text, b text, c int);
	INSERT INTO t SELECT g, 'a' || g, 'b' || g, g FROM generate_series(1, 6) g;`

var patchSteps = on(0, `UPDATE t SET a = 'P', b = 'P' WHERE id IN (1, 2, 3)`, `DELETE FROM t WHERE id = 4`)

// TestUndoConflictRefused: another session changed a row since; the undo
// is refused with a ConflictError naming table, key, reason, the differing
// columns and who changed it, and nothing (data or log) changes.
func TestUndoConflictRefused(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps, on(1, `UPDATE t SET b = 'later', c = 20 WHERE id = 2`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := w.all()

	for _, apply := range []bool{false, true} {
		var err error
		if apply {
			_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
		} else {
			_, err = undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{})
		}
		var ce *undo.ConflictError
		require.ErrorAs(t, err, &ce, "apply=%v", apply)
		require.Len(t, ce.Plan.Conflicts, 1)
		c := ce.Plan.Conflicts[0]
		require.Equal(t, "public.t", c.Table)
		require.Equal(t, "id=2", c.Key)
		require.Equal(t, "changed since", c.Reason)
		require.Equal(t, []string{"b", "c"}, c.Columns)
		require.NotNil(t, c.ChangedBy)
		require.Equal(t, w.IDs[1], *c.ChangedBy)
		require.NotNil(t, c.ChangedAt)
		require.WithinDuration(t, time.Now(), *c.ChangedAt, time.Minute)
		require.False(t, c.Skipped)
		require.False(t, ce.Plan.Applied)
		msg := err.Error()
		for _, want := range []string{w.IDs[0], "public.t id=2", "changed since", "nothing was changed", w.IDs[1]} {
			require.Contains(t, msg, want)
		}
		requireSameTables(t, before, w.all(), "after the refused undo")
	}
}

// TestUndoConflictSkip: with OnConflict Skip the other rows are undone and
// the conflicting one is reported as skipped and left as it is.
func TestUndoConflictSkip(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps, on(1, `UPDATE t SET b = 'later' WHERE id = 2`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.True(t, plan.Applied)
	require.Equal(t, counts{Restore: 2, Reinsert: 1, Skipped: 1}, countsOf(tablePlan(t, plan, "public.t")))
	require.Len(t, plan.Conflicts, 1)
	require.Equal(t, "id=2", plan.Conflicts[0].Key)
	require.True(t, plan.Conflicts[0].Skipped)
	require.Equal(t, []string{"(1,a1,b1,1)", "(2,P,later,2)", "(3,a3,b3,3)", "(4,a4,b4,4)", "(5,a5,b5,5)", "(6,a6,b6,6)"},
		tableRows(t, w.Conn, "t"))
}

// TestUndoConflictMerge: with OnConflict Merge a row changed since gets
// back the columns still as the session left them (a), keeps the later
// edit of another column (b), and the kept column is reported.
func TestUndoConflictMerge(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps,
		on(1, `UPDATE t SET b = 'later' WHERE id = 2`, `UPDATE t SET c = 30 WHERE id = 3`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Merge}, nil)
	require.NoError(t, err)
	require.True(t, plan.Applied)
	require.Equal(t, counts{Restore: 1, Reinsert: 1, Merged: 2}, countsOf(tablePlan(t, plan, "public.t")))
	// Row 3's later edit was of a column the patch did not change: nothing
	// of the patch's is kept there.
	require.Equal(t, []undo.KeptColumn{{Table: "public.t", Key: "id=2", Column: "b"}}, plan.Kept)
	require.Equal(t, []string{"(1,a1,b1,1)", "(2,a2,later,2)", "(3,a3,b3,30)", "(4,a4,b4,4)", "(5,a5,b5,5)", "(6,a6,b6,6)"},
		tableRows(t, w.Conn, "t"))
}

// TestUndoConflictDeletedAndRecreated: the session deleted row 4 and
// someone re-inserted id 4; the session changed row 3 and someone deleted
// it. Both are conflicts with their reasons and authors; nothing changes.
func TestUndoConflictDeletedAndRecreated(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps,
		on(1, `INSERT INTO t VALUES (4, 'again', 'again', 44)`), on(2, `DELETE FROM t WHERE id = 3`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := w.all()
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
	var ce *undo.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Plan.Conflicts, 2)
	got := map[string]undo.Conflict{}
	for _, c := range ce.Plan.Conflicts {
		got[c.Key] = c
	}
	require.Equal(t, "deleted since", got["id=3"].Reason)
	require.NotNil(t, got["id=3"].ChangedBy)
	require.Equal(t, w.IDs[2], *got["id=3"].ChangedBy)
	require.Equal(t, "re-created since", got["id=4"].Reason)
	require.NotNil(t, got["id=4"].ChangedBy)
	require.Equal(t, w.IDs[1], *got["id=4"].ChangedBy)
	requireSameTables(t, before, w.all(), "after the refused undo")
}

// TestUndoConcurrentWriterIsRechecked: a writer holding a lock on one of
// the rows commits a change to it while the undo waits for that lock. The
// undo must notice (the row is no longer as the session left it) and
// change nothing; the writer's change stays.
func TestUndoConcurrentWriterIsRechecked(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: patchSteps, Apps: []string{"s0", "writer"}}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	writer := w.Sess[1]
	_, err := writer.Exec(ctxT(t), `BEGIN; UPDATE t SET b = 'concurrent' WHERE id = 2`)
	require.NoError(t, err)
	want := w.tables()
	want["public.t"] = []string{"(1,P,P,1)", "(2,P,concurrent,2)", "(3,P,P,3)", "(5,a5,b5,5)", "(6,a6,b6,6)"}

	done := make(chan error, 1)
	uc := w.undoConn()
	go func() {
		_, err := undo.Apply(context.Background(), uc, undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
		done <- err
	}()
	waitFor(t, w, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-undo' AND wait_event_type = 'Lock')`, done)
	_, err = writer.Exec(ctxT(t), `COMMIT`)
	require.NoError(t, err)
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("undo did not finish after the writer committed")
	}
	var ce *undo.ConflictError
	if !errors.As(err, &ce) {
		require.ErrorIs(t, err, undo.ErrPlanChanged, "want a conflict (or plan changed) refusal, got %v", err)
	}
	requireSameTables(t, want, w.tables(), "after the refused undo")
}

// waitFor polls cond (a boolean query) on w's inspection connection until
// true; it fails early if done delivers (the undo finished first).
func waitFor(t *testing.T, w *world, cond string, done <-chan error) {
	t.Helper()
	// Generous: a loaded CI machine may take long to get there; this bounds
	// a hang, it does not time anything.
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if queryOne[bool](t, w.Conn, cond) {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the undo finished (err=%v) before: %s", err, cond)
		case <-time.After(2 * time.Millisecond):
		}
	}
	t.Fatalf("timed out waiting for: %s", cond)
}

// TestUndoTwiceRefusedRedoAndHistory: a second undo of the same session is
// refused (ErrAlreadyUndone); undoing the undo is a redo and gives back the
// post-session state exactly; sessions show undo_of / undone_by.
func TestUndoTwiceRefusedRedoAndHistory(t *testing.T) {
	t.Parallel()
	sc := scenario{
		Setup: conflictSetup + `
			CREATE TABLE k (x int, y text);
			INSERT INTO k VALUES (1, 'one'), (1, 'one'), (2, 'two');`,
		Steps: seq(patchSteps, on(0, `INSERT INTO t VALUES (7, 'new', NULL, 7)`, `DELETE FROM k WHERE ctid = (SELECT min(ctid) FROM k WHERE x = 1)`,
			`INSERT INTO k VALUES (3, 'three')`)),
	}
	w := newWorld(t, sc, nil)
	pre := w.tables()
	w.run(sc.Steps, nil)
	post := w.tables()
	sel := undo.Selection{Sessions: w.IDs[:1]}

	u1, err := undo.Apply(ctxT(t), w.undoConn(), sel, undo.Options{}, nil)
	require.NoError(t, err)
	requireSameTables(t, pre, w.tables(), "after the undo")
	require.NotEqual(t, w.IDs[0], u1.UndoSession)

	before := w.all()
	_, err = undo.Apply(ctxT(t), w.undoConn(), sel, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrAlreadyUndone)
	var re *undo.RefusedError
	require.ErrorAs(t, err, &re)
	require.Contains(t, err.Error(), u1.UndoSession)
	_, err = undo.MakePlan(ctxT(t), w.undoConn(), sel, undo.Options{})
	require.ErrorIs(t, err, undo.ErrAlreadyUndone)
	requireSameTables(t, before, w.all(), "after the refused second undo")

	redo, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{u1.UndoSession}}, undo.Options{}, nil)
	require.NoError(t, err)
	requireSameTables(t, post, w.tables(), "after the redo")
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{u1.UndoSession}}, undo.Options{}, nil)
	require.ErrorIs(t, err, undo.ErrAlreadyUndone)

	byID := map[string]history.Session{}
	ss, err := history.Sessions(ctxT(t), w.Conn, history.SessionFilter{})
	require.NoError(t, err)
	for _, s := range ss {
		byID[s.ID] = s
	}
	require.Len(t, byID, 3)
	patch, und, red := byID[w.IDs[0]], byID[u1.UndoSession], byID[redo.UndoSession]
	require.Nil(t, patch.UndoOf)
	require.Equal(t, &u1.UndoSession, patch.UndoneBy)
	require.Equal(t, &w.IDs[0], und.UndoOf)
	require.Equal(t, &redo.UndoSession, und.UndoneBy)
	require.Equal(t, &u1.UndoSession, red.UndoOf)
	require.Nil(t, red.UndoneBy)
	require.Equal(t, "pgundo-test-undo", und.ApplicationName)
	require.Equal(t, patch.Changes, und.Changes, "the undo writes one change per row the patch changed")
}

// leaveOutMarked leaves out of B the steps whose SQL holds "-- undone".
func leaveOutMarked(s step) bool { return strings.Contains(s.SQL, "-- undone") }

// TestUndoSelectByTx: only the selected transaction's changes are undone;
// the same session's other transactions stay.
func TestUndoSelectByTx(t *testing.T) {
	t.Parallel()
	res := checkUndo(t, scenario{
		Setup: conflictSetup,
		Steps: seq(
			on(0, `BEGIN; UPDATE t SET a = 'tx1' WHERE id = 1; COMMIT`),
			on(1, `UPDATE t SET a = 'other' WHERE id = 5`),
			on(0, `BEGIN; -- undone
			       UPDATE t SET a = 'tx2', b = 'tx2' WHERE id IN (1, 2); DELETE FROM t WHERE id = 3; INSERT INTO t VALUES (9, 'x', 'y', 9); COMMIT`,
				`UPDATE t SET c = 40 WHERE id = 4`),
		),
		Select: func(w *world) undo.Selection {
			xids := queryStrings(t, w.Conn, `SELECT xid::text FROM pgundo.stmt WHERE session_id = $1 GROUP BY xid ORDER BY min(id)`, w.IDs[0])
			require.Len(t, xids, 3)
			x, err := strconv.ParseUint(xids[1], 10, 64)
			require.NoError(t, err)
			return undo.Selection{TxIDs: []uint64{x}}
		},
		LeaveOut: leaveOutMarked,
	})
	require.Equal(t, counts{Restore: 2, Reinsert: 1, Delete: 1}, countsOf(tablePlan(t, res.Plan, "public.t")))
	require.Equal(t, res.A.IDs[:1], res.Plan.Sessions)
}

// TestUndoSelectByTag: two connections with the same pgundo.tag are undone
// together; their untagged changes, and a third session's, stay.
func TestUndoSelectByTag(t *testing.T) {
	t.Parallel()
	res := checkUndo(t, scenario{
		Setup: conflictSetup,
		Steps: seq(
			on(0, `SET pgundo.tag = 'TICKET-7'; UPDATE t SET a = 'tagged0' WHERE id = 1 -- undone`),
			on(2, `UPDATE t SET a = 'untagged' WHERE id = 5`),
			on(1, `SET pgundo.tag = 'TICKET-7'; DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (8, 'x', 'y', 8) -- undone`),
			on(0, `RESET pgundo.tag; UPDATE t SET b = 'after reset' WHERE id = 4`),
			on(1, `SET pgundo.tag = 'OTHER'; UPDATE t SET b = 'other tag' WHERE id = 6`),
		),
		Select:   func(*world) undo.Selection { return undo.Selection{Tag: "TICKET-7"} },
		LeaveOut: leaveOutMarked,
	})
	require.ElementsMatch(t, res.A.IDs[:2], res.Plan.Sessions)
}

// TestUndoSelectByAppAndTime: App with Since/Until picks the one session of
// that application in the window; App alone picks all three.
func TestUndoSelectByAppAndTime(t *testing.T) {
	t.Parallel()
	sc := scenario{
		Setup: conflictSetup,
		Apps:  []string{"nightly-job", "nightly-job", "nightly-job", "webapp"},
		Steps: seq(
			on(0, `UPDATE t SET a = 'night 1' WHERE id = 1`),
			mark("since"),
			on(1, `UPDATE t SET a = 'night 2' WHERE id = 2`, `DELETE FROM t WHERE id = 3`),
			on(3, `UPDATE t SET a = 'web' WHERE id = 4`),
			mark("until"),
			on(2, `UPDATE t SET a = 'night 3' WHERE id = 5`),
		),
		Select: func(w *world) undo.Selection {
			since, until := w.Marks["since"], w.Marks["until"]
			all, err := undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{App: "nightly-job"}, undo.Options{})
			require.NoError(t, err)
			require.ElementsMatch(t, w.IDs[:3], all.Sessions)
			return undo.Selection{App: "nightly-job", Since: &since, Until: &until}
		},
		Target: 1,
	}
	res := checkUndo(t, sc)
	require.Equal(t, res.A.IDs[1:2], res.Plan.Sessions)
}

// TestUndoNothingToUndo: an unknown session id is a NotFoundError, for plan
// and apply; an empty selection is an error too; neither changes anything.
func TestUndoNothingToUndo(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: patchSteps}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := w.all()
	var nf *undo.NotFoundError
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{"deadbeef.1"}}, undo.Options{}, nil)
	require.ErrorAs(t, err, &nf)
	require.Contains(t, err.Error(), "deadbeef.1")
	_, err = undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{"deadbeef.1"}}, undo.Options{})
	require.ErrorAs(t, err, &nf)
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Tag: "no-such-tag"}, undo.Options{}, nil)
	require.ErrorAs(t, err, &nf)
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{}, undo.Options{}, nil)
	require.Error(t, err)
	requireSameTables(t, before, w.all(), "after the failed undos")
}

// TestMakePlanChangesNothing: the dry run reports the plan and leaves every
// table and the whole log as they were; applying with that plan approved
// then does what it said.
func TestMakePlanChangesNothing(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: seq(patchSteps, on(0, `INSERT INTO t VALUES (7, 'new', NULL, 7)`))}
	w := newWorld(t, sc, nil)
	pre := w.tables()
	w.run(sc.Steps, nil)
	before := w.all()
	stmts := queryOne[int64](t, w.Conn, `SELECT count(*) FROM pgundo.stmt`)

	plan, err := undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{})
	require.NoError(t, err)
	require.False(t, plan.Applied)
	require.Empty(t, plan.UndoSession)
	require.EqualValues(t, 5, plan.Changes)
	require.Equal(t, w.IDs[:1], plan.Sessions)
	require.Equal(t, counts{Restore: 3, Reinsert: 1, Delete: 1}, countsOf(tablePlan(t, plan, "public.t")))
	require.Equal(t, []string{"id"}, tablePlan(t, plan, "public.t").KeyColumns)
	requireSameTables(t, before, w.all(), "after the dry run")
	require.Equal(t, stmts, queryOne[int64](t, w.Conn, `SELECT count(*) FROM pgundo.stmt`))

	applied, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, plan)
	require.NoError(t, err)
	require.Equal(t, plan.Tables, applied.Tables)
	require.EqualValues(t, 5, applied.RowsChanged)
	requireSameTables(t, pre, w.tables(), "after the apply")
}

// TestApplyRefusesWhenPlanChanged: a plan approved before another session
// changed one of the rows no longer matches: Apply refuses with
// ErrPlanChanged and changes nothing.
func TestApplyRefusesWhenPlanChanged(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: conflictSetup, Steps: patchSteps}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	plan, err := undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip})
	require.NoError(t, err)
	_, err = w.Conn.Exec(ctxT(t), `UPDATE t SET c = 0 WHERE id = 1`)
	require.NoError(t, err)
	before := w.all()
	_, err = undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, plan)
	require.ErrorIs(t, err, undo.ErrPlanChanged)
	requireSameTables(t, before, w.all(), "after the refused apply")
}

// TestConflictAuthorsFromRowHistoryIndex: who changed a conflicting row
// since is found in the row-history index for the statements it holds and
// in the log for the later ones, with the same answers as reading the whole
// log: on a partitioned table with a two-column key, one row last changed
// by a statement the index holds, one changed again after the index was
// refreshed, one deleted since.
func TestConflictAuthorsFromRowHistoryIndex(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: `
		CREATE TABLE p (k1 int, k2 text, v text, PRIMARY KEY (k1, k2)) PARTITION BY RANGE (k1);
		CREATE TABLE p_lo PARTITION OF p FOR VALUES FROM (0) TO (3);
		CREATE TABLE p_hi PARTITION OF p FOR VALUES FROM (3) TO (10);
		INSERT INTO p SELECT g, 'k ' || g, 'v' || g FROM generate_series(1, 6) g;`,
		Steps: seq(on(0, `UPDATE p SET v = 'P' WHERE k1 IN (1, 2, 3, 4)`),
			on(1, `UPDATE p SET v = 's1' WHERE k1 IN (1, 2)`, `UPDATE p SET v = 's1 again' WHERE k1 = 4`),
			on(2, `UPDATE p SET v = 's2' WHERE k1 = 2`), on(3, `DELETE FROM p WHERE k1 = 3`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps[:3], nil)
	authors := func() map[string]string {
		_, err := undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{})
		var ce *undo.ConflictError
		require.ErrorAs(t, err, &ce)
		out := map[string]string{}
		for _, c := range ce.Plan.Conflicts {
			require.NotNil(t, c.ChangedBy, "conflict %s %s has no author", c.Table, c.Key)
			out[c.Table+" "+c.Key+" "+c.Reason] = *c.ChangedBy
		}
		return out
	}
	unindexed := authors()
	n, err := history.Refresh(ctxT(t), w.Conn)
	require.NoError(t, err)
	require.Positive(t, n)
	w.run(sc.Steps[3:], nil)
	want := map[string]string{
		"public.p k1=1, k2=k 1 changed since": w.IDs[1], // indexed
		"public.p k1=2, k2=k 2 changed since": w.IDs[2], // indexed (s1), then later (s2)
		"public.p k1=3, k2=k 3 deleted since": w.IDs[3], // later
		"public.p k1=4, k2=k 4 changed since": w.IDs[1], // indexed
	}
	require.Equal(t, want, authors())
	// Before the refresh, from the log alone: the same authors but for the
	// two changes made after it.
	require.Equal(t, map[string]string{
		"public.p k1=1, k2=k 1 changed since": w.IDs[1],
		"public.p k1=2, k2=k 2 changed since": w.IDs[1],
		"public.p k1=4, k2=k 4 changed since": w.IDs[1],
	}, unindexed)
	// Once the index covers every statement, all from the index: the same
	// answers even with the images of the indexed statements blanked, which
	// the log alone could not give (so the index is what was read).
	refreshUntilIndexed(t, w.Conn)
	_, err = w.Conn.Exec(ctxT(t), `UPDATE pgundo.change_log SET old = NULL, new = NULL
		WHERE stmt_id IN (SELECT id FROM pgundo.stmt WHERE session_id <> $1)`, w.IDs[0])
	require.NoError(t, err)
	require.Equal(t, want, authors())
}

// TestConflictAuthorsIndexedWithoutTheKey: statements the row-history index
// covers but holds under no key (the table had no primary key when they were
// indexed) are read from the log instead: the author is still found.
func TestConflictAuthorsIndexedWithoutTheKey(t *testing.T) {
	t.Parallel()
	sc := scenario{Setup: `
		CREATE TABLE nk (id int NOT NULL, v text);
		INSERT INTO nk SELECT g, 'v' || g FROM generate_series(1, 3) g;`,
		Steps: seq(on(0, `UPDATE nk SET v = 'P' WHERE id IN (1, 2)`), on(1, `UPDATE nk SET v = 's1' WHERE id = 2`))}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	refreshUntilIndexed(t, w.Conn)
	require.Zero(t, queryOne[int](t, w.Conn, `SELECT count(*)::int FROM pgundo.hist_key`), "no key, no index entries")
	require.Equal(t, 1, queryOne[int](t, w.Conn, `SELECT count(*)::int FROM pgundo.stmt WHERE id <= (SELECT done_below FROM pgundo.hist_state) AND session_id = $1`, w.IDs[1]),
		"the index covers the later change")
	_, err := w.Conn.Exec(ctxT(t), `ALTER TABLE nk ADD PRIMARY KEY (id)`)
	require.NoError(t, err)
	_, err = undo.MakePlan(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{})
	var ce *undo.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Plan.Conflicts, 1)
	require.Equal(t, "id=2", ce.Plan.Conflicts[0].Key)
	require.NotNil(t, ce.Plan.Conflicts[0].ChangedBy)
	require.Equal(t, w.IDs[1], *ce.Plan.Conflicts[0].ChangedBy)
}

// refreshUntilIndexed refreshes the row-history index until its watermark
// covers every statement logged so far: a refresh moves it up to what the
// refresh before it saw, past transactions that were writing then only
// once they have ended.
func refreshUntilIndexed(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	last := queryOne[int64](t, conn, `SELECT coalesce(max(id), 0) FROM pgundo.stmt`)
	for range 200 {
		_, err := history.Refresh(ctxT(t), conn)
		require.NoError(t, err)
		if queryOne[int64](t, conn, `SELECT done_below FROM pgundo.hist_state`) >= last {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the row-history index did not come to cover statement %d", last)
}
