package history

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RequestError is a question the log cannot answer as asked: an untracked
// table, a key that names the wrong columns or holds a value of the wrong
// type, a row that never existed. The message names the object and says what
// to do instead. The CLI maps it to exit code 2.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

func requestErr(format string, args ...any) error {
	return &RequestError{Msg: fmt.Sprintf(format, args...)}
}

// pinnedSettings are the output settings capture writes row images with;
// reads that render rows as text (current rows, key values) use them too, so
// that their text equals the log's. JIT is off: these are short queries
// whose cost estimates over a big log would otherwise buy tens of
// milliseconds of compilation.
const pinnedSettings = `SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres'; SET LOCAL extra_float_digits = 3;
	SET LOCAL bytea_output = 'hex'; SET LOCAL lc_monetary = 'C'; SET LOCAL xmloption = 'content'; SET LOCAL timezone = 'UTC';
	SET LOCAL jit = off`

// Column is one column of a table.
type Column struct {
	Name string `json:"name"`
	// Type is the column's type as format_type prints it.
	Type string `json:"type"`
}

// Table is a table as the read side needs it: the root of a partitioned
// table, its columns now, its primary key, and whether it is tracked.
type Table struct {
	OID uint32 `json:"oid"`
	// Name is schema.table, each part quoted only where SQL needs it.
	Name    string   `json:"table"`
	Columns []Column `json:"-"`
	// Key are the primary-key columns, in key order; empty without one.
	Key []Column `json:"-"`
	// Partitions are the OIDs of the table and all of its partitions.
	Partitions []uint32 `json:"-"`
	Tracked    bool     `json:"-"`
	// TrackedAt is when tracking started (nil when untracked).
	TrackedAt *time.Time `json:"-"`
	ident     string
}

// relkindNames names the kinds of relation that are not tables.
var relkindNames = map[string]string{"v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence",
	"i": "index", "I": "index", "c": "composite type", "t": "TOAST table"}

// notATable is the RequestError for a relation that is not a table (pgundo
// tracks tables only). For a view or materialized view that reads exactly
// one table, and that table is tracked, it names that table.
func notATable(ctx context.Context, db DBTX, oid uint32, name, kind string) error {
	what := relkindNames[kind]
	if what == "" {
		what = "relation of kind " + kind
	}
	plural := what + "s"
	switch {
	case what == "index":
		plural = "indexes"
	case strings.HasPrefix(what, "relation"):
		plural = "they"
	}
	msg := fmt.Sprintf("%s is a %s: %s cannot be tracked, so pgundo has no log of its rows", name, what, plural)
	if kind != "v" && kind != "m" {
		return requestErr("%s", msg)
	}
	bases, err := db.Query(ctx, `
		SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
		       EXISTS (SELECT FROM pgundo.tracked tr WHERE tr.relid = coalesce(pg_partition_root(c.oid), c.oid))
		  FROM pg_rewrite rw
		  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid AND d.refclassid = 'pg_class'::regclass
		  JOIN pg_class c ON c.oid = d.refobjid AND c.oid <> rw.ev_class
		  JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE rw.ev_class = $1`, oid)
	if err != nil {
		return fmt.Errorf("read what %s reads: %w", name, err)
	}
	type base struct {
		name    string
		tracked bool
	}
	read, err := pgx.CollectRows(bases, func(r pgx.CollectableRow) (base, error) {
		var b base
		return b, r.Scan(&b.name, &b.tracked)
	})
	if err != nil {
		return fmt.Errorf("read what %s reads: %w", name, err)
	}
	if len(read) == 1 && read[0].tracked {
		msg += fmt.Sprintf("; its base table %s is tracked: use %s instead", read[0].name, read[0].name)
	}
	return requestErr("%s", msg)
}

// LoadTable reads what the read side needs about the table with oid (a
// partition stands for its partitioned root). A relation that is not a
// table (a view, a foreign table, ...) is a *RequestError that says so.
func LoadTable(ctx context.Context, db DBTX, oid uint32) (*Table, error) {
	t := &Table{}
	var schema, name, kind string
	err := db.QueryRow(ctx, `
		SELECT r.relkind::text, r.oid, quote_ident(n.nspname) || '.' || quote_ident(r.relname), n.nspname, r.relname,
		       (SELECT array_agg(p.relid::oid) FROM pg_partition_tree(r.oid) p),
		       EXISTS (SELECT FROM pgundo.tracked tr WHERE tr.relid = r.oid),
		       (SELECT tr.tracked_at FROM pgundo.tracked tr WHERE tr.relid = r.oid)
		  FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
		 WHERE r.oid = coalesce(pg_partition_root($1::oid), $1::oid)`, oid).
		Scan(&kind, &t.OID, &t.Name, &schema, &name, &t.Partitions, &t.Tracked, &t.TrackedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, requestErr("table with oid %d no longer exists", oid)
	}
	if err != nil {
		return nil, fmt.Errorf("read table %d: %w", oid, err)
	}
	if kind != "r" && kind != "p" {
		return nil, notATable(ctx, db, t.OID, t.Name, kind)
	}
	t.ident = pgx.Identifier{schema, name}.Sanitize()
	if len(t.Partitions) == 0 {
		t.Partitions = []uint32{t.OID}
	}
	rows, err := db.Query(ctx, `
		SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
		       (SELECT k.ord FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
		         WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.attnum = a.attnum)
		  FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.Name, err)
	}
	type keyCol struct {
		ord int64
		c   Column
	}
	var keys []keyCol
	for rows.Next() {
		var c Column
		var ord *int64
		if err := rows.Scan(&c.Name, &c.Type, &ord); err != nil {
			rows.Close()
			return nil, err
		}
		t.Columns = append(t.Columns, c)
		if ord != nil {
			keys = append(keys, keyCol{*ord, c})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.Name, err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ord < keys[j].ord })
	for _, k := range keys {
		t.Key = append(t.Key, k.c)
	}
	if len(t.Key) == 0 && len(t.Partitions) > 1 {
		// A partitioned table without a primary key of its own is keyed by
		// its partitions' primary keys when they all have the same one.
		rows, err := db.Query(ctx, `
			SELECT DISTINCT (SELECT array_agg(a.attname::text ORDER BY k.ord)
			                  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
			                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			                 WHERE i.indrelid = p.relid AND i.indisprimary)
			  FROM pg_partition_tree($1::oid) p WHERE p.isleaf`, t.OID)
		if err != nil {
			return nil, fmt.Errorf("read the primary keys of the partitions of %s: %w", t.Name, err)
		}
		keyCols, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
		if err != nil {
			return nil, fmt.Errorf("read the primary keys of the partitions of %s: %w", t.Name, err)
		}
		if len(keyCols) == 1 && keyCols[0] != nil {
			for _, name := range keyCols[0] {
				for _, c := range t.Columns {
					if c.Name == name {
						t.Key = append(t.Key, c)
					}
				}
			}
		}
	}
	return t, nil
}

func (t *Table) columnNames() []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.Name
	}
	return out
}

func (t *Table) keyNames() []string {
	out := make([]string, len(t.Key))
	for i, c := range t.Key {
		out[i] = c.Name
	}
	return out
}

// Key identifies one row of a table by primary-key value.
type Key struct {
	// Columns and Values pair each primary-key column with the value given,
	// in key order.
	Columns []string `json:"columns"`
	Values  []string `json:"values"`
	// Text is the key as the row-history index holds it: the column's text
	// form for a one-column key, ROW(k1, k2, ...)::text for more.
	Text string `json:"-"`
}

// String renders the key as col=value pairs.
func (k Key) String() string { return keyString(k.Columns, k.Values) }

func keyString(cols, vals []string) string {
	parts := make([]string, len(cols))
	for i := range cols {
		parts[i] = cols[i] + "=" + vals[i]
	}
	return strings.Join(parts, " ")
}

// ParseKey reads a key given on the command line: col=value pairs naming
// every primary-key column of t, or the value alone for a one-column key.
// Values are not checked here (see Table.canonicalKey).
func (t *Table) ParseKey(args []string) (Key, error) {
	if len(t.Key) == 0 {
		return Key{}, requestErr("table %s has no primary key; pgundo finds a row's history by primary key (add one, or use pgundo log --table %s)", t.Name, t.Name)
	}
	keyList := strings.Join(t.keyNames(), ", ")
	if len(args) == 0 {
		return Key{}, requestErr("give the key of a row of %s: %s", t.Name, keyList)
	}
	k := Key{Columns: t.keyNames(), Values: make([]string, len(t.Key))}
	if len(args) == 1 && !strings.Contains(args[0], "=") {
		if len(t.Key) != 1 {
			return Key{}, requestErr("the primary key of %s has %d columns (%s): give each as col=value", t.Name, len(t.Key), keyList)
		}
		k.Values[0] = args[0]
		return k, nil
	}
	seen := map[string]bool{}
	for _, a := range args {
		col, val, ok := strings.Cut(a, "=")
		if !ok {
			return Key{}, requestErr("%q: give key columns as col=value (the primary key of %s is %s)", a, t.Name, keyList)
		}
		col = strings.TrimSpace(col)
		if u, err := unquoteIdent(col); err == nil {
			col = u
		}
		idx := -1
		for i, c := range t.Key {
			if c.Name == col {
				idx = i
			}
		}
		if idx < 0 {
			known := false
			for _, c := range t.Columns {
				known = known || c.Name == col
			}
			if known {
				return Key{}, requestErr("column %s is not part of the primary key of %s (%s); pgundo finds a row by its primary key", col, t.Name, keyList)
			}
			return Key{}, requestErr("table %s has no column %s; its primary key is %s", t.Name, col, keyList)
		}
		if seen[col] {
			return Key{}, requestErr("key column %s given twice", col)
		}
		seen[col] = true
		k.Values[idx] = val
	}
	if len(seen) != len(t.Key) {
		var missing []string
		for _, c := range t.Key {
			if !seen[c.Name] {
				missing = append(missing, c.Name)
			}
		}
		return Key{}, requestErr("the key of %s is incomplete: give %s too", t.Name, strings.Join(missing, ", "))
	}
	return k, nil
}

// unquoteIdent strips SQL double quotes from a column name ("My Col").
func unquoteIdent(s string) (string, error) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`), nil
	}
	return s, errors.New("not quoted")
}

// canonicalKey casts the key's values to the key columns' types and renders
// them as the index holds them (under the pinned output settings, which tx
// must have set). A value that does not read as its column's type is a
// RequestError.
func (t *Table) canonicalKey(ctx context.Context, tx pgx.Tx, k *Key) error {
	parts := make([]string, len(t.Key))
	args := make([]any, len(t.Key))
	for i, c := range t.Key {
		parts[i] = fmt.Sprintf("$%d::%s", i+1, c.Type)
		args[i] = k.Values[i]
	}
	q := "SELECT (" + parts[0] + ")::text"
	if len(parts) > 1 {
		q = "SELECT ROW(" + strings.Join(parts, ", ") + ")::text"
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	err = sp.QueryRow(ctx, q, args...).Scan(&k.Text)
	var pgErr *pgconn.PgError
	// Class 22 (data exception) or a datatype mismatch: not a value of the
	// key column's type.
	if errors.As(err, &pgErr) && (pgErr.Code[:2] == "22" || pgErr.Code == pgerrcode.DatatypeMismatch) {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return rbErr
		}
		return requestErr("key %s of %s: %s (the key columns are %s)", k, t.Name, pgErr.Message, describeColumns(t.Key))
	}
	if err != nil {
		return fmt.Errorf("read key %s of %s: %w", k, t.Name, err)
	}
	// Normalise the values shown to the canonical text.
	if len(t.Key) == 1 {
		k.Values[0] = k.Text
	} else if f, err := ParseImage(k.Text); err == nil && len(f) == len(k.Values) {
		for i, v := range f {
			if v != nil {
				k.Values[i] = *v
			}
		}
	}
	return sp.Commit(ctx)
}

func describeColumns(cs []Column) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Name + " " + c.Type
	}
	return strings.Join(parts, ", ")
}

// keyFromText renders an index key text as col=value pairs.
func (t *Table) keyFromText(text string) string {
	if len(t.Key) == 1 {
		return keyString(t.keyNames(), []string{text})
	}
	f, err := ParseImage(text)
	if err != nil || len(f) != len(t.Key) {
		return text
	}
	vals := make([]string, len(f))
	for i, v := range f {
		vals[i] = deref(v)
	}
	return keyString(t.keyNames(), vals)
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// currentRow returns the row with key k now, as its text image (nil when
// there is none). tx must have the pinned output settings.
func (t *Table) currentRow(ctx context.Context, tx pgx.Tx, k Key) (*string, error) {
	conds := make([]string, len(t.Key))
	args := make([]any, len(t.Key))
	for i, c := range t.Key {
		conds[i] = fmt.Sprintf("t.%s = $%d::%s", pgx.Identifier{c.Name}.Sanitize(), i+1, c.Type)
		args[i] = k.Values[i]
	}
	var img *string
	err := tx.QueryRow(ctx, "SELECT ROW(t.*)::text FROM "+t.ident+" t WHERE "+strings.Join(conds, " AND "), args...).Scan(&img)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s now: %w", t.Name, k, err)
	}
	return img, nil
}
