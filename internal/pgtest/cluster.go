package pgtest

import (
	"context"
	"testing"

	"github.com/pgundo/pgundo/internal/pgcluster"
)

// CrashSafeSettings are server settings for a cluster a test crashes on
// purpose with pg_ctl stop -m immediate: synchronous_commit is on, so a
// commit is acknowledged only once its WAL is written out of the server's
// memory. That is what a killed server needs to keep every acknowledged
// commit; fsync and full_page_writes stay off (the operating system keeps
// the written pages), which would not survive an OS crash or power loss.
func CrashSafeSettings() map[string]string {
	return map[string]string{"synchronous_commit": "on"}
}

// NewCluster starts a private throwaway cluster for t, for tests that stop,
// crash, restart or reconfigure their server and so cannot share the one
// Run provides. It uses the same binaries ($PGUNDO_PG_BINDIR, else the
// system's), even when $PGUNDO_TEST_DATABASE_URL points the other tests at
// an existing server. The cluster is stopped and its files removed when the
// test ends. Failing to start it fails the test with pgcluster's message
// (e.g. which binaries are missing); it never skips.
func NewCluster(t testing.TB, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := pgcluster.Start(ctx, opts)
	if err != nil {
		t.Fatalf("pgtest.NewCluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("pgtest: stop private cluster: %v", err)
		}
	})
	return c
}
