package bench

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EMaj runs the work on tables logged by E-Maj (https://github.com/dalibo/emaj),
// the closest peer of pgundo: row-level AFTER triggers, SECURITY DEFINER,
// that write each changed row (old and new row of an UPDATE, as two rows)
// with the operation, a global sequence number, the time, the transaction id
// and the user into one log table per table, with a primary key. The bench
// puts the tables in an E-Maj group of its own (EMajGroup, AUDIT_ONLY: the
// same log triggers as a ROLLBACKABLE group, which would need a primary key
// on pgbench_history) and starts it; it does not install E-Maj. Measured
// only when CaptureOptions.EMaj is set.
const EMaj Variant = "emaj"

// EMajGroup is the E-Maj table group the EMaj variant creates for each run
// and drops after it (and at the start and end of the bench, if a run was
// interrupted).
const EMajGroup = "pgundo_bench"

// EMajMissingError is returned by Capture when CaptureOptions.EMaj is set
// and E-Maj cannot be used in the database. Nothing was changed.
type EMajMissingError struct {
	// Database is the database's name.
	Database string
	// Err is why an installed E-Maj could not be used; nil when E-Maj is
	// not installed.
	Err error
}

func (e *EMajMissingError) Error() string {
	what := "E-Maj is not installed in database " + e.Database
	if e.Err != nil {
		what = fmt.Sprintf("E-Maj cannot be used in database %s: %v", e.Database, e.Err)
	}
	return what + "; nothing was changed. Install it there first, as a superuser (CREATE EXTENSION emaj CASCADE " +
		"where its extension files are installed, or psql -f emaj-<version>.sql from the sql/ directory of " +
		"https://github.com/dalibo/emaj; E-Maj 5 needs PostgreSQL 14 or later, E-Maj 4.7 PostgreSQL 11), or run without --emaj"
}

func (e *EMajMissingError) Unwrap() error { return e.Err }

// emajVersion returns the version of the E-Maj installed in the database,
// or an *EMajMissingError.
func (e *env) emajVersion(ctx context.Context) (string, error) {
	var installed bool
	if err := e.conn.QueryRow(ctx, "SELECT to_regprocedure('emaj.emaj_get_version()') IS NOT NULL").Scan(&installed); err != nil {
		return "", fmt.Errorf("look for E-Maj: %w", err)
	}
	if !installed {
		return "", &EMajMissingError{Database: e.cfg.Database}
	}
	var v string
	if err := e.conn.QueryRow(ctx, "SELECT emaj.emaj_get_version()").Scan(&v); err != nil {
		return "", &EMajMissingError{Database: e.cfg.Database, Err: err}
	}
	return v, nil
}

// emajDropGroup drops EMajGroup, logging or not, if it exists.
func emajDropGroup(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "SELECT emaj.emaj_force_drop_group(group_name) FROM emaj.emaj_group WHERE group_name = $1", EMajGroup); err != nil {
		return fmt.Errorf("drop E-Maj group %s: %w", EMajGroup, err)
	}
	return nil
}

// emajAttach creates EMajGroup with the tables (names unqualified, in
// Schema) and starts it: their log triggers are on from here.
func (e *env) emajAttach(ctx context.Context, tables []string) error {
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"SELECT emaj.emaj_create_group($1, false, 'pgundo bench')", []any{EMajGroup}},
		{"SELECT emaj.emaj_assign_tables($1, $2::text[], $3)", []any{Schema, tables, EMajGroup}},
		{"SELECT emaj.emaj_start_group($1, 'START_%')", []any{EMajGroup}},
	} {
		if _, err := e.conn.Exec(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("attach E-Maj: %s: %w", q.sql, err)
		}
	}
	return nil
}

// emajDetach stops EMajGroup and drops it with its log tables.
func (e *env) emajDetach(ctx context.Context) error {
	if _, err := e.conn.Exec(ctx, "SELECT emaj.emaj_stop_group($1)", EMajGroup); err != nil {
		return fmt.Errorf("stop E-Maj group %s: %w", EMajGroup, err)
	}
	if _, err := e.conn.Exec(ctx, "SELECT emaj.emaj_drop_group($1)", EMajGroup); err != nil {
		return fmt.Errorf("drop E-Maj group %s: %w", EMajGroup, err)
	}
	return nil
}

// emajLogTables returns EMajGroup's log tables, schema-qualified and quoted.
func (e *env) emajLogTables(ctx context.Context) ([]string, error) {
	rows, err := e.conn.Query(ctx, `SELECT format('%I.%I', rel_log_schema, rel_log_table)
		  FROM emaj.emaj_relation
		 WHERE rel_group = $1 AND rel_kind = 'r' AND upper_inf(rel_time_range)
		 ORDER BY 1`, EMajGroup)
	if err != nil {
		return nil, fmt.Errorf("list E-Maj log tables: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// emajLogBytes returns the size of EMajGroup's log tables, their primary
// keys and TOAST included.
func (e *env) emajLogBytes(ctx context.Context) (int64, error) {
	logs, err := e.emajLogTables(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	err = e.conn.QueryRow(ctx, "SELECT coalesce(sum(pg_total_relation_size(t::regclass)), 0)::bigint FROM unnest($1::text[]) t", logs).Scan(&n)
	return n, err
}

// emajChanges returns the row changes EMajGroup's log tables record: an
// UPDATE logs its old and its new row as two log rows, an INSERT its new
// row, a DELETE its old one.
func (e *env) emajChanges(ctx context.Context) (int64, error) {
	logs, err := e.emajLogTables(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range logs {
		var n int64
		if err := e.conn.QueryRow(ctx, "SELECT count(*) FROM "+t+" WHERE emaj_tuple = 'NEW' OR emaj_verb = 'DEL'").Scan(&n); err != nil {
			return 0, fmt.Errorf("count the changes in %s: %w", t, err)
		}
		total += n
	}
	return total, nil
}
