package undo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Step 2, the affected tables: each root table's columns, key and
// partitions from the catalog (loadTables), refused when it is gone or its
// columns changed since capture (checkShapes), and application triggers kept
// quiet for the undo's writes (keepTriggersQuiet). Both paths run it.

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

func (t *table) keyed() bool { return len(t.key) > 0 }

func (t *table) isKey(name string) bool {
	for _, k := range t.key {
		if k == name {
			return true
		}
	}
	return false
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
