package undo

import (
	"context"
	"fmt"
)

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
