package history

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The summaries (sql/009): per session, per hour and per hour of activity,
// of the statements up to a watermark, built on the read side by
// pgundo.refresh_summaries(). Readers add the statements above the
// watermark from the log itself, so what they read is exact however far
// behind the summaries are; but a reader that would add more than
// SummaryTailLimit statements reads the log alone, as before the summaries.

// SummaryTailLimit is the most statements above the summaries' watermark
// with which readers use the summaries.
const SummaryTailLimit = 50_000

// summaryTailLimit is SummaryTailLimit, but for tests; afterSummaryMark
// runs after the watermark is read (tests refresh there).
var (
	summaryTailLimit = SummaryTailLimit
	afterSummaryMark = func() {}
)

// RefreshSummaries adds at most batch statements (in id order) to the
// summaries and returns how many it added; 0 means they are as up to date
// as they can be (statements of transactions still running wait for the
// next refresh). Call it outside a transaction.
func RefreshSummaries(ctx context.Context, db DBTX, batch int64) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, "SELECT pgundo.refresh_summaries($1)", batch).Scan(&n); err != nil {
		return 0, fmt.Errorf("refresh the log summaries: %w", err)
	}
	return n, nil
}

// summaryMark returns the summaries' watermark, and whether to read them:
// the role may, and fewer than SummaryTailLimit statements lie above it.
func summaryMark(ctx context.Context, db DBTX) (int64, bool, error) {
	var may bool
	if err := db.QueryRow(ctx, `SELECT has_table_privilege('pgundo.sum_state', 'SELECT')`).Scan(&may); err != nil || !may {
		return 0, false, err
	}
	var w, tail int64
	if err := db.QueryRow(ctx, `SELECT done_below FROM pgundo.sum_state`).Scan(&w); err != nil {
		return 0, false, fmt.Errorf("read the summaries' state: %w", err)
	}
	// The watermark as a value: the planner then sees how few statements
	// lie above it.
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT FROM pgundo.stmt WHERE id > $1 LIMIT $2) x`, w, summaryTailLimit).Scan(&tail); err != nil {
		return 0, false, fmt.Errorf("read the summaries' state: %w", err)
	}
	afterSummaryMark()
	return w, tail < int64(summaryTailLimit), nil
}

// notPruned is the condition that a summary row (alias x) is of a chunk
// still in the log.
const notPruned = "NOT EXISTS (SELECT FROM pgundo.pruned p WHERE p.chunk = x.chunk)"

// hourRange splits [since, until) into whole UTC hours [lo, hi), which the
// summaries answer, and the parts before and after, which the log does. ok
// is false when no whole hour lies inside (the log answers it all). A nil
// bound is open.
func hourRange(since, until *time.Time) (lo, hi *time.Time, ok bool) {
	if since != nil {
		l := since.Truncate(time.Hour)
		if l.Before(*since) {
			l = l.Add(time.Hour)
		}
		lo = &l
	}
	if until != nil {
		h := until.Truncate(time.Hour)
		hi = &h
	}
	return lo, hi, lo == nil || hi == nil || lo.Before(*hi)
}

// sessionConds renders f's set fields other than the time as conditions on
// a statement or summary row (alias a) and its session (s), with parameters
// added to args.
func sessionConds(f SessionFilter, a string, args *[]any) []string {
	var conds []string
	add := func(cond string, v any) {
		*args = append(*args, v)
		conds = append(conds, strings.ReplaceAll(strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(*args))), "a.", a+"."))
	}
	if f.User != "" {
		add("(a.role = $? OR s.session_role = $?)", f.User)
	}
	if f.App != "" {
		add("a.application_name = $?", f.App)
	}
	if f.TableOID != 0 {
		add("a.relid IN (SELECT relid FROM pg_partition_tree($?::oid) UNION SELECT $?::oid)", f.TableOID)
	}
	if f.Tag != "" {
		add("a.tag = $?", f.Tag)
	}
	if f.ID != "" {
		add("a.session_id = $?", f.ID)
	}
	return conds
}

// rankSessionsSummarized is rankSessions from the summaries up to watermark
// w and the log above it: the sessions with a matching hour of the
// summaries inside the time range, or a matching statement above w or in
// the parts of the range that are not whole hours; ranked by their last
// change.
func rankSessionsSummarized(ctx context.Context, db DBTX, f SessionFilter, w int64) ([]string, error) {
	args := []any{w}
	where := func(conds []string) string {
		if len(conds) == 0 {
			return ""
		}
		return " WHERE " + strings.Join(conds, " AND ")
	}
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	from := func(table, a string) string {
		if f.User != "" {
			return " FROM " + table + " " + a + " JOIN pgundo.session s ON s.id = " + a + ".session_id"
		}
		return " FROM " + table + " " + a
	}
	var branches []string
	lo, hi, whole := hourRange(f.Since, f.Until)
	if whole {
		conds := append(sessionConds(f, "x", &args), notPruned)
		if lo != nil {
			conds = append(conds, "x.hour >= "+param(*lo))
		}
		if hi != nil {
			conds = append(conds, "x.hour < "+param(*hi))
		}
		branches = append(branches, "SELECT x.session_id"+from("pgundo.sum_hour", "x")+where(conds))
	}
	// Statements above the watermark, in the whole range.
	conds := append(sessionConds(f, "st", &args), "st.id > $1")
	if f.Since != nil {
		conds = append(conds, "st.at >= "+param(*f.Since))
	}
	if f.Until != nil {
		conds = append(conds, "st.at < "+param(*f.Until))
	}
	branches = append(branches, "SELECT st.session_id"+from("pgundo.stmt", "st")+where(conds))
	// Statements of any id in the parts of the range that are not whole
	// hours (all of it when none is).
	edge := func(from_, to *time.Time) {
		conds := sessionConds(f, "st", &args)
		if from_ != nil {
			conds = append(conds, "st.at >= "+param(*from_))
		}
		if to != nil {
			conds = append(conds, "st.at < "+param(*to))
		}
		branches = append(branches, "SELECT st.session_id"+from("pgundo.stmt", "st")+where(conds))
	}
	switch {
	case !whole:
		edge(f.Since, f.Until)
	default:
		if lo != nil && lo.After(*f.Since) {
			edge(f.Since, lo)
		}
		if hi != nil && hi.Before(*f.Until) {
			edge(hi, f.Until)
		}
	}
	page := fmt.Sprintf(" OFFSET %d", f.Offset)
	if f.Limit > 0 {
		page = fmt.Sprintf(" LIMIT %d", f.Limit) + page
	}
	rows, err := db.Query(ctx, `
		WITH matched AS (`+strings.Join(branches, " UNION ")+`)
		SELECT l.session_id
		  FROM (SELECT y.session_id, max(y.last) AS last
		          FROM (SELECT x.session_id, x.last_at AS last FROM pgundo.sum_session x
		                 WHERE x.session_id IN (SELECT session_id FROM matched) AND `+notPruned+`
		                UNION ALL
		                SELECT st.session_id, max(st.at) FROM pgundo.stmt st
		                 WHERE st.id > $1 AND st.session_id IN (SELECT session_id FROM matched)
		                 GROUP BY st.session_id) y
		         GROUP BY y.session_id) l
		 ORDER BY l.last DESC, l.session_id DESC`+page, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// newestSessionsSummarized ranks every session by its last change, from the
// summaries up to w and the log above it.
func newestSessionsSummarized(ctx context.Context, db DBTX, w int64, offset int, limit *int) ([]string, error) {
	rows, err := db.Query(ctx, `
		SELECT y.session_id
		  FROM (SELECT x.session_id, x.last_at AS last FROM pgundo.sum_session x WHERE `+notPruned+`
		        UNION ALL
		        SELECT st.session_id, max(st.at) FROM pgundo.stmt st WHERE st.id > $1 GROUP BY st.session_id) y
		 GROUP BY y.session_id
		 ORDER BY max(y.last) DESC, y.session_id DESC
		 LIMIT $2 OFFSET $3`, w, limit, offset)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// sessionsSummarized is the query of Sessions' totals from the summaries up
// to their watermark and the statements above it, for the sessions $1. $2
// is the watermark read before, for the planner: a refresh may have moved
// it since, so the statement reads it again, in the snapshot it reads the
// summaries in (a total of the summaries of one watermark and the log above
// another would count the statements between them twice). Ranks need not:
// a session matched or a last change time seen twice is the same. A
// session's transactions are its runs of equal xids in id order: a run that
// goes on from one part (a chunk's summary, the statements above the
// watermark) into the next is counted once.
const sessionsSummarized = `
	WITH parts AS (
		SELECT x.session_id, x.stmts, x.changes, x.xacts, x.first_at, x.last_at, x.first_id, x.first_xid, x.last_id, x.last_xid,
		       x.last_app, x.tables, x.roles, x.tags
		  FROM pgundo.sum_session x
		 WHERE x.session_id = ANY ($1::text[]) AND ` + notPruned + `
		UNION ALL
		SELECT b.session_id, count(*), sum(b.rows), count(DISTINCT b.xid), min(b.at), max(b.at),
		       min(b.id), (array_agg(b.xid ORDER BY b.id))[1], max(b.id), (array_agg(b.xid ORDER BY b.id DESC))[1],
		       (array_agg(b.application_name ORDER BY b.id DESC))[1],
		       array_agg(DISTINCT quote_ident(b.schema_name) || '.' || quote_ident(b.table_name)),
		       array_agg(DISTINCT b.role),
		       coalesce(array_agg(DISTINCT b.tag) FILTER (WHERE b.tag IS NOT NULL), '{}')
		  FROM (SELECT st.*, st.id / pgundo._chunk_size() AS chunk FROM pgundo.stmt st
		         WHERE st.id > $2 AND st.id > (SELECT w.done_below FROM pgundo.sum_state w) AND st.session_id = ANY ($1::text[])) b
		 GROUP BY b.session_id, b.chunk),
	p AS MATERIALIZED (
		SELECT parts.*, CASE WHEN lag(last_xid) OVER (PARTITION BY session_id ORDER BY first_id) = first_xid THEN 1 ELSE 0 END AS joined
		  FROM parts)
	SELECT s.id, coalesce((array_agg(p.last_app ORDER BY p.last_id DESC))[1], ''),
	       s.session_role,
	       ARRAY(SELECT DISTINCT r FROM p p2, unnest(p2.roles) r WHERE p2.session_id = s.id AND r <> s.session_role ORDER BY 1),
	       s.backend_start, min(p.first_at), max(p.last_at),
	       coalesce(host(s.client_addr), ''), s.pid,
	       sum(p.changes)::bigint, (sum(p.xacts) - sum(p.joined))::bigint,
	       ARRAY(SELECT DISTINCT t FROM p p2, unnest(p2.tables) t WHERE p2.session_id = s.id ORDER BY 1),
	       ARRAY(SELECT DISTINCT t FROM p p2, unnest(p2.tags) t WHERE p2.session_id = s.id ORDER BY 1),
	       (SELECT u.undone_session FROM pgundo.undo u WHERE u.undo_session = s.id ORDER BY u.undone_session LIMIT 1),
	       (SELECT u.undo_session FROM pgundo.undo u WHERE u.undone_session = s.id ORDER BY u.at, u.undo_session LIMIT 1),
	       (SELECT coalesce(array_agg(u.undo_session ORDER BY u.at, u.undo_session), '{}') FROM pgundo.undo u WHERE u.undone_session = s.id),
	       CASE
	         WHEN d.n = 0 THEN NULL
	         WHEN d.n = sum(p.stmts)
	              AND NOT EXISTS (SELECT FROM pgundo.undo_scope sc JOIN pgundo.undo_left l ON l.undo_session = sc.undo_session AND l.done_by IS NULL
	                               JOIN pgundo.stmt x ON x.id = sc.stmt_id WHERE x.session_id = s.id) THEN 'undone'
	         ELSE 'partly undone' END
	  FROM pgundo.session s
	  JOIN p ON p.session_id = s.id
	  CROSS JOIN LATERAL (SELECT count(*) AS n FROM pgundo.undone d JOIN pgundo.stmt x ON x.id = d.stmt_id WHERE x.session_id = s.id) d
	 GROUP BY s.id, d.n
	 ORDER BY max(p.last_at) DESC, s.id DESC`

// ActivityPoint is the row changes of one series (a table or an
// application) in one time bucket.
type ActivityPoint struct {
	Bucket time.Time
	Series string
	Count  int64
}

// Activity returns the row changes in [since, until) per bucket (unit:
// minute, hour or day, in UTC) and per table (by "table") or application
// (by "app"), ordered by bucket and series. Hours and days read the
// summaries where they are close enough to the log's head, and the log
// for the rest (above the watermark as of the statement, as in
// sessionsSummarized); minutes read the log.
func Activity(ctx context.Context, db DBTX, since, until time.Time, unit, by string) ([]ActivityPoint, error) {
	series := map[string]string{
		"table": "quote_ident(a.schema_name) || '.' || quote_ident(a.table_name)",
		"app":   "coalesce(a.application_name, '')",
	}[by]
	if series == "" || unit != "minute" && unit != "hour" && unit != "day" {
		return nil, requestErr("activity by %q per %q: by table or app, per minute, hour or day", by, unit)
	}
	of := func(a string) string { return strings.ReplaceAll(series, "a.", a+".") }
	query := `SELECT st.at, ` + of("st") + `, st.rows FROM pgundo.stmt st WHERE st.at >= $1 AND st.at < $2`
	args := []any{since, until}
	if unit != "minute" {
		lo, hi, whole := hourRange(&since, &until)
		w, use, err := summaryMark(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("read activity: %w", err)
		}
		if use && whole {
			args = append(args, *lo, *hi, w)
			query = `SELECT x.hour, ` + of("x") + `, x.changes FROM pgundo.sum_activity x WHERE x.hour >= $3 AND x.hour < $4 AND ` + notPruned + `
				UNION ALL SELECT st.at, ` + of("st") + `, st.rows FROM pgundo.stmt st
				 WHERE st.id > $5 AND st.id > (SELECT w.done_below FROM pgundo.sum_state w) AND st.at >= $3 AND st.at < $4
				UNION ALL SELECT st.at, ` + of("st") + `, st.rows FROM pgundo.stmt st WHERE st.at >= $1 AND st.at < $3
				UNION ALL SELECT st.at, ` + of("st") + `, st.rows FROM pgundo.stmt st WHERE st.at >= $4 AND st.at < $2`
		}
	}
	rows, err := db.Query(ctx, `SELECT date_trunc('`+unit+`', y.at, 'UTC'), y.series, sum(y.n)::bigint
		  FROM (`+query+`) y (at, series, n)
		 GROUP BY 1, 2 ORDER BY 1, 2`, args...)
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	points, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ActivityPoint, error) {
		var p ActivityPoint
		return p, r.Scan(&p.Bucket, &p.Series, &p.Count)
	})
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	return points, nil
}
