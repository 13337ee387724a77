// Package triggers owns capture: it attaches pgundo's statement-level capture
// triggers to tables (track), removes them (untrack), and reports their health
// (status).
//
// The trigger functions themselves are part of pgundo's schema (see package
// sql): one generic PL/pgSQL function per operation that copies the
// statement's transition table into the log with one INSERT ... SELECT.
// Tracking a partitioned table attaches the triggers to it and to every
// partition, because a statement-level trigger fires only for the table a
// statement names; an event trigger attaches them to partitions created later.
package triggers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what this package needs from a connection, pool or transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TxBeginner starts transactions; *pgx.Conn and *pgxpool.Pool both are.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// TriggerNames are the capture triggers that pgundo puts on each tracked
// table and each of its partitions.
var TriggerNames = []string{
	"pgundo_capture_delete",
	"pgundo_capture_insert",
	"pgundo_capture_truncate",
	"pgundo_capture_update",
}

// Table is a tracked (or about to be tracked) table.
type Table struct {
	// OID is the table's pg_class oid.
	OID uint32 `json:"oid"`
	// Schema and Name are the table's schema and name.
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// QualifiedName is schema.name, each part quoted only where SQL needs it
	// (as quote_ident does).
	QualifiedName string `json:"qualified_name"`
}

// Qualified returns the table's schema-qualified name, quoted where needed.
func (t Table) Qualified() string {
	if t.QualifiedName != "" {
		return t.QualifiedName
	}
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// tableByOID is the query that fills a Table from its oid ($1).
const tableByOID = `SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`

// Refusal is one table name that cannot be tracked or untracked, and why.
type Refusal struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// RefusedError lists every name in a track or untrack request that was
// refused. Nothing was changed: lists are all-or-nothing.
type RefusedError struct {
	Op       string
	Refusals []Refusal
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: nothing was changed; %d of the names given cannot be %sed:", e.Op, len(e.Refusals), e.Op)
	for _, r := range e.Refusals {
		fmt.Fprintf(&b, "\n  %s: %s", r.Name, r.Reason)
	}
	return b.String()
}

// ErrNoTables is returned when a request names no table.
var ErrNoTables = errors.New("no table given")

// resolve finds the table a name refers to, as psql would: schema.table,
// a name found through search_path, or SQL-quoted parts.
func resolve(ctx context.Context, db DBTX, name string) (oid uint32, reason string, err error) {
	if strings.TrimSpace(name) == "" {
		return 0, "empty table name", nil
	}
	_, err = db.Exec(ctx, "SAVEPOINT pgundo_resolve")
	if err != nil {
		return 0, "", err
	}
	var got *uint32
	err = db.QueryRow(ctx, "SELECT to_regclass($1)::oid", name).Scan(&got)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			if _, rbErr := db.Exec(ctx, "ROLLBACK TO SAVEPOINT pgundo_resolve"); rbErr != nil {
				return 0, "", rbErr
			}
			return 0, "not a valid table name (" + pgErr.Message + "); quote parts as psql does, e.g. '\"My Schema\".\"My Table\"'", nil
		}
		return 0, "", err
	}
	if _, err := db.Exec(ctx, "RELEASE SAVEPOINT pgundo_resolve"); err != nil {
		return 0, "", err
	}
	if got == nil {
		// From PostgreSQL 16 on, to_regclass returns NULL for a malformed
		// name instead of raising; parse_ident still raises.
		if _, err := db.Exec(ctx, "SAVEPOINT pgundo_resolve"); err != nil {
			return 0, "", err
		}
		if _, err := db.Exec(ctx, "SELECT parse_ident($1)", name); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				return 0, "", err
			}
			if _, rbErr := db.Exec(ctx, "ROLLBACK TO SAVEPOINT pgundo_resolve"); rbErr != nil {
				return 0, "", rbErr
			}
			return 0, "not a valid table name (" + pgErr.Message + "); quote parts as psql does, e.g. '\"My Schema\".\"My Table\"'", nil
		}
		if _, err := db.Exec(ctx, "RELEASE SAVEPOINT pgundo_resolve"); err != nil {
			return 0, "", err
		}
		var path string
		if err := db.QueryRow(ctx, "SELECT array_to_string(current_schemas(false), ', ')").Scan(&path); err != nil {
			return 0, "", err
		}
		return 0, fmt.Sprintf("no such table (search_path schemas: %s); check the name, or qualify it with its schema", path), nil
	}
	return *got, "", nil
}

// Track starts capture on the named tables, in one transaction: if any name
// is refused (unknown, a view, foreign or temporary table, a partition, one of
// pgundo's own tables) nothing is tracked and a *RefusedError names each.
// Tracking an already tracked table is a no-op.
func Track(ctx context.Context, db TxBeginner, names []string) ([]Table, error) {
	return apply(ctx, db, "track", names, "SELECT pgundo.track($1::oid::regclass)")
}

// Untrack stops capture on the named tables (and their partitions), in one
// transaction. The log is kept. Naming a table that is not tracked is refused.
func Untrack(ctx context.Context, db TxBeginner, names []string) ([]Table, error) {
	return apply(ctx, db, "untrack", names, "SELECT pgundo.untrack($1::oid::regclass)")
}

func apply(ctx context.Context, db TxBeginner, op string, names []string, call string) ([]Table, error) {
	if len(names) == 0 {
		return nil, ErrNoTables
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var refused []Refusal
	var done []Table
	seen := map[uint32]bool{}
	for _, name := range names {
		oid, reason, err := resolve(ctx, tx, name)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
		if reason == "" && op == "untrack" {
			var tracked bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pgundo.tracked WHERE relid = $1)", oid).Scan(&tracked); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op, name, err)
			}
			if !tracked {
				reason = "not tracked; pgundo status lists the tracked tables"
			}
		}
		if reason != "" {
			refused = append(refused, Refusal{Name: name, Reason: reason})
			continue
		}
		if seen[oid] {
			continue
		}
		seen[oid] = true
		if _, err := tx.Exec(ctx, "SAVEPOINT pgundo_apply"); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, call, oid); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != "" && !isFatalClass(pgErr.Code) {
				refused = append(refused, Refusal{Name: name, Reason: pgErr.Message})
				if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pgundo_apply"); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
		t := Table{OID: oid}
		if err := tx.QueryRow(ctx, tableByOID, oid).Scan(&t.Schema, &t.Name, &t.QualifiedName); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
		done = append(done, t)
	}
	if len(refused) > 0 {
		return nil, &RefusedError{Op: op, Refusals: refused}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("%s: commit: %w", op, err)
	}
	return done, nil
}

// isFatalClass reports SQLSTATE classes that mean the connection or server
// is in trouble rather than that one table was refused.
func isFatalClass(code string) bool {
	switch code[:2] {
	case "08", "53", "57", "58", "XX":
		return true
	}
	return false
}

// SchemaTables lists the tables of a schema that track --schema takes:
// ordinary and partitioned tables, not partitions (their parent covers them).
// An unknown schema is an error naming it.
func SchemaTables(ctx context.Context, db DBTX, schema string) ([]string, error) {
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	if !exists {
		return nil, fmt.Errorf("schema %q does not exist (names are case-sensitive here: give it as stored, without quotes)", schema)
	}
	rows, err := db.Query(ctx, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		 ORDER BY c.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("list tables of schema %s: %w", schema, err)
	}
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var n string
		err := r.Scan(&n)
		return pgx.Identifier{schema, n}.Sanitize(), err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables of schema %s: %w", schema, err)
	}
	return names, nil
}

// TableStatus is the capture health of one tracked table.
type TableStatus struct {
	Table
	// Partitioned is true for a partitioned table; Partitions counts its
	// partitions at every depth.
	Partitioned bool `json:"partitioned"`
	Partitions  int  `json:"partitions"`
	// Dropped is true when the table no longer exists.
	Dropped bool `json:"dropped"`
	// Problems names each capture trigger that is missing, disabled, or not
	// set to fire ALWAYS, on the table or on one of its partitions. Empty
	// when capture is whole.
	Problems []string `json:"problems"`
}

// Healthy reports whether every change to the table is being captured.
func (s TableStatus) Healthy() bool { return !s.Dropped && len(s.Problems) == 0 }

// Status reports every tracked table with its capture problems, ordered by
// schema and name.
func Status(ctx context.Context, db DBTX) ([]TableStatus, error) {
	rows, err := db.Query(ctx, `
		SELECT t.relid, t.schema_name, t.table_name, quote_ident(t.schema_name) || '.' || quote_ident(t.table_name), c.oid IS NULL, coalesce(c.relkind = 'p', false),
		       (SELECT count(*) FROM pg_partition_tree(c.oid) p WHERE p.relid <> c.oid),
		       ARRAY(
		         SELECT CASE WHEN p.relid <> c.oid THEN 'partition ' || p.relid::regclass::text || ': ' ELSE '' END
		                || 'trigger ' || tn || CASE
		                     WHEN tg.oid IS NULL THEN ' is missing'
		                     WHEN tg.tgenabled = 'D' THEN ' is disabled'
		                     ELSE ' does not fire ALWAYS (it would miss changes made under session_replication_role = replica)' END
		           FROM (SELECT p.relid FROM pg_partition_tree(c.oid) p UNION SELECT c.oid) p
		          CROSS JOIN unnest($1::text[]) tn
		           LEFT JOIN pg_trigger tg ON tg.tgrelid = p.relid AND tg.tgname = tn
		          WHERE c.oid IS NOT NULL AND (tg.oid IS NULL OR tg.tgenabled <> 'A')
		          ORDER BY p.relid::regclass::text, tn)
		  FROM pgundo.tracked t LEFT JOIN pg_class c ON c.oid = t.relid
		 ORDER BY t.schema_name, t.table_name`, TriggerNames)
	if err != nil {
		return nil, fmt.Errorf("read tracked tables: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableStatus, error) {
		var s TableStatus
		err := r.Scan(&s.OID, &s.Schema, &s.Name, &s.QualifiedName, &s.Dropped, &s.Partitioned, &s.Partitions, &s.Problems)
		if s.Problems == nil {
			s.Problems = []string{}
		}
		return s, err
	})
}

// NameError says why a table name given by the user does not resolve.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string { return fmt.Sprintf("table %s: %s", e.Name, e.Reason) }

// Resolve finds the table a user-given name refers to (as psql would), in a
// read-only transaction of its own. An unknown or invalid name is a
// *NameError.
func Resolve(ctx context.Context, db TxBeginner, name string) (Table, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Table{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	oid, reason, err := resolve(ctx, tx, name)
	if err != nil {
		return Table{}, fmt.Errorf("resolve table %s: %w", name, err)
	}
	if reason != "" {
		return Table{}, &NameError{Name: name, Reason: reason}
	}
	t := Table{OID: oid}
	err = tx.QueryRow(ctx, tableByOID, oid).Scan(&t.Schema, &t.Name, &t.QualifiedName)
	return t, err
}
