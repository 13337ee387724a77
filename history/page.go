package history

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pageStmt is one statement whose rows a page of changes lists.
type pageStmt struct {
	id, rows int64
	relid    uint32
	xid, op  string
	table    string
	at       time.Time
	// upto is the number of row changes of the matching statements up to
	// and including this one.
	upto int64
}

// readChangePage reads up to limit (0: all) row changes of the statements
// that match where (a constant SQL condition over st with its values in
// args), after skipping offset of them: statements in id order, each
// statement's rows as logged. It picks the statements of the page first,
// from their row counts, then reads only their rows from pgundo.change, a
// span of statement ids at a time (the change log's BRIN index on
// stmt_id keeps a narrow span cheap), and makes the column diffs of the
// rows listed only. A page therefore costs about the same at any offset
// within a log of any size, however many rows one statement changed.
func readChangePage(ctx context.Context, db DBTX, where string, args []any, limit, offset int) ([]Change, error) {
	window := fmt.Sprintf("x.upto > %d", offset)
	if limit > 0 {
		window += fmt.Sprintf(" AND x.upto - x.rows < %d", int64(offset)+int64(limit))
	}
	rows, err := db.Query(ctx, `
		SELECT x.id, x.rows, x.relid, x.xid::text, x.op::text, x.tbl, x.at, x.upto
		  FROM (SELECT st.id, st.rows, st.relid, st.xid, st.op, st.at,
		               quote_ident(st.schema_name) || '.' || quote_ident(st.table_name) AS tbl,
		               sum(st.rows) OVER (ORDER BY st.id) AS upto
		          FROM pgundo.stmt st WHERE `+where+`) x
		 WHERE `+window+`
		 ORDER BY x.id`, args...)
	if err != nil {
		return nil, err
	}
	var stmts []pageStmt
	var s pageStmt
	if _, err := pgx.ForEachRow(rows, []any{&s.id, &s.rows, &s.relid, &s.xid, &s.op, &s.table, &s.at, &s.upto}, func() error {
		stmts = append(stmts, s)
		return nil
	}); err != nil {
		return nil, err
	}
	if len(stmts) == 0 {
		return []Change{}, nil
	}
	// The rows of the first statement that earlier pages listed.
	skip := int64(offset) - (stmts[0].upto - stmts[0].rows)
	changes := []Change{}
	for start := 0; start < len(stmts); {
		end := start + 1
		for end < len(stmts) && stmts[end].id-stmts[start].id <= logChunkSpan {
			end++
		}
		span := stmts[start:end]
		ids := make([]int64, len(span))
		relids := make([]uint32, len(span))
		ops := make([]string, len(span))
		for i, st := range span {
			ids[i], relids[i], ops[i] = st.id, st.relid, st.op
		}
		limitClause := ""
		if limit > 0 {
			limitClause = fmt.Sprintf(" LIMIT %d", limit-len(changes))
		}
		if skip > 0 {
			limitClause += fmt.Sprintf(" OFFSET %d", skip)
		}
		// A statement's rows in the order they are read (as logged): a sort
		// by statement alone is not stable, so they are numbered first. One
		// statement needs no sort (nor numbering all of its rows, which
		// may be millions, for a page of them).
		order := "ORDER BY c.stmt_id, c.n"
		if len(span) == 1 {
			order = ""
		}
		rows, err := db.Query(ctx, `
			SELECT x.stmt_id, x.old, x.new, pgundo._diff(s.relid, x.old, x.new, s.op <> 'U')
			  FROM (SELECT c.stmt_id, c.old, c.new, c.n
			          FROM (SELECT c.stmt_id, c.old, c.new, row_number() OVER () AS n FROM pgundo.change c
			                 WHERE c.stmt_id BETWEEN $1 AND $2 AND c.stmt_id = ANY ($3::bigint[])) c
			         `+order+limitClause+`) x
			  JOIN unnest($3::bigint[], $4::oid[], $5::text[]) s (id, relid, op) ON s.id = x.stmt_id
			 ORDER BY x.stmt_id, x.n`, ids[0], ids[len(ids)-1], ids, relids, ops)
		if err != nil {
			return nil, err
		}
		byID := make(map[int64]*pageStmt, len(span))
		for i := range span {
			byID[span[i].id] = &span[i]
		}
		var id int64
		var old, new *string
		var diff []byte
		if _, err := pgx.ForEachRow(rows, []any{&id, &old, &new, &diff}, func() error {
			st := byID[id]
			c := Change{StmtID: id, relid: st.relid, XID: st.xid, At: st.at, Op: opNames[st.op], Table: st.table, Old: old, New: new, Columns: []ColumnChange{}}
			var cols [][]*string
			if diff != nil {
				if err := json.Unmarshal(diff, &cols); err != nil {
					return fmt.Errorf("read diff: %w", err)
				}
			}
			for _, col := range cols {
				c.Columns = append(c.Columns, ColumnChange{Column: *col[0], Old: col[1], New: col[2]})
			}
			changes = append(changes, c)
			return nil
		}); err != nil {
			return nil, err
		}
		skip = 0
		if limit > 0 && len(changes) >= limit {
			break
		}
		start = end
	}
	return changes, nil
}
