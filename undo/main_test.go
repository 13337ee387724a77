package undo_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
)

// TestMain runs the package's tests against a throwaway PostgreSQL whose
// template database has pgundo installed.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := pgsql.Migrate(ctx, conn)
		return err
	}))
}
