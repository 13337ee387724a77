package undo_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// refused runs sc's steps in one database, undoes the target session and
// requires a refusal of kind want whose message contains every part; data
// and log must be exactly as before. It returns the message.
func refused(t *testing.T, sc scenario, want error, parts ...string) string {
	t.Helper()
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := w.all()
	_, err := undoSession(t, w, sc.Target)
	require.Error(t, err)
	var re *undo.RefusedError
	require.True(t, errors.As(err, &re), "want a refusal, got %T: %v", err, err)
	require.ErrorIs(t, err, want)
	for _, p := range parts {
		require.Contains(t, err.Error(), p)
	}
	requireSameTables(t, before, w.all(), "data and log after the refused undo")
	return err.Error()
}

// TestUndoRefusesOrphanedChildren: session 0 inserts a parent, session 1
// then inserts a child referencing it. Undoing session 0 would delete the
// parent under session_replication_role = replica, which skips FK checks:
// pgundo checks the keys itself and refuses, naming the constraint, the
// child table and the key.
func TestUndoRefusesOrphanedChildren(t *testing.T) {
	t.Parallel()
	refused(t, scenario{
		Setup: `
			CREATE TABLE parent (id int PRIMARY KEY, v text);
			CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
			INSERT INTO parent VALUES (1, 'a');`,
		Steps: seq(
			on(0, `INSERT INTO parent VALUES (10, 'new')`, `UPDATE parent SET v = 'b' WHERE id = 1`),
			on(1, `INSERT INTO child VALUES (1, 10)`),
		),
		Target: 0,
	}, undo.ErrForeignKey, "foreign key child_parent_fk", "public.child", "id=10", "nothing was changed")
}

// TestUndoRefusesMissingParent: session 0 deletes a child, session 1 then
// deletes its parent. Putting the child back would reference a parent that
// no longer exists.
func TestUndoRefusesMissingParent(t *testing.T) {
	t.Parallel()
	refused(t, scenario{
		Setup: `
			CREATE TABLE parent (id int PRIMARY KEY);
			CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
			INSERT INTO parent VALUES (1), (2);
			INSERT INTO child VALUES (1, 1), (2, 2);`,
		Steps: seq(
			on(0, `DELETE FROM child WHERE id = 2`),
			on(1, `DELETE FROM parent WHERE id = 2`),
		),
		Target: 0,
	}, undo.ErrForeignKey, "foreign key child_parent_fk", "parent_id=2", "public.parent")
}

// TestUndoForeignKeysKept: an undo that keeps every key intact (the session
// created a parent and its children; undo removes both) goes through.
func TestUndoForeignKeysKept(t *testing.T) {
	t.Parallel()
	checkUndo(t, scenario{
		Setup: `
			CREATE TABLE parent (id int PRIMARY KEY);
			CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
			INSERT INTO parent VALUES (1);
			INSERT INTO child VALUES (1, 1);`,
		Steps: seq(
			on(0, `INSERT INTO parent VALUES (2)`, `INSERT INTO child VALUES (2, 2), (3, 2)`, `DELETE FROM parent WHERE id = 1`),
			on(1, `INSERT INTO child VALUES (4, NULL)`),
		),
		Target: 0,
	})
}

// TestUndoRefusesAlwaysTriggers: an application trigger set to ENABLE
// ALWAYS (or REPLICA) fires even under session_replication_role = replica;
// the undo refuses, naming it, instead of letting it write.
func TestUndoRefusesAlwaysTriggers(t *testing.T) {
	t.Parallel()
	refused(t, scenario{
		Setup: `
			CREATE TABLE doc (id int PRIMARY KEY, body text);
			CREATE TABLE hist (doc_id int, body text);
			CREATE FUNCTION doc_hist() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO hist VALUES (NEW.id, NEW.body); RETURN NULL; END $$;
			CREATE TRIGGER "Doc History" AFTER UPDATE ON doc FOR EACH ROW EXECUTE FUNCTION doc_hist();
			ALTER TABLE doc ENABLE ALWAYS TRIGGER "Doc History";
			INSERT INTO doc VALUES (1, 'a');`,
		Track: []string{"doc"},
		Steps: on(0, `UPDATE doc SET body = 'b'`),
	}, undo.ErrAlwaysTriggers, `public.doc ("Doc History", ENABLE ALWAYS)`, "nothing was changed")
}

// TestUndoConflictColumnsWithNulls: the conflict names the differing
// columns even when the row holds NULLs (the incident: the patch set a note
// to NULL, a user edited another column since).
func TestUndoConflictColumnsWithNulls(t *testing.T) {
	t.Parallel()
	w := newWorld(t, scenario{
		Setup: `CREATE TABLE t (id int PRIMARY KEY, a text, note text); INSERT INTO t VALUES (1, 'x', 'n')`,
		Steps: seq(on(0, `UPDATE t SET note = NULL`), on(1, `UPDATE t SET a = 'y'`)),
	}, nil)
	w.run(seq(on(0, `UPDATE t SET note = NULL`), on(1, `UPDATE t SET a = 'y'`)), nil)
	_, err := undoSession(t, w, 0)
	var ce *undo.ConflictError
	require.True(t, errors.As(err, &ce), "%v", err)
	require.Len(t, ce.Plan.Conflicts, 1)
	require.Equal(t, []string{"a"}, ce.Plan.Conflicts[0].Columns)
}
