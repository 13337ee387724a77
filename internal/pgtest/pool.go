package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool opens a pgxpool.Pool for connString, checks it with a ping (30s
// timeout) and closes it when the test ends. It fails the test on error.
func Pool(t testing.TB, connString string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, connString)
	if err != nil {
		t.Fatalf("pgtest.Pool(%s): %v", redact(connString), err)
	}
	t.Cleanup(pool.Close)
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest.Pool(%s): ping: %v", redact(connString), err)
	}
	return pool
}
