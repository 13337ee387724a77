package history

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgundo/pgundo/internal/pgdb"
)

// Conn is what the row-level read side needs: queries and transactions of
// its own (a *pgx.Conn, or a pool; not a pgx.Tx).
type Conn = pgdb.Conn

// Version is one change of a row: who made it, when, from where, and which
// columns changed from what to what.
type Version struct {
	StmtID int64     `json:"stmt_id"`
	XID    string    `json:"xid"`
	At     time.Time `json:"at"`
	// Op is INSERT, UPDATE, DELETE or TRUNCATE.
	Op string `json:"op"`
	// Table is the table the change was logged for (a partition of a
	// partitioned table when the row lived there).
	Table string `json:"table"`
	// Key is the row's primary key after the change (before it, for a
	// DELETE or TRUNCATE), as col=value pairs.
	Key string `json:"key"`
	// PreviousKey is set when this change gave the row its key: the key it
	// had before (a primary-key update).
	PreviousKey *string `json:"previous_key"`
	// Session is the id of the session (connection) that made the change.
	Session string `json:"session"`
	// User is the login role; Role the effective role it wrote as.
	User            string  `json:"user"`
	Role            string  `json:"role"`
	ApplicationName string  `json:"application_name"`
	ClientAddr      string  `json:"client_addr"`
	Tag             *string `json:"tag"`
	// Columns are the changed columns of an UPDATE (old -> new), or every
	// column of an INSERT (new) or DELETE/TRUNCATE (old). Empty when the
	// images no longer match the table's recorded columns.
	Columns []ColumnChange `json:"columns"`
	// Old and New are the raw row images (the row's text form).
	Old *string `json:"old"`
	New *string `json:"new"`
}

// RowHistory is every recorded version of one row, oldest first.
type RowHistory struct {
	Table string `json:"table"`
	Key   Key    `json:"key"`
	// Versions are the row's changes, oldest first, followed back through
	// primary-key changes.
	Versions []Version `json:"versions"`
	// Current is the row now (its text image), nil when there is none.
	Current *string `json:"current"`
	// CurrentColumns pairs Current's values with the table's columns.
	CurrentColumns []ColumnChange `json:"current_columns"`
	// Tracked is false when the table is no longer tracked: changes since
	// tracking stopped are missing.
	Tracked bool `json:"tracked"`
	// Unreadable counts the table's logged statements whose row images no
	// longer read as its row type (columns changed since capture without
	// pgundo seeing it); their changes are not in Versions.
	Unreadable int64 `json:"unreadable_statements"`
}

// StaleIndexError is returned when the row-history index points at change
// rows that are no longer where it says (the log was rewritten, e.g. by
// VACUUM FULL or CLUSTER). Reindex repairs it.
type StaleIndexError struct{ StmtID int64 }

func (e *StaleIndexError) Error() string {
	return fmt.Sprintf("the row-history index is out of step with pgundo.change_log at statement %d (was the log rewritten, e.g. by VACUUM FULL or CLUSTER?); run pgundo history --reindex", e.StmtID)
}

// Refresh brings the row-history index (pgundo.hist_key) up to date with the
// log and returns the number of index entries it added. It runs in its own
// transaction; call it outside one. History and AsOf call it themselves.
func Refresh(ctx context.Context, db DBTX) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, "SELECT pgundo.refresh_history()").Scan(&n); err != nil {
		return 0, fmt.Errorf("refresh the row-history index: %w", err)
	}
	return n, nil
}

// Reindex rebuilds the row-history index from the whole log.
func Reindex(ctx context.Context, db Conn) (int64, error) {
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `TRUNCATE pgundo.hist_key, pgundo.hist_stmt, pgundo.hist_mark, pgundo.hist_skipped;
			UPDATE pgundo.hist_state SET done_below = 0, refreshed = NULL`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reset the row-history index: %w", err)
	}
	return Refresh(ctx, db)
}

// refreshIfAllowed refreshes the index; a role that may not (a read-only
// replica, no privilege) reads the index as it is plus the statements not yet
// indexed (see pending).
func refreshIfAllowed(ctx context.Context, db DBTX) error {
	_, err := Refresh(ctx, db)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.InsufficientPrivilege || pgErr.Code == pgerrcode.ReadOnlySQLTransaction) {
		return nil
	}
	return err
}

// entry is one row-history index entry with what the read side shows.
type entry struct {
	stmtID   int64
	part     uint32
	loc      pgtype.TID
	side     string
	otherKey *string
	relid    uint32 // the table the statement was logged for
}

// pending computes the index entries of the table's logged statements that
// the index does not hold yet (committed since the last refresh), by key.
func pending(ctx context.Context, tx pgx.Tx, t *Table) (map[string][]entry, error) {
	// The watermark as a value, not a subquery: the planner then sees how
	// few statements lie above it.
	var done int64
	if err := tx.QueryRow(ctx, "SELECT done_below FROM pgundo.hist_state").Scan(&done); err != nil {
		return nil, fmt.Errorf("read the row-history index state: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT e.key, e.stmt_id, e.part, e.loc, e.side::text, e.other_key
		  FROM (SELECT st.relid, array_agg(st.id) AS ids FROM pgundo.stmt st
		         WHERE st.id > $2 AND st.relid = ANY ($1::oid[])
		           AND NOT EXISTS (SELECT FROM pgundo.hist_stmt h WHERE h.stmt_id = st.id)
		         GROUP BY st.relid) p
		 CROSS JOIN LATERAL pgundo._hist_entries(p.relid, p.ids) e`, t.Partitions, done)
	if err != nil {
		return nil, fmt.Errorf("read the changes of %s not yet indexed: %w", t.Name, err)
	}
	out := map[string][]entry{}
	var key string
	var e entry
	_, err = pgx.ForEachRow(rows, []any{&key, &e.stmtID, &e.part, &e.loc, &e.side, &e.otherKey}, func() error {
		out[key] = append(out[key], e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the changes of %s not yet indexed: %w", t.Name, err)
	}
	return out, nil
}

// lookup reads the changes of the row with key text key logged before
// statement before (and at or after time after, when set), oldest first.
func lookup(ctx context.Context, tx pgx.Tx, t *Table, key string, before int64, after *time.Time, extra []entry) ([]entry, []Version, error) {
	var ids []int64
	var parts []uint32
	var locs []pgtype.TID
	var sides []string
	var others []*string
	for _, e := range extra {
		ids, parts, locs, sides, others = append(ids, e.stmtID), append(parts, e.part), append(locs, e.loc), append(sides, e.side), append(others, e.otherKey)
	}
	rows, err := tx.Query(ctx, `
		WITH e AS (
			SELECT h.stmt_id, h.part, h.loc, h.side::text AS side, h.other_key FROM pgundo.hist_key h
			 WHERE h.relid = $1 AND h.key = $2 AND h.stmt_id < $3
			UNION ALL
			SELECT * FROM unnest($5::bigint[], $6::oid[], $7::tid[], $8::text[], $9::text[]) x (stmt_id, part, loc, side, other_key)
			 WHERE x.stmt_id < $3
		)
		SELECT e.stmt_id, e.part, e.loc, e.side, e.other_key, st.relid,
		       quote_ident(st.schema_name) || '.' || quote_ident(st.table_name), st.xid::text, st.at, st.op::text,
		       st.session_id, coalesce(s.session_role::text, ''), st.role::text, coalesce(st.application_name, ''),
		       coalesce(host(s.client_addr), ''), st.tag, c.stmt_id IS NOT NULL, c.old, c.new
		  FROM e
		  JOIN pgundo.stmt_log st ON st.id = e.stmt_id
		  LEFT JOIN pgundo.session s ON s.id = st.session_id
		  LEFT JOIN pgundo.change_log c ON c.ctid = e.loc AND c.tableoid = e.part AND c.stmt_id = e.stmt_id
		 WHERE $4::timestamptz IS NULL OR st.at >= $4
		 ORDER BY e.stmt_id, e.side DESC`,
		t.OID, key, before, after, ids, parts, locs, sides, others)
	if err != nil {
		return nil, nil, fmt.Errorf("read the history of %s %s: %w", t.Name, t.keyFromText(key), err)
	}
	var es []entry
	var vs []Version
	var e entry
	var v Version
	var relid uint32
	var found bool
	_, err = pgx.ForEachRow(rows, []any{&e.stmtID, &e.part, &e.loc, &e.side, &e.otherKey, &relid, &v.Table, &v.XID, &v.At, &v.Op,
		&v.Session, &v.User, &v.Role, &v.ApplicationName, &v.ClientAddr, &v.Tag, &found, &v.Old, &v.New}, func() error {
		if !found {
			return &StaleIndexError{StmtID: e.stmtID}
		}
		v.StmtID = e.stmtID
		v.Columns = nil
		v.PreviousKey = nil
		e.relid = relid
		es = append(es, e)
		vs = append(vs, v)
		return nil
	})
	if err != nil {
		var se *StaleIndexError
		if errors.As(err, &se) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("read the history of %s %s: %w", t.Name, t.keyFromText(key), err)
	}
	return es, vs, nil
}

// History returns every recorded version of the row of t with key k, oldest
// first, following the row back through primary-key changes: when an UPDATE
// gave the row its key, the versions it had under its previous key (before
// that update) are included, and so on. A key that was deleted and inserted
// again shows every life of that key. It refreshes the row-history index
// first, then reads in one REPEATABLE READ, read-only transaction.
func History(ctx context.Context, db Conn, t *Table, k Key) (*RowHistory, error) {
	if err := refreshIfAllowed(ctx, db); err != nil {
		return nil, err
	}
	h := &RowHistory{Table: t.Name, Tracked: t.Tracked, Versions: []Version{}}
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pinnedSettings); err != nil {
			return err
		}
		if err := t.canonicalKey(ctx, tx, &k); err != nil {
			return err
		}
		h.Key = k
		pend, err := pending(ctx, tx, t)
		if err != nil {
			return err
		}
		shp := newShapes(tx)
		type todo struct {
			key    string
			before int64
		}
		queue := []todo{{k.Text, math.MaxInt64}}
		seen := map[string]bool{}
		for steps := 0; len(queue) > 0; steps++ {
			if steps > 10000 {
				return fmt.Errorf("history of %s %s: more than 10000 primary-key changes to follow", t.Name, k)
			}
			q := queue[0]
			queue = queue[1:]
			es, vs, err := lookup(ctx, tx, t, q.key, q.before, nil, pend[q.key])
			if err != nil {
				return err
			}
			for i, e := range es {
				id := fmt.Sprintf("%d/%s/%s", e.stmtID, e.side, q.key)
				if seen[id] {
					continue
				}
				seen[id] = true
				v := vs[i]
				v.Key = t.keyFromText(q.key)
				switch {
				case e.side == "n" && e.otherKey != nil:
					pk := t.keyFromText(*e.otherKey)
					v.PreviousKey = &pk
					if v.Op == "U" {
						queue = append(queue, todo{*e.otherKey, e.stmtID})
					}
				case e.side == "o" && e.otherKey != nil:
					v.Key = t.keyFromText(*e.otherKey)
					pk := t.keyFromText(q.key)
					v.PreviousKey = &pk
				}
				cols, err := shp.columns(ctx, e.relid, e.stmtID)
				if err != nil {
					return err
				}
				v.Columns = diffColumns(cols, v.Old, v.New)
				if v.Columns == nil {
					v.Columns = []ColumnChange{}
				}
				v.Op = opNames[v.Op]
				h.Versions = append(h.Versions, v)
			}
		}
		sort.SliceStable(h.Versions, func(i, j int) bool { return h.Versions[i].StmtID < h.Versions[j].StmtID })
		if h.Current, err = t.currentRow(ctx, tx, k); err != nil {
			return err
		}
		if h.Current != nil {
			if f, err := namedFields(h.Current, t.columnNames()); err == nil {
				for i, c := range t.columnNames() {
					h.CurrentColumns = append(h.CurrentColumns, ColumnChange{Column: c, New: f[i]})
				}
			}
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM pgundo.hist_skipped WHERE relid = ANY ($1::oid[])`, t.Partitions).Scan(&h.Unreadable)
	})
	if err != nil {
		return nil, err
	}
	if len(h.Versions) == 0 && h.Current == nil {
		if !t.Tracked {
			return nil, requestErr("table %s is not tracked, and pgundo's log has no change of a row with %s (run pgundo track %s to record changes from now on)", t.Name, k, t.Name)
		}
		return nil, requestErr("table %s has no row with %s, and pgundo's log has no change of one (pgundo log --table %s lists what was logged)", t.Name, k, t.Name)
	}
	return h, nil
}
