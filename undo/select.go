package undo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgundo/pgundo/internal/timefmt"
)

// Step 1, select and net. selectStatements puts the statements to undo into
// temp table pgundo_sel, less what earlier undos undid (leaveOutUndone).
// buildNet sums their row images into pgundo_net, which the planned path
// classifies (classify.go); the straight path (apply_straight.go) reads
// pgundo_sel and the log instead.

// selectStatements fills temp table pgundo_sel with the selected statements
// and checks they exist and were not undone before.
func (r *runner) selectStatements(ctx context.Context, sel Selection) error {
	tx := r.tx
	xids := make([]string, len(sel.TxIDs))
	for i, x := range sel.TxIDs {
		xids[i] = fmt.Sprint(x)
	}
	sessions := sel.Sessions
	if sessions == nil {
		sessions = []string{}
	}
	for _, id := range sessions {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgundo.session WHERE id = $1)`, id).Scan(&ok); err != nil {
			return fmt.Errorf("look up session %s: %w", id, err)
		}
		if !ok {
			return &NotFoundError{What: fmt.Sprintf("session %q", id)}
		}
	}
	_, err := tx.Exec(ctx, `
		CREATE TEMP TABLE pgundo_sel ON COMMIT DROP AS
		SELECT st.id, st.relid, coalesce(pg_partition_root(st.relid)::oid, st.relid) AS root,
		       st.session_id, st.schema_name, st.table_name, st.rows
		  FROM pgundo.stmt st
		 WHERE (cardinality($1::text[]) = 0 OR st.session_id = ANY ($1))
		   AND (cardinality($2::text[]) = 0 OR st.xid = ANY ($2::xid8[]))
		   AND ($3 = '' OR st.tag = $3)
		   AND ($4 = '' OR st.application_name = $4)
		   AND ($5 = '' OR st.role = $5 OR EXISTS (SELECT FROM pgundo.session s WHERE s.id = st.session_id AND s.session_role = $5))
		   AND ($6::timestamptz IS NULL OR st.at >= $6)
		   AND ($7::timestamptz IS NULL OR st.at < $7)`,
		sessions, xids, sel.Tag, sel.App, sel.User, sel.Since, sel.Until)
	if err != nil {
		return fmt.Errorf("select the changes to undo: %w", err)
	}
	var n int64
	var ids []string
	var minID, maxID *int64
	err = tx.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(DISTINCT session_id ORDER BY session_id), '{}'), min(id), max(id), coalesce(sum(rows), 0) FROM pgundo_sel`).Scan(&n, &ids, &minID, &maxID, &r.plan.Changes)
	if err != nil {
		return fmt.Errorf("select the changes to undo: %w", err)
	}
	if n == 0 {
		return &NotFoundError{What: "changes for " + describeSelection(sel)}
	}
	r.plan.Sessions, r.minStmt, r.maxStmt = ids, *minID, *maxID
	var prunedSession string
	var prunedAt time.Time
	// A session selected by id lost changes if prune took any of its
	// statements. A selection by transaction, tag, application or user
	// takes whole transactions: it lost changes only if a selected
	// transaction may have had statements in a pruned chunk (its xid is not
	// newer than the newest one pruned).
	err = tx.QueryRow(ctx, `SELECT s.id, s.pruned_at FROM pgundo.session s
		 WHERE s.id IN (SELECT session_id FROM pgundo_sel) AND s.pruned_at IS NOT NULL
		   AND (cardinality($1::text[]) > 0
		        OR EXISTS (SELECT FROM pgundo_sel x JOIN pgundo.stmt st ON st.id = x.id
		                    WHERE st.session_id = s.id AND st.xid::text::bigint <= (SELECT max(p.max_xid::text::bigint) FROM pgundo.pruned p)))
		 ORDER BY s.id LIMIT 1`, sessions).Scan(&prunedSession, &prunedAt)
	switch {
	case err == nil:
		return &RefusedError{Kind: ErrPruned, Detail: fmt.Sprintf(
			"session %s was partly removed from the log by pgundo prune at %s (its older changes are gone), so it can no longer be undone exactly; nothing was changed",
			prunedSession, timefmt.Format(prunedAt))}
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("check for pruned sessions: %w", err)
	}
	if err := r.leaveOutUndone(ctx); err != nil {
		return err
	}
	// The index serves joins to pgundo_sel where hash joins are off (the
	// fast path's, see lookupPlan).
	if _, err := tx.Exec(ctx, `CREATE INDEX ON pgundo_sel (root, id); ANALYZE pgundo_sel`); err != nil {
		return err
	}
	return nil
}

// NotFoundError is returned when the selection names something the log
// does not hold.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no %s in the log; pgundo sessions lists what was recorded", e.What)
}

func describeSelection(sel Selection) string {
	var parts []string
	if len(sel.Sessions) > 0 {
		parts = append(parts, "session "+strings.Join(sel.Sessions, ", "))
	}
	if len(sel.TxIDs) > 0 {
		parts = append(parts, fmt.Sprintf("transaction %v", sel.TxIDs))
	}
	if sel.Tag != "" {
		parts = append(parts, fmt.Sprintf("tag %q", sel.Tag))
	}
	if sel.App != "" {
		parts = append(parts, fmt.Sprintf("application %q", sel.App))
	}
	if sel.User != "" {
		parts = append(parts, fmt.Sprintf("user %q", sel.User))
	}
	if sel.Since != nil {
		parts = append(parts, "since "+timefmt.Format(*sel.Since))
	}
	if sel.Until != nil {
		parts = append(parts, "until "+timefmt.Format(*sel.Until))
	}
	return strings.Join(parts, ", ")
}

// Undoing what is left.
//
// What an undo undid is recorded per statement (pgundo.undone) and, for the
// rows it left as they were (skipped conflicts, rows merge could not
// restore), per row (pgundo.undo_left, sql/006_partial_undo.sql). A later
// undo of the same changes undoes exactly what is left: the selected
// statements not undone yet, plus the rows earlier undos left. It refuses
// only when nothing is left.

// leaveOutUndone takes the statements already undone out of pgundo_sel
// (keeping the whole selection in pgundo_sel_all), loads the rows earlier
// undos of the selection left into pgundo_left, and refuses when nothing is
// left to undo, or when an earlier undo left rows of changes that are only
// partly selected now (the rows may belong to the changes not selected).
func (r *runner) leaveOutUndone(ctx context.Context) error {
	tx := r.tx
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE pgundo_sel_all ON COMMIT DROP AS SELECT id, session_id FROM pgundo_sel`); err != nil {
		return fmt.Errorf("check for an earlier undo: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT l.undo_session,
		       NOT EXISTS (SELECT FROM pgundo.undo_scope sc WHERE sc.undo_session = l.undo_session
		                      AND sc.stmt_id NOT IN (SELECT id FROM pgundo_sel_all)) AS covered,
		       (SELECT coalesce(array_agg(DISTINCT st.session_id ORDER BY st.session_id), '{}') FROM pgundo.undo_scope sc
		          JOIN pgundo.stmt st ON st.id = sc.stmt_id WHERE sc.undo_session = l.undo_session) AS sessions
		  FROM (SELECT DISTINCT l.undo_session FROM pgundo.undo_left l
		          JOIN pgundo.undo_scope sc ON sc.undo_session = l.undo_session
		         WHERE l.done_by IS NULL AND sc.stmt_id IN (SELECT id FROM pgundo_sel_all)) l
		 ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("check for an earlier undo: %w", err)
	}
	type earlier struct {
		undo     string
		covered  bool
		sessions []string
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (earlier, error) {
		var e earlier
		err := row.Scan(&e.undo, &e.covered, &e.sessions)
		return e, err
	})
	if err != nil {
		return fmt.Errorf("check for an earlier undo: %w", err)
	}
	r.leftBy = nil
	for _, e := range found {
		if !e.covered {
			return &RefusedError{Kind: ErrUndoneTogether, Detail: fmt.Sprintf(
				"undo %s left rows of session %s as they were (conflicts it skipped) and can only be finished as it was started, with all of those changes selected; nothing was changed; run: pgundo undo %s",
				e.undo, strings.Join(e.sessions, ", "), strings.Join(e.sessions, " "))}
		}
		r.leftBy = append(r.leftBy, e.undo)
	}
	if r.leftBy == nil {
		r.leftBy = []string{}
	}
	if _, err := tx.Exec(ctx, `
		CREATE TEMP TABLE pgundo_left ON COMMIT DROP AS
		SELECT relid, old, new FROM pgundo.undo_left WHERE done_by IS NULL AND undo_session = ANY ($1)`, r.leftBy); err != nil {
		return fmt.Errorf("read the rows earlier undos left: %w", err)
	}
	var undoneBy []string
	var undoneStmts, leftStmts, leftRows int64
	err = tx.QueryRow(ctx, `
		WITH gone AS (DELETE FROM pgundo_sel s USING pgundo.undone u WHERE u.stmt_id = s.id RETURNING u.undo_session)
		SELECT (SELECT count(*) FROM gone), (SELECT coalesce(array_agg(DISTINCT undo_session ORDER BY undo_session), '{}') FROM gone)`).Scan(&undoneStmts, &undoneBy)
	if err != nil {
		return fmt.Errorf("check for an earlier undo: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgundo_sel), (SELECT count(*) FROM pgundo_left)`).Scan(&leftStmts, &leftRows); err != nil {
		return fmt.Errorf("check for an earlier undo: %w", err)
	}
	if leftStmts == 0 && leftRows == 0 {
		what := "session " + strings.Join(r.plan.Sessions, ", ") + " was"
		if len(r.plan.Sessions) > 1 {
			what = "sessions " + strings.Join(r.plan.Sessions, ", ") + " were"
		}
		return &RefusedError{Kind: ErrAlreadyUndone, Detail: fmt.Sprintf(
			"%s already undone by session %s, and nothing of the selected changes is left to undo; nothing was changed (to put the changes back, undo %s: that is a redo)",
			what, strings.Join(undoneBy, ", "), strings.Join(undoneBy, " "))}
	}
	if undoneStmts > 0 || leftRows > 0 {
		// The plan counts what is left: the statements not undone and the
		// rows earlier undos left.
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(rows), 0) + (SELECT count(*) FROM pgundo_left) FROM pgundo_sel`).Scan(&r.plan.Changes); err != nil {
			return err
		}
		r.progress("%d of the selected statements were undone before (by session %s); undoing what is left: %d statements and %d rows left by earlier undos",
			undoneStmts, strings.Join(undoneBy, ", "), leftStmts, leftRows)
	}
	return nil
}

// buildNet sums the selected changes into pgundo_net: per root table and row
// image, +1 per after image and -1 per before image; zero sums are dropped.
func (r *runner) buildNet(ctx context.Context) error {
	_, err := r.tx.Exec(ctx, `
		CREATE TEMP TABLE pgundo_net ON COMMIT DROP AS
		SELECT x.relid, x.img COLLATE "C" AS img, sum(x.d)::int AS cnt
		  FROM (SELECT s.root AS relid, v.img, v.d
		          FROM pgundo_sel s
		          JOIN pgundo.change c ON c.stmt_id = s.id
		         CROSS JOIN LATERAL (VALUES (c.new, 1), (c.old, -1)) v (img, d)
		         WHERE c.stmt_id BETWEEN $1 AND $2
		        UNION ALL
		        SELECT l.relid, v.img, v.d
		          FROM pgundo_left l CROSS JOIN LATERAL (VALUES (l.new, 1), (l.old, -1)) v (img, d)) x
		 WHERE x.img IS NOT NULL
		 GROUP BY 1, x.img COLLATE "C"
		HAVING sum(x.d) <> 0`, r.minStmt, r.maxStmt)
	if err != nil {
		return fmt.Errorf("read the sessions' changes from the log: %w", err)
	}
	_, err = r.tx.Exec(ctx, `ANALYZE pgundo_net`)
	return err
}
