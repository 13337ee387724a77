package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// Ctrl-C through the real binary: SIGINT to `pgundo undo SESSION --yes`
// while it writes a 300k-row table must roll the whole undo back (data and
// log exactly as before), say so, and exit non-zero; the same undo then
// runs to completion.

// buildPgundo builds cmd/pgundo into a temporary directory and returns the
// binary's path.
func buildPgundo(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "pgundo")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/pgundo/pgundo/cmd/pgundo").CombinedOutput()
	require.NoError(t, err, "go build ./cmd/pgundo: %s", out)
	return bin
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a started pgundo process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error // Wait's result, once done is closed
}

// startPgundo starts bin with args; the process is killed when the test
// ends if it is still running.
func startPgundo(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdin = nil // not a terminal
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exitCode waits up to d for p to exit and returns its exit code.
func (p *proc) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("pgundo did not exit within %s; stderr so far:\n%s", d, p.stderr.String())
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	require.True(t, errors.As(p.err, &ee), "wait: %v", p.err)
	return ee.ExitCode()
}

// TestUndoInterruptedBinary: SIGINT while the undo writes.
//
// The undo's write of big is kept long on purpose: a CHECK constraint
// sleeps 1 ms per row written by a connection whose application_name is
// pgundo-test-victim (constraints are checked even under
// session_replication_role = replica), which is the name the interrupted
// run connects with, as long as the slow flag is on. The signal is sent
// once the binary has printed its progress line for big and its backend is
// seen writing big, so it always lands in the middle of the undo's
// transaction.
//
// Known bug (reported; the "backend stops" subtest skips, saying so, while
// it lasts): the binary exits at once on SIGINT without its cancel request
// reaching the server (pgx sends it from a goroutine that os.Exit cuts
// short), so the abandoned UPDATE keeps running, holding its row locks,
// until it next writes to the closed socket. After 3s the test turns the
// slow flag off so the abandoned statement ends (and, its client gone,
// rolls back) in seconds instead of minutes.
func TestUndoInterruptedBinary(t *testing.T) {
	t.Parallel()
	bin := buildPgundo(t)
	url, conn := setup(t, `
		CREATE TABLE slow_flag (slow bool NOT NULL);
		INSERT INTO slow_flag VALUES (true);
		-- VOLATILE: each call reads slow_flag afresh, so the flag can be
		-- turned off while a statement runs.
		CREATE FUNCTION slow_write() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
		BEGIN
			IF current_setting('application_name') = 'pgundo-test-victim' AND (SELECT slow FROM public.slow_flag) THEN
				PERFORM pg_sleep(0.001);
			END IF;
			RETURN true;
		END $$;
		CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text,
			CONSTRAINT slow CHECK (current_setting('application_name') <> 'pgundo-test-victim' OR slow_write()));
		INSERT INTO big SELECT g, g, 'pad ' || g FROM generate_series(1, 300000) g;
		CREATE TABLE small (id int PRIMARY KEY, v text);
		INSERT INTO small VALUES (1, 'a'), (2, 'b');`)
	require.Equal(t, 0, run(t, url, "install").code)
	require.Equal(t, 0, run(t, url, "track", "big", "small").code)
	// Every table but the test's own slow_flag.
	state := func() map[string][]string {
		s := ucState(t, conn)
		delete(s, "public.slow_flag")
		return s
	}
	pre := state()

	w := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, w, `UPDATE big SET v = v + 1`)
	pgtest.Exec(t, w, `UPDATE small SET v = 'changed' WHERE id = 1`)
	pgtest.Exec(t, w, `DELETE FROM small WHERE id = 2`)
	sid := sessionID(t, w)
	before := state()
	require.NotEqual(t, pre["public.big"], before["public.big"])

	p := startPgundo(t, bin, "--database-url", withApp(url, "pgundo-test-victim"), "undo", sid, "--yes")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			t.Fatalf("pgundo exited before it was interrupted (%v); stdout:\n%s\nstderr:\n%s", p.err, p.stdout.String(), p.stderr.String())
		default:
		}
		if victimWritingBig(t, conn) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the undo's backend was not seen writing big within 2 minutes; stderr:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let it write for a while, as a person's Ctrl-C would.
	time.Sleep(300 * time.Millisecond)
	// Between two rows the backend is briefly not in its sleep: look again
	// for a moment rather than once.
	writing := false
	for until := time.Now().Add(5 * time.Second); !writing && time.Now().Before(until); time.Sleep(5 * time.Millisecond) {
		writing = victimWritingBig(t, conn)
	}
	require.True(t, writing, "still writing big when interrupted")
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	sentAt := time.Now()
	code := p.exitCode(t, 20*time.Second)
	t.Logf("exit %d %s after SIGINT; stderr:\n%s", code, time.Since(sentAt).Round(time.Millisecond), p.stderr.String())
	require.NotEqual(t, 0, code, "exit code after Ctrl-C")
	require.NotEqual(t, 130, code, "one Ctrl-C rolls back and exits; 130 is the second Ctrl-C's immediate exit")
	require.Less(t, time.Since(sentAt), 10*time.Second, "pgundo took too long to stop after Ctrl-C")
	require.Contains(t, p.stderr.String(), "interrupted")
	require.Contains(t, p.stderr.String(), "nothing was changed")
	require.NotContains(t, p.stdout.String(), "undone:")

	// Nothing was committed: readers see data and log as before at once,
	// even while an abandoned statement may still run.
	requireSameState(t, before, state(), "data and log right after Ctrl-C")

	// pgundo waits for pgx's cancel request before it exits: the backend
	// must go by itself within seconds.
	victimAlive := `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pgundo-test-victim' AND datname = current_database())`
	stopped := time.Now().Add(3 * time.Second)
	for queryBool(t, conn, victimAlive) && time.Now().Before(stopped) {
		time.Sleep(20 * time.Millisecond)
	}
	alive := queryBool(t, conn, victimAlive)
	aliveAfter := time.Since(sentAt).Round(time.Millisecond)
	t.Run("backend stops", func(t *testing.T) {
		if alive {
			t.Fatalf("the interrupted undo's backend still runs its statement %s after SIGINT: no cancel request reached the server", aliveAfter)
		}
	})
	pgtest.Exec(t, conn, `UPDATE slow_flag SET slow = false`)
	gone := time.Now().Add(60 * time.Second)
	for queryBool(t, conn, victimAlive) {
		if time.Now().After(gone) {
			t.Fatal("the interrupted undo's backend is still there 60s after its statement was let run out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the interrupted undo's backend was gone %s after SIGINT", time.Since(sentAt).Round(time.Millisecond))
	requireSameState(t, before, state(), "data and log once the interrupted undo's backend is gone")

	// The same undo again, to completion (at full speed: the default
	// application_name does not sleep).
	p = startPgundo(t, bin, "--database-url", url, "undo", sid, "--yes")
	code = p.exitCode(t, 3*time.Minute)
	require.Equal(t, 0, code, "the undo run again: stderr:\n%s", p.stderr.String())
	require.Contains(t, p.stdout.String(), "undone: 300002 rows written")
	after := state()
	for _, tbl := range []string{"public.big", "public.small"} {
		require.Equal(t, pre[tbl], after[tbl], "%s after the undo ran again", tbl)
	}
}

// victimWritingBig is true while the interrupted run's backend is inside
// its UPDATE of big (the fast path's, in a WITH), sleeping in the CHECK
// constraint.
func victimWritingBig(t *testing.T, conn *pgx.Conn) bool {
	t.Helper()
	return queryBool(t, conn, `SELECT EXISTS (SELECT FROM pg_stat_activity
		WHERE application_name = 'pgundo-test-victim' AND datname = current_database()
		  AND state = 'active' AND wait_event = 'PgSleep' AND query ~* '^\s*(WITH \w+ AS \(\s*)?UPDATE\s+"public"\."big"')`)
}

// requireSameState fails with the tables that differ between two ucState
// results.
func requireSameState(t *testing.T, want, got map[string][]string, what string) {
	t.Helper()
	var diff []string
	for n, w := range want {
		if g, ok := got[n]; !ok || strings.Join(g, "\n") != strings.Join(w, "\n") {
			diff = append(diff, n)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			diff = append(diff, n+" (new)")
		}
	}
	if len(diff) > 0 {
		for _, n := range diff {
			t.Logf("%s:\n  want %.400q\n  got  %.400q", n, strings.Join(want[strings.TrimSuffix(n, " (new)")], "\n"), strings.Join(got[strings.TrimSuffix(n, " (new)")], "\n"))
		}
		t.Fatalf("%s: tables differ: %v", what, diff)
	}
}
