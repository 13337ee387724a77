package undo_test

import (
	"os"
	"testing"

	"github.com/pgundo/pgundo/internal/pgtest"
)

// TestMain runs the package's tests against a throwaway PostgreSQL whose
// template database has pgundo installed.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.Installed))
}
