package history

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LogFilter selects entries of the change stream. Zero fields do not filter;
// set fields must all match.
type LogFilter struct {
	// Tables are table OIDs (list a partitioned table's partitions too).
	Tables []uint32
	// Session is a session id (pgundo sessions).
	Session string
	// XID is a transaction id (xid8, as a decimal string).
	XID string
	// User matches the login role or the effective role.
	User string
	// App matches application_name exactly.
	App string
	// Tag matches pgundo.tag exactly.
	Tag string
	// Ops are operation letters: I, U, D, T.
	Ops []string
	// Since (inclusive) and Until (exclusive) bound the statement time.
	Since, Until *time.Time
	// Limit stops after this many entries; 0 means no limit.
	Limit int64
}

// Batch sizes of Log: statements read per page, and the most change rows
// and the widest statement-id span read per query of pgundo.change (its BRIN
// index on stmt_id keeps a narrow span cheap).
const (
	logStmtPage  = 1000
	logChunkRows = 50_000
	logChunkSpan = 50_000
)

type logStmt struct {
	v     Version
	id    int64
	rows  int64
	relid uint32
}

// Log streams the change stream, oldest first (by statement, then as
// logged), calling emit for each entry that matches f. It reads in pages of
// statements and bounded chunks of change rows, so memory stays constant
// however long the log is, and the first entries arrive at once. An error
// from emit stops it and is returned. Entries of statements that commit
// while it runs, with ids below those already streamed, are not included.
func Log(ctx context.Context, db DBTX, f LogFilter, emit func(*Version) error) error {
	where, args := logWhere(f)
	shp := newShapes(db)
	keys := newKeyer(db)
	var after int64
	var sent int64
	for {
		rows, err := db.Query(ctx, `
			SELECT st.id, st.rows, st.relid, quote_ident(st.schema_name) || '.' || quote_ident(st.table_name),
			       st.xid::text, st.at, st.op::text, st.session_id, coalesce(s.session_role::text, ''), st.role::text,
			       coalesce(st.application_name, ''), coalesce(host(s.client_addr), ''), st.tag
			  FROM pgundo.stmt st LEFT JOIN pgundo.session s ON s.id = st.session_id
			 WHERE st.id > $1`+where+`
			 ORDER BY st.id LIMIT `+fmt.Sprint(logStmtPage), append([]any{after}, args...)...)
		if err != nil {
			return fmt.Errorf("read the log: %w", err)
		}
		var page []logStmt
		var s logStmt
		_, err = pgx.ForEachRow(rows, []any{&s.id, &s.rows, &s.relid, &s.v.Table, &s.v.XID, &s.v.At, &s.v.Op, &s.v.Session,
			&s.v.User, &s.v.Role, &s.v.ApplicationName, &s.v.ClientAddr, &s.v.Tag}, func() error {
			s.v.StmtID = s.id
			s.v.Op = opNames[s.v.Op]
			page = append(page, s)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the log: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].id
		for start := 0; start < len(page); {
			end := start + 1
			n := page[start].rows
			for end < len(page) && n+page[end].rows <= logChunkRows && page[end].id-page[start].id <= logChunkSpan {
				n += page[end].rows
				end++
			}
			done, err := logChunk(ctx, db, page[start:end], shp, keys, f.Limit, &sent, emit)
			if err != nil || done {
				return err
			}
			start = end
		}
		if len(page) < logStmtPage {
			return nil
		}
	}
}

// logChunk streams the change rows of a few statements; done is true when
// the limit was reached.
func logChunk(ctx context.Context, db DBTX, chunk []logStmt, shp *shapes, keys *keyer, limit int64, sent *int64, emit func(*Version) error) (bool, error) {
	byID := make(map[int64]*logStmt, len(chunk))
	ids := make([]int64, len(chunk))
	for i := range chunk {
		byID[chunk[i].id] = &chunk[i]
		ids[i] = chunk[i].id
	}
	// Column names and keys first: the connection is busy while rows stream.
	cols := make(map[int64][]string, len(chunk))
	keyCols := make(map[uint32][]string)
	for _, st := range chunk {
		c, err := shp.columns(ctx, st.relid, st.id)
		if err != nil {
			return false, err
		}
		cols[st.id] = c
		if keyCols[st.relid], err = keys.keyColumns(ctx, st.relid); err != nil {
			return false, err
		}
	}
	// A statement's rows as logged (the order they were read in: a sort by
	// statement alone is not stable).
	order := " ORDER BY c.stmt_id, c.n"
	if len(chunk) == 1 {
		order = "" // one statement: as logged, no sort
	}
	rows, err := db.Query(ctx, `SELECT c.stmt_id, c.old, c.new FROM (SELECT c.*, row_number() OVER () AS n FROM pgundo.change c
		WHERE c.stmt_id BETWEEN $1 AND $2 AND c.stmt_id = ANY ($3::bigint[])) c`+order, ids[0], ids[len(ids)-1], ids)
	if err != nil {
		return false, fmt.Errorf("read the log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var old, new *string
		if err := rows.Scan(&id, &old, &new); err != nil {
			return false, fmt.Errorf("read the log: %w", err)
		}
		st := byID[id]
		v := st.v
		v.Old, v.New = old, new
		v.Columns = diffColumns(cols[id], old, new)
		if v.Columns == nil {
			v.Columns = []ColumnChange{}
		}
		v.Key, v.PreviousKey = imageKeys(cols[id], keyCols[st.relid], old, new)
		if err := emit(&v); err != nil {
			return false, err
		}
		*sent++
		if limit > 0 && *sent >= limit {
			return true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read the log: %w", err)
	}
	return false, nil
}

// logWhere renders the set fields of f as SQL conditions over st (stmt) and
// s (session), with their values as parameters from $2 on.
func logWhere(f LogFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args)+1)))
	}
	if len(f.Tables) > 0 {
		add("st.relid = ANY ($?::oid[])", f.Tables)
	}
	if f.Session != "" {
		add("st.session_id = $?", f.Session)
	}
	if f.XID != "" {
		add("st.xid = $?::text::xid8", f.XID)
	}
	if f.User != "" {
		add("(st.role = $? OR s.session_role = $?)", f.User)
	}
	if f.App != "" {
		add("st.application_name = $?", f.App)
	}
	if f.Tag != "" {
		add("st.tag = $?", f.Tag)
	}
	if len(f.Ops) > 0 {
		add(`st.op::text = ANY ($?::text[])`, f.Ops)
	}
	if f.Since != nil {
		add("st.at >= $?", *f.Since)
	}
	if f.Until != nil {
		add("st.at < $?", *f.Until)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " AND " + strings.Join(conds, " AND "), args
}

// keyer knows the primary-key columns of logged tables (by the oid the
// statement was logged for): the root's key, else the partition's own.
type keyer struct {
	db    DBTX
	byRel map[uint32][]string
}

func newKeyer(db DBTX) *keyer { return &keyer{db: db, byRel: map[uint32][]string{}} }

func (k *keyer) keyColumns(ctx context.Context, relid uint32) ([]string, error) {
	if cols, ok := k.byRel[relid]; ok {
		return cols, nil
	}
	var cols []string
	err := k.db.QueryRow(ctx, `
		SELECT coalesce(
		  (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
		     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
		     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		    WHERE i.indrelid = coalesce(pg_partition_root($1::oid), $1::oid) AND i.indisprimary),
		  (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
		     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
		     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		    WHERE i.indrelid = $1::oid AND i.indisprimary))`, relid).Scan(&cols)
	if err != nil {
		return nil, fmt.Errorf("read the primary key of table %d: %w", relid, err)
	}
	k.byRel[relid] = cols
	return cols, nil
}

// imageKeys renders the key of a change as col=value pairs: the new image's
// key (the old one's for a delete), and the old image's when it differs.
// Without key columns it returns "".
func imageKeys(cols, keyCols []string, old, new *string) (string, *string) {
	if len(keyCols) == 0 {
		return "", nil
	}
	render := func(img *string) string {
		f, err := namedFields(img, cols)
		if err != nil || f == nil {
			return ""
		}
		vals := make([]string, len(keyCols))
		for i, kc := range keyCols {
			for j, c := range cols {
				if c == kc {
					vals[i] = deref(f[j])
				}
			}
		}
		return keyString(keyCols, vals)
	}
	ok, nk := render(old), render(new)
	switch {
	case nk == "":
		return ok, nil
	case ok != "" && ok != nk:
		return nk, &ok
	}
	return nk, nil
}
