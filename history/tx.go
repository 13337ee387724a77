package history

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TxDetail is what one transaction changed in tracked tables: counts per
// table and operation, then row-level diffs, as Show gives them for a
// session.
type TxDetail struct {
	// Session is the id of the session (connection) that ran the transaction.
	Session string `json:"session"`
	// XID is the transaction id (xid8), or "" when the transaction has not
	// written anything yet (no id was assigned).
	XID     string       `json:"xid"`
	Tables  []TableCount `json:"tables"`
	Changes []Change     `json:"changes"`
	// More is the number of row changes not listed because of the limit;
	// Truncated is More > 0.
	More      int64 `json:"more"`
	Truncated bool  `json:"truncated"`
}

// CurrentTx returns what the calling transaction has changed in tracked
// tables so far, cascades and trigger side effects included: the capture
// triggers write the log in the same transaction, so it can be read back
// before a rollback (pgundo try). db must be the transaction (or the
// connection it runs on). It lists up to limit row changes (0: all) in the
// order they were logged. It reads only: it assigns no transaction id and
// registers no session.
func CurrentTx(ctx context.Context, db DBTX, limit int) (*TxDetail, error) {
	d := &TxDetail{Tables: []TableCount{}, Changes: []Change{}}
	var xid *string
	err := db.QueryRow(ctx, `
		SELECT to_hex(floor(extract(epoch FROM a.backend_start))::bigint) || '.' || to_hex(a.pid),
		       pg_current_xact_id_if_assigned()::text
		  FROM pg_stat_get_activity(pg_backend_pid()) a`).Scan(&d.Session, &xid)
	if err != nil {
		return nil, fmt.Errorf("read the current transaction's changes: %w", err)
	}
	if xid == nil {
		return d, nil // nothing was written, so nothing was captured
	}
	d.XID = *xid
	d.Tables, d.Changes, d.More, err = readChanges(ctx, db, "st.session_id = $1 AND st.xid = $2::xid8", []any{d.Session, d.XID}, limit)
	if err != nil {
		return nil, fmt.Errorf("read the changes of transaction %s: %w", d.XID, err)
	}
	d.Truncated = d.More > 0
	return d, nil
}

// readChanges reads per-table counts and up to limit (0: all) row diffs of
// the pgundo.stmt rows (alias st) that match where, a constant SQL
// condition over st with its values in args (never user text).
func readChanges(ctx context.Context, db DBTX, where string, args []any, limit int) ([]TableCount, []Change, int64, error) {
	return readChangesWhere(ctx, db, where, "", "", args, limit, 0)
}

// readChangesWhere is readChanges with rowWhere, a condition on each change
// row (alias c) and its diff (d.diff, json), that narrows both the counts
// and the rows listed; "" for none. It skips the first offset row changes
// (in statement order, then as read). Rows within a statement are listed in
// primary-key order, among the rows listed. The number returned last is the
// number of matching row changes after those listed. rows is the relation
// the change rows (stmt_id, old, new) are read from with rowWhere; ""
// means pgundo.change.
func readChangesWhere(ctx context.Context, db DBTX, where, rowWhere, rows string, args []any, limit, offset int) ([]TableCount, []Change, int64, error) {
	if rows == "" {
		rows = "pgundo.change"
	}
	limitClause := ""
	if limit > 0 {
		limitClause = " LIMIT " + fmt.Sprint(limit)
	}
	if offset > 0 {
		limitClause += " OFFSET " + fmt.Sprint(offset)
	}
	const diff = ` CROSS JOIN LATERAL (SELECT pgundo._diff(st.relid, c.old, c.new, st.op <> 'U') AS diff) d`
	countQuery := `
		SELECT quote_ident(st.schema_name) || '.' || quote_ident(st.table_name),
		       coalesce(sum(st.rows) FILTER (WHERE st.op = 'I'), 0)::bigint, coalesce(sum(st.rows) FILTER (WHERE st.op = 'U'), 0)::bigint,
		       coalesce(sum(st.rows) FILTER (WHERE st.op = 'D'), 0)::bigint, coalesce(sum(st.rows) FILTER (WHERE st.op = 'T'), 0)::bigint
		  FROM pgundo.stmt st WHERE ` + where + ` GROUP BY 1 ORDER BY 1`
	if rowWhere != "" {
		countQuery = `
		SELECT quote_ident(st.schema_name) || '.' || quote_ident(st.table_name),
		       count(*) FILTER (WHERE st.op = 'I'), count(*) FILTER (WHERE st.op = 'U'),
		       count(*) FILTER (WHERE st.op = 'D'), count(*) FILTER (WHERE st.op = 'T')
		  FROM pgundo.stmt st JOIN ` + rows + ` c ON c.stmt_id = st.id` + diff + `
		 WHERE ` + where + ` AND ` + rowWhere + ` GROUP BY 1 ORDER BY 1`
		where += " AND " + rowWhere
	}
	counted, err := db.Query(ctx, countQuery, args...)
	if err != nil {
		return nil, nil, 0, err
	}
	tables, err := pgx.CollectRows(counted, func(r pgx.CollectableRow) (TableCount, error) {
		var c TableCount
		return c, r.Scan(&c.Table, &c.Inserts, &c.Updates, &c.Deletes, &c.Truncates)
	})
	if err != nil {
		return nil, nil, 0, err
	}
	// Row diffs: each image is read back as its table's row type, then as
	// JSON key/value pairs; a table whose columns changed since is shown with
	// raw images only.
	var changes []Change
	if rowWhere == "" {
		changes, err = readChangePage(ctx, db, where, args, limit, offset)
	} else {
		changes, err = readChangeRows(ctx, db, where, rows, args, limitClause)
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if err := sortByKey(ctx, db, changes); err != nil {
		return nil, nil, 0, err
	}
	var total int64
	for _, t := range tables {
		total += t.Inserts + t.Updates + t.Deletes + t.Truncates
	}
	return tables, changes, max(0, total-int64(offset)-int64(len(changes))), nil
}

// readChangeRows reads the row changes of the statements and rows that
// match where (which includes a condition on each row and its diff, d.diff),
// in statement order, limited by limitClause (" LIMIT n OFFSET m", or "").
// The diff is made again for the rows listed only.
func readChangeRows(ctx context.Context, db DBTX, where, changes string, args []any, limitClause string) ([]Change, error) {
	const diff = ` CROSS JOIN LATERAL (SELECT pgundo._diff(st.relid, c.old, c.new, st.op <> 'U') AS diff) d`
	rows, err := db.Query(ctx, `
		SELECT x.id, x.relid, x.xid::text, x.at, x.op::text, x.tbl, x.old, x.new, pgundo._diff(x.relid, x.old, x.new, x.op <> 'U')
		  FROM (SELECT st.id, st.relid, st.xid, st.at, st.op, quote_ident(st.schema_name) || '.' || quote_ident(st.table_name) AS tbl, c.old, c.new
		          FROM pgundo.stmt st JOIN `+changes+` c ON c.stmt_id = st.id`+diff+`
		         WHERE `+where+`
		         ORDER BY st.id`+limitClause+`) x`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var c Change
		var diff []byte
		if err := r.Scan(&c.StmtID, &c.relid, &c.XID, &c.At, &c.Op, &c.Table, &c.Old, &c.New, &diff); err != nil {
			return c, err
		}
		var cols [][]*string
		if diff != nil {
			if err := json.Unmarshal(diff, &cols); err != nil {
				return c, fmt.Errorf("read diff: %w", err)
			}
		}
		c.Op = opNames[c.Op]
		c.Columns = []ColumnChange{}
		for _, col := range cols {
			c.Columns = append(c.Columns, ColumnChange{Column: *col[0], Old: col[1], New: col[2]})
		}
		return c, nil
	})
}
