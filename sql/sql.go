// Package sql holds pgundo's own schema as versioned tern migrations
// (NNN_name.sql, embedded in the binary) and applies them.
//
// Everything pgundo keeps lives in the schema "pgundo"; the migration version
// is kept in pgundo.schema_version. Migrations run through text/template, so
// PL/pgSQL bodies must not contain double braces. What several versions
// create (a later one re-creating an earlier one's function or view with a
// few changes) is defined once, as a template in shared/ (tern loads the .sql
// files in subdirectories as templates for every migration), parameterised
// by what differs and placed by each migration. A released migration must go
// on rendering the same SQL: migrations_test.go checks it against
// testdata/rendered.
package sql

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/pgundo/pgundo/internal/pgdb"
)

//go:embed *.sql shared/*.sql
var migrations embed.FS

// Schema is the schema that holds everything pgundo creates.
const Schema = "pgundo"

// VersionTable is the schema-qualified table in which tern records the
// migration version.
const VersionTable = Schema + ".schema_version"

// ErrNotInstalled is returned by CheckInstalled when the database has no
// pgundo schema.
var ErrNotInstalled = errors.New("pgundo is not installed in this database; run pgundo install")

// OutdatedError is returned by CheckInstalled when the installed schema is
// older than this binary.
type OutdatedError struct {
	Installed, Latest int32
}

func (e *OutdatedError) Error() string {
	return fmt.Sprintf("pgundo schema is at version %d, this pgundo needs %d; run pgundo install to upgrade", e.Installed, e.Latest)
}

// Result reports what Migrate did.
type Result struct {
	// From is the schema version found before migrating (0: not installed).
	From int32 `json:"from_version"`
	// To is the schema version after migrating.
	To int32 `json:"to_version"`
}

// Changed reports whether Migrate applied any migration.
func (r Result) Changed() bool { return r.From != r.To }

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigratorEx(ctx, conn, VersionTable, &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	if err := m.LoadMigrations(migrations); err != nil {
		return nil, fmt.Errorf("load embedded migrations: %w", err)
	}
	return m, nil
}

// Latest returns the newest schema version this binary carries.
func Latest() int32 {
	names, err := migrate.FindMigrations(migrations)
	if err != nil {
		panic(err) // embedded at build time; cannot fail at run time
	}
	return int32(len(names))
}

// Migrate creates schema pgundo, or upgrades it to the newest version. The
// installing role must be a superuser or have the privileges of
// pg_read_all_stats (else a *StatsPrivilegeError, and nothing is created). It is
// idempotent: on an up-to-date schema it changes nothing. Each migration runs
// in its own transaction under tern's advisory lock, so concurrent installs
// are safe.
func Migrate(ctx context.Context, conn *pgx.Conn) (Result, error) {
	return migrateTo(ctx, conn, Latest())
}

// MigrateTo is Migrate up to schema version to only (1 to Latest); a schema
// already past it is left as it is. It exists to test upgrades from an older
// schema: pgundo install always migrates to Latest.
func MigrateTo(ctx context.Context, conn *pgx.Conn, to int32) (Result, error) {
	if to < 1 || to > Latest() {
		return Result{}, fmt.Errorf("schema version %d does not exist (1 to %d)", to, Latest())
	}
	return migrateTo(ctx, conn, to)
}

func migrateTo(ctx context.Context, conn *pgx.Conn, to int32) (Result, error) {
	var res Result
	if err := checkStatsPrivilege(ctx, conn); err != nil {
		return res, err
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{Schema}.Sanitize()); err != nil {
		return res, fmt.Errorf("create schema %s: %w", Schema, err)
	}
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return res, err
	}
	if res.From, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}
	if res.From < to {
		if err := m.MigrateTo(ctx, to); err != nil {
			return res, fmt.Errorf("migrate schema %s: %w", Schema, err)
		}
	}
	if res.To, err = m.GetCurrentVersion(ctx); err != nil {
		return res, fmt.Errorf("read schema version: %w", err)
	}
	return res, nil
}

// StatsPrivilegeError is returned by Migrate when the installing role cannot
// read other connections' start times: capture runs with the owner's rights
// and derives each session's id from its connection's start time.
type StatsPrivilegeError struct {
	// Role is the installing role, quoted as quote_ident does.
	Role string
}

func (e *StatsPrivilegeError) Error() string {
	return fmt.Sprintf("role %s cannot see when other roles' connections started, which pgundo's capture (running with its installer's rights) needs to tell sessions apart; nothing was installed; have an administrator run: GRANT pg_read_all_stats TO %s, then run pgundo install again (or install as a superuser)",
		e.Role, e.Role)
}

// checkStatsPrivilege refuses an installing role that is neither superuser
// nor has the privileges of pg_read_all_stats.
func checkStatsPrivilege(ctx context.Context, conn *pgx.Conn) error {
	var role string
	var ok bool
	err := conn.QueryRow(ctx, `SELECT quote_ident(current_user),
		(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')`).Scan(&role, &ok)
	if err != nil {
		return fmt.Errorf("check the installing role's privileges: %w", err)
	}
	if !ok {
		return &StatsPrivilegeError{Role: role}
	}
	return nil
}

// Querier is what CheckInstalled needs: a connection, pool or transaction
// (see internal/pgdb).
type Querier = pgdb.DBTX

// CheckInstalled returns nil when pgundo's schema is installed at the version
// this binary expects, ErrNotInstalled when it is absent, and an
// *OutdatedError when it is older.
func CheckInstalled(ctx context.Context, q Querier) error {
	v, err := InstalledVersion(ctx, q)
	if err != nil {
		return fmt.Errorf("check pgundo installation: %w", err)
	}
	if v == 0 {
		return ErrNotInstalled
	}
	if v < Latest() {
		return &OutdatedError{Installed: v, Latest: Latest()}
	}
	return nil
}

// InstalledVersion returns the schema version installed in the database, 0
// when pgundo is not installed. It reads VersionTable, which needs SELECT on
// it (pgundo's owner has it; see the auditor grant).
func InstalledVersion(ctx context.Context, q Querier) (int32, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, VersionTable).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	var v *int32
	if err := q.QueryRow(ctx, `SELECT max(version) FROM `+VersionTable).Scan(&v); err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// Footprint is what pgundo holds in a database, as uninstall would remove
// it.
type Footprint struct {
	// TrackedTables is the number of tracked tables.
	TrackedTables int64
	// LogBytes is the total size of pgundo's tables: the log, its indexes
	// and TOAST.
	LogBytes int64
}

// ReadFootprint reads the tracked tables and the log's size. It fails when
// pgundo is not installed; CheckInstalled tells that case apart.
func ReadFootprint(ctx context.Context, q Querier) (Footprint, error) {
	var f Footprint
	err := q.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgundo.tracked),
		(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgundo' AND c.relkind IN ('r', 'm'))`).
		Scan(&f.TrackedTables, &f.LogBytes)
	return f, err
}

// Uninstall removes capture from every table and drops schema pgundo with
// the whole log. It runs in one transaction: on error nothing is removed.
func Uninstall(ctx context.Context, conn *pgx.Conn) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL`, Schema).Scan(&exists); err != nil {
			return fmt.Errorf("look up schema %s: %w", Schema, err)
		}
		if !exists {
			return ErrNotInstalled
		}
		// Capture triggers live on user tables; drop them (on partitions too)
		// before the functions they call.
		if _, err := tx.Exec(ctx, `
			DO $$
			DECLARE r regclass;
			BEGIN
				IF to_regprocedure('pgundo._detach(regclass)') IS NOT NULL THEN
					FOR r IN SELECT DISTINCT tgrelid::regclass FROM pg_trigger
					          WHERE tgname LIKE 'pgundo\_capture\_%' AND NOT tgisinternal LOOP
						PERFORM pgundo._detach(r);
					END LOOP;
				END IF;
			END $$`); err != nil {
			return fmt.Errorf("remove capture triggers: %w", err)
		}
		for _, stmt := range []string{
			`DROP EVENT TRIGGER IF EXISTS pgundo_ddl`,
			`DROP EVENT TRIGGER IF EXISTS pgundo_drop`,
			`DROP EVENT TRIGGER IF EXISTS pgundo_reclass`,
			`DROP SCHEMA ` + pgx.Identifier{Schema}.Sanitize() + ` CASCADE`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("uninstall: %s: %w", stmt, err)
			}
		}
		return nil
	})
}

// Fold moves the journal's committed one-row statements into the log tables
// (pgundo.fold, schema version 7) and returns how many it moved. Readers see
// the same log before and after (they read the views pgundo.stmt and
// pgundo.change, which include the journal); folding keeps the journal,
// which they scan whole, small. Every command calls it when it connects;
// where the role may not (an auditor, a read-only standby) the error is
// returned and the log reads the same.
func Fold(ctx context.Context, db pgdb.DBTX) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, "SELECT "+Schema+".fold()").Scan(&n); err != nil {
		return 0, fmt.Errorf("fold the journal into the log: %w", err)
	}
	return n, nil
}
