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

	"github.com/pgundo/pgundo/internal/pgdb"
	pgsql "github.com/pgundo/pgundo/sql"
)

// DBTX is what this package's queries need: a connection, pool or
// transaction (see internal/pgdb, which defines it for every package).
type DBTX = pgdb.DBTX

// TxBeginner is what functions that run a transaction of their own need:
// *pgx.Conn and *pgxpool.Pool both are.
type TxBeginner = pgdb.Conn

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
func resolve(ctx context.Context, tx pgx.Tx, name string) (oid uint32, reason string, err error) {
	if strings.TrimSpace(name) == "" {
		return 0, "empty table name", nil
	}
	var got *uint32
	if reason, err := nameQuery(ctx, tx, "SELECT to_regclass($1)::oid", name, &got); reason != "" || err != nil {
		return 0, reason, err
	}
	if got == nil {
		// From PostgreSQL 16 on, to_regclass returns NULL for a malformed
		// name instead of raising; parse_ident still raises.
		var parts []string
		if reason, err := nameQuery(ctx, tx, "SELECT parse_ident($1)", name, &parts); reason != "" || err != nil {
			return 0, reason, err
		}
		var path string
		if err := tx.QueryRow(ctx, "SELECT array_to_string(current_schemas(false), ', ')").Scan(&path); err != nil {
			return 0, "", err
		}
		return 0, fmt.Sprintf("no such table (search_path schemas: %s); check the name, or qualify it with its schema", path), nil
	}
	return *got, "", nil
}

// nameQuery runs query with the name as $1 in a savepoint, scanning its
// one row into dest. A server error (a malformed name) is rolled back to the
// savepoint and returned as the reason the name is refused.
func nameQuery(ctx context.Context, tx pgx.Tx, query, name string, dest any) (reason string, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return "", err
	}
	if err := sp.QueryRow(ctx, query, name).Scan(dest); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return "", err
		}
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return "", rbErr
		}
		return "not a valid table name (" + pgErr.Message + "); quote parts as psql does, e.g. '\"My Schema\".\"My Table\"'", nil
	}
	return "", sp.Commit(ctx)
}

// Tracked is a table that Track tracks.
type Tracked struct {
	Table
	// AlreadyTracked is true when the table was tracked before this call.
	AlreadyTracked bool `json:"already_tracked"`
	// Dropped is true, for Untrack, when the table no longer existed: only
	// its entry in the tracked list was removed.
	Dropped bool `json:"dropped"`
	// Repaired lists, for an already tracked table, each capture trigger
	// that Track recreated (it was missing) or set back to ENABLE ALWAYS,
	// as it was before. Empty when capture was whole.
	Repaired []Problem `json:"repaired"`
}

// Track starts capture on the named tables, in one transaction: if any name
// is refused (unknown, a view, foreign or temporary table, a partition, one of
// pgundo's own tables) nothing is tracked and a *RefusedError names each.
// Tracking an already tracked table repairs its capture: every capture
// trigger on it and on its partitions that is missing is created, and every
// one that is disabled or not set to fire ALWAYS is set to ENABLE ALWAYS;
// Tracked.Repaired lists what was repaired.
func Track(ctx context.Context, db TxBeginner, names []string) ([]Tracked, error) {
	return apply(ctx, db, "track", names, "SELECT pgundo.track($1::oid::regclass)")
}

// Untrack stops capture on the named tables (and their partitions), in one
// transaction. The log is kept. Naming a table that is not tracked is
// refused. A tracked table that was dropped (while pgundo's event triggers
// were absent) is untracked by the name it had; Tracked.Dropped says so.
func Untrack(ctx context.Context, db TxBeginner, names []string) ([]Tracked, error) {
	return apply(ctx, db, "untrack", names, "SELECT pgundo.untrack($1::oid::regclass)")
}

// repair makes capture of the tracked table oid whole again, inside tx: a
// relation (the table or a partition) with a missing or stale capture
// trigger gets all four attached again as track attaches them
// (pgundo._detach, pgundo._attach: the arguments its columns need, ENABLE
// ALWAYS); on the others each trigger that does not fire ALWAYS is set to.
// It returns what it repaired.
func repair(ctx context.Context, tx pgx.Tx, oid uint32) ([]Problem, error) {
	broken, err := brokenTriggers(ctx, tx, &oid)
	if err != nil {
		return nil, err
	}
	reattached := map[string]bool{}
	for _, b := range broken {
		if (b.State != StateMissing && b.State != StateStale) || reattached[b.Relation] {
			continue
		}
		rel := pgx.Identifier{b.schema, b.relname}.Sanitize()
		for _, f := range []string{"pgundo._detach", "pgundo._attach"} {
			if _, err := tx.Exec(ctx, "SELECT "+f+"($1::regclass)", rel); err != nil {
				return nil, fmt.Errorf("attach the capture triggers of %s again: %w", b.Relation, err)
			}
		}
		reattached[b.Relation] = true
	}
	repaired := []Problem{}
	for _, b := range broken {
		if !reattached[b.Relation] {
			rel := pgx.Identifier{b.schema, b.relname}.Sanitize()
			trg := pgx.Identifier{b.Trigger}.Sanitize()
			if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", rel, trg)); err != nil {
				return nil, fmt.Errorf("enable trigger %s on %s: %w", b.Trigger, b.Relation, err)
			}
		}
		repaired = append(repaired, b.Problem)
	}
	return repaired, nil
}

func apply(ctx context.Context, db TxBeginner, op string, names []string, call string) ([]Tracked, error) {
	if len(names) == 0 {
		return nil, ErrNoTables
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var refused []Refusal
	var done []Tracked
	seen := map[uint32]bool{}
	for _, name := range names {
		oid, reason, err := resolve(ctx, tx, name)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
		var tracked bool
		if reason == "" {
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pgundo.tracked WHERE relid = $1)", oid).Scan(&tracked); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op, name, err)
			}
			if !tracked && op == "untrack" {
				reason = "not tracked; pgundo status lists the tracked tables"
			}
		}
		if reason != "" && op == "untrack" && strings.HasPrefix(reason, "no such table") {
			t, found, err := untrackDropped(ctx, tx, name)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", op, name, err)
			}
			if found {
				done = append(done, t)
				continue
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
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, err
		}
		t := Tracked{Table: Table{OID: oid}, AlreadyTracked: tracked && op == "track", Repaired: []Problem{}}
		if t.AlreadyTracked {
			t.Repaired, err = repair(ctx, tx, oid)
		}
		if err == nil {
			_, err = tx.Exec(ctx, call, oid)
		}
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != "" && !isFatalClass(pgErr.Code) {
				refused = append(refused, Refusal{Name: name, Reason: pgErr.Message})
				if err := sp.Rollback(ctx); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
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

// untrackDropped removes from the tracked list a tracked table that no
// longer exists (dropped while pgundo's event triggers were absent), found
// by the name it had: schema.table, or a table name alone when one dropped
// tracked table of a schema on search_path had it.
func untrackDropped(ctx context.Context, tx pgx.Tx, name string) (Tracked, bool, error) {
	rows, err := tx.Query(ctx, `
		DELETE FROM pgundo.tracked t
		 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid)
		   AND (parse_ident($1) = ARRAY[t.schema_name::text, t.table_name::text]
		        OR (parse_ident($1) = ARRAY[t.table_name::text] AND t.schema_name = ANY (current_schemas(false))))
		RETURNING t.relid, t.schema_name, t.table_name, quote_ident(t.schema_name) || '.' || quote_ident(t.table_name)`, name)
	if err != nil {
		return Tracked{}, false, err
	}
	gone, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tracked, error) {
		t := Tracked{Dropped: true, Repaired: []Problem{}}
		return t, r.Scan(&t.OID, &t.Schema, &t.Name, &t.QualifiedName)
	})
	if err != nil {
		return Tracked{}, false, err
	}
	if len(gone) != 1 {
		// None, or one name for dropped tables of several schemas: the
		// caller refuses it; the transaction is rolled back.
		return Tracked{}, false, nil
	}
	return gone[0], true, nil
}

// isFatalClass reports SQLSTATE classes that mean the connection or server
// is in trouble rather than that one table was refused.
func isFatalClass(code string) bool {
	// Connection exception, insufficient resources, operator intervention,
	// system error, internal error.
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
	// PrimaryKey is true when the table has a primary key, or is partitioned
	// and every partition has the same one: what history, asof and undo's
	// straight path find rows by.
	PrimaryKey bool `json:"primary_key"`
	// Warnings says what tracking the table costs that a user may not
	// expect (today: having no primary key), one sentence each; they do not
	// make capture broken.
	Warnings []string `json:"warnings"`
	// Problems describes each capture trigger that is missing, disabled, or
	// not set to fire ALWAYS, on the table or on one of its partitions, one
	// sentence each (the Problem of each of Broken). Empty when capture is
	// whole.
	Problems []string `json:"problems"`
	// Broken are the same problems, one object each, and the table's
	// dropping when Dropped (pgundo status --json lists them all in one
	// "problems" array).
	Broken []Problem `json:"-"`
}

// NoPrimaryKeyWarning is status's warning for a tracked table without a
// primary key.
const NoPrimaryKeyWarning = "no primary key: pgundo history and asof cannot find its rows (pgundo log --table lists its changes), " +
	"and undo matches whole rows, planned row by row instead of straight from the log (--on-conflict merge is refused); add a primary key if it can have one"

// Healthy reports whether every change to the table is being captured.
func (s TableStatus) Healthy() bool { return !s.Dropped && len(s.Problems) == 0 }

// States of a capture trigger that does not capture every change exactly,
// as Problem.State reports them; StateTableDropped is a tracked table that
// no longer exists.
const (
	// StateMissing: the trigger does not exist.
	StateMissing = "missing"
	// StateDisabled: ALTER TABLE ... DISABLE TRIGGER.
	StateDisabled = "disabled"
	// StateEnableOrigin: ALTER TABLE ... ENABLE TRIGGER (not ALWAYS): it
	// does not fire under session_replication_role = replica.
	StateEnableOrigin = "enable_origin"
	// StateEnableReplica: ALTER TABLE ... ENABLE REPLICA TRIGGER: it fires
	// only under session_replication_role = replica.
	StateEnableReplica = "enable_replica"
	// StateStale: the trigger's arguments name fewer output settings than
	// its table's columns depend on (pgundo._output_class), so capture would
	// not pin a setting that changes how a value prints: a column was added
	// or retyped while pgundo's event trigger pgundo_reclass did not fire.
	StateStale = "stale"
	// StateTableDropped: the tracked table itself was dropped.
	StateTableDropped = "table_dropped"
)

// Problem is one reason why capture of a tracked table is not whole or not
// exact: one capture trigger, on the table or on one of its partitions,
// that is missing, does not fire ALWAYS, or is stale (StateStale); or the
// table dropped.
type Problem struct {
	// Table is the tracked table, schema-qualified, quoted where needed.
	Table string `json:"table"`
	// Relation is where the trigger belongs: Table itself or, when
	// Partition is true, one of its partitions (schema-qualified).
	Relation  string `json:"relation"`
	Partition bool   `json:"partition"`
	// Trigger is the capture trigger's name; empty for a dropped table.
	Trigger string `json:"trigger"`
	// State is one of the State* constants.
	State string `json:"state"`
	// Problem says what is wrong, in a sentence.
	Problem string `json:"problem"`
}

// describe renders a problem's sentence, as status prints it.
func (p Problem) describe() string {
	prefix := ""
	if p.Partition {
		prefix = "partition " + p.Relation + ": "
	}
	what := ""
	switch p.State {
	case StateMissing:
		what = "is missing"
	case StateDisabled:
		what = "is disabled"
	case StateEnableOrigin:
		what = "does not fire ALWAYS (it would miss changes made under session_replication_role = replica)"
	case StateEnableReplica:
		what = "fires only under session_replication_role = replica (ENABLE REPLICA), so ordinary changes are not captured"
	case StateStale:
		what = "checks fewer output settings than the table's columns depend on (a column was added or retyped while event trigger pgundo_reclass did not fire), so a value could be logged as the writer's DateStyle, TimeZone or similar prints it"
	case StateTableDropped:
		return "table dropped"
	}
	return prefix + "trigger " + p.Trigger + " " + what
}

// Repaired says, for track, what was wrong with a trigger before track
// repaired it: "pgundo_capture_delete was disabled", prefixed with the
// partition when it is on one.
func (p Problem) Repaired() string {
	prefix := ""
	if p.Partition {
		prefix = "partition " + p.Relation + ": "
	}
	was := p.State
	switch p.State {
	case StateEnableOrigin:
		was = "ENABLE, not ENABLE ALWAYS"
	case StateEnableReplica:
		was = "ENABLE REPLICA"
	case StateStale:
		was = "stale (re-attached with the output settings its columns depend on)"
	}
	return prefix + p.Trigger + " was " + was
}

// problemsQuery lists, for the tracked tables (all of them, or the one whose
// oid is $2), each capture trigger ($1) that is missing, does not fire
// ALWAYS, or is stale (its arguments, see pgundo._capture_args, claim that
// fewer output settings matter than the columns' types say, as
// pgundo._args_cover tells), on the table or on a partition at any depth.
const problemsQuery = `
	SELECT t.relid, quote_ident(t.schema_name) || '.' || quote_ident(t.table_name), p.relid <> c.oid,
	       pn.nspname, pc.relname, quote_ident(pn.nspname) || '.' || quote_ident(pc.relname), tn,
	       CASE WHEN tg.oid IS NULL THEN 'missing' WHEN st.stale THEN 'stale' WHEN tg.tgenabled = 'D' THEN 'disabled'
	            WHEN tg.tgenabled = 'R' THEN 'enable_replica' ELSE 'enable_origin' END
	  FROM pgundo.tracked t
	  JOIN pg_class c ON c.oid = t.relid
	 CROSS JOIN LATERAL (SELECT pt.relid FROM pg_partition_tree(c.oid) pt UNION SELECT c.oid) p
	  JOIN pg_class pc ON pc.oid = p.relid
	  JOIN pg_namespace pn ON pn.oid = pc.relnamespace
	 CROSS JOIN unnest($1::text[]) tn
	  LEFT JOIN pg_trigger tg ON tg.tgrelid = p.relid AND tg.tgname = tn
	 CROSS JOIN LATERAL (SELECT pgundo._output_class(p.relid) AS class) oc
	 CROSS JOIN LATERAL (SELECT tg.oid IS NOT NULL AND NOT pgundo._args_cover(tg.tgnargs, oc.class) AS stale) st
	 WHERE (tg.oid IS NULL OR tg.tgenabled <> 'A' OR st.stale) AND ($2::oid IS NULL OR t.relid = $2)
	 ORDER BY t.schema_name, t.table_name, p.relid <> c.oid, pn.nspname, pc.relname, tn`

// brokenTrigger is a row of problemsQuery.
type brokenTrigger struct {
	Problem
	tracked         uint32
	schema, relname string
}

func brokenTriggers(ctx context.Context, db DBTX, tracked *uint32) ([]brokenTrigger, error) {
	rows, err := db.Query(ctx, problemsQuery, TriggerNames, tracked)
	if err != nil {
		return nil, fmt.Errorf("read capture triggers: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (brokenTrigger, error) {
		var b brokenTrigger
		err := r.Scan(&b.tracked, &b.Table, &b.Partition, &b.schema, &b.relname, &b.Relation, &b.Trigger, &b.State)
		b.Problem.Problem = b.describe()
		return b, err
	})
}

// EventTriggerNames are pgundo's event triggers: pgundo_ddl attaches
// capture to partitions created later, pgundo_drop takes dropped tables out
// of the tracked list, pgundo_reclass re-attaches capture when a column's
// type changes (and, enabled ALWAYS, lets capture check only the output
// settings a table's columns depend on).
var EventTriggerNames = []string{"pgundo_ddl", "pgundo_drop", "pgundo_reclass"}

// EventTriggerStates returns, for each of EventTriggerNames, its
// pg_event_trigger.evtenabled ("O" enabled, "A" always, "R" replica, "D"
// disabled), or "" when it does not exist.
func EventTriggerStates(ctx context.Context, db DBTX) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT n, coalesce((SELECT evtenabled::text FROM pg_event_trigger WHERE evtname = n), '') FROM unnest($1::text[]) n`, EventTriggerNames)
	if err != nil {
		return nil, fmt.Errorf("read event triggers: %w", err)
	}
	states := map[string]string{}
	var name, state string
	if _, err := pgx.ForEachRow(rows, []any{&name, &state}, func() error { states[name] = state; return nil }); err != nil {
		return nil, fmt.Errorf("read event triggers: %w", err)
	}
	return states, nil
}

// EventTriggerWarnings says, one line each, what the missing or disabled
// event triggers among states (see EventTriggerStates) cost and what
// restores them; none when all are there.
func EventTriggerWarnings(states map[string]string) []string {
	var out []string
	for _, want := range []string{"", "D"} {
		var names, costs []string
		for _, n := range []string{"pgundo_ddl", "pgundo_drop"} {
			if states[n] == want {
				names = append(names, n)
				costs = append(costs, pgsql.EventTriggerCost(n))
			}
		}
		switch {
		case len(names) == 0:
		case want == "":
			out = append(out, fmt.Sprintf("event triggers absent (%s): %s; pgundo install run as a superuser creates them", strings.Join(names, ", "), strings.Join(costs, "; ")))
		default:
			out = append(out, fmt.Sprintf("event triggers disabled (%s): %s; as a superuser, ALTER EVENT TRIGGER ... ENABLE re-enables each", strings.Join(names, ", "), strings.Join(costs, "; ")))
		}
	}
	switch states["pgundo_reclass"] {
	case "A":
	case "":
		out = append(out, "event trigger pgundo_reclass absent: "+pgsql.EventTriggerCost("pgundo_reclass")+"; pgundo install run as a superuser creates it")
	default:
		out = append(out, "event trigger pgundo_reclass not enabled ALWAYS: tables tracked or altered from now on get the check of every output setting (about 60% more CPU per captured statement); as a superuser, ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS restores it")
	}
	return out
}

// Status reports every tracked table with its capture problems, ordered by
// schema and name.
func Status(ctx context.Context, db DBTX) ([]TableStatus, error) {
	rows, err := db.Query(ctx, `
		SELECT t.relid, t.schema_name, t.table_name, quote_ident(t.schema_name) || '.' || quote_ident(t.table_name), c.oid IS NULL, coalesce(c.relkind = 'p', false),
		       (SELECT count(*) FROM pg_partition_tree(c.oid) p WHERE p.relid <> c.oid),
		       c.oid IS NULL
		       OR EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		       OR (c.relkind = 'p' AND (SELECT count(DISTINCT k.cols) = 1 AND bool_and(k.cols IS NOT NULL)
		                                 FROM (SELECT (SELECT array_agg(a.attname::text ORDER BY u.ord)
		                                                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY u (attnum, ord)
		                                                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
		                                                WHERE i.indrelid = p.relid AND i.indisprimary) AS cols
		                                         FROM pg_partition_tree(c.oid) p WHERE p.isleaf) k))
		  FROM pgundo.tracked t LEFT JOIN pg_class c ON c.oid = t.relid
		 ORDER BY t.schema_name, t.table_name`)
	if err != nil {
		return nil, fmt.Errorf("read tracked tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableStatus, error) {
		var s TableStatus
		var key *bool
		err := r.Scan(&s.OID, &s.Schema, &s.Name, &s.QualifiedName, &s.Dropped, &s.Partitioned, &s.Partitions, &key)
		s.PrimaryKey = key != nil && *key
		s.Problems = []string{}
		s.Broken = []Problem{}
		s.Warnings = []string{}
		if !s.PrimaryKey {
			s.Warnings = append(s.Warnings, NoPrimaryKeyWarning)
		}
		if s.Dropped {
			s.Broken = append(s.Broken, Problem{Table: s.QualifiedName, Relation: s.QualifiedName, State: StateTableDropped, Problem: "table dropped"})
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tracked tables: %w", err)
	}
	broken, err := brokenTriggers(ctx, db, nil)
	if err != nil {
		return nil, err
	}
	byOID := make(map[uint32]*TableStatus, len(tables))
	for i := range tables {
		byOID[tables[i].OID] = &tables[i]
	}
	for _, b := range broken {
		s := byOID[b.tracked]
		if s == nil {
			continue // tracked since the first query
		}
		s.Problems = append(s.Problems, b.Problem.Problem)
		s.Broken = append(s.Broken, b.Problem)
	}
	return tables, nil
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
