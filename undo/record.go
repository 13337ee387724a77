package undo

import (
	"context"
	"fmt"
)

// Step 6, record: the undo's own session is linked to what it undid
// (pgundo.undone, pgundo.undo) and to the rows it left (pgundo.undo_left,
// for a later undo: see leaveOutUndone), deferred constraints are checked,
// and the transaction commits, or rolls back in a dry run.

// record marks the selected statements undone by this transaction's
// session, and commits (see finish).
func (r *runner) record(ctx context.Context) (*Plan, error) {
	tx := r.tx
	if err := tx.QueryRow(ctx, `SELECT pgundo._session()`).Scan(&r.plan.UndoSession); err != nil {
		return nil, fmt.Errorf("record the undo: %w", err)
	}
	if err := r.recordWhatWasUndone(ctx); err != nil {
		return nil, fmt.Errorf("record the undo: %w", err)
	}
	return r.finish(ctx)
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

// finish has deferred constraints checked as COMMIT would check them, and
// commits; in a dry run it rolls everything back instead. The progress
// lines about rows written are given once the undo committed.
func (r *runner) finish(ctx context.Context) (*Plan, error) {
	tx := r.tx
	// What COMMIT would check, checked now: a dry run fails here as the
	// commit would.
	if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
		return nil, fmt.Errorf("undo: a deferred constraint failed when checked as COMMIT would check it; nothing was changed: %w", err)
	}
	if !r.commit {
		if err := tx.Rollback(ctx); err != nil {
			return nil, fmt.Errorf("roll back the dry run: %w", err)
		}
		r.plan.UndoSession, r.plan.RowsChanged = "", 0
		return r.plan, nil
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit undo: %w", err)
	}
	r.plan.Applied = true
	for _, l := range r.written {
		r.progress("%s", l)
	}
	return r.plan, nil
}
