package pgcluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect %q: %v", connString, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func showSetting(t *testing.T, conn *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), "select current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("current_setting(%s): %v", name, err)
	}
	return v
}

func TestStartConnectStop(t *testing.T) {
	ctx := context.Background()
	c := startCluster(t, Options{})

	if c.Port() <= 0 {
		t.Fatalf("Port() = %d", c.Port())
	}
	for _, d := range []string{c.DataDir(), c.SocketDir()} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Fatalf("%s should be a directory: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.BinDir(), "initdb")); err != nil {
		t.Fatalf("BinDir() %s has no initdb: %v", c.BinDir(), err)
	}

	conn := connect(t, c.ConnString("postgres"))
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}

	// Defaults for speed.
	for name, want := range map[string]string{
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"shared_buffers":     "128MB",
		"max_connections":    "200",
		"listen_addresses":   "127.0.0.1",
		"server_encoding":    "UTF8",
	} {
		if got := showSetting(t, conn, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var user string
	if err := conn.QueryRow(ctx, "select current_user").Scan(&user); err != nil || user != "postgres" {
		t.Fatalf("current_user = %q, %v", user, err)
	}

	// TCP on 127.0.0.1 works too.
	tcp := connect(t, "host=127.0.0.1 port="+strconv.Itoa(c.Port())+" user=postgres dbname=postgres sslmode=disable")
	if err := tcp.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Fatalf("tcp select 1: %v", err)
	}

	// The conn string works with psql as well.
	psql := filepath.Join(c.BinDir(), "psql")
	if _, err := os.Stat(psql); err != nil {
		psql = "psql"
	}
	if p, err := exec.LookPath(psql); err == nil {
		out, err := exec.Command(p, "-X", "-At", "-c", "select 40+2", c.ConnString("postgres")).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Fatalf("psql: %v: %s", err, out)
		}
	} else {
		t.Logf("psql not found, not checking it: %v", err)
	}

	base := filepath.Dir(c.DataDir())
	_ = conn.Close(ctx)
	_ = tcp.Close(ctx)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s still exists after Stop (stat err %v)", base, err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop should be a no-op: %v", err)
	}
	if err := c.Restart(ctx); err == nil {
		t.Fatalf("Restart after Stop should fail")
	}
}

func TestStopImmediateRestartAndSettings(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir() // 0700, exercises making parents traversable
	c := startCluster(t, Options{
		TempDir: tmp,
		Settings: map[string]string{
			"synchronous_commit":         "on",          // override a default
			"full_page_writes":           "",            // drop a default
			"application_name":           "it's a test", // needs quoting
			"log_min_messages":           "warning",
			"default_text_search_config": "pg_catalog.simple",
		},
	})
	if !strings.HasPrefix(c.DataDir(), tmp) {
		t.Fatalf("DataDir %s not under TempDir %s", c.DataDir(), tmp)
	}
	port := c.Port()

	conn := connect(t, c.ConnString(""))
	if got := showSetting(t, conn, "synchronous_commit"); got != "on" {
		t.Errorf("synchronous_commit = %q, want on", got)
	}
	if got := showSetting(t, conn, "full_page_writes"); got != "on" {
		t.Errorf("full_page_writes = %q, want PostgreSQL default on", got)
	}
	if got := showSetting(t, conn, "fsync"); got != "off" {
		t.Errorf("fsync = %q, want off", got)
	}
	if _, err := conn.Exec(ctx, "create table kept(x int); insert into kept values (7)"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	if err := c.StopImmediate(); err != nil {
		t.Fatalf("StopImmediate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "PG_VERSION")); err != nil {
		t.Fatalf("data dir should be kept after StopImmediate: %v", err)
	}
	if _, err := pgx.Connect(ctx, c.ConnString("")); err == nil {
		t.Fatalf("connection should fail while stopped")
	}
	if err := c.StopImmediate(); err != nil {
		t.Fatalf("StopImmediate when stopped should be a no-op: %v", err)
	}

	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if c.Port() != port {
		t.Fatalf("port changed across Restart: %d -> %d", port, c.Port())
	}
	conn = connect(t, c.ConnString("postgres"))
	var x int
	if err := conn.QueryRow(ctx, "select x from kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("after crash restart: x = %d, %v", x, err)
	}
	// Restart while running stops and starts it again.
	_ = conn.Close(ctx)
	if err := c.Restart(ctx); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	conn = connect(t, c.ConnString("postgres"))
	if err := conn.QueryRow(ctx, "select x from kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("after second restart: x = %d, %v", x, err)
	}
}

func TestFixedPort(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, Options{Port: port})
	if c.Port() != port {
		t.Fatalf("Port() = %d, want %d", c.Port(), port)
	}
	// A second cluster on the same port must fail with the log in the error.
	_, err = Start(context.Background(), Options{Port: port})
	if err == nil {
		t.Fatal("second cluster on the same port should fail")
	}
	if !strings.Contains(err.Error(), "server log") {
		t.Fatalf("error should quote the server log: %v", err)
	}
}

func TestStartRejectsManagedSettings(t *testing.T) {
	_, err := Start(context.Background(), Options{Settings: map[string]string{"port": "5432"}})
	if err == nil || !strings.Contains(err.Error(), "managed by pgcluster") {
		t.Fatalf("err = %v", err)
	}
}

func TestFindBinDirEnvEmptyDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(BinDirEnv, dir)
	_, err := FindBinDir()
	if err == nil {
		t.Fatal("expected an error")
	}
	for _, want := range []string{BinDirEnv, dir, "initdb", "pg_ctl", "postgres"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestFindBinDirEnvNonexistent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	t.Setenv(BinDirEnv, dir)
	_, err := FindBinDir()
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v", err)
	}
}

func TestFindBinDirEnvValid(t *testing.T) {
	dir := fakeBinDir(t, t.TempDir())
	t.Setenv(BinDirEnv, dir)
	got, err := FindBinDir()
	if err != nil || got != dir {
		t.Fatalf("FindBinDir() = %q, %v; want %q", got, err, dir)
	}
}

func TestFindBinDirSystem(t *testing.T) {
	t.Setenv(BinDirEnv, "")
	dir, err := FindBinDir()
	if err != nil {
		t.Fatalf("FindBinDir: %v", err)
	}
	if err := checkBinDir(dir); err != nil {
		t.Fatal(err)
	}
}

// fakeBinDir creates dir with executable initdb, pg_ctl and postgres files.
func fakeBinDir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range requiredBinaries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func noLookPath(string) (string, error) { return "", exec.ErrNotFound }

func TestFindBinDirHighestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "10", "15", "16beta1"} {
		fakeBinDir(t, filepath.Join(root, v, "bin"))
	}
	// 17 has no initdb (client-only install): must be skipped.
	if err := os.MkdirAll(filepath.Join(root, "17", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := finder{getenv: func(string) string { return "" }, globRoot: root, lookPath: noLookPath}
	got, err := f.find()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "16beta1", "bin"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestFindBinDirFallbacks(t *testing.T) {
	root := t.TempDir()
	pgcfgDir := fakeBinDir(t, filepath.Join(root, "pgcfg"))
	pathDir := fakeBinDir(t, filepath.Join(root, "path"))

	f := finder{
		getenv:   func(string) string { return "" },
		globRoot: filepath.Join(root, "none"),
		lookPath: func(name string) (string, error) {
			return filepath.Join(pathDir, name), nil
		},
		pgConfigBinDir: func(string) (string, error) { return pgcfgDir, nil },
	}
	if got, err := f.find(); err != nil || got != pgcfgDir {
		t.Fatalf("pg_config fallback: got %q, %v", got, err)
	}
	f.pgConfigBinDir = func(string) (string, error) { return filepath.Join(root, "empty"), nil }
	if got, err := f.find(); err != nil || got != pathDir {
		t.Fatalf("PATH fallback: got %q, %v", got, err)
	}
}

func TestFindBinDirNothingFound(t *testing.T) {
	f := finder{
		getenv:   func(string) string { return "" },
		globRoot: filepath.Join(t.TempDir(), "none"),
		lookPath: noLookPath,
	}
	_, err := f.find()
	if err == nil {
		t.Fatal("expected an error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "no PostgreSQL server binaries found (looked in: ") {
		t.Errorf("unexpected prefix: %s", msg)
	}
	if !strings.HasSuffix(msg, "); install them (Debian/Ubuntu: apt-get install -y postgresql) or set PGUNDO_PG_BINDIR to the directory holding initdb and pg_ctl.") {
		t.Errorf("unexpected suffix: %s", msg)
	}
	for _, want := range []string{"/none/*/bin", "pg_config", "initdb on PATH"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestStartBadBinDir(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(context.Background(), Options{BinDir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "initdb") {
		t.Fatalf("err = %v", err)
	}
}

func TestInitdbFailureIncludesOutput(t *testing.T) {
	dir := fakeBinDir(t, t.TempDir())
	script := "#!/bin/sh\necho 'initdb: boom line'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "initdb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	_, err := Start(context.Background(), Options{BinDir: dir, TempDir: parent})
	if err == nil || !strings.Contains(err.Error(), "boom line") {
		t.Fatalf("err = %v", err)
	}
	// The temp dir is cleaned up on failure.
	entries, _ := os.ReadDir(parent)
	if len(entries) != 0 {
		t.Fatalf("temp dir left behind: %v", entries)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string][]int{"15": {15}, "9.6": {9, 6}, "16beta1": {16}, "10.2.1": {10, 2, 1}} {
		got, ok := parseVersion(in)
		if !ok || compareVersions(got, want) != 0 || len(got) != len(want) {
			t.Errorf("parseVersion(%q) = %v, %v", in, got, ok)
		}
	}
	if _, ok := parseVersion("main"); ok {
		t.Errorf("parseVersion(main) should fail")
	}
	if compareVersions([]int{10}, []int{9, 6}) <= 0 {
		t.Errorf("10 should be > 9.6")
	}
}

func TestConnStringQuoting(t *testing.T) {
	c := &Cluster{socketDir: "/tmp/with space/it's", port: 5555}
	cs := c.ConnString("we ird")
	cfg, err := pgx.ParseConfig(cs)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", cs, err)
	}
	if cfg.Host != "/tmp/with space/it's" || cfg.Port != 5555 || cfg.Database != "we ird" || cfg.User != "postgres" {
		t.Fatalf("parsed %q as host=%q port=%d db=%q user=%q", cs, cfg.Host, cfg.Port, cfg.Database, cfg.User)
	}
	if got := shellQuote("a'b"); got != `'a'\''b'` {
		t.Fatalf("shellQuote = %s", got)
	}
}

// Cancelling Start at any point must leave no directory and no server.
func TestStartCancelledLeavesNothing(t *testing.T) {
	for _, d := range []time.Duration{50, 250, 500, 800, 1200} {
		d := d * time.Millisecond
		t.Run(d.String(), func(t *testing.T) {
			parent := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			c, err := Start(ctx, Options{TempDir: parent})
			if err == nil {
				t.Logf("started within %s; stopping", d)
				if err := c.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			entries, _ := os.ReadDir(parent)
			if len(entries) != 0 {
				t.Fatalf("left behind in %s: %v (Start err: %v)", parent, entries, err)
			}
			if pids := processesMentioning(parent); len(pids) != 0 {
				t.Fatalf("processes still running for %s: %v (Start err: %v)", parent, pids, err)
			}
		})
	}
}
