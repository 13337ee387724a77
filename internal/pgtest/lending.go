package pgtest

import (
	"context"
	_ "embed"
	"testing"
)

// LendingSQL creates and fills the lending sample database in schema public:
// a tool-lending library written for these tests (testdata/lending.sql),
// always available, unlike the pagila fixture. Its tables are branch,
// member, category, tool, tool_tag, loan (partitioned by out_at into
// loan_2023, loan_2024 and the default partition loan_other) and ledger (no
// key, duplicate rows). It has enums, domains, arrays, a tsvector kept by a
// trigger, bytea, a generated column, deterministic BEFORE UPDATE stamping
// triggers (updated := OLD.updated + 1 second), ON DELETE CASCADE /
// SET NULL and ON UPDATE CASCADE keys. The script is plain SQL with no
// parameters, so it runs as one simple-protocol Exec; its data are the same
// on every run.
//
//go:embed testdata/lending.sql
var LendingSQL string

// LendingTables are the lending database's tables that capture is attached
// to (partitioned parents, not their partitions), as quoted qualified names
// in the order triggers.SchemaTables lists them.
var LendingTables = []string{
	`"public"."branch"`, `"public"."category"`, `"public"."ledger"`, `"public"."loan"`,
	`"public"."member"`, `"public"."tool"`, `"public"."tool_tag"`,
}

// LoadLending runs LendingSQL on conn (a connection to an empty database,
// pgundo installed or not), failing the test if it does not load.
func LoadLending(t testing.TB, conn Execer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, LendingSQL); err != nil {
		t.Fatalf("pgtest.LoadLending: load testdata/lending.sql: %v", err)
	}
}
