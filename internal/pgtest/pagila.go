package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RequirePagilaEnv, when set to any value, makes PagilaDir fail the test
// instead of skipping it when the pagila fixture is missing. .ci/run sets it:
// CI always has the fixture, and must never pass without its tests (.ci/run
// also checks that every Test*Pagila* test printed --- PASS).
const RequirePagilaEnv = "PGUNDO_REQUIRE_PAGILA"

// PagilaFiles are the pagila fixture's psql scripts, in load order.
var PagilaFiles = []string{"pagila-schema.sql", "pagila-data.sql"}

// PagilaDir returns the directory of the pagila sample database (a real
// schema this project did not write; the suite's own realistic fixture,
// always present, is LendingSQL): shared/fixtures/pagila in the test's
// working directory or any directory above it, as the team's checkouts have
// it beside the repository. A fresh clone has no such directory: then the
// test is skipped with a message saying where the fixture was looked for,
// unless $PGUNDO_REQUIRE_PAGILA is set, in which case it fails.
func PagilaDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("pgtest.PagilaDir: %v", err)
	}
	var tried []string
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "fixtures", "pagila")
		tried = append(tried, cand)
		ok := true
		for _, f := range PagilaFiles {
			if st, err := os.Stat(filepath.Join(cand, f)); err != nil || !st.Mode().IsRegular() {
				ok = false
			}
		}
		if ok {
			return cand
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	msg := "pagila fixture not found: need " + strings.Join(PagilaFiles, " and ") + " in one of:\n  " + strings.Join(tried, "\n  ")
	if os.Getenv(RequirePagilaEnv) != "" {
		t.Fatalf("%s\n($%s is set: the pagila tests must run here)", msg, RequirePagilaEnv)
	}
	t.Skipf("%s\n(the pagila tests run where the team's shared/ sits beside the repository, as in CI; set $%s to make its absence an error)", msg, RequirePagilaEnv)
	return ""
}
