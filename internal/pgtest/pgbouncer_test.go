package pgtest

import (
	"strings"
	"testing"
)

// A missing pgbouncer fails the test with what to install; never a skip.
func TestStartPgBouncerMissingBinary(t *testing.T) {
	t.Setenv(PgBouncerEnv, "/nonexistent/pgbouncer")
	f := &fakeTB{TB: t}
	if b := StartPgBouncer(f, BouncerOptions{}); b != nil {
		t.Fatal("StartPgBouncer returned a bouncer without a binary")
	}
	for _, want := range []string{"/nonexistent/pgbouncer", "apt-get install -y pgbouncer"} {
		if !strings.Contains(f.fatal, want) {
			t.Errorf("failure %q does not mention %q", f.fatal, want)
		}
	}
}

// StartPgBouncer serves the test databases in transaction pooling mode.
func TestStartPgBouncer(t *testing.T) {
	b := StartPgBouncer(t, BouncerOptions{PoolSize: 1})
	db := NewDB(t)
	conn := Connect(t, b.ConnString(currentDatabase(t, Connect(t, db)))+" default_query_exec_mode=simple_protocol")
	if got := currentDatabase(t, conn); !strings.HasPrefix(got, "t_teststartpgbouncer_") {
		t.Fatalf("through pgbouncer: database %q", got)
	}
}
