package undo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// outputSettings are the settings capture pins when it writes row images;
// the undo pins the same ones so that images compare and parse exactly.
var outputSettings = [][2]string{
	{"datestyle", "ISO, YMD"},
	{"intervalstyle", "postgres"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"xmloption", "content"},
	{"timezone", "UTC"},
	// Capture runs with this search_path, so regclass, regtype and the like
	// print schema-qualified; the undo must print them alike to compare.
	{"search_path", "pg_catalog, pg_temp"},
}

// txSettings are the settings the undo's transaction pins (set_config,
// local to it): standard_conforming_strings on, under which the literals
// generated SQL holds (see quoteLiteral) read as written whatever the
// server's, database's or role's setting; outputSettings; work_mem; jit
// off; and plan_cache_mode = force_custom_plan, so that every statement is
// planned with its parameters' values, as if they were written into it
// (see changeRows).
func txSettings(opts Options) [][2]string {
	return append(append([][2]string{{"standard_conforming_strings", "on"}}, outputSettings...),
		[2]string{"work_mem", opts.WorkMem}, [2]string{"jit", "off"}, [2]string{"plan_cache_mode", "force_custom_plan"})
}

// MakePlan makes the undo's plan without changing anything: the dry run.
// It runs the undo exactly as Apply would, every write and every check
// (conflicts, triggers, privileges, schema, foreign keys, the result, the
// record of the undo, deferred constraints), in a transaction that it rolls
// back instead of committing. It refuses when and as Apply would, and takes
// the same locks while it runs. The plan it returns has Applied false,
// UndoSession "" and RowsChanged 0. Sequences the undo's own log draws from
// are not rewound (nextval is not transactional); nothing else is left.
func MakePlan(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options) (*Plan, error) {
	return run(ctx, conn, sel, opts, false, nil)
}

// Apply undoes the selected sessions in one transaction and commits. On a
// conflict in Refuse mode it returns a *ConflictError and changes nothing.
// approved, when not nil, is the plan the user confirmed: if the plan made
// under lock differs from it, Apply refuses with ErrPlanChanged.
func Apply(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, approved *Plan) (*Plan, error) {
	return run(ctx, conn, sel, opts, true, approved)
}

type runner struct {
	tx   pgx.Tx
	opts Options
	// apply is set when the undo writes (Apply and MakePlan), not when a
	// script is written; commit when it commits (Apply).
	apply, commit bool
	plan          *Plan
	maxStmt       int64
	minStmt       int64
	// written holds the progress lines about rows written: they are given
	// only once the undo committed, so no line says rows were written
	// before a refusal, or in a dry run.
	written []string
	// leftBy are the earlier undos whose left rows (pgundo.undo_left) this
	// undo takes up; see leaveOutUndone.
	leftBy []string
	// planned are the tables planned row by row (not by the fast path).
	planned []*table
}

// step reports a table's progress through Options.Step.
func (r *runner) step(table string, planned, done int64) {
	if r.opts.Step != nil {
		r.opts.Step(TableProgress{Table: table, Planned: planned, Done: done})
	}
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		r.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// begin is the setup Apply, MakePlan and WriteScript share: it opens the
// undo's transaction on conn, pins its settings and selects the statements
// to undo. The caller must roll the runner's transaction back (a no-op
// after commit); on error begin has.
func begin(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, apply, commit bool) (_ *runner, err error) {
	if sel.Empty() {
		return nil, errors.New("nothing selected: give a session id, --tx, --tag, or --app/--user")
	}
	if opts.OnConflict == "" {
		opts.OnConflict = Refuse
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin undo transaction: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback(context.Background()) //nolint:errcheck // the error says what failed
		}
	}()
	r := &runner{tx: tx, opts: opts, apply: apply, commit: commit, plan: &Plan{Tables: []TablePlan{}, Conflicts: []Conflict{}, Kept: []KeptColumn{}}}
	if opts.WorkMem == "" {
		opts.WorkMem = DefaultWorkMem
	}
	// jit off: the undo's statements are big but simple, and their row
	// estimates for temp tables can make JIT compile for seconds.
	for _, s := range txSettings(opts) {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", s[0], s[1]); err != nil {
			return nil, fmt.Errorf("pin %s: %w", s[0], err)
		}
	}
	if err := r.selectStatements(ctx, sel); err != nil {
		return nil, err
	}
	return r, nil
}

// planAll builds the net changes of the selection and plans every table row
// by row, with the checks in the order Apply runs them (so that a script
// and a dry run refuse first what Apply would). On a conflict in Refuse
// mode it returns the plan with a *ConflictError.
func (r *runner) planAll(ctx context.Context) ([]*table, error) {
	if err := r.buildNet(ctx); err != nil {
		return nil, err
	}
	tables, err := r.loadTables(ctx, netTables)
	if err != nil {
		return nil, err
	}
	// Checked in a dry run and a script too, so the plan shown is the one
	// that can run.
	if err := r.keepTriggersQuiet(ctx, tables); err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := r.planTable(ctx, t); err != nil {
			return nil, err
		}
	}
	r.planned = tables
	sort.Slice(r.plan.Tables, func(i, j int) bool { return r.plan.Tables[i].Table < r.plan.Tables[j].Table })
	if len(r.plan.Conflicts) > 0 && r.opts.OnConflict == Refuse {
		r.explainConflicts(ctx, tables)
		return nil, &ConflictError{Plan: r.plan}
	}
	return tables, nil
}

// refused is what an undo that stops with err returns: with a
// *ConflictError, the plan (it names the conflicts); else no plan.
func (r *runner) refused(err error) (*Plan, error) {
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return r.plan, err
	}
	return nil, err
}

func run(ctx context.Context, conn *pgx.Conn, sel Selection, opts Options, commit bool, approved *Plan) (*Plan, error) {
	r, err := begin(ctx, conn, sel, opts, true, commit)
	if err != nil {
		return nil, err
	}
	defer r.tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if !r.opts.AlwaysPlan && len(r.leftBy) == 0 {
		_, done, err := r.tryFast(ctx, approved)
		if err != nil {
			return nil, err
		}
		if done {
			return r.record(ctx)
		}
	}
	tables, err := r.planAll(ctx)
	if err != nil {
		return r.refused(err)
	}
	if approved != nil && !samePlan(approved, r.plan) {
		return nil, &RefusedError{Kind: ErrPlanChanged, Detail: "the data changed between the plan you confirmed and the apply (other sessions wrote to these rows); nothing was changed; run the undo again to see the new plan"}
	}
	if err := r.writeAndCheck(ctx, tables); err != nil {
		return nil, err
	}
	return r.record(ctx)
}

// writeAndCheck writes the planned tables' rows, checks that each is back
// as it was, and checks the foreign keys: the planned path's work between
// the plan and the record, for Apply, the dry run, and a script's trial.
func (r *runner) writeAndCheck(ctx context.Context, tables []*table) error {
	for _, t := range tables {
		if err := r.applyTable(ctx, t); err != nil {
			return err
		}
	}
	for _, t := range tables {
		if err := r.verifyTable(ctx, t); err != nil {
			return err
		}
	}
	return r.checkForeignKeys(ctx, tables)
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no %s in the log; pgundo sessions lists what was recorded", e.What)
}

// table is what the undo needs to know about one root table.
type table struct {
	oid       uint32
	name      string // quote_ident-qualified, for messages
	ident     string // sanitized for SQL
	schema    string // schema and table name as in the catalog
	rel       string
	columns   []column // in attnum order
	key       []string // primary-key column names; empty: match whole rows
	keyShown  []string // the same, quoted only where SQL needs it (for messages)
	partition []uint32 // the partitions and itself (for trigger checks, log look-ups)
	cur       string   // alias for the live table in generated SQL: no column has this name (see liveAlias)
	fast      bool     // undone by the fast path: no plan table pgundo_c_OID
	selIDs    []int64  // fast path: the selected statements on t, if few (see changeRows)
}

type column struct {
	name      string
	typ       string
	generated bool
	// identityAlways marks a GENERATED ALWAYS AS IDENTITY column: INSERT
	// can set it (OVERRIDING SYSTEM VALUE), UPDATE cannot.
	identityAlways bool
}

// liveAlias picks the alias under which generated SQL refers to the live
// table: "cur", unless the table has a column of that name, in which case an
// unqualified "cur" would mean the column instead of the whole row (then
// cur_1, cur_2, ...). Every builder writes the alias it is given (t.cur);
// no generated SQL is rewritten afterwards.
func liveAlias(cols []column) string {
	taken := map[string]bool{}
	for _, c := range cols {
		taken[c.name] = true
	}
	alias := "cur"
	for i := 1; taken[alias]; i++ {
		alias = fmt.Sprintf("cur_%d", i)
	}
	return alias
}

func (t *table) writable() []column {
	var out []column
	for _, c := range t.columns {
		if !c.generated {
			out = append(out, c)
		}
	}
	return out
}

// Where loadTables finds the affected root tables: those with changes left
// after netting (the planned undo), or every table the selected statements
// wrote (the fast path, which does not net).
const (
	netTables      = `SELECT DISTINCT relid FROM pgundo_net`
	selectedTables = `SELECT DISTINCT root AS relid FROM pgundo_sel`
)

// loadTables reads each affected table's columns and key, and refuses when a
// table is gone or its columns changed since the changes were captured.
// from is netTables or selectedTables.
func (r *runner) loadTables(ctx context.Context, from string) ([]*table, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT n.relid, c.oid IS NOT NULL,
		       coalesce(quote_ident(ns.nspname) || '.' || quote_ident(c.relname), ''), coalesce(ns.nspname, ''), coalesce(c.relname, '')
		  FROM (`+from+`) n
		  LEFT JOIN pg_class c ON c.oid = n.relid
		  LEFT JOIN pg_namespace ns ON ns.oid = c.relnamespace
		 ORDER BY 3`)
	if err != nil {
		return nil, fmt.Errorf("read affected tables: %w", err)
	}
	type head struct {
		oid            uint32
		exists         bool
		name, sch, rel string
	}
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (head, error) {
		var h head
		return h, row.Scan(&h.oid, &h.exists, &h.name, &h.sch, &h.rel)
	})
	if err != nil {
		return nil, fmt.Errorf("read affected tables: %w", err)
	}
	var out []*table
	for _, h := range heads {
		if !h.exists {
			var sch, rel string
			_ = r.tx.QueryRow(ctx, `SELECT schema_name, table_name FROM pgundo_sel WHERE relid = $1 LIMIT 1`, h.oid).Scan(&sch, &rel)
			return nil, &RefusedError{Kind: ErrSchemaChanged, Detail: fmt.Sprintf("table %s (oid %d) was dropped since its changes were captured; nothing was changed", pgx.Identifier{sch, rel}.Sanitize(), h.oid)}
		}
		t := &table{oid: h.oid, name: h.name, schema: h.sch, rel: h.rel, ident: pgx.Identifier{h.sch, h.rel}.Sanitize()}
		// Track refuses inheritance trees, but a table can inherit from a
		// tracked one later: the undo's statements on the parent would
		// then read and write the child's rows too.
		var child string
		err := r.tx.QueryRow(ctx, `SELECT coalesce(min(i.inhrelid::regclass::text), '') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = $1 AND NOT c.relispartition`, h.oid).Scan(&child)
		if err != nil {
			return nil, fmt.Errorf("read affected tables: %w", err)
		}
		if child != "" {
			return nil, &RefusedError{Kind: ErrSchemaChanged, Detail: fmt.Sprintf(
				"table %s has an inheritance child since its changes were captured (%s, INHERITS): the undo's statements on %s would change the child's rows too; nothing was changed (detach it with ALTER TABLE %s NO INHERIT %s, undo, then attach it again)",
				t.name, child, t.name, child, t.name)}
		}
		crow, err := r.tx.Query(ctx, `
			SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.attidentity = 'a'
			  FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, h.oid)
		if err != nil {
			return nil, err
		}
		t.columns, err = pgx.CollectRows(crow, func(row pgx.CollectableRow) (column, error) {
			var c column
			return c, row.Scan(&c.name, &c.typ, &c.generated, &c.identityAlways)
		})
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", t.name, err)
		}
		t.cur = liveAlias(t.columns)
		err = r.tx.QueryRow(ctx, `
			SELECT coalesce(array_agg(a.attname ORDER BY k.ord), '{}'), coalesce(array_agg(quote_ident(a.attname) ORDER BY k.ord), '{}')
			  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
			  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			 WHERE i.indrelid = $1 AND i.indisprimary`, h.oid).Scan(&t.key, &t.keyShown)
		if err != nil {
			return nil, fmt.Errorf("read primary key of %s: %w", t.name, err)
		}
		err = r.tx.QueryRow(ctx, `SELECT coalesce(array_agg(relid::oid), ARRAY[$1::oid]) FROM pg_partition_tree($1)`, h.oid).Scan(&t.partition)
		if err != nil {
			return nil, fmt.Errorf("read partitions of %s: %w", t.name, err)
		}
		if err := r.checkShapes(ctx, t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// checkShapes compares the columns every selected statement was captured
// with (recorded in pgundo.shape) with the root table's columns now.
func (r *runner) checkShapes(ctx context.Context, t *table) error {
	rows, err := r.tx.Query(ctx, `
		SELECT DISTINCT s.schema_name, s.table_name, sh.columns, sh.types
		  FROM pgundo_sel s
		  JOIN LATERAL (SELECT columns, types FROM pgundo.shape sh
		                 WHERE sh.relid = s.relid AND sh.since_stmt < s.id
		                 ORDER BY sh.since_stmt DESC LIMIT 1) sh ON true
		 WHERE s.root = $1`, t.oid)
	if err != nil {
		return fmt.Errorf("read captured columns of %s: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var sch, rel string
		var cols, typs []string
		if err := rows.Scan(&sch, &rel, &cols, &typs); err != nil {
			return err
		}
		if msg := shapeDiff(cols, typs, t.columns); msg != "" {
			return &RefusedError{Kind: ErrSchemaChanged, Detail: fmt.Sprintf(
				"table %s cannot be put back as captured: %s since the changes were captured (in %s); nothing was changed; put the column back as it was to undo these changes",
				t.name, msg, pgx.Identifier{sch, rel}.Sanitize())}
		}
	}
	return rows.Err()
}

// shapeDiff describes how the captured columns differ from now, or "".
func shapeDiff(cols, typs []string, now []column) string {
	nowType := map[string]string{}
	for _, c := range now {
		nowType[c.name] = c.typ
	}
	var msgs []string
	then := map[string]bool{}
	for i, c := range cols {
		then[c] = true
		nt, ok := nowType[c]
		switch {
		case !ok:
			msgs = append(msgs, fmt.Sprintf("column %s was dropped", pgx.Identifier{c}.Sanitize()))
		case nt != typs[i]:
			msgs = append(msgs, fmt.Sprintf("column %s changed type from %s to %s", pgx.Identifier{c}.Sanitize(), typs[i], nt))
		}
	}
	for _, c := range now {
		if !then[c.name] {
			msgs = append(msgs, fmt.Sprintf("column %s was added", pgx.Identifier{c.name}.Sanitize()))
		}
	}
	if len(msgs) == 0 && len(cols) == len(now) {
		for i, c := range now {
			if cols[i] != c.name {
				msgs = append(msgs, "columns were reordered (a partition attached with another column order)")
				break
			}
		}
	}
	return strings.Join(msgs, ", ")
}

// keepTriggersQuiet sets session_replication_role = replica for the
// transaction, so application triggers and FK actions do not fire while
// values are put back; pgundo's own capture (ENABLE ALWAYS) still records
// the undo. Where the role may not set it, the undo goes ahead only if no
// affected table has any other trigger.
func (r *runner) keepTriggersQuiet(ctx context.Context, tables []*table) error {
	sp, err := r.tx.Begin(ctx) // a savepoint: a refused SET must not abort the undo
	if err != nil {
		return err
	}
	var oids []uint32
	for _, t := range tables {
		oids = append(oids, t.partition...)
	}
	_, err = sp.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if err == nil {
		if err = sp.Commit(ctx); err != nil {
			return err
		}
		// Triggers set to fire ALWAYS or on REPLICA still fire: they would
		// rewrite restored values or write to other tables.
		var always []string
		if err := r.tx.QueryRow(ctx, `
			SELECT coalesce(array_agg(DISTINCT tgrelid::regclass::text || ' (' || quote_ident(tgname) || ', ENABLE ' ||
			                CASE tgenabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END || ')'), '{}')
			  FROM pg_trigger WHERE tgrelid = ANY ($1) AND tgname NOT LIKE 'pgundo\_capture\_%' AND NOT tgisinternal
			   AND tgenabled IN ('A', 'R')`, oids).Scan(&always); err != nil {
			return fmt.Errorf("check triggers: %w", err)
		}
		if len(always) > 0 {
			return &RefusedError{Kind: ErrAlwaysTriggers, Detail: fmt.Sprintf(
				"undo refused: these application triggers fire even while the undo keeps triggers quiet, and would rewrite restored values or write elsewhere: %s; nothing was changed; set them to ENABLE (ALTER TABLE ... ENABLE TRIGGER name) for the undo, or disable them, then run the undo again",
				strings.Join(always, ", "))}
		}
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.InsufficientPrivilege {
		return fmt.Errorf("set session_replication_role: %w", err)
	}
	if err := sp.Rollback(ctx); err != nil {
		return err
	}
	var others []string
	err = r.tx.QueryRow(ctx, `
		SELECT coalesce(array_agg(DISTINCT tgrelid::regclass::text || ' (' || tgname || ')'), '{}')
		  FROM pg_trigger WHERE tgrelid = ANY ($1) AND tgname NOT LIKE 'pgundo\_capture\_%' AND tgenabled <> 'D'`, oids).Scan(&others)
	if err != nil {
		return err
	}
	if len(others) == 0 {
		return nil
	}
	var role string
	var ver int
	_ = r.tx.QueryRow(ctx, `SELECT current_user, current_setting('server_version_num')::int`).Scan(&role, &ver)
	grant := "run the undo as a superuser (or rds_superuser / cloudsqlsuperuser)"
	if ver >= 150000 {
		grant += fmt.Sprintf(", or have one run: GRANT SET ON PARAMETER session_replication_role TO %s", pgx.Identifier{role}.Sanitize())
	}
	return &RefusedError{Kind: ErrReplicaRole, Detail: fmt.Sprintf(
		"undo must keep application triggers and FK actions from rewriting restored values, and role %s may not SET session_replication_role (triggers on %s); nothing was changed; %s",
		role, strings.Join(others, ", "), grant)}
}

func samePlan(a, b *Plan) bool {
	if len(a.Tables) != len(b.Tables) || len(a.Conflicts) != len(b.Conflicts) {
		return false
	}
	for i := range a.Tables {
		x, y := a.Tables[i], b.Tables[i]
		if x.Table != y.Table || x.Restore != y.Restore || x.Reinsert != y.Reinsert || x.Delete != y.Delete || x.Skipped != y.Skipped || x.Merged != y.Merged {
			return false
		}
	}
	return true
}
