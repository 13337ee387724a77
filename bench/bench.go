// Package bench measures what pgundo costs, in the database it is pointed
// at, as ratios against the same work done without pgundo, all in one run.
//
// Capture times bulk UPDATE, DELETE and INSERT statements and short
// pgbench OLTP runs in four variants: untracked, tracked by pgundo, tracked
// by a classic row-level audit trigger (the baseline most audit tools
// resemble), and by the floor trigger (the least a trigger capture can
// cost); on request also with E-Maj, the closest peer, where it is
// installed. Each measurement starts from a freshly built table, after
// VACUUM ANALYZE and CHECKPOINT, and the variants are interleaved so that a
// noisy machine slows them alike.
//
// The bench owns the schema "pgundo_bench" (Schema): it drops and recreates it
// at the start and drops it again at the end unless asked to keep it. It
// installs pgundo if needed (and then removes it again at the end), and it
// empties pgundo's log between measurements, so it refuses to run where the
// log holds anything but the bench's own entries unless forced (see
// LogInUseError).
//
// The package never prints: progress is reported through a callback, results
// are returned as JSON-tagged structs, and timings are never asserted on.
package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	pgsql "github.com/pgundo/pgundo/sql"
	"github.com/pgundo/pgundo/triggers"
)

// Schema is the schema the bench creates its tables in and drops at the end.
const Schema = "pgundo_bench"

// Variant names one way of running the same work.
type Variant string

// The variants every measurement is taken in.
const (
	// Untracked runs the work with no trigger at all.
	Untracked Variant = "untracked"
	// Pgundo runs it on tables tracked by pgundo (triggers.Track).
	Pgundo Variant = "pgundo"
	// RowLevel runs it on tables with a classic row-level AFTER INSERT OR
	// UPDATE OR DELETE trigger that writes to_jsonb(OLD) and to_jsonb(NEW),
	// the table's oid, the transaction id, the time, current_user and the
	// operation into a plain log table with no index (RowLevelLog).
	RowLevel Variant = "rowlevel"
	// Floor runs it on tables with the least a trigger-based capture can
	// cost: statement-level AFTER triggers that write one text image per
	// row (ROW(r.*)::text of the new row; of the old row for DELETE) and
	// the transaction id into one table with no index (FloorLog). It keeps
	// no old image of an UPDATE, no statement or session record: it could
	// not undo anything, it is a yardstick.
	Floor Variant = "floor"
)

// Variants lists the variants every measurement is taken in, in the order
// they run in the first repetition; later repetitions rotate it. EMaj, when
// asked for, runs last in the first repetition.
var Variants = []Variant{Untracked, Pgundo, RowLevel, Floor}

// RowLevelLog is the log table written by the RowLevel variant's trigger.
const RowLevelLog = Schema + ".rowlevel_log"

// FloorLog is the log table written by the Floor variant's triggers.
const FloorLog = Schema + ".floor_log"

// Speed targets from PRODUCT.md: ratios of the pgundo variant to the
// untracked one (time for bulk steps, TPS for OLTP), and log bytes per row.
const (
	GoalUpdate   = 1.5  // bulk UPDATE: at most 1.5× untracked
	GoalDelete   = 2.5  // bulk DELETE: at most 2.5× untracked
	GoalInsert   = 2.5  // bulk INSERT: at most 2.5× untracked
	GoalTPS      = 0.85 // pgbench tpcb-like, at 1 and at 4 clients: at least 85% of untracked TPS
	GoalFloor    = 0.95 // ... and at least 95% of the Floor variant's TPS
	GoalSingle   = 0.80 // one single-row UPDATE per transaction, no commit flush wait: at least 80% of untracked TPS
	GoalLogBytes = 200  // at most 200 log bytes per updated pgbench-sized row
)

// Server describes the server a bench ran against; the figures mean little
// without it.
type Server struct {
	// Version is server_version, e.g. "15.18 (Debian 15.18-0+deb12u1)".
	Version string `json:"version"`
	// VersionNum is server_version_num, e.g. 150018.
	VersionNum int `json:"version_num"`
	// Settings holds the settings that matter most to write speed
	// (fsync, synchronous_commit, full_page_writes, shared_buffers,
	// max_wal_size, wal_level, work_mem), as current_setting shows them.
	Settings map[string]string `json:"settings"`
}

var reportedSettings = []string{"fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size", "wal_level", "work_mem"}

// LogInUseError is returned when pgundo's log holds entries for tables
// outside Schema, or tables outside Schema are tracked: the bench empties the
// log between measurements and would delete them. Nothing was changed.
type LogInUseError struct {
	// Database is the database's name.
	Database string
	// LoggedTables are tables outside Schema with entries in the log (up to
	// a handful, as schema.table).
	LoggedTables []string
	// TrackedTables are tracked tables outside Schema (up to a handful).
	TrackedTables []string
	// Undos is true when the log records undos (pgundo.undo is not empty).
	Undos bool
}

func (e *LogInUseError) Error() string {
	var what []string
	if len(e.LoggedTables) > 0 {
		what = append(what, "holds changes to "+strings.Join(e.LoggedTables, ", "))
	}
	if len(e.TrackedTables) > 0 {
		what = append(what, "tracks "+strings.Join(e.TrackedTables, ", "))
	}
	if e.Undos {
		what = append(what, "records undos")
	}
	return fmt.Sprintf("database %s is in real use: pgundo there %s; the bench empties pgundo's log between measurements and would delete that history (including anything captured while it runs); nothing was changed. Run the bench in a scratch database (e.g. createdb pgundo_bench and point --database-url at it), or pass --force to delete the log anyway",
		e.Database, strings.Join(what, " and "))
}

// progressFunc reports progress; inside the package it is never nil.
type progressFunc func(string)

func (p progressFunc) f(format string, args ...any) { p(fmt.Sprintf(format, args...)) }

func orNop(progress func(string)) progressFunc {
	if progress == nil {
		return func(string) {}
	}
	return progress
}

// ident quotes a schema-qualified name of the bench schema.
func ident(name string) string { return pgx.Identifier{Schema, name}.Sanitize() }

// env is the state shared by one bench run.
type env struct {
	conn       *pgx.Conn // the caller's connection: setup and maintenance
	cfg        *pgx.ConnConfig
	progress   progressFunc
	checkpoint bool // CHECKPOINT is permitted
	installed  bool // the bench installed pgundo
	emaj       bool // the EMaj variant runs too
	variants   []Variant
}

// newEnv reads the server's version and settings and sets conn up for the
// bench (no statement timeout). It changes nothing in the database.
func newEnv(ctx context.Context, conn *pgx.Conn, progress progressFunc) (*env, Server, error) {
	e := &env{conn: conn, cfg: conn.Config(), progress: progress, checkpoint: true, variants: Variants}
	e.cfg.RuntimeParams["application_name"] = "pgundo-bench"
	e.cfg.RuntimeParams["statement_timeout"] = "0"
	var srv Server
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return nil, srv, err
	}
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num')::int").
		Scan(&srv.Version, &srv.VersionNum); err != nil {
		return nil, srv, fmt.Errorf("read server version: %w", err)
	}
	srv.Settings = map[string]string{}
	rows, err := conn.Query(ctx, "SELECT n, current_setting(n, true) FROM unnest($1::text[]) n", reportedSettings)
	if err != nil {
		return nil, srv, fmt.Errorf("read server settings: %w", err)
	}
	var name string
	var value *string
	if _, err := pgx.ForEachRow(rows, []any{&name, &value}, func() error {
		if value != nil {
			srv.Settings[name] = *value
		}
		return nil
	}); err != nil {
		return nil, srv, fmt.Errorf("read server settings: %w", err)
	}
	return e, srv, nil
}

// prepare installs or upgrades pgundo if needed and, unless force, checks
// that pgundo's log holds nothing but the bench's own entries. When it
// returns a *LogInUseError nothing was changed.
func (e *env) prepare(ctx context.Context, force bool) error {
	switch err := pgsql.CheckInstalled(ctx, e.conn); {
	case err == nil:
	case errors.Is(err, pgsql.ErrNotInstalled):
		e.progress.f("installing pgundo in database %s (removed again at the end)", e.cfg.Database)
		if _, err := pgsql.Migrate(ctx, e.conn); err != nil {
			return fmt.Errorf("install pgundo: %w", err)
		}
		e.installed = true
	default:
		var old *pgsql.OutdatedError
		if !errors.As(err, &old) {
			return err
		}
		e.progress.f("upgrading pgundo in database %s from schema version %d to %d", e.cfg.Database, old.Installed, old.Latest)
		if _, err := pgsql.Migrate(ctx, e.conn); err != nil {
			return fmt.Errorf("upgrade pgundo: %w", err)
		}
	}
	if force {
		return nil
	}
	return e.checkLogFree(ctx)
}

// checkLogFree returns a *LogInUseError when pgundo's log or tracked list
// mentions tables outside Schema.
func (e *env) checkLogFree(ctx context.Context) error {
	list := func(sql string) ([]string, error) {
		rows, err := e.conn.Query(ctx, sql, Schema)
		if err != nil {
			return nil, err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		names = slices.Compact(slices.Sorted(slices.Values(names)))
		if len(names) > 5 {
			names = append(names[:5], "...")
		}
		return names, nil
	}
	le := &LogInUseError{Database: e.cfg.Database}
	var err error
	// A bounded scan: a real log may be large, a handful of names is enough.
	if le.LoggedTables, err = list(`SELECT quote_ident(schema_name) || '.' || quote_ident(table_name)
		FROM (SELECT schema_name, table_name FROM pgundo.stmt WHERE schema_name <> $1 LIMIT 1000) s`); err != nil {
		return fmt.Errorf("inspect pgundo's log: %w", err)
	}
	if le.TrackedTables, err = list(`SELECT quote_ident(schema_name) || '.' || quote_ident(table_name)
		FROM pgundo.tracked WHERE schema_name <> $1`); err != nil {
		return fmt.Errorf("inspect pgundo's tracked tables: %w", err)
	}
	if err := e.conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pgundo.undo)").Scan(&le.Undos); err != nil {
		return fmt.Errorf("inspect pgundo's log: %w", err)
	}
	if len(le.LoggedTables) > 0 || len(le.TrackedTables) > 0 || le.Undos {
		return le
	}
	return nil
}

// createSchema drops what a previous run may have left in Schema and
// creates it afresh with the row-level baseline's log and trigger function.
func (e *env) createSchema(ctx context.Context) error {
	var exists bool
	if err := e.conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", Schema).Scan(&exists); err != nil {
		return err
	}
	if e.emaj {
		// A group left by an interrupted run would keep its tables from
		// being dropped.
		if err := emajDropGroup(ctx, e.conn); err != nil {
			return err
		}
	}
	if exists {
		e.progress.f("dropping schema %s left by an earlier run", Schema)
		if err := e.dropSchema(ctx, e.conn); err != nil {
			return err
		}
	}
	schema := pgx.Identifier{Schema}.Sanitize()
	_, err := e.conn.Exec(ctx, `
		CREATE SCHEMA `+schema+`;
		CREATE TABLE `+RowLevelLog+` (
		    relid oid NOT NULL,
		    txid  bigint NOT NULL,
		    at    timestamptz NOT NULL,
		    usr   name NOT NULL,
		    op    text NOT NULL,
		    old   jsonb,
		    new   jsonb
		);
		CREATE FUNCTION `+ident("rowlevel_capture")+`() RETURNS trigger
		LANGUAGE plpgsql AS $$
		BEGIN
		    INSERT INTO `+RowLevelLog+` (relid, txid, at, usr, op, old, new)
		    VALUES (TG_RELID, txid_current(), now(), current_user, TG_OP,
		            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
		            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
		    RETURN NULL;
		END $$;
		CREATE TABLE `+FloorLog+` (xid xid8 NOT NULL, img text NOT NULL);
		CREATE FUNCTION `+ident("floor_new")+`() RETURNS trigger
		LANGUAGE plpgsql AS $$
		BEGIN
		    INSERT INTO `+FloorLog+` (xid, img) SELECT pg_current_xact_id(), ROW(r.*)::text FROM floor_new r;
		    RETURN NULL;
		END $$;
		CREATE FUNCTION `+ident("floor_old")+`() RETURNS trigger
		LANGUAGE plpgsql AS $$
		BEGIN
		    INSERT INTO `+FloorLog+` (xid, img) SELECT pg_current_xact_id(), ROW(r.*)::text FROM floor_old r;
		    RETURN NULL;
		END $$;`)
	if err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	return nil
}

// dropSchema drops Schema and forgets its tables in pgundo's tracked list
// (which the event trigger does only where it could be installed).
func (e *env) dropSchema(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{Schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", Schema, err)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM pgundo.tracked WHERE schema_name = $1", Schema); err != nil {
		return fmt.Errorf("forget tracked tables of schema %s: %w", Schema, err)
	}
	return nil
}

// logTables are pgundo's log and what is derived from it (row-history
// index, seals, undo records): the bench empties them together, so that
// nothing derived points at entries that are gone.
const logTables = "pgundo.change_log, pgundo.stmt_log, pgundo.journal, pgundo.session, pgundo.undo, pgundo.undone, " +
	"pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_mark, pgundo.hist_skipped, pgundo.seal, pgundo.seal_stmt, pgundo.seal_mark"

// resetHistory moves the row-history watermark back with the emptied log.
const resetHistory = "UPDATE pgundo.hist_state SET done_below = 0, refreshed = NULL"

// emptyLogs empties pgundo's log and the row-level baseline's log.
func (e *env) emptyLogs(ctx context.Context) error {
	if _, err := e.conn.Exec(ctx, "TRUNCATE "+logTables+", "+RowLevelLog+", "+FloorLog+"; "+resetHistory); err != nil {
		return fmt.Errorf("empty the logs: %w", err)
	}
	return nil
}

// logBytes returns the total size of the log written by variant v (0 for
// Untracked): pgundo.change_log, pgundo.stmt_log and pgundo.journal with their indexes and TOAST,
// RowLevelLog, FloorLog, or E-Maj's log tables.
func (e *env) logBytes(ctx context.Context, v Variant) (int64, error) {
	var sql string
	switch v {
	case Pgundo:
		sql = "SELECT pgundo._log_bytes()"
	case RowLevel:
		sql = "SELECT pg_total_relation_size('" + RowLevelLog + "')"
	case Floor:
		sql = "SELECT pg_total_relation_size('" + FloorLog + "')"
	case EMaj:
		n, err := e.emajLogBytes(ctx)
		if err != nil {
			return 0, fmt.Errorf("measure the %s log: %w", v, err)
		}
		return n, nil
	default:
		return 0, nil
	}
	var n int64
	if err := e.conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		return 0, fmt.Errorf("measure the %s log: %w", v, err)
	}
	return n, nil
}

// attach puts variant v's capture on the tables (names unqualified, in
// Schema).
func (e *env) attach(ctx context.Context, v Variant, tables ...string) error {
	switch v {
	case Pgundo:
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = ident(t)
		}
		if _, err := triggers.Track(ctx, e.conn, names); err != nil {
			return fmt.Errorf("track %s: %w", strings.Join(names, ", "), err)
		}
	case RowLevel:
		for _, t := range tables {
			if _, err := e.conn.Exec(ctx, "CREATE TRIGGER rowlevel_capture AFTER INSERT OR UPDATE OR DELETE ON "+ident(t)+
				" FOR EACH ROW EXECUTE FUNCTION "+ident("rowlevel_capture")+"()"); err != nil {
				return fmt.Errorf("attach row-level trigger to %s: %w", ident(t), err)
			}
		}
	case Floor:
		for _, t := range tables {
			for _, q := range []string{
				"CREATE TRIGGER floor_insert AFTER INSERT ON " + ident(t) + " REFERENCING NEW TABLE AS floor_new FOR EACH STATEMENT EXECUTE FUNCTION " + ident("floor_new") + "()",
				"CREATE TRIGGER floor_update AFTER UPDATE ON " + ident(t) + " REFERENCING NEW TABLE AS floor_new FOR EACH STATEMENT EXECUTE FUNCTION " + ident("floor_new") + "()",
				"CREATE TRIGGER floor_delete AFTER DELETE ON " + ident(t) + " REFERENCING OLD TABLE AS floor_old FOR EACH STATEMENT EXECUTE FUNCTION " + ident("floor_old") + "()",
			} {
				if _, err := e.conn.Exec(ctx, q); err != nil {
					return fmt.Errorf("attach floor trigger to %s: %w", ident(t), err)
				}
			}
		}
	case EMaj:
		return e.emajAttach(ctx, tables)
	}
	return nil
}

// settle runs VACUUM ANALYZE on the tables, then CHECKPOINT (when
// permitted), so that a timed step starts from clean buffers and no pending
// checkpoint.
func (e *env) settle(ctx context.Context, tables ...string) error {
	for _, t := range tables {
		if _, err := e.conn.Exec(ctx, "VACUUM ANALYZE "+ident(t)); err != nil {
			return fmt.Errorf("vacuum %s: %w", ident(t), err)
		}
	}
	if !e.checkpoint {
		return nil
	}
	_, err := e.conn.Exec(ctx, "CHECKPOINT")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.InsufficientPrivilege {
		e.checkpoint = false
		e.progress.f("CHECKPOINT is not permitted for this role (needs superuser, or pg_checkpoint on PostgreSQL 15+); timings may include checkpoint I/O")
		return nil
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// connect opens a connection of its own for a timed statement: a fresh
// session, as a patch script run from a console would be.
func (e *env) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, e.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("open a bench connection: %w", err)
	}
	return conn, nil
}

// finish removes what the bench created, unless keep: schema Schema, the
// bench's entries in pgundo's log, and pgundo itself if the bench installed
// it. It runs on a connection of its own with a context that outlives
// cancellation, so an interrupted bench still cleans up.
func (e *env) finish(ctx context.Context, keep bool) error {
	if keep {
		e.progress.f("keeping schema %s and pgundo's log (--keep)", Schema)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	conn, err := e.connect(ctx)
	if err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	defer conn.Close(ctx)
	if e.emaj {
		if err := emajDropGroup(ctx, conn); err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
	}
	e.progress.f("dropping schema %s and emptying pgundo's log", Schema)
	if err := e.dropSchema(ctx, conn); err != nil {
		return fmt.Errorf("clean up: %w", err)
	}
	if _, err := conn.Exec(ctx, "TRUNCATE "+logTables+"; "+resetHistory); err != nil {
		return fmt.Errorf("clean up: empty pgundo's log: %w", err)
	}
	if e.installed {
		e.progress.f("removing pgundo, which the bench installed")
		if err := pgsql.Uninstall(ctx, conn); err != nil {
			return fmt.Errorf("clean up: uninstall pgundo: %w", err)
		}
	}
	return nil
}

// rotate returns the bench's variants rotated left by n, so that
// repetition n starts with a different variant.
func (e *env) rotate(n int) []Variant {
	n %= len(e.variants)
	return append(append([]Variant(nil), e.variants[n:]...), e.variants[:n]...)
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ratio returns a ÷ b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
