package sql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// eventTriggers are pgundo's event triggers as the migrations create them
// (001: pgundo_ddl and pgundo_drop; 011: pgundo_reclass), in that order:
// name and the statements that create it. TestEventTriggersAddedLater
// checks that what EnsureEventTriggers creates is what a superuser's
// install creates.
var eventTriggers = []struct {
	name string
	sql  []string
}{
	{"pgundo_ddl", []string{`CREATE EVENT TRIGGER pgundo_ddl ON ddl_command_end
		WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION pgundo._on_ddl()`}},
	{"pgundo_drop", []string{`CREATE EVENT TRIGGER pgundo_drop ON sql_drop
		WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION pgundo._on_drop()`}},
	{"pgundo_reclass", []string{`CREATE EVENT TRIGGER pgundo_reclass ON ddl_command_end
		WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION pgundo._on_alter()`,
		`ALTER EVENT TRIGGER pgundo_reclass ENABLE ALWAYS`}},
}

// EventTriggerResult reports what EnsureEventTriggers did.
type EventTriggerResult struct {
	// Created names the event triggers created (none when all existed).
	Created []string `json:"event_triggers_created"`
	// Reattached is the number of tracked tables whose capture triggers
	// (or their partitions') were attached again with the output settings
	// their columns depend on (pgundo._reclass), after pgundo_reclass was
	// created.
	Reattached int64 `json:"reattached"`
	// NotReattached lists the tables and partitions whose triggers were not
	// attached again, with PostgreSQL's reason: the role does not own them,
	// or they stayed locked for longer than ReattachLockTimeout. Their
	// capture keeps the check it had until pgundo track runs on
	// them.
	NotReattached []NotReattached `json:"not_reattached,omitempty"`
	// PartitionsAttached is the number of partitions of tracked tables,
	// created while pgundo_ddl was missing, that got capture when it was
	// created (as pgundo track on their parent does).
	PartitionsAttached int64 `json:"partitions_attached"`
}

// NotReattached is a table whose capture triggers EnsureEventTriggers could
// not attach again.
type NotReattached struct {
	// Table is the table or partition, schema-qualified and quoted.
	Table string `json:"table"`
	// Reason is PostgreSQL's message.
	Reason string `json:"reason"`
}

// EventTriggerPrivilegeError is returned by EnsureEventTriggers when the
// role may not create event triggers; nothing was changed.
type EventTriggerPrivilegeError struct {
	// Missing names the event triggers that do not exist.
	Missing []string
	// Reason is PostgreSQL's message.
	Reason string
}

// eventTriggerCosts says what pgundo loses while each event trigger is
// missing.
var eventTriggerCosts = map[string]string{
	"pgundo_ddl":     "partitions created from now on are not captured until pgundo track runs again on their parent",
	"pgundo_drop":    "a dropped tracked table stays in the tracked list until pgundo untrack",
	"pgundo_reclass": "capture checks every output setting on every table (about 60% more CPU per captured statement)",
}

// EventTriggerCost says what pgundo loses while event trigger name (one of
// pgundo's: pgundo_ddl, pgundo_drop, pgundo_reclass) is missing; "" for
// any other name.
func EventTriggerCost(name string) string { return eventTriggerCosts[name] }

func (e *EventTriggerPrivilegeError) Error() string {
	var costs []string
	for _, et := range eventTriggers {
		if slices.Contains(e.Missing, et.name) {
			costs = append(costs, EventTriggerCost(et.name))
		}
	}
	return fmt.Sprintf("could not create event triggers %s (%s): %s; run pgundo install as a superuser to create them",
		strings.Join(e.Missing, ", "), e.Reason, strings.Join(costs, "; "))
}

// ReattachLockTimeout is how long EnsureEventTriggers waits for each tracked
// table's lock when it attaches capture again: a table busy for longer
// keeps the triggers it has and is listed in NotReattached.
const ReattachLockTimeout = "2s"

// EnsureEventTriggers creates those of pgundo's event triggers that do not
// exist: an install by a role that could not create them (install warns)
// gets them when pgundo install runs again as a role that can. When it
// creates pgundo_reclass it then attaches the capture triggers of every
// tracked table and partition again with the output settings their columns
// depend on (before, each checked all of them), each table in a
// transaction of its own that waits at most ReattachLockTimeout for the
// table's lock; when it creates pgundo_ddl it first attaches capture to the
// partitions of tracked tables created while it was missing, as pgundo
// track on their parent does. A role that may not create event triggers
// gets an *EventTriggerPrivilegeError and nothing is changed. Event triggers that
// exist but are disabled are left as they are (status reports them).
func EnsureEventTriggers(ctx context.Context, conn *pgx.Conn) (EventTriggerResult, error) {
	var res EventTriggerResult
	var missing []string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Two installs at once: the second waits, then finds them there.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgundo event triggers'))`); err != nil {
			return err
		}
		for _, et := range eventTriggers {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = $1)`, et.name).Scan(&exists); err != nil {
				return fmt.Errorf("read event triggers: %w", err)
			}
			if !exists {
				missing = append(missing, et.name)
			}
		}
		for _, et := range eventTriggers {
			if !slices.Contains(missing, et.name) {
				continue
			}
			for _, stmt := range et.sql {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
		}
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		return res, &EventTriggerPrivilegeError{Missing: missing, Reason: pgErr.Message}
	}
	if err != nil {
		return res, fmt.Errorf("create event triggers %s: %w", strings.Join(missing, ", "), err)
	}
	res.Created = missing
	if slices.Contains(missing, "pgundo_ddl") {
		if err := attachPartitions(ctx, conn, &res); err != nil {
			return res, err
		}
	}
	if !slices.Contains(missing, "pgundo_reclass") {
		return res, nil
	}
	return res, reattach(ctx, conn, &res)
}

// attachPartitions runs pgundo.track on each tracked partitioned table that
// has a partition without capture (created while pgundo_ddl was missing),
// each in a transaction of its own waiting at most ReattachLockTimeout for
// locks; one that fails for want of rights or a lock is listed in
// res.NotReattached (status goes on flagging its partitions).
func attachPartitions(ctx context.Context, conn *pgx.Conn, res *EventTriggerResult) error {
	rows, err := conn.Query(ctx, `
		SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = t.relid), count(*)
		  FROM pgundo.tracked t
		  JOIN pg_partition_tree(t.relid) p ON p.relid <> t.relid
		 WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid)
		   AND NOT EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = p.relid AND tg.tgname = 'pgundo_capture_insert')
		 GROUP BY t.relid ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("list partitions without capture: %w", err)
	}
	type parent struct {
		Table string
		N     int64
	}
	parents, err := pgx.CollectRows(rows, pgx.RowToStructByPos[parent])
	if err != nil {
		return fmt.Errorf("list partitions without capture: %w", err)
	}
	for _, p := range parents {
		var ignored any
		skipped, err := onTable(ctx, conn, `SELECT pgundo.track($1::regclass)::text`, p.Table, &ignored, res)
		switch {
		case err != nil:
			return fmt.Errorf("attach capture to the partitions of %s: %w", p.Table, err)
		case !skipped:
			res.PartitionsAttached += p.N
		}
	}
	return nil
}

// onTable runs query (one value, scanned into dest) on rel in a transaction
// of its own that waits at most ReattachLockTimeout for locks. When the role
// does not own rel or the lock is not granted in time, rel is listed in
// res.NotReattached with PostgreSQL's reason and skipped is true.
func onTable(ctx context.Context, conn *pgx.Conn, query, rel string, dest any, res *EventTriggerResult) (skipped bool, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, ReattachLockTimeout); err != nil {
			return err
		}
		return tx.QueryRow(ctx, query, rel).Scan(dest)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42501" || pgErr.Code == "55P03") { // insufficient_privilege, lock_not_available
		res.NotReattached = append(res.NotReattached, NotReattached{Table: rel, Reason: pgErr.Message})
		return true, nil
	}
	return false, err
}

// reattach gives the capture triggers of every tracked table and partition
// the arguments of its output class (pgundo._reclass), each table in its own
// transaction: one the role does not own, or that stays locked for longer
// than ReattachLockTimeout, is listed in res.NotReattached.
func reattach(ctx context.Context, conn *pgx.Conn, res *EventTriggerResult) error {
	rows, err := conn.Query(ctx, `
		SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = t.relid),
		       (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p.relid)
		  FROM pgundo.tracked t
		 CROSS JOIN LATERAL (SELECT pt.relid FROM pg_partition_tree(t.relid) pt UNION SELECT t.relid) p
		 WHERE EXISTS (SELECT FROM pg_class c WHERE c.oid = t.relid)
		   AND EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = p.relid AND tg.tgname = 'pgundo_capture_insert')
		 ORDER BY 1, p.relid <> t.relid, 2`)
	if err != nil {
		return fmt.Errorf("list tracked tables: %w", err)
	}
	type pair struct{ Table, Rel string }
	rels, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pair])
	if err != nil {
		return fmt.Errorf("list tracked tables: %w", err)
	}
	changedTables := map[string]bool{}
	for _, pr := range rels {
		var changed bool
		skipped, err := onTable(ctx, conn, `SELECT pgundo._reclass($1::regclass)`, pr.Rel, &changed, res)
		switch {
		case err != nil:
			return fmt.Errorf("attach capture on %s again: %w", pr.Rel, err)
		case !skipped && changed:
			changedTables[pr.Table] = true
		}
	}
	res.Reattached = int64(len(changedTables))
	return nil
}
