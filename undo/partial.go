package undo

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

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

// recordWhatWasUndone records, in the undo's transaction, the statements it
// undid, the sessions it undid changes of, the earlier undos' left rows it
// took up, and the rows it left itself (with the statements it selected).
func (r *runner) recordWhatWasUndone(ctx context.Context) error {
	tx, me := r.tx, r.plan.UndoSession
	if _, err := tx.Exec(ctx, `INSERT INTO pgundo.undone (stmt_id, undo_session) SELECT id, $1 FROM pgundo_sel`, me); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO pgundo.undo (undo_session, undone_session)
		SELECT DISTINCT $1::text, session_id FROM (
		  SELECT session_id FROM pgundo_sel
		  UNION ALL
		  SELECT st.session_id FROM pgundo.undo_scope sc JOIN pgundo.stmt st ON st.id = sc.stmt_id WHERE sc.undo_session = ANY ($2)) s
		ON CONFLICT DO NOTHING`, me, r.leftBy); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE pgundo.undo_left SET done_by = $1 WHERE done_by IS NULL AND undo_session = ANY ($2)`, me, r.leftBy); err != nil {
		return err
	}
	var left int64
	for _, t := range r.planned {
		tag, err := tx.Exec(ctx, t.leftSQL(fmt.Sprintf("pgundo_c_%d", t.oid), "pgundo.undo_left"), me, t.oid)
		if err != nil {
			return err
		}
		left += tag.RowsAffected()
	}
	if left > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO pgundo.undo_scope (undo_session, stmt_id) SELECT $1, id FROM pgundo_sel_all ON CONFLICT DO NOTHING`, me); err != nil {
			return err
		}
	}
	return nil
}
