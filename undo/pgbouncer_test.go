package undo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// PgBouncer in transaction pooling mode: clients share server connections,
// one transaction at a time. pgundo's session is the server connection
// (PostgreSQL's backend), so behind PgBouncer a session mixes the
// transactions of every client that passed through that connection, and a
// client's transactions spread over several sessions. What identifies a
// client's work there is its tag, set per transaction (SET LOCAL), and its
// application_name, which PgBouncer sets on the server connection for each
// client's transaction. These tests pin down that behaviour, which the
// README's "Connection poolers" section describes.

// bouncerWorld is a tracked table t (rows 1..10) behind a PgBouncer with
// one server connection per database and user, so every client shares it.
type bouncerWorld struct {
	db     string
	direct *pgx.Conn
	b      *pgtest.Bouncer
	cfg    *pgx.ConnConfig // direct connection settings
}

// client connects through PgBouncer as application app, with pgx in
// simple-protocol mode (no prepared statements across transactions).
func (w *bouncerWorld) client(t *testing.T, app string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(w.b.ConnString(w.db) + " default_query_exec_mode=simple_protocol")
	require.NoError(t, err)
	cfg.RuntimeParams["application_name"] = app
	conn, err := connectConfig(t, cfg)
	require.NoError(t, err, "connect through pgbouncer as %s; pgbouncer log:\n%s", app, w.b.Log())
	return conn
}

// logged returns "row-id tag app session" per logged change of t, in order.
func (w *bouncerWorld) logged(t *testing.T) []string {
	t.Helper()
	return queryStrings(t, w.direct, `
		SELECT coalesce((c.new::t).id, (c.old::t).id) || ' ' || coalesce(s.tag, '-') || ' ' || s.application_name || ' ' || s.session_id
		  FROM pgundo.stmt s JOIN pgundo.change c ON c.stmt_id = s.id WHERE s.relid = 't'::regclass ORDER BY s.id`)
}

// newBouncerWorld creates the database and starts PgBouncer with the
// options opts gives for the database's name (nil: the defaults), with one
// server connection per database and user unless opts says otherwise.
func newBouncerWorld(t *testing.T, opts func(db string) pgtest.BouncerOptions) *bouncerWorld {
	t.Helper()
	cfg := newDB(t)
	direct := connect(t, cfg, "pgundo-test-direct")
	pgtest.Exec(t, direct, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	_, err := triggers.Track(ctxT(t), direct, []string{"t"})
	require.NoError(t, err)
	o := pgtest.BouncerOptions{}
	if opts != nil {
		o = opts(cfg.Database)
	}
	if o.PoolSize == 0 {
		o.PoolSize = 1
	}
	return &bouncerWorld{db: cfg.Database, direct: direct, b: pgtest.StartPgBouncer(t, o), cfg: cfg}
}

// TestPgBouncerTransactionPooling: two clients through one server
// connection. Their changes are one pgundo session (the server
// connection), and undoing that session undoes both clients' work; SET
// LOCAL tags stay with their transaction; each change carries its client's
// application_name; undo --tag (through PgBouncer too: the undo is one
// transaction) undoes exactly that client's transaction; a plain SET of the
// tag outlives the transaction and is seen by the next client of that
// server connection (hence: use SET LOCAL).
func TestPgBouncerTransactionPooling(t *testing.T) {
	t.Parallel()
	w := newBouncerWorld(t, nil)
	before := tableRows(t, w.direct, "t")
	a, b := w.client(t, "client-a"), w.client(t, "client-b")

	pgtest.Exec(t, a, `BEGIN; SET LOCAL pgundo.tag = 'ticket-a'; UPDATE t SET v = 'a' WHERE id = 1; COMMIT`)
	pgtest.Exec(t, b, `BEGIN; SELECT set_config('pgundo.tag', 'ticket-b', true); UPDATE t SET v = 'b' WHERE id = 2; COMMIT`)
	pgtest.Exec(t, a, `UPDATE t SET v = 'a untagged' WHERE id = 3`)
	pgtest.Exec(t, b, `UPDATE t SET v = 'b untagged' WHERE id = 4`)

	logged := w.logged(t)
	require.Len(t, logged, 4)
	sid := strings.Fields(logged[0])[3]
	require.Equal(t, []string{
		"1 ticket-a client-a " + sid,
		"2 ticket-b client-b " + sid,
		"3 - client-a " + sid,
		"4 - client-b " + sid,
	}, logged, "one session (the server connection) for both clients; tags per transaction; application_name per client")

	// Undoing "the session" behind a pooler undoes every client's work on
	// that server connection. (Run directly: through the pool, the undo
	// would be recorded under that same server connection's session.)
	plan, err := undo.Apply(ctxT(t), connect(t, w.cfg, "pgundo"), undo.Selection{Sessions: []string{sid}}, undo.Options{}, nil)
	require.NoError(t, err)
	require.EqualValues(t, 4, plan.RowsChanged)
	require.Equal(t, before, tableRows(t, w.direct, "t"))

	// Per-transaction tags select one client's work; the undo can run
	// through PgBouncer.
	pgtest.Exec(t, a, `BEGIN; SET LOCAL pgundo.tag = 'ticket-c'; UPDATE t SET v = 'c' WHERE id = 5; COMMIT`)
	pgtest.Exec(t, b, `BEGIN; SET LOCAL pgundo.tag = 'ticket-d'; UPDATE t SET v = 'd' WHERE id = 6; COMMIT`)
	plan, err = undo.Apply(ctxT(t), w.client(t, "pgundo"), undo.Selection{Tag: "ticket-c"}, undo.Options{}, nil)
	require.NoError(t, err, "undo --tag through pgbouncer; its log:\n%s", w.b.Log())
	require.EqualValues(t, 1, plan.RowsChanged)
	now := tableRows(t, w.direct, "t")
	require.Contains(t, now, "(5,v5)")
	require.Contains(t, now, "(6,d)")

	// A session-level SET stays on the server connection after the
	// transaction: the next client of that connection is tagged with it.
	pgtest.Exec(t, a, `SET pgundo.tag = 'leaks'`)
	pgtest.Exec(t, b, `UPDATE t SET v = 'b after a''s SET' WHERE id = 7`)
	require.Equal(t, []string{"leaks"}, queryStrings(t, w.direct, `SELECT tag FROM pgundo.stmt WHERE relid = 't'::regclass AND application_name = 'client-b' ORDER BY id DESC LIMIT 1`))
}

// TestPgBouncerStartupOptions: PGOPTIONS='-c pgundo.tag=...' reaches the
// server in the startup packet's "options". PgBouncer (1.18) refuses the
// connection ("unsupported startup parameter: options") unless options is
// in ignore_startup_parameters, and then drops it: the tag never arrives.
// What does tag every connection of a program behind PgBouncer is a
// database alias whose server connections set it (connect_query), or a
// role default (ALTER ROLE ... SET pgundo.tag).
func TestPgBouncerStartupOptions(t *testing.T) {
	t.Parallel()
	psql := filepath.Join(pgtest.BinDir(), "psql")
	run := func(w *bouncerWorld, db, sql string) (string, error) {
		cmd := exec.CommandContext(ctxT(t), psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, w.b.ConnString(db))
		cmd.Env = append(os.Environ(), "PGOPTIONS=-c pgundo.tag=from-pgoptions")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	strict := newBouncerWorld(t, nil)
	out, err := run(strict, strict.db, `SELECT 1`)
	require.Error(t, err)
	require.Contains(t, out, "unsupported startup parameter: options")

	lax := newBouncerWorld(t, func(db string) pgtest.BouncerOptions {
		return pgtest.BouncerOptions{
			IgnoreStartupParameters: []string{"options"},
			Aliases:                 map[string]string{"tagged": "dbname=" + db + " connect_query='SET pgundo.tag = ''from-pool'''"},
		}
	})
	out, err = run(lax, lax.db, `UPDATE t SET v = 'x' WHERE id = 1`)
	require.NoError(t, err, out)
	out, err = run(lax, "tagged", `UPDATE t SET v = 'y' WHERE id = 2`)
	require.NoError(t, err, out)
	require.Equal(t, []string{"1 -", "2 from-pool"}, queryStrings(t, lax.direct, `
		SELECT coalesce((c.new::t).id, 0) || ' ' || coalesce(s.tag, '-') FROM pgundo.stmt s JOIN pgundo.change c ON c.stmt_id = s.id
		 WHERE s.relid = 't'::regclass ORDER BY s.id`), "PGOPTIONS dropped by pgbouncer; the alias's connect_query tags")

	// Directly, without PgBouncer, PGOPTIONS does tag.
	cmd := exec.CommandContext(context.Background(), psql, "-X", "-At", "-c", `SELECT current_setting('pgundo.tag')`, pgtest.NewDB(t))
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c pgundo.tag=from-pgoptions")
	direct, err := cmd.CombinedOutput()
	require.NoError(t, err, string(direct))
	require.Equal(t, "from-pgoptions", strings.TrimSpace(string(direct)))
}
