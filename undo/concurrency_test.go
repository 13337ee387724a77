package undo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// Concurrent writers. pgbench runs a fixed number of transactions of a
// custom script on tracked tables from 8 clients; every write is counted by
// the script itself (RETURNING, into an untracked tally table), which the
// log is checked against.

// pgbenchPath finds pgbench: next to psql (pgtest.BinDir), else on $PATH.
// Missing is a failure, never a skip.
func pgbenchPath(t *testing.T) string {
	t.Helper()
	if d := pgtest.BinDir(); d != "" {
		if p := filepath.Join(d, "pgbench"); isExecutableFile(p) {
			return p
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	t.Fatalf("pgbench not found (looked next to psql in %q and on $PATH); install it (Debian/Ubuntu: apt-get install -y postgresql-client or postgresql)", pgtest.BinDir())
	return ""
}

func isExecutableFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// benchSetup creates acct (rows 1..accts), hist (keyed by a sequence) and the
// untracked tally the script counts its row changes in, and tracks acct
// and hist.
func benchSetup(t *testing.T, conn *pgx.Conn, accts int) {
	t.Helper()
	pgtest.Exec(t, conn, fmt.Sprintf(`
		CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL, note text);
		INSERT INTO acct SELECT g, 0, 'n' || g FROM generate_series(1, %d) g;
		CREATE TABLE hist (id bigserial PRIMARY KEY, aid int NOT NULL, delta int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
		CREATE TABLE tally (client int, upd int, ins int, ups_i int, ups_u int, del int);`, accts))
	_, err := triggers.Track(ctxT(t), conn, []string{"acct", "hist"})
	require.NoError(t, err)
}

// benchScript writes accounts lo..hi (and upserts up to hi+extra): two
// updates, two history inserts, an upsert and a delete per transaction,
// each counted through RETURNING into tally.
func benchScript(lo, hi, extra int) string {
	return fmt.Sprintf(`\set a random(%[1]d, %[2]d)
\set b random(%[1]d, %[2]d)
\set c random(%[1]d, %[3]d)
\set d random(-100, 100)
BEGIN;
WITH u AS (UPDATE acct SET bal = bal + CASE WHEN id = :a THEN :d ELSE -(:d) END WHERE id IN (:a, :b) RETURNING 1) SELECT count(*) AS upd FROM u \gset
WITH i AS (INSERT INTO hist (aid, delta) VALUES (:a, :d), (:b, -(:d)) RETURNING 1) SELECT count(*) AS ins FROM i \gset
WITH x AS (INSERT INTO acct VALUES (:c, 0, 'new') ON CONFLICT (id) DO UPDATE SET note = 'upserted ' || :client_id RETURNING (xmax = 0) AS inserted) SELECT count(*) FILTER (WHERE inserted) AS ups_i, count(*) FILTER (WHERE NOT inserted) AS ups_u FROM x \gset
WITH d AS (DELETE FROM hist WHERE id = (SELECT min(id) FROM hist WHERE aid = :b) RETURNING 1) SELECT count(*) AS del FROM d \gset
INSERT INTO tally VALUES (:client_id, :upd, :ins, :ups_i, :ups_u, :del);
END;
`, lo, hi, hi+extra)
}

// benchResult is what pgbench reported.
type benchResult struct {
	Processed, Failed int64
	Output            string
}

var (
	processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedRe    = regexp.MustCompile(`number of failed transactions: (\d+)`)
)

// pgbenchCmd prepares pgbench running script with 8 clients, txns
// transactions each, against cfg's database as application_name app.
// Deadlocks are retried (--max-tries); a retried transaction's failed tries
// roll back, log entries included.
func pgbenchCmd(t *testing.T, cfg *pgx.ConnConfig, app, script string, txns int) *exec.Cmd {
	t.Helper()
	file := filepath.Join(t.TempDir(), "script.sql")
	require.NoError(t, os.WriteFile(file, []byte(script), 0o644))
	conninfo := fmt.Sprintf("host='%s' port=%d user='%s' dbname='%s' application_name='%s' sslmode=disable", cfg.Host, cfg.Port, cfg.User, cfg.Database, app)
	cmd := exec.Command(pgbenchPath(t), "-n", "-c", "8", "-j", "2", "-t", strconv.Itoa(txns), "--max-tries=50", "-f", file, conninfo)
	cmd.Env = append(os.Environ(), "PGOPTIONS=")
	return cmd
}

// runPgbench runs cmd (from pgbenchCmd) and reads its report; safe to call
// from any goroutine.
func runPgbench(cmd *exec.Cmd) (benchResult, error) {
	out, err := cmd.CombinedOutput()
	res := benchResult{Output: string(out)}
	if m := processedRe.FindStringSubmatch(res.Output); m != nil {
		res.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := failedRe.FindStringSubmatch(res.Output); m != nil {
		res.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if err != nil {
		return res, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	return res, nil
}

// logCounts returns the logged row changes of sessions whose
// application_name is app, per "table op", and checks each statement's
// rows field against its change rows.
func logCounts(t *testing.T, conn *pgx.Conn, app string) map[string]int64 {
	t.Helper()
	rows, err := conn.Query(ctxT(t), `
		SELECT s.table_name || ' ' || s.op::text, count(c.*), sum(count(c.*)) OVER () = (SELECT sum(rows) FROM pgundo.stmt WHERE application_name = $1)
		  FROM pgundo.stmt s LEFT JOIN pgundo.change c ON c.stmt_id = s.id
		 WHERE s.application_name = $1
		 GROUP BY 1`, app)
	require.NoError(t, err)
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		var consistent bool
		require.NoError(t, rows.Scan(&k, &n, &consistent))
		require.True(t, consistent, "pgundo.stmt.rows summed differs from the change rows")
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// tallyCounts returns what the script counted, per "table op", and the
// number of committed transactions.
func tallyCounts(t *testing.T, conn *pgx.Conn) (map[string]int64, int64) {
	t.Helper()
	var txns, upd, ins, upsI, upsU, del int64
	require.NoError(t, conn.QueryRow(ctxT(t), `SELECT count(*), coalesce(sum(upd), 0), coalesce(sum(ins), 0), coalesce(sum(ups_i), 0), coalesce(sum(ups_u), 0), coalesce(sum(del), 0) FROM tally`).
		Scan(&txns, &upd, &ins, &upsI, &upsU, &del))
	want := map[string]int64{"acct U": upd + upsU, "acct I": upsI, "hist I": ins, "hist D": del}
	for k, v := range want {
		if v == 0 {
			delete(want, k)
		}
	}
	return want, txns
}

// requireLogReplays checks that the rows of table now equal the rows in
// initial changed by every logged change since (minus old images, plus new
// ones): nothing written without its log entry, no log entry without its
// write.
func requireLogReplays(t *testing.T, conn *pgx.Conn, table string, initial []string, sinceStmt int64) {
	t.Helper()
	net := map[string]int{}
	for _, r := range initial {
		net[r]++
	}
	rows, err := conn.Query(ctxT(t), `
		SELECT c.old, c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
		 WHERE s.relid = $1::regclass AND s.id > $2`, table, sinceStmt)
	require.NoError(t, err)
	for rows.Next() {
		var o, n *string
		require.NoError(t, rows.Scan(&o, &n))
		if o != nil {
			net[*o]--
		}
		if n != nil {
			net[*n]++
		}
	}
	require.NoError(t, rows.Err())
	var want []string
	for r, n := range net {
		require.GreaterOrEqual(t, n, 0, "%s: the log removes row %s more often than it was there", table, r)
		for range n {
			want = append(want, r)
		}
	}
	slices.Sort(want)
	require.Equal(t, want, tableRows(t, conn, table), "%s now vs its initial rows plus the log", table)
}

func maxStmtID(t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	return queryOne[int64](t, conn, `SELECT coalesce(max(id), 0) FROM pgundo.stmt`)
}

// TestCaptureUnderConcurrentWriters: 8 pgbench clients, 250 transactions
// each, of updates, inserts, upserts and deletes on two tracked tables. The
// log holds exactly one change per row change the script counted itself,
// per table and operation, statements' row counts agree with their change
// rows, and replaying the log over the initial rows gives the tables'
// current rows exactly.
func TestCaptureUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	const clients, txns = 8, 250
	cfg := newDB(t)
	conn := connect(t, cfg, "pgundo-test-inspect")
	benchSetup(t, conn, 1000)
	initAcct, initHist := tableRows(t, conn, "acct"), tableRows(t, conn, "hist")
	since := maxStmtID(t, conn)

	res, err := runPgbench(pgbenchCmd(t, cfg, "pgbench-writers", benchScript(1, 1000, 200), txns))
	require.NoError(t, err)
	require.EqualValues(t, clients*txns, res.Processed, "pgbench output:\n%s", res.Output)
	require.Zero(t, res.Failed, "pgbench output:\n%s", res.Output)

	want, committed := tallyCounts(t, conn)
	require.EqualValues(t, clients*txns, committed, "transactions the script recorded")
	got := logCounts(t, conn, "pgbench-writers")
	require.Equal(t, want, got, "logged row changes per table and operation vs the script's own counts")
	var total int64
	for _, n := range got {
		total += n
	}
	t.Logf("%d transactions from %d clients: %d row changes logged, each matched (%v)", committed, clients, total, got)
	require.EqualValues(t, clients, queryOne[int64](t, conn, `SELECT count(DISTINCT session_id) FROM pgundo.stmt WHERE application_name = 'pgbench-writers'`), "one session per pgbench client")

	requireLogReplays(t, conn, "acct", initAcct, since)
	requireLogReplays(t, conn, "hist", initHist, since)
}

// TestUndoWhileOthersWrite: a session changes accounts 1..5000 (updates,
// deletes, inserts); then, while 8 pgbench clients write accounts
// 20001..40000 and history, the session is undone. Afterwards the
// session's rows are exactly as before it, and everything the writers did
// is there (the tables equal their initial rows replayed through the log,
// the undo included), and the log matches the writers' own counts.
func TestUndoWhileOthersWrite(t *testing.T) {
	t.Parallel()
	cfg := newDB(t)
	conn := connect(t, cfg, "pgundo-test-inspect")
	benchSetup(t, conn, 40000)
	initAcct, initHist := tableRows(t, conn, "acct"), tableRows(t, conn, "hist")
	since := maxStmtID(t, conn)

	target := connect(t, cfg, "pgundo-test-target")
	sid := queryOne[string](t, target, sessionIDQuery)
	pgtest.Exec(t, target, `UPDATE acct SET bal = bal - 7, note = 'target' WHERE id <= 4000`)
	pgtest.Exec(t, target, `DELETE FROM acct WHERE id BETWEEN 4001 AND 5000`)
	pgtest.Exec(t, target, `INSERT INTO acct SELECT g, 1, 'target new' FROM generate_series(50001, 51000) g`)
	pgtest.Exec(t, target, `INSERT INTO hist (aid, delta) SELECT g, 7 FROM generate_series(1, 500) g`)
	targetRows := func() []string {
		return queryStrings(t, conn, `SELECT x::text FROM acct x WHERE id <= 5000 OR id > 50000 ORDER BY id`)
	}
	var wantTarget []string
	for _, r := range initAcct {
		if id, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(r, ",", 2)[0], "(")); id <= 5000 {
			wantTarget = append(wantTarget, r)
		}
	}
	sortByID(wantTarget)

	benchDone := make(chan error, 1)
	var res benchResult
	cmd := pgbenchCmd(t, cfg, "pgbench-others", benchScript(20001, 40000, 0), 400)
	go func() {
		var err error
		res, err = runPgbench(cmd)
		benchDone <- err
	}()
	// Undo once the writers are busy.
	deadline := time.Now().Add(30 * time.Second)
	for queryOne[int64](t, conn, `SELECT count(*) FROM tally`) < 50 {
		require.True(t, time.Now().Before(deadline), "pgbench did not start writing within 30s")
		time.Sleep(20 * time.Millisecond)
	}
	plan, err := undo.Apply(ctxT(t), connect(t, cfg, "pgundo-test-undo"), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
	require.NoError(t, err)
	writtenDuringUndo := queryOne[int64](t, conn, `SELECT count(*) FROM tally`)
	require.NoError(t, <-benchDone)
	require.EqualValues(t, 8*400, res.Processed, "pgbench output:\n%s", res.Output)
	require.Less(t, writtenDuringUndo, res.Processed, "the writers were still running when the undo committed")
	t.Logf("undo of %d changes committed after %d of %d concurrent transactions", plan.Changes, writtenDuringUndo, res.Processed)

	require.Equal(t, counts{Restore: 4000, Reinsert: 1000, Delete: 1000}, countsOf(tablePlan(t, plan, "public.acct")))
	require.Equal(t, wantTarget, targetRows(), "the session's accounts are as before it")
	require.Zero(t, queryOne[int64](t, conn, `SELECT count(*) FROM hist WHERE delta = 7 AND aid <= 500 AND id <= 500`), "the session's history rows are gone")

	want, _ := tallyCounts(t, conn)
	require.Equal(t, want, logCounts(t, conn, "pgbench-others"), "the writers' row changes as logged vs counted")
	requireLogReplays(t, conn, "acct", initAcct, since)
	requireLogReplays(t, conn, "hist", initHist, since)
}

// sortByID sorts row texts "(id,...)" by their leading integer.
func sortByID(rows []string) {
	id := func(r string) int {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(r, ",", 2)[0], "("))
		return n
	}
	slices.SortFunc(rows, func(a, b string) int { return id(a) - id(b) })
}

// slowUndoSetup makes every row an undo writes to acct take 20ms (a CHECK
// constraint that sleeps for connections named pgundo-test-slow-undo;
// constraints are checked under session_replication_role = replica too),
// so a writer can be started while the undo is in the middle of it.
const slowUndoSetup = `
	CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL, note text,
		CONSTRAINT slow CHECK (current_setting('application_name') <> 'pgundo-test-slow-undo' OR pg_sleep(0.02) IS NOT NULL));
	INSERT INTO acct SELECT g, 100, 'n' || g FROM generate_series(1, 200) g;`

// TestUndoRacesWriterOnSameRows: a session updates rows 1..100; the undo of
// it runs while another connection adds 1000 to row 50 at different
// moments: before the undo starts (holding its row lock until the undo is
// waiting, then committing or rolling back), and in the middle of the
// undo's writes. Whatever the order, the result is one of the two
// serial outcomes: the undo refused or failed and changed nothing (the
// writer's +1000 on top of the session's value), or the undo committed
// and the writer's +1000 landed on the restored value. Never a lost update
// and never a partial undo.
func TestUndoRacesWriterOnSameRows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// writer runs the competing update on w, given the undo's
		// progress; it returns when its transaction has ended.
		writer func(t *testing.T, w *pgx.Conn, inspect *pgx.Conn, undoDone <-chan struct{})
		// undone is the outcome required: true = the undo must commit,
		// false = it must refuse (nil = either).
		undone *bool
	}{
		{"writer holds the row lock first, then commits", func(t *testing.T, w, inspect *pgx.Conn, undoDone <-chan struct{}) {
			waitLockWait(t, inspect, undoDone)
			pgtest.Exec(t, w, `COMMIT`)
		}, ptr(false)},
		{"writer holds the row lock first, then rolls back", func(t *testing.T, w, inspect *pgx.Conn, undoDone <-chan struct{}) {
			waitLockWait(t, inspect, undoDone)
			pgtest.Exec(t, w, `ROLLBACK`)
		}, ptr(true)},
		{"writer updates in the middle of the undo", nil, nil},
		{"writer updates right after the undo starts", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := newDB(t)
			conn := connect(t, cfg, "pgundo-test-inspect")
			pgtest.Exec(t, conn, slowUndoSetup)
			_, err := triggers.Track(ctxT(t), conn, []string{"acct"})
			require.NoError(t, err)
			before := tableRows(t, conn, "acct")
			target := connect(t, cfg, "pgundo-test-target")
			sid := queryOne[string](t, target, sessionIDQuery)
			pgtest.Exec(t, target, `UPDATE acct SET bal = bal + id, note = 'target' WHERE id <= 100`)
			afterTarget := tableRows(t, conn, "acct")

			w := connect(t, cfg, "pgundo-test-writer")
			holdsLock := tc.writer != nil
			if holdsLock {
				pgtest.Exec(t, w, `BEGIN; UPDATE acct SET bal = bal + 1000 WHERE id = 50`)
			}
			undoDone := make(chan struct{})
			var undoErr error
			undoConn := connect(t, cfg, "pgundo-test-slow-undo")
			go func() {
				defer close(undoDone)
				_, undoErr = undo.Apply(context.Background(), undoConn, undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
			}()
			writerCommitted := true
			switch {
			case tc.writer != nil:
				tc.writer(t, w, conn, undoDone)
				writerCommitted = strings.Contains(tc.name, "commits")
			case strings.Contains(tc.name, "middle"):
				// The undo writes row 50 about 1s in (20ms per row, in key
				// order, possibly other orders: any moment inside is fine).
				waitUndoWriting(t, conn, undoDone)
				time.Sleep(500 * time.Millisecond)
				pgtest.Exec(t, w, `UPDATE acct SET bal = bal + 1000 WHERE id = 50`)
			default:
				time.Sleep(5 * time.Millisecond)
				pgtest.Exec(t, w, `UPDATE acct SET bal = bal + 1000 WHERE id = 50`)
			}
			select {
			case <-undoDone:
			case <-time.After(60 * time.Second):
				t.Fatal("the undo did not finish within 60s")
			}
			now := tableRows(t, conn, "acct")
			plus1000 := func(rows []string) []string {
				if !writerCommitted {
					return rows
				}
				out := make([]string, len(rows))
				for i, r := range rows {
					out[i] = r
					if strings.HasPrefix(r, "(50,") {
						parts := strings.SplitN(r, ",", 3)
						bal, _ := strconv.Atoi(parts[1])
						out[i] = fmt.Sprintf("(50,%d,%s", bal+1000, parts[2])
					}
				}
				slices.Sort(out)
				return out
			}
			if undoErr == nil {
				require.Equal(t, plus1000(before), now, "the undo committed: every row as before the session, the writer's +1000 on row 50 kept")
			} else {
				require.Equal(t, plus1000(afterTarget), now, "the undo failed (%v): nothing changed, the writer's +1000 kept", undoErr)
				var ce *undo.ConflictError
				if errors.As(undoErr, &ce) {
					require.Contains(t, undoErr.Error(), "50", "the conflict names the row")
				}
			}
			if tc.undone != nil {
				require.Equal(t, *tc.undone, undoErr == nil, "undo error: %v", undoErr)
			}
			t.Logf("undo: %v; writer committed: %v", undoErr, writerCommitted)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// waitLockWait waits until the undo's connection waits for a lock.
func waitLockWait(t *testing.T, conn *pgx.Conn, undoDone <-chan struct{}) {
	t.Helper()
	waitActivity(t, conn, undoDone, `wait_event_type = 'Lock'`)
}

// waitUndoWriting waits until the undo's connection sleeps in the CHECK
// constraint, i.e. writes acct.
func waitUndoWriting(t *testing.T, conn *pgx.Conn, undoDone <-chan struct{}) {
	t.Helper()
	waitActivity(t, conn, undoDone, `wait_event = 'PgSleep'`)
}

func waitActivity(t *testing.T, conn *pgx.Conn, undoDone <-chan struct{}, cond string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !queryOne[bool](t, conn, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgundo-test-slow-undo' AND `+cond+`)`) {
		select {
		case <-undoDone:
			t.Fatalf("the undo ended before %s", cond)
		default:
		}
		require.True(t, time.Now().Before(deadline), "the undo never reached %s", cond)
		time.Sleep(5 * time.Millisecond)
	}
}
