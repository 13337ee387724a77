package history

import (
	"cmp"
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ShowOptions narrows what ShowWith lists. The zero value lists every row
// change of the session, as Show does with no limit.
type ShowOptions struct {
	// Table, when set, keeps only the changes of this table and its
	// partitions (see LoadTable); counts and rows alike.
	Table *Table
	// Key, with Table, keeps only the changes of the row with this primary
	// key before or after the change (see Table.ParseKey). A table without
	// a primary key has no key to filter on.
	Key *Key
	// Limit lists at most this many row changes; 0 (the default) lists all.
	Limit int
	// Offset skips this many row changes (in statement order) before the
	// first one listed, for pages; 0, the default, skips none. More is then
	// the number of row changes after those listed.
	Offset int
}

// ShowWith is Show narrowed to a table, or to one row of it. An unknown
// session is ErrNoSuchSession; a key that does not read as the key columns'
// types, or a key without a table, is a *RequestError.
func ShowWith(ctx context.Context, db Conn, id string, o ShowOptions) (*SessionDetail, error) {
	if o.Key != nil && o.Table == nil {
		return nil, requestErr("a key needs its table")
	}
	if o.Offset < 0 {
		return nil, requestErr("offset %d: an offset is 0 or more", o.Offset)
	}
	s, err := GetSession(ctx, db, id)
	if err != nil {
		return nil, err
	}
	where, args := "st.session_id = $1", []any{id}
	rowWhere, keyRows := "", ""
	if o.Table != nil {
		where += " AND st.relid = ANY($2::oid[])"
		args = append(args, o.Table.Partitions)
	}
	if o.Key != nil {
		if len(o.Table.Key) == 0 {
			return nil, requestErr("%s has no primary key: show a row of it with pgundo log --table %s", o.Table.Name, o.Table.Name)
		}
		k := *o.Key
		k.Values = slices.Clone(k.Values)
		// The row-history index names the statements that changed the
		// row, up to its watermark; above it the rows are compared below.
		if err := refreshIfAllowed(ctx, db); err != nil {
			return nil, err
		}
		var indexed int64
		err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, pinnedSettings); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, "SELECT done_below FROM pgundo.hist_state").Scan(&indexed); err != nil {
				return fmt.Errorf("read the row-history index state: %w", err)
			}
			return o.Table.canonicalKey(ctx, tx, &k)
		})
		if err != nil {
			return nil, err
		}
		// Its rows, by their location in the log, and the rows of the
		// statements above the watermark not indexed yet (which the
		// condition below narrows to the row): a statement that changed a
		// million rows, this one among them, is not read whole.
		// The statements are picked by id first: ordered by id, a join
		// would walk the whole log's id index.
		keyRows = `(SELECT c.stmt_id, c.old, c.new
		              FROM pgundo.hist_key h
		              JOIN pgundo.change_log c ON c.ctid = h.loc AND c.tableoid = h.part AND c.stmt_id = h.stmt_id
		             WHERE h.relid = coalesce(pg_partition_root($5::oid), $5::oid) AND h.key = $6
		            UNION ALL
		            SELECT c.stmt_id, c.old, c.new FROM pgundo.change c
		             WHERE c.stmt_id = ANY (ARRAY(SELECT st.id FROM pgundo.stmt st WHERE st.id > $7 AND st.session_id = $1
		                                           AND NOT EXISTS (SELECT FROM pgundo.hist_stmt hs WHERE hs.stmt_id = st.id))))`
		where += ` AND (st.id = ANY (ARRAY(SELECT h.stmt_id FROM pgundo.hist_key h WHERE h.relid = coalesce(pg_partition_root($5::oid), $5::oid) AND h.key = $6))
		                OR st.id > $7)`
		// The row's key before the change (the old image's key columns) or
		// after it (the new image's) is the key asked for. A diff lists the
		// key columns of an update even when unchanged, and every column of
		// an insert or delete.
		rowWhere = `EXISTS (SELECT FROM (SELECT count(*) AS n,
		                    bool_and(e->>1 IS NOT DISTINCT FROM k.val) AS before,
		                    bool_and(e->>2 IS NOT DISTINCT FROM k.val) AS after
		               FROM json_array_elements(d.diff) e
		               JOIN unnest($3::text[], $4::text[]) k (col, val) ON e->>0 = k.col) m
		      WHERE m.n = cardinality($3::text[]) AND (m.before OR m.after))`
		args = append(args, k.Columns, k.Values, o.Table.OID, k.Text, indexed)
	}
	d := &SessionDetail{Session: s}
	d.Tables, d.Changes, d.More, err = readChangesWhere(ctx, db, where, rowWhere, keyRows, args, o.Limit, o.Offset)
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	d.Truncated = d.More > 0
	return d, nil
}

// sortByKey puts the row changes of each statement in primary-key order
// (the statements stay in log order): integers and decimals compare as
// numbers, anything else as text (byte order); NULL first. Rows of a table
// without a primary key, or whose images no longer read (no column diff),
// keep log order.
func sortByKey(ctx context.Context, db DBTX, changes []Change) error {
	keys := newKeyer(db)
	for start := 0; start < len(changes); {
		end := start + 1
		for end < len(changes) && changes[end].StmtID == changes[start].StmtID {
			end++
		}
		if end-start > 1 {
			cols, err := keys.keyColumns(ctx, changes[start].relid)
			if err != nil {
				return err
			}
			if len(cols) > 0 {
				slices.SortStableFunc(changes[start:end], func(a, b Change) int {
					for _, col := range cols {
						if c := compareValues(keyValue(a, col), keyValue(b, col)); c != 0 {
							return c
						}
					}
					return 0
				})
			}
		}
		start = end
	}
	return nil
}

// keyValue is column col of a change's row: after the change, or before it
// for a delete or truncate; nil when the diff does not list it.
func keyValue(c Change, col string) *string {
	for _, cc := range c.Columns {
		if cc.Column != col {
			continue
		}
		if c.Op == "DELETE" || c.Op == "TRUNCATE" || cc.New == nil {
			return cc.Old
		}
		return cc.New
	}
	return nil
}

// compareValues orders two column values as PostgreSQL prints them:
// NULL first, numbers by value, anything else as text.
func compareValues(a, b *string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	x, okx := new(big.Rat).SetString(strings.TrimSpace(*a))
	y, oky := new(big.Rat).SetString(strings.TrimSpace(*b))
	if okx && oky {
		return x.Cmp(y)
	}
	return cmp.Compare(*a, *b)
}
