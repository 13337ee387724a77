package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/pgcluster"
)

// TestNewClusterCrashAndRestart: a private crash-safe cluster keeps a
// committed row across pg_ctl stop -m immediate and loses an uncommitted one.
func TestNewClusterCrashAndRestart(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, pgcluster.Options{Settings: CrashSafeSettings()})
	if c == Cluster() {
		t.Fatal("NewCluster returned the shared cluster")
	}
	conn := Connect(t, c.ConnString(""))
	Exec(t, conn, "create table k (v text); insert into k values ('committed')")
	open := Connect(t, c.ConnString(""))
	Exec(t, open, "begin; insert into k values ('uncommitted')")
	if got := query1(t, conn, "select current_setting('synchronous_commit')"); got != "on" {
		t.Fatalf("synchronous_commit = %s", got)
	}
	if err := c.StopImmediate(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn = Connect(t, c.ConnString(""))
	if got := query1(t, conn, "select string_agg(v, ',') from k"); got != "committed" {
		t.Fatalf("after the crash k holds %q", got)
	}
}

func query1(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}
