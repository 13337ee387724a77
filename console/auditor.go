package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/history"
)

// An auditor role (pgundo grant auditor) may read pgundo's views
// (history.AuditorViews) and nothing else of pgundo: not the log tables,
// the summaries or the row-history index that the pages read, and it can
// undo nothing. With Options.Auditor the console serves what the views
// answer, the sessions and each session's row changes, says on every page
// that it runs read only as an auditor, offers no plan or undo, and answers
// the other pages with what is not available and why.
//
// The sessions and their totals come from pgundo.session_totals, which
// reads the summaries the installing role's console keeps (sql/010) and
// the log above them: the same numbers as the owner's pages, exact, and
// fast while an owner's console (or a cron'd pgundo.refresh_summaries())
// keeps the summaries close to the log's head. A session's counts per table
// and its page of changes are read by statement from pgundo.statements, and
// only that page's changes from pgundo.changes.

// auditorNotice is shown on every page of an auditor's console.
const auditorNotice = "Read only, as an auditor role: the sessions and their row changes come from pgundo's views (pgundo.session_totals, pgundo.statements, pgundo.changes). Activity, status, row history, as-of and undo plans read pgundo's log tables, which an auditor may not; run pgundo serve as the role that installed pgundo for those."

// auditorUnavailable answers a page an auditor cannot have.
func (s *Server) auditorUnavailable(w http.ResponseWriter, r *http.Request) {
	s.fail(w, http.StatusForbidden, fmt.Errorf("%s is not available to an auditor role: it reads pgundo's log tables, and an auditor may read only the views %s",
		r.URL.Path, strings.Join(history.AuditorViews, ", ")), "run pgundo serve as the role that installed pgundo, or query the views with psql")
}

// auditorSpan is the widest span of statement ids one query of a session
// page's changes covers (as history's logChunkSpan).
const auditorSpan = 50_000

// auditorSessionCols are the columns of pgundo.session_totals as Session
// reads them.
const auditorSessionCols = `v.id, v.application_name, v.login_user, v.roles::text[],
	v.backend_start, v.first_change_at, v.last_change_at, coalesce(host(v.client_addr), ''), v.pid,
	v.changes, v.transactions, v.tables, v.tags, v.undo_of, v.undone_by, v.undone_by_all, v.undo_state`

// onPage runs f with the page number asked for and a connection. The
// auditor's queries run without parallel workers: the planner cannot know
// how few statements lie above the summaries' watermark (a view reads it
// from a table), takes them for a third of the log and starts workers,
// which cost more than the query on a busy machine (0.3 s of 0.35).
func (s *Server) onPage(r *http.Request, f func(conn *pgx.Conn, p int) error) error {
	p, err := pageNumber(r)
	if err != nil {
		return err
	}
	c, err := s.conn(r.Context())
	if err != nil {
		return err
	}
	defer c.Release()
	if _, err := c.Conn().Exec(r.Context(), "SET max_parallel_workers_per_gather = 0"); err != nil {
		return err
	}
	return f(c.Conn(), p)
}

// viewSessions reads sessions from pgundo.session_totals (alias v): those
// of cond (with args), newest first, limit and offset.
func viewSessions(ctx context.Context, conn *pgx.Conn, cond string, limit, offset int, args ...any) ([]history.Session, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT `+auditorSessionCols+` FROM pgundo.session_totals v WHERE %s
		 ORDER BY v.last_change_at DESC, v.id DESC LIMIT %d OFFSET %d`, cond, limit, offset), args...)
	if err != nil {
		return nil, fmt.Errorf("read sessions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Session, error) {
		var s history.Session
		err := r.Scan(&s.ID, &s.ApplicationName, &s.User, &s.Roles, &s.StartedAt, &s.FirstChangeAt, &s.LastChangeAt,
			&s.ClientAddr, &s.PID, &s.Changes, &s.Transactions, &s.Tables, &s.Tags, &s.UndoOf, &s.UndoneBy, &s.UndoneByAll, &s.UndoState)
		return s, err
	})
}

func (s *Server) auditorSessions(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := sessionsData{Auditor: true, Filter: sessionsFilter{Since: q.Get("since"), Until: q.Get("until"), User: q.Get("user"), App: q.Get("app"), Tag: q.Get("tag"), Table: q.Get("table")}}
	if d.Filter != (sessionsFilter{}) {
		s.fail(w, http.StatusForbidden, errors.New("filters are not available to an auditor role: they read pgundo's log tables; the list of all sessions is"), "clear the filters, or query pgundo.changes with psql")
		return
	}
	err := s.onPage(r, func(conn *pgx.Conn, p int) error {
		ss, err := viewSessions(ctx, conn, "true", s.opts.PageSize+1, (p-1)*s.opts.PageSize)
		d.Sessions, d.Pager = pageOf(r, p, s.opts.PageSize, ss)
		return err
	})
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.render(w, http.StatusOK, "sessions", "Sessions", d)
}

func (s *Server) auditorSession(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	d := sessionData{Auditor: true}
	if q := r.URL.Query(); q.Get("table") != "" || len(q["key"]) > 0 {
		s.fail(w, http.StatusForbidden, errors.New("the table and key filters are not available to an auditor role: they read pgundo's log tables"), "query pgundo.row_history with psql")
		return
	}
	err := s.onPage(r, func(conn *pgx.Conn, p int) error {
		ss, err := viewSessions(ctx, conn, "v.id = $1", 1, 0, id)
		if err != nil {
			return err
		}
		if len(ss) == 0 {
			return fmt.Errorf("session %q: %w", id, history.ErrNoSuchSession)
		}
		d.S = ss[0]
		// Counted by statement, as the owner's page counts.
		rows, err := conn.Query(ctx, `SELECT quote_ident(st.schema_name) || '.' || quote_ident(st.table_name),
			       coalesce(sum(st.rows) FILTER (WHERE st.op = 'INSERT'), 0)::bigint, coalesce(sum(st.rows) FILTER (WHERE st.op = 'UPDATE'), 0)::bigint,
			       coalesce(sum(st.rows) FILTER (WHERE st.op = 'DELETE'), 0)::bigint, coalesce(sum(st.rows) FILTER (WHERE st.op = 'TRUNCATE'), 0)::bigint
			  FROM pgundo.statements st WHERE st.session_id = $1 GROUP BY 1 ORDER BY 1`, id)
		if err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		if d.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.TableCount, error) {
			var t history.TableCount
			return t, r.Scan(&t.Table, &t.Inserts, &t.Updates, &t.Deletes, &t.Truncates)
		}); err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		for _, t := range d.Tables {
			d.Total += t.Inserts + t.Updates + t.Deletes + t.Truncates
		}
		// The statements whose changes make this page (and one more change,
		// to know whether there is a next page): by their running count of
		// changes, as the owner's page (history.readChangePage).
		size := s.opts.PageSize
		offset := int64(p-1) * int64(size)
		rows, err = conn.Query(ctx, `
			SELECT x.stmt_id, x.upto - x.rows
			  FROM (SELECT st.stmt_id, st.rows, sum(st.rows) OVER (ORDER BY st.stmt_id) AS upto
			          FROM pgundo.statements st WHERE st.session_id = $1) x
			 WHERE x.upto > $2 AND x.upto - x.rows < $3
			 ORDER BY x.stmt_id`, id, offset, offset+int64(size)+1)
		if err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		var ids []int64
		var first int64 // the changes before the page's first statement
		var sid, before int64
		if _, err := pgx.ForEachRow(rows, []any{&sid, &before}, func() error {
			if len(ids) == 0 {
				first = before
			}
			ids = append(ids, sid)
			return nil
		}); err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		// The changes of those statements, in spans of at most
		// auditorSpan statement ids: a condition on the span reaches
		// pgundo.change's BRIN index (one range scan, not a lookup per
		// statement). The column diff of the exact text images is read
		// against the table's columns now (the jsonb images of the view
		// need USAGE on the table's schema, which an auditor need not
		// have): for an update the columns that changed, else all; raw
		// when the images no longer read so. A statement's rows come in
		// the order they are read, numbered (a sort by statement alone is
		// not stable); one statement needs no numbering of all its rows
		// for a page of them.
		skip := offset - first
		// Nested loops only: a hash join would hand a statement's rows
		// over in another order than the log's (the order they are
		// numbered and paged in, as on the owner's page).
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"); err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
		for start := 0; start < len(ids) && len(d.Changes) <= size; {
			end := start + 1
			for end < len(ids) && ids[end]-ids[start] <= auditorSpan {
				end++
			}
			span := ids[start:end]
			start = end
			// One statement: by equality, which the planner carries over
			// to the statement's side of the view (one row, read once,
			// where a range leaves it a lookup per change row: 0.06 s
			// instead of 0.9 s for page 1000 of a 100,000-row statement).
			order, where, args := "ORDER BY c.stmt_id, c.n", "c.stmt_id BETWEEN $3 AND $4 AND c.stmt_id = ANY ($5::bigint[])", []any{span[0], span[len(span)-1], span}
			if len(span) == 1 {
				order, where, args = "", "c.stmt_id = $3", []any{span[0]}
			}
			rows, err = tx.Query(ctx, `
				SELECT c.stmt_id, c.xid::text, c.at, c.op, quote_ident(c.schema_name) || '.' || quote_ident(c.table_name), c.old, c.new,
				       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
				  FROM (SELECT c.stmt_id, c.xid, c.at, c.op, c.schema_name, c.table_name, c.relid, c.old, c.new, row_number() OVER () AS n
				          FROM pgundo.changes c WHERE `+where+`) c
				 `+order+` LIMIT $1 OFFSET $2`, append([]any{size + 1 - len(d.Changes), skip}, args...)...)
			if err != nil {
				return fmt.Errorf("read session %s: %w", id, err)
			}
			skip = 0
			var v changeView
			var old, new *string
			var names []string
			_, err = pgx.ForEachRow(rows, []any{&v.StmtID, &v.XID, &v.At, &v.Op, &v.Table, &old, &new, &names}, func() error {
				cols := history.DiffImages(names, old, new)
				cv := changeView{StmtID: v.StmtID, XID: v.XID, At: v.At, Op: v.Op, Table: v.Table, Cols: viewColumns(v.Op, cols, nil)}
				if cols == nil {
					img := new
					if img == nil {
						img = old
					}
					cv.Raw = MakeValue(img)
				}
				d.Changes = append(d.Changes, cv)
				return nil
			})
			if err != nil {
				return fmt.Errorf("read session %s: %w", id, err)
			}
		}
		d.Changes, d.Pager = pageOf(r, p, size, d.Changes)
		return nil
	})
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.render(w, http.StatusOK, "session", "Session "+id, d)
}
