package cli_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestMain gives each test a database of its own on a throwaway server; the
// template does not have pgundo installed, so tests can check install.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, func(ctx context.Context, conn *pgx.Conn) error { return nil }))
}
