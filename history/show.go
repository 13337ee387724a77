package history

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TableCount is how many rows a session changed in one table, by operation.
type TableCount struct {
	Table     string `json:"table"`
	Inserts   int64  `json:"inserts"`
	Updates   int64  `json:"updates"`
	Deletes   int64  `json:"deletes"`
	Truncates int64  `json:"truncated"`
}

// ColumnChange is one column of a row change: for an update only columns
// whose value changed, for an insert or delete every column.
type ColumnChange struct {
	Column string  `json:"column"`
	Old    *string `json:"old"`
	New    *string `json:"new"`
}

// Change is one row change with its column-level diff. Values are shown as
// PostgreSQL prints them (JSON text form for nested values).
type Change struct {
	StmtID int64     `json:"stmt_id"`
	XID    string    `json:"xid"`
	At     time.Time `json:"at"`
	// Op is INSERT, UPDATE, DELETE or TRUNCATE.
	Op      string         `json:"op"`
	Table   string         `json:"table"`
	Columns []ColumnChange `json:"columns"`
	// Old and New are the raw row images (the row's text form).
	Old *string `json:"old"`
	New *string `json:"new"`
}

// SessionDetail is what pgundo show prints.
type SessionDetail struct {
	Session Session      `json:"session"`
	Tables  []TableCount `json:"tables"`
	Changes []Change     `json:"changes"`
	// More is the number of row changes not listed because of the limit.
	More int64 `json:"more"`
}

var opNames = map[string]string{"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}

// Show returns what session id changed: counts per table and operation,
// then up to limit row changes (0: 100) in the order they were logged.
func Show(ctx context.Context, db DBTX, id string, limit int) (*SessionDetail, error) {
	if limit <= 0 {
		limit = 100
	}
	s, err := GetSession(ctx, db, id)
	if err != nil {
		return nil, err
	}
	d := &SessionDetail{Session: s, Tables: []TableCount{}, Changes: []Change{}}
	rows, err := db.Query(ctx, `
		SELECT quote_ident(schema_name) || '.' || quote_ident(table_name),
		       coalesce(sum(rows) FILTER (WHERE op = 'I'), 0)::bigint, coalesce(sum(rows) FILTER (WHERE op = 'U'), 0)::bigint,
		       coalesce(sum(rows) FILTER (WHERE op = 'D'), 0)::bigint, coalesce(sum(rows) FILTER (WHERE op = 'T'), 0)::bigint
		  FROM pgundo.stmt WHERE session_id = $1 GROUP BY 1 ORDER BY 1`, id)
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	d.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableCount, error) {
		var c TableCount
		return c, r.Scan(&c.Table, &c.Inserts, &c.Updates, &c.Deletes, &c.Truncates)
	})
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	// Row diffs: each image is read back as its table's row type, then as
	// JSON key/value pairs; a table whose columns changed since is shown with
	// raw images only.
	rows, err = db.Query(ctx, `
		SELECT st.id, st.xid::text, st.at, st.op::text, quote_ident(st.schema_name) || '.' || quote_ident(st.table_name),
		       c.old, c.new,
		       pgundo._diff(st.relid, c.old, c.new, st.op <> 'U')
		  FROM pgundo.stmt st JOIN pgundo.change c ON c.stmt_id = st.id
		 WHERE st.session_id = $1
		 ORDER BY st.id
		 LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	d.Changes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var c Change
		var diff []byte
		if err := r.Scan(&c.StmtID, &c.XID, &c.At, &c.Op, &c.Table, &c.Old, &c.New, &diff); err != nil {
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
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	var total int64
	for _, t := range d.Tables {
		total += t.Inserts + t.Updates + t.Deletes + t.Truncates
	}
	d.More = total - int64(len(d.Changes))
	return d, nil
}
