package undo_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgcluster"
	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// Crashes: the server is stopped with pg_ctl stop -m immediate (no
// shutdown checkpoint: recovery replays the WAL on restart) in the middle
// of a tracked bulk write and in the middle of an undo, on a private
// cluster whose commits are acknowledged only once written
// (pgtest.CrashSafeSettings).
// After the restart every acknowledged commit has exactly its log entries,
// nothing uncommitted left any, and the undo runs again to completion.

// crashDB starts a private crash-safe cluster, creates database crash with
// pgundo installed, runs setup there and tracks the given tables.
func crashDB(t *testing.T, setup string, track ...string) (*pgcluster.Cluster, *pgx.ConnConfig) {
	t.Helper()
	c := pgtest.NewCluster(t, pgcluster.Options{Settings: pgtest.CrashSafeSettings()})
	admin := pgtest.Connect(t, c.ConnString(""))
	pgtest.Exec(t, admin, `CREATE DATABASE crash`)
	cfg, err := pgx.ParseConfig(c.ConnString("crash"))
	require.NoError(t, err)
	conn := connect(t, cfg, "pgundo-test-setup")
	_, err = pgsql.Migrate(ctxT(t), conn)
	require.NoError(t, err)
	pgtest.Exec(t, conn, setup)
	_, err = triggers.Track(ctxT(t), conn, track)
	require.NoError(t, err)
	return c, cfg
}

// crash stops the server immediately and starts it again.
func crash(t *testing.T, c *pgcluster.Cluster) {
	t.Helper()
	require.NoError(t, c.StopImmediate())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, c.Restart(ctx))
}

const crashSetup = `
	CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text);
	INSERT INTO big SELECT g, 0, repeat('p', 50) FROM generate_series(1, 100000) g;
	CREATE TABLE small (id int PRIMARY KEY, v int NOT NULL);
	INSERT INTO small SELECT g, 0 FROM generate_series(1, 1000) g;`

// TestCrashDuringTrackedBulkWrite: a 100k-row UPDATE of a tracked table
// (in one transaction, its capture included) is crashed at several points
// while a second connection commits one-row updates in a loop: early in
// the statement, later in it, and after it but before COMMIT. After each
// restart: the bulk transaction left neither data nor log; every one-row
// commit that was acknowledged is there with exactly one log entry; the
// tables equal their initial rows replayed through the log; and an undo of
// the one-row writers runs to completion and puts small back.
func TestCrashDuringTrackedBulkWrite(t *testing.T) {
	t.Parallel()
	c, cfg := crashDB(t, crashSetup, "big", "small")
	setupConn := connect(t, cfg, "pgundo-test-inspect")
	initBig, initSmall := tableRows(t, setupConn, "big"), tableRows(t, setupConn, "small")
	var writers []string // sessions of the one-row writers, across crashes
	acked := map[string]int{}
	var mu sync.Mutex

	for _, point := range []struct {
		name  string
		delay time.Duration // after the UPDATE started; -1: after it ended, before COMMIT
	}{{"early in the UPDATE", 100 * time.Millisecond}, {"late in the UPDATE", 600 * time.Millisecond}, {"before COMMIT", -1}} {
		bulk := connect(t, cfg, "pgundo-test-bulk")
		pgtest.Exec(t, bulk, `BEGIN`)
		bulkXid := queryOne[string](t, bulk, `SELECT pg_current_xact_id()::text`)

		// The one-row writer commits until the server goes away.
		small := connect(t, cfg, "pgundo-test-small")
		writers = append(writers, queryOne[string](t, small, sessionIDQuery))
		ackedBefore := len(acked)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var xid string
				if err := small.QueryRow(context.Background(), `UPDATE small SET v = v + 1 WHERE id = $1 RETURNING pg_current_xact_id()::text`, i%1000+1).Scan(&xid); err != nil {
					return // the crash
				}
				mu.Lock()
				acked[xid]++
				mu.Unlock()
			}
		}()

		// Let it commit a few before the bulk write starts.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= ackedBefore+5 {
				break
			}
			require.True(t, time.Now().Before(deadline), "the one-row writer did not commit within 30s")
		}
		bulkDone := make(chan error, 1)
		go func() {
			_, err := bulk.Exec(context.Background(), `UPDATE big SET v = v + 1, pad = upper(pad)`)
			bulkDone <- err
		}()
		if point.delay >= 0 {
			time.Sleep(point.delay)
			select {
			case err := <-bulkDone:
				t.Fatalf("%s: the bulk UPDATE ended (%v) before the crash; make it bigger", point.name, err)
			default:
			}
		} else {
			require.NoError(t, <-bulkDone)
		}
		crash(t, c)
		close(stop)
		wg.Wait()

		conn := connect(t, cfg, "pgundo-test-inspect")
		require.Zero(t, queryOne[int64](t, conn, `SELECT count(*) FROM pgundo.stmt WHERE xid = $1::xid8`, bulkXid), "%s: log entries of the crashed bulk transaction", point.name)
		require.Zero(t, queryOne[int64](t, conn, `SELECT count(*) FROM big WHERE v <> 0`), "%s: rows of the crashed bulk transaction", point.name)
		// One query for all of them: a query per commit reads the log
		// thousands of times.
		xids := make([]string, 0, len(acked))
		want := map[string]int64{}
		for xid, n := range acked {
			require.Equal(t, 1, n)
			xids = append(xids, xid)
			want[xid] = 1
		}
		rows, err := conn.Query(ctxT(t), `SELECT s.xid::text, count(*) FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
			WHERE s.xid = ANY ($1::text[]::xid8[]) GROUP BY 1`, xids)
		require.NoError(t, err)
		got := map[string]int64{}
		var xid string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&xid, &n}, func() error { got[xid] = n; return nil })
		require.NoError(t, err)
		require.Equal(t, want, got, "%s: log entries of the acknowledged commits", point.name)
		requireLogReplays(t, conn, "big", initBig, 0)
		requireLogReplays(t, conn, "small", initSmall, 0)
		t.Logf("crash %s: %d one-row commits acknowledged so far, all logged exactly once", point.name, len(acked))
	}

	conn := connect(t, cfg, "pgundo-test-inspect")
	plan, err := undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), undo.Selection{Sessions: writers}, undo.Options{}, nil)
	require.NoError(t, err)
	require.True(t, plan.Applied)
	require.Equal(t, initSmall, tableRows(t, conn, "small"), "small after the undo of the one-row writers")
	require.Equal(t, initBig, tableRows(t, conn, "big"))
}

// TestCrashDuringUndo: a session updates 50k rows and changes a few
// others; its undo is crashed while it writes the big table (each row it
// writes sleeps 1ms in a CHECK constraint, as in TestUndoKilled), then
// while its own capture waits to append to the log, then right after it
// starts. After each restart data and log are exactly as before the undo;
// finally the undo runs to completion and the tables are as before the
// session.
func TestCrashDuringUndo(t *testing.T) {
	t.Parallel()
	c, cfg := crashDB(t, strings.Replace(faultSetup, "200000", "50000", 1), "big", "small")
	conn := connect(t, cfg, "pgundo-test-inspect")
	pre := snapshot(t, conn, false)
	s := connect(t, cfg, "pgundo-test-session")
	sid := queryOne[string](t, s, sessionIDQuery)
	for _, sql := range []string{`UPDATE big SET v = v + 1`, `UPDATE small SET v = 'changed'`, `DELETE FROM small WHERE id = 2`} {
		pgtest.Exec(t, s, sql)
	}
	before := snapshot(t, conn, true)
	sel := undo.Selection{Sessions: []string{sid}}

	for _, point := range []string{"writing big", "waiting to log", "just started"} {
		conn := connect(t, cfg, "pgundo-test-inspect")
		victim := connect(t, cfg, "pgundo-test-victim")
		done := make(chan error, 1)
		var locker *pgx.Conn
		switch point {
		case "waiting to log":
			locker = connect(t, cfg, "pgundo-test-locker")
			pgtest.Exec(t, locker, `BEGIN; LOCK TABLE pgundo.stmt IN EXCLUSIVE MODE`)
			victim = connect(t, cfg, "pgundo-test-blocked")
		}
		go func() {
			_, err := undo.Apply(context.Background(), victim, sel, undo.Options{}, nil)
			done <- err
		}()
		switch point {
		case "writing big":
			waitFor(t, &world{t: t, Conn: conn}, victimWriting, done)
		case "waiting to log":
			waitFor(t, &world{t: t, Conn: conn}, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pgundo-test-blocked' AND wait_event_type = 'Lock')`, done)
		default:
			time.Sleep(20 * time.Millisecond)
		}
		crash(t, c)
		select {
		case err := <-done:
			require.Error(t, err, "%s: the undo cannot have committed: the server went away", point)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the undo did not return within 30s of the crash", point)
		}
		conn = connect(t, cfg, "pgundo-test-inspect")
		requireSameTables(t, before, snapshot(t, conn, true), fmt.Sprintf("data and log after a crash while the undo was %s", point))
	}

	plan, err := undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), sel, undo.Options{}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Restore: 50000}, countsOf(tablePlan(t, plan, "public.big")))
	requireSameTables(t, pre, snapshot(t, connect(t, cfg, "pgundo-test-inspect"), false), "after the undo run again")
}
