package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Environment variables steering TestMain in child processes started by the
// tests below: noRunEnv makes it skip Run (to check what NewDB does then),
// failSetupEnv makes the setup function fail.
const (
	noRunEnv     = "PGTEST_TEST_NO_RUN"
	failSetupEnv = "PGTEST_TEST_FAIL_SETUP"
)

func TestMain(m *testing.M) {
	if os.Getenv(noRunEnv) == "1" {
		os.Exit(m.Run())
	}
	os.Exit(Run(m, func(ctx context.Context, conn *pgx.Conn) error {
		if os.Getenv(failSetupEnv) == "1" {
			return fmt.Errorf("deliberate setup failure")
		}
		_, err := conn.Exec(ctx, `
			create table items (id int primary key, v text not null);
			insert into items values (1, 'seed');`)
		return err
	}))
}

func currentDatabase(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var db string
	if err := conn.QueryRow(context.Background(), "select current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	return db
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	admin := Connect(t, AdminConnString())
	var n int
	if err := admin.QueryRow(context.Background(), "select count(*) from pg_database where datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestSelect1(t *testing.T) {
	conn := Connect(t, NewDB(t))
	var one int
	if err := conn.QueryRow(context.Background(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
}

func TestNewDBIsolation(t *testing.T) {
	ctx := context.Background()
	csA, csB := NewDB(t), NewDB(t)
	if csA == csB {
		t.Fatalf("NewDB returned the same conn string twice: %s", csA)
	}
	a, b := Connect(t, csA), Connect(t, csB)
	nameA, nameB := currentDatabase(t, a), currentDatabase(t, b)
	if nameA == nameB {
		t.Fatalf("both conn strings lead to database %s", nameA)
	}
	for _, name := range []string{nameA, nameB} {
		if !strings.HasPrefix(name, "t_testnewdbisolation_") {
			t.Errorf("database name %q does not follow t_<test name>_...", name)
		}
	}

	// Both are clones of the template made by setup.
	for _, conn := range []*pgx.Conn{a, b} {
		var v string
		if err := conn.QueryRow(ctx, "select v from items where id = 1").Scan(&v); err != nil || v != "seed" {
			t.Fatalf("template row in %s: %q, %v", currentDatabase(t, conn), v, err)
		}
	}

	// Writes in one are invisible in the other.
	Exec(t, a, "insert into items values ($1, $2)", 2, "only in a")
	Exec(t, b, "create table only_b (x int)")
	var n int
	if err := b.QueryRow(ctx, "select count(*) from items").Scan(&n); err != nil || n != 1 {
		t.Fatalf("b sees %d items (%v), want 1", n, err)
	}
	if err := a.QueryRow(ctx, "select count(*) from items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("a sees %d items (%v), want 2", n, err)
	}
	if err := a.QueryRow(ctx, "select count(*) from pg_class where relname = 'only_b'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a sees table only_b (%d, %v)", n, err)
	}
}

func TestNewDBDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("inner/with slash", func(t *testing.T) {
		conn := Connect(t, NewDB(t))
		name = currentDatabase(t, conn)
		// A connection nobody closes must not block the drop (WITH (FORCE)).
		leaked, err := pgx.Connect(context.Background(), conn.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		_ = leaked
		if !databaseExists(t, name) {
			t.Fatalf("database %s should exist during the test", name)
		}
	})
	if name == "" {
		t.Fatal("subtest did not run")
	}
	if !strings.HasPrefix(name, "t_testnewdbdroppedaftertest_inner_with_slash_") {
		t.Errorf("unexpected name %q", name)
	}
	if databaseExists(t, name) {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestNewDBParallel(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := Connect(t, NewDB(t))
			Exec(t, conn, "insert into items values (100, 'x')") // would conflict if shared
			name := currentDatabase(t, conn)
			mu.Lock()
			defer mu.Unlock()
			if seen[name] {
				t.Errorf("database %s handed out twice", name)
			}
			seen[name] = true
		})
	}
}

func TestDBName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]+$`)
	for _, tc := range []struct{ in, wantPrefix string }{
		{"TestFoo", "t_testfoo_abc123_"},
		{"TestFoo/Sub Test/#01", "t_testfoo_sub_test_01_abc123_"},
		{"TestÜmlaut--x", "t_test_mlaut_x_abc123_"},
		{"/", "t_test_abc123_"},
		{strings.Repeat("TestVeryLongName/", 20), "t_testverylongname_testverylongname_"},
	} {
		got := dbName(tc.in, "abc123", 12345)
		if len(got) > 63 || !valid.MatchString(got) || !strings.HasSuffix(got, "_abc123_12345") {
			t.Errorf("dbName(%q) = %q (len %d)", tc.in, got, len(got))
		}
		if !strings.HasPrefix(got, tc.wantPrefix) {
			t.Errorf("dbName(%q) = %q, want prefix %q", tc.in, got, tc.wantPrefix)
		}
		if strings.Contains(got, "__") {
			t.Errorf("dbName(%q) = %q has a double underscore", tc.in, got)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/t_x?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/t_x"},
		{"host=/tmp port=5 dbname=postgres", "host=/tmp port=5 dbname=postgres dbname=t_x"},
	} {
		got := withDatabase(tc.in, "t_x")
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "t_x" {
			t.Errorf("ParseConfig(%q): db %q, %v", got, cfg.Database, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":             "postgres://u:xxxxx@h/db",
		"postgres://u@h/db?password=secret":    "postgres://u@h/db?password=xxxxx",
		"host=h password=secret user=u":        "host=h password=xxxxx user=u",
		"host=h password='sec ret\\'x' user=u": "host=h password=xxxxx user=u",
		"host=/tmp user=postgres":              "host=/tmp user=postgres",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
}

func TestExecFailureQuotesSQL(t *testing.T) {
	conn := Connect(t, NewDB(t))
	f := &fakeTB{TB: t}
	Exec(f, conn, "insert into no_such_table values (1)")
	if !strings.Contains(f.fatal, "insert into no_such_table values (1)") || !strings.Contains(f.fatal, "42P01") {
		t.Fatalf("Exec failure message = %q", f.fatal)
	}
	tag := Exec(t, conn, "insert into items values (5, 'five'), (6, 'six')")
	if tag.RowsAffected() != 2 {
		t.Fatalf("RowsAffected = %d", tag.RowsAffected())
	}
}

func TestAccessors(t *testing.T) {
	if AdminConnString() == "" {
		t.Fatal("AdminConnString is empty during Run")
	}
	external := os.Getenv(DatabaseURLEnv) != ""
	if got := Cluster(); (got == nil) != external {
		t.Fatalf("Cluster() = %v with %s set = %v", got, DatabaseURLEnv, external)
	}
	dir := BinDir()
	if dir == "" {
		t.Fatal("BinDir() is empty")
	}
	psql := filepath.Join(dir, "psql")
	if _, err := os.Stat(psql); err != nil {
		t.Fatalf("no psql in BinDir() %s: %v", dir, err)
	}
	// psql can use the conn strings NewDB hands out.
	out, err := exec.Command(psql, "-X", "-At", "-c", "select v from items", NewDB(t)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "seed" {
		t.Fatalf("psql: %v: %s", err, out)
	}
}

// runSelf runs this test binary with extra environment and -test.run.
func runSelf(t *testing.T, run string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestNewDBWithoutRunFails(t *testing.T) {
	out, err := runSelf(t, "^TestSelect1$", noRunEnv+"=1")
	if err == nil {
		t.Fatalf("NewDB without Run should fail the test; output:\n%s", out)
	}
	if !strings.Contains(out, "TestMain must call pgtest.Run") {
		t.Fatalf("output does not explain the problem:\n%s", out)
	}
}

func TestExternalServer(t *testing.T) {
	c := Cluster()
	urls := map[string]string{"keyword/value": AdminConnString()}
	if c != nil {
		urls["URL over TCP"] = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port())
	}
	for label, u := range urls {
		t.Run(label, func(t *testing.T) {
			out, err := runSelf(t, "^(TestSelect1|TestNewDBIsolation|TestNewDBDroppedAfterTest|TestAccessors)$", DatabaseURLEnv+"="+u)
			if err != nil {
				t.Fatalf("tests against %s=%s failed: %v\n%s", DatabaseURLEnv, u, err, out)
			}
			if strings.Contains(out, "--- SKIP") || !strings.Contains(out, "--- PASS: TestNewDBIsolation") {
				t.Fatalf("unexpected child output:\n%s", out)
			}
			if c == nil {
				return
			}
			// The child cleaned up after itself: only our own template and
			// this package's test databases remain.
			admin := Connect(t, AdminConnString())
			var n int
			if err := admin.QueryRow(context.Background(),
				"select count(*) from pg_database where datname like 'pgundo_tmpl_%'").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%d template databases exist, want 1 (the child left its template behind)", n)
			}
		})
	}
}

func TestRunFailsLoudlyWithoutBinaries(t *testing.T) {
	dir := t.TempDir()
	out, err := runSelf(t, "^TestSelect1$", DatabaseURLEnv+"=", "PGUNDO_PG_BINDIR="+dir)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v; output:\n%s", err, out)
	}
	if !strings.Contains(out, "pgtest: ") || !strings.Contains(out, dir) || !strings.Contains(out, "initdb") {
		t.Fatalf("output does not explain the problem:\n%s", out)
	}
	if strings.Contains(out, "SKIP") || strings.Contains(out, "--- PASS") {
		t.Fatalf("tests must not run or skip:\n%s", out)
	}
}

func TestRunFailsWhenSetupFails(t *testing.T) {
	out, err := runSelf(t, "^TestSelect1$", DatabaseURLEnv+"=", failSetupEnv+"=1")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v; output:\n%s", err, out)
	}
	if !strings.Contains(out, "deliberate setup failure") {
		t.Fatalf("output does not show the setup error:\n%s", out)
	}
}
