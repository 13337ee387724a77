package history

import (
	"context"
	"fmt"
	"time"
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
	// relid is the table (partition) the change was logged for.
	relid uint32
}

// SessionDetail is what pgundo show prints.
type SessionDetail struct {
	Session Session      `json:"session"`
	Tables  []TableCount `json:"tables"`
	Changes []Change     `json:"changes"`
	// More is the number of row changes not listed because of the limit;
	// Truncated is More > 0.
	More      int64 `json:"more"`
	Truncated bool  `json:"truncated"`
}

var opNames = map[string]string{"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}

// Show returns what session id changed: counts per table and operation,
// then up to limit row changes (0: all of them) in the order they were
// logged.
func Show(ctx context.Context, db DBTX, id string, limit int) (*SessionDetail, error) {
	s, err := GetSession(ctx, db, id)
	if err != nil {
		return nil, err
	}
	d := &SessionDetail{Session: s}
	d.Tables, d.Changes, d.More, err = readChanges(ctx, db, "st.session_id = $1", []any{id}, limit)
	if err != nil {
		return nil, fmt.Errorf("show session %s: %w", id, err)
	}
	d.Truncated = d.More > 0
	return d, nil
}
