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

// auditorNotice is shown on every page of an auditor's console.
const auditorNotice = "Read only, as an auditor role: the sessions and their row changes come from pgundo's views (pgundo.sessions, pgundo.changes). Activity, status, row history, as-of and undo plans read pgundo's log tables, which an auditor may not; run pgundo serve as the role that installed pgundo for those."

// auditorUnavailable answers a page an auditor cannot have.
func (s *Server) auditorUnavailable(w http.ResponseWriter, r *http.Request) {
	s.fail(w, http.StatusForbidden, fmt.Errorf("%s is not available to an auditor role: it reads pgundo's log tables, and an auditor may read only the views %s",
		r.URL.Path, strings.Join(history.AuditorViews, ", ")), "run pgundo serve as the role that installed pgundo, or query the views with psql")
}

// auditorSessionCols are the columns of pgundo.sessions as Session reads them.
const auditorSessionCols = `v.id, coalesce(v.application_name, ''), v.login_user,
	coalesce(ARRAY(SELECT r FROM unnest(v.roles) r WHERE r <> v.login_user ORDER BY 1), '{}'),
	v.backend_start, v.first_change_at, v.last_change_at, coalesce(host(v.client_addr), ''), v.pid,
	v.changes, v.transactions, coalesce(v.tables, '{}'), coalesce(v.tags, '{}'), v.undo_of, v.undone_by,
	CASE WHEN v.undone_by IS NULL THEN '{}'::text[] ELSE ARRAY[v.undone_by] END, v.undo_state`

// onPage runs f with the page number asked for and a connection.
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
	return f(c.Conn(), p)
}

// viewSessions reads sessions from pgundo.sessions (alias v) that have
// changes: those of cond (with args), newest first, limit and offset.
func viewSessions(ctx context.Context, conn *pgx.Conn, cond string, limit, offset int, args ...any) ([]history.Session, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT `+auditorSessionCols+` FROM pgundo.sessions v WHERE v.changes > 0 AND %s
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
		rows, err := conn.Query(ctx, `SELECT quote_ident(c.schema_name) || '.' || quote_ident(c.table_name),
			       count(*) FILTER (WHERE c.op = 'INSERT'), count(*) FILTER (WHERE c.op = 'UPDATE'),
			       count(*) FILTER (WHERE c.op = 'DELETE'), count(*) FILTER (WHERE c.op = 'TRUNCATE')
			  FROM pgundo.changes c WHERE c.session_id = $1 GROUP BY 1 ORDER BY 1`, id)
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
		// The column diff of the exact text images, read against the
		// table's columns now (the jsonb images of the view need USAGE on
		// the table's schema, which an auditor need not have): for an
		// update the columns that changed, else all; raw when the images
		// no longer read so.
		size := s.opts.PageSize
		rows, err = conn.Query(ctx, `
			SELECT c.stmt_id, c.xid::text, c.at, c.op, quote_ident(c.schema_name) || '.' || quote_ident(c.table_name), c.old, c.new,
			       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
			  FROM pgundo.changes c WHERE c.session_id = $1
			 ORDER BY c.stmt_id LIMIT $2 OFFSET $3`, id, size+1, (p-1)*size)
		if err != nil {
			return fmt.Errorf("read session %s: %w", id, err)
		}
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
		d.Changes, d.Pager = pageOf(r, p, size, d.Changes)
		return nil
	})
	if err != nil {
		s.failErr(w, err)
		return
	}
	s.render(w, http.StatusOK, "session", "Session "+id, d)
}
