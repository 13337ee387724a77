// Package history answers read-side questions from pgundo's log: which
// sessions changed what, and (in later versions) the history of one row.
// It only reads; it never writes to the log or to user tables.
package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/pgdb"
)

// DBTX is what this package's queries need: a connection, pool or
// transaction (see internal/pgdb, which defines it for every package).
type DBTX = pgdb.DBTX

// Session is one database connection that changed tracked tables.
type Session struct {
	// ID is PostgreSQL's own session id for the connection (log_line_prefix
	// %c): hex backend start time, dot, hex pid. It is what undo and show take.
	ID string `json:"id"`
	// ApplicationName is the application_name of the session's latest change.
	ApplicationName string `json:"application_name"`
	// User is the login role (session_user).
	User string `json:"user"`
	// Roles are the effective roles the session wrote as (SET ROLE), when
	// any differ from User.
	Roles []string `json:"roles"`
	// StartedAt is when the connection started.
	StartedAt time.Time `json:"started_at"`
	// FirstChangeAt and LastChangeAt bound the session's captured changes.
	FirstChangeAt time.Time `json:"first_change_at"`
	LastChangeAt  time.Time `json:"last_change_at"`
	// ClientAddr is the client's address; empty for a Unix-socket connection.
	ClientAddr string `json:"client_addr"`
	PID        int32  `json:"pid"`
	// Changes is the number of row changes: one per row per statement,
	// cascades and trigger side effects included.
	Changes int64 `json:"changes"`
	// Transactions is the number of transactions with captured changes.
	Transactions int64 `json:"transactions"`
	// Tables are the schema-qualified tables the session changed.
	Tables []string `json:"tables"`
	// Tags are the pgundo.tag values the session's changes carried.
	Tags []string `json:"tags"`
	// UndoOf is the session this session undid, or nil.
	UndoOf *string `json:"undo_of"`
	// UndoneBy is the first session that undid this one (or part of it),
	// or nil; UndoneByAll lists every such session, oldest first.
	UndoneBy    *string  `json:"undone_by"`
	UndoneByAll []string `json:"undone_by_all"`
	// UndoState is "undone" when every change of the session is undone,
	// "partly undone" when some are (an undo of one transaction, rows an
	// undo skipped), or nil.
	UndoState *string `json:"undo_state"`
}

// SessionFilter selects sessions. Zero fields do not filter. A session
// matches when at least one of its captured statements matches every set
// field; its totals then cover all of its changes.
type SessionFilter struct {
	// Since and Until bound the time of a change (Since inclusive, Until
	// exclusive).
	Since, Until *time.Time
	// User matches the login role or an effective role.
	User string
	// App matches application_name exactly.
	App string
	// TableOID matches changes to that table or any of its partitions.
	TableOID uint32
	// Tag matches pgundo.tag exactly.
	Tag string
	// ID matches one session id.
	ID string
	// Limit caps the number of sessions returned; 0 means no limit.
	Limit int
	// Offset skips this many sessions of the order Sessions lists them in
	// before the first one returned (for pages); 0, the default, skips none.
	Offset int
}

// filtered reports whether f selects by anything but Limit and Offset.
func (f SessionFilter) filtered() bool {
	return f.Since != nil || f.Until != nil || f.User != "" || f.App != "" || f.TableOID != 0 || f.Tag != "" || f.ID != ""
}

// DefaultLimit is the number of sessions pgundo sessions lists by default.
const DefaultLimit = 50

// ErrNoSuchSession is returned by GetSession for an id the log does not hold.
var ErrNoSuchSession = errors.New("no such session")

// Sessions lists the sessions that match f, the most recently active first
// (by the time of a session's last change, then by id, descending), from
// f.Offset on, at most f.Limit of them.
//
// It ranks first and aggregates only the sessions of the page: without a
// filter, from the newest statements alone (see newestSessions), so that a
// page costs about the same on any log size; with one, from the statements
// that match it.
func Sessions(ctx context.Context, db DBTX, f SessionFilter) ([]Session, error) {
	if f.Offset < 0 {
		return nil, requestErr("offset %d: an offset is 0 or more", f.Offset)
	}
	w, summarized, err := summaryMark(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	var ids []string
	switch {
	case f.ID != "" && f == (SessionFilter{ID: f.ID, Limit: f.Limit}) && f.Limit != 0:
		// One session by id: its totals say whether it has changes.
		ids = []string{f.ID}
	case summarized && !f.filtered():
		var limit *int
		if f.Limit > 0 {
			limit = &f.Limit
		}
		ids, err = newestSessionsSummarized(ctx, db, w, f.Offset, limit)
	case summarized:
		ids, err = rankSessionsSummarized(ctx, db, f, w)
	case !f.filtered() && f.Limit > 0:
		ids, err = newestSessions(ctx, db, f.Offset, f.Limit)
	default:
		ids, err = rankSessions(ctx, db, f)
	}
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	if len(ids) == 0 {
		return []Session{}, nil
	}
	query, args := sessionsFromLog, []any{ids}
	if summarized {
		query, args = sessionsSummarized, []any{ids, w}
	}
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Session, error) {
		var s Session
		err := r.Scan(&s.ID, &s.ApplicationName, &s.User, &s.Roles, &s.StartedAt, &s.FirstChangeAt, &s.LastChangeAt,
			&s.ClientAddr, &s.PID, &s.Changes, &s.Transactions, &s.Tables, &s.Tags, &s.UndoOf, &s.UndoneBy, &s.UndoneByAll, &s.UndoState)
		return s, err
	})
}

// sessionsFromLog is the query of Sessions' totals from the log alone, for
// the sessions $1.
const sessionsFromLog = `
		SELECT s.id, coalesce((array_agg(st.application_name ORDER BY st.id DESC))[1], ''),
		       s.session_role,
		       coalesce(array_agg(DISTINCT st.role) FILTER (WHERE st.role <> s.session_role), '{}'),
		       s.backend_start, min(st.at), max(st.at),
		       coalesce(host(s.client_addr), ''), s.pid,
		       sum(st.rows)::bigint, count(DISTINCT st.xid),
		       array_agg(DISTINCT quote_ident(st.schema_name) || '.' || quote_ident(st.table_name)),
		       coalesce(array_agg(DISTINCT st.tag) FILTER (WHERE st.tag IS NOT NULL), '{}'),
		       (SELECT u.undone_session FROM pgundo.undo u WHERE u.undo_session = s.id ORDER BY u.undone_session LIMIT 1),
		       (SELECT u.undo_session FROM pgundo.undo u WHERE u.undone_session = s.id ORDER BY u.at, u.undo_session LIMIT 1),
		       (SELECT coalesce(array_agg(u.undo_session ORDER BY u.at, u.undo_session), '{}') FROM pgundo.undo u WHERE u.undone_session = s.id),
		       CASE
		         WHEN NOT bool_or(d.stmt_id IS NOT NULL) THEN NULL
		         WHEN bool_and(d.stmt_id IS NOT NULL)
		              AND NOT EXISTS (SELECT FROM pgundo.undo_scope sc JOIN pgundo.undo_left l ON l.undo_session = sc.undo_session AND l.done_by IS NULL
		                               JOIN pgundo.stmt x ON x.id = sc.stmt_id WHERE x.session_id = s.id) THEN 'undone'
		         ELSE 'partly undone' END
		  FROM pgundo.session s
		  JOIN pgundo.stmt st ON st.session_id = s.id
		  LEFT JOIN pgundo.undone d ON d.stmt_id = st.id
		 WHERE s.id = ANY ($1::text[])
		 GROUP BY s.id
		 ORDER BY max(st.at) DESC, s.id DESC`

// rankSessions returns the ids of the sessions that match f, in the order
// Sessions lists them, from f.Offset on, at most f.Limit (0: all). Only the
// set fields become conditions, so that an index serves them (the session
// id's, the BRIN index on the statement time).
func rankSessions(ctx context.Context, db DBTX, f SessionFilter) ([]string, error) {
	var args []any
	conds := sessionConds(f, "st", &args)
	if f.Since != nil {
		args = append(args, *f.Since)
		conds = append(conds, fmt.Sprintf("st.at >= $%d", len(args)))
	}
	if f.Until != nil {
		args = append(args, *f.Until)
		conds = append(conds, fmt.Sprintf("st.at < $%d", len(args)))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	page := fmt.Sprintf(" OFFSET %d", f.Offset)
	if f.Limit > 0 {
		page = fmt.Sprintf(" LIMIT %d", f.Limit) + page
	}
	rows, err := db.Query(ctx, `
		WITH matched AS (
			SELECT DISTINCT st.session_id
			  FROM pgundo.stmt st JOIN pgundo.session s ON s.id = st.session_id`+where+`
		)
		SELECT m.session_id
		  FROM matched m
		  -- Per session, through its index: a join can hash the whole log.
		  CROSS JOIN LATERAL (SELECT max(x.at) AS last FROM pgundo.stmt x WHERE x.session_id = m.session_id) l
		 ORDER BY l.last DESC, m.session_id DESC`+page, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// newestSessions returns the ids of every session in the order Sessions
// lists them, from offset on, at most limit, without reading the whole
// log: it takes the time of the oldest of the newest n statements (by id)
// as a cut, and ranks the sessions with a statement at or after the cut.
// Those are exactly the sessions whose last change is at or after the cut,
// and every other session's last change is before it, so when there are
// at least offset+limit of them the page is theirs. Otherwise it tries
// again with eight times as many statements, until the cut is the log's
// first statement.
func newestSessions(ctx context.Context, db DBTX, offset, limit int) ([]string, error) {
	want := offset + limit
	for n := 4 * (want + 1); ; n *= 8 {
		var cut *time.Time
		var seen int
		if err := db.QueryRow(ctx, `SELECT min(at), count(*) FROM (SELECT at FROM pgundo.stmt ORDER BY id DESC LIMIT $1) x`, n).
			Scan(&cut, &seen); err != nil {
			return nil, err
		}
		if cut == nil {
			return nil, nil // an empty log
		}
		rows, err := db.Query(ctx, `
			SELECT session_id FROM pgundo.stmt WHERE at >= $1
			 GROUP BY session_id
			 ORDER BY max(at) DESC, session_id DESC`, *cut)
		if err != nil {
			return nil, err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		if len(ids) >= want || seen < n {
			// Enough sessions, or the whole log.
			return ids[min(offset, len(ids)):min(want, len(ids))], nil
		}
	}
}

// GetSession returns one session by id, or ErrNoSuchSession.
func GetSession(ctx context.Context, db DBTX, id string) (Session, error) {
	ss, err := Sessions(ctx, db, SessionFilter{ID: id, Limit: 1})
	if err != nil {
		return Session{}, err
	}
	if len(ss) == 0 {
		return Session{}, fmt.Errorf("session %q: %w (pgundo sessions lists the recorded ones)", id, ErrNoSuchSession)
	}
	return ss[0], nil
}

// LogStats describes the size and age of the log.
type LogStats struct {
	// Bytes is the on-disk size of the log tables with their indexes and TOAST.
	Bytes int64 `json:"bytes"`
	// Sessions and Statements count the recorded sessions and statements;
	// Changes estimates the row changes (from planner statistics, cheap on
	// any log size).
	Sessions   int64 `json:"sessions"`
	Statements int64 `json:"statements"`
	// StatementsEstimated is true when Statements is the planner's estimate
	// (a log of more than ExactStatementsBelow statements, which an exact
	// count would read whole) plus the journal's exact count.
	StatementsEstimated bool  `json:"statements_estimated"`
	Changes             int64 `json:"changes_estimate"`
	// Oldest and Newest are the times of the first and last recorded
	// statement; nil for an empty log.
	Oldest *time.Time `json:"oldest_entry"`
	Newest *time.Time `json:"newest_entry"`
}

// ExactStatementsBelow is the estimated log size (statements) up to which
// Stats counts statements exactly: counting 4M statements takes a second or
// more, the estimate a millisecond.
const ExactStatementsBelow = 1_000_000

// Stats reads LogStats.
func Stats(ctx context.Context, db DBTX) (LogStats, error) {
	var s LogStats
	var estimate int64
	err := db.QueryRow(ctx, `
		SELECT pgundo._log_bytes() + pg_total_relation_size('pgundo.session'),
		       (SELECT count(*) FROM pgundo.session),
		       (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
		          FROM pg_partition_tree('pgundo.stmt_log') p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf),
		       pgundo._change_rows(),
		       (SELECT at FROM pgundo.stmt ORDER BY id LIMIT 1), (SELECT at FROM pgundo.stmt ORDER BY id DESC LIMIT 1)`).
		Scan(&s.Bytes, &s.Sessions, &estimate, &s.Changes, &s.Oldest, &s.Newest)
	if err != nil {
		return s, fmt.Errorf("read log statistics: %w", err)
	}
	// The journal is counted exactly either way: it is small, and the
	// estimate of the log tables leaves it out.
	count := `SELECT count(*) FROM pgundo.stmt WHERE $1::bigint IS NOT NULL`
	if s.StatementsEstimated = estimate > ExactStatementsBelow; s.StatementsEstimated {
		count = `SELECT $1::bigint + (SELECT count(*) FROM pgundo.journal)`
	}
	if err := db.QueryRow(ctx, count, estimate).Scan(&s.Statements); err != nil {
		return s, fmt.Errorf("read log statistics: %w", err)
	}
	return s, nil
}
