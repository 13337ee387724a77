package undo_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// Faults: the undo is all or nothing. A kill or a Ctrl-C (context
// cancellation) in the middle leaves data and log exactly as before, and
// the undo can simply be run again.

// faultSetup is a 200k-row table whose CHECK constraint sleeps 1ms per row
// written by a connection named pgundo-test-victim (constraints are checked
// even under session_replication_role = replica). That keeps the victim's
// undo inside its write of big for minutes, so the test can catch it there
// every time; the session and the other undos run at full speed.
const faultSetup = `
	CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text,
		CONSTRAINT slow CHECK (current_setting('application_name') <> 'pgundo-test-victim' OR pg_sleep(0.001) IS NOT NULL));
	INSERT INTO big SELECT g, g, 'pad' FROM generate_series(1, 200000) g;
	CREATE TABLE small (id int PRIMARY KEY, v text);
	INSERT INTO small VALUES (1, 'a'), (2, 'b');`

// faultWorld runs the 200k-row session and returns the world, the tables
// before the session, and everything (tables and log) after it.
func faultWorld(t *testing.T) (w *world, pre, before map[string][]string) {
	t.Helper()
	sc := scenario{Setup: faultSetup, Steps: on(0, `UPDATE big SET v = v + 1`, `UPDATE small SET v = 'changed'`, `DELETE FROM small WHERE id = 2`)}
	w = newWorld(t, sc, nil)
	pre = w.tables()
	w.run(sc.Steps, nil)
	return w, pre, w.all()
}

// startUndo runs undo.Apply of session 0 on conn in a goroutine.
func startUndo(ctx context.Context, w *world, conn *pgx.Conn, opts undo.Options) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := undo.Apply(ctx, conn, undo.Selection{Sessions: w.IDs[:1]}, opts, nil)
		done <- err
	}()
	return done
}

// waitErr waits for the undo started by startUndo to return.
func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatal("the undo did not return within 2 minutes")
		return nil
	}
}

// victimWriting is true while the victim's undo is inside its UPDATE or
// INSERT of big (the fast path's in a WITH), sleeping in the CHECK
// constraint.
const victimWriting = `SELECT EXISTS (SELECT FROM pg_stat_activity
	WHERE datname = current_database() AND application_name = 'pgundo-test-victim' AND state = 'active' AND wait_event = 'PgSleep'
	  AND query ~* '^\s*(WITH \w+ AS \(\s*)?(UPDATE|INSERT INTO)\s+"public"\."big"')`

// waitGone waits until no backend of the database has application_name app.
func waitGone(t *testing.T, w *world, app string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for queryOne[bool](t, w.Conn, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database())`, app) {
		if time.Now().After(deadline) {
			t.Fatalf("the backend of %s is still there 20s later: %v", app,
				queryStrings(t, w.Conn, `SELECT state || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 60) FROM pg_stat_activity WHERE application_name = $1`, app))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUndoKilled: the undo's backend is terminated (pg_terminate_backend)
// twice: once while it writes the 200k-row table, once after all its data
// writes, while its own capture waits to append to the log. Both times the
// undo returns an error and data and log are exactly as before; a third
// run succeeds and puts back the state before the session. Both ways an
// undo writes are killed: the fast path (straight from the log) and the
// planned path.
func TestUndoKilled(t *testing.T) {
	t.Parallel()
	for _, opts := range []undo.Options{{}, {AlwaysPlan: true}} {
		name := "fast"
		if opts.AlwaysPlan {
			name = "planned"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testUndoKilled(t, opts)
		})
	}
}

func testUndoKilled(t *testing.T, opts undo.Options) {
	w, pre, before := faultWorld(t)

	// Killed in the middle of writing big.
	victim := connect(t, w.cfg, "pgundo-test-victim")
	done := startUndo(context.Background(), w, victim, opts)
	waitFor(t, w, victimWriting, done)
	require.True(t, queryOne[bool](t, w.Conn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-victim'`))
	require.Error(t, waitErr(t, done))
	waitGone(t, w, "pgundo-test-victim")
	requireSameTables(t, before, w.all(), "after the undo was killed while writing")

	// Killed after writing the data, waiting to append to the log: another
	// transaction holds a lock on pgundo.stmt that lets reads through.
	locker := connect(t, w.cfg, "pgundo-test-locker")
	_, err := locker.Exec(ctxT(t), `BEGIN; LOCK TABLE pgundo.stmt IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	blocked := connect(t, w.cfg, "pgundo-test-blocked")
	done = startUndo(context.Background(), w, blocked, opts)
	waitFor(t, w, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-blocked' AND wait_event_type = 'Lock')`, done)
	require.True(t, queryOne[bool](t, w.Conn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-blocked'`))
	require.Error(t, waitErr(t, done))
	_, err = locker.Exec(ctxT(t), `ROLLBACK`)
	require.NoError(t, err)
	waitGone(t, w, "pgundo-test-blocked")
	requireSameTables(t, before, w.all(), "after the undo was killed while logging")

	plan, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, opts, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Restore: 200000}, countsOf(tablePlan(t, plan, "public.big")))
	requireSameTables(t, pre, w.tables(), "after the undo run again")
}

// TestUndoCanceled: the context passed to Apply is canceled (Ctrl-C) while
// the undo writes: Apply returns an error promptly, data and log are as
// before, and running the undo again succeeds without waiting for the
// abandoned statement to run to its end (its backend must stop: the
// victim's write would sleep for minutes while holding its row locks).
func TestUndoCanceled(t *testing.T) {
	t.Parallel()
	w, pre, before := faultWorld(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	victim := connect(t, w.cfg, "pgundo-test-victim")
	done := startUndo(ctx, w, victim, undo.Options{})
	waitFor(t, w, victimWriting, done)
	cancel()
	canceledAt := time.Now()
	require.Error(t, waitErr(t, done))
	require.Less(t, time.Since(canceledAt), 5*time.Second, "Apply returned late after cancellation")
	waitGone(t, w, "pgundo-test-victim")
	requireSameTables(t, before, w.all(), "after the canceled undo")

	// Bounds a wait for the abandoned backend's locks (minutes), not speed.
	rerunCtx, rerunCancel := context.WithTimeout(ctxT(t), 2*time.Minute)
	defer rerunCancel()
	plan, err := undo.Apply(rerunCtx, w.undoConn(), undo.Selection{Sessions: w.IDs[:1]}, undo.Options{}, nil)
	require.NoError(t, err, "run the undo again after Ctrl-C; the abandoned backend: %v",
		queryStrings(t, w.Conn, `SELECT state || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 60) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-victim'`))
	require.Equal(t, counts{Restore: 200000}, countsOf(tablePlan(t, plan, "public.big")))
	requireSameTables(t, pre, w.tables(), "after the undo run again")
}
