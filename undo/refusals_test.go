package undo_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// Refusals on purpose: the schema changed since capture so that a row
// cannot be put back as it was. The undo must refuse with the column named,
// as a *undo.RefusedError of kind ErrSchemaChanged, and leave data and log
// exactly as they were, in a dry run (MakePlan) and in Apply alike.

// schemaSetup has two tables: t, whose columns the tests change after the
// session, and u, which the same session changes too (the refusal must
// cover the whole undo, not only t).
const schemaSetup = `
	CREATE TABLE t (id int PRIMARY KEY, a text, b text, c int NOT NULL);
	INSERT INTO t SELECT g, 'a' || g, 'b' || g, g FROM generate_series(1, 10) g;
	CREATE TABLE u (id int PRIMARY KEY, v text);
	INSERT INTO u VALUES (1, 'one'), (2, 'two');`

// schemaSession updates, deletes and inserts rows of t (touching column b
// and c) and changes u.
var schemaSession = on(0,
	`UPDATE t SET b = 'patched', c = c + 100 WHERE id <= 4`,
	`DELETE FROM t WHERE id = 5`,
	`INSERT INTO t VALUES (11, 'a11', 'b11', 11)`,
	`UPDATE u SET v = 'patched' WHERE id = 1`)

// requireSchemaRefusal runs the session, then ddl on the inspection
// connection, and requires both a dry run and an apply of the undo to be
// refused with a message matching each of want, changing nothing.
func requireSchemaRefusal(t *testing.T, ddl string, want ...string) {
	t.Helper()
	sc := scenario{Setup: schemaSetup, Steps: schemaSession}
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	_, err := w.Conn.Exec(ctxT(t), ddl)
	require.NoError(t, err, ddl)
	before := w.all()

	sel := undo.Selection{Sessions: w.IDs[:1]}
	for _, mode := range []string{"dry run", "apply"} {
		var err error
		var plan *undo.Plan
		if mode == "apply" {
			plan, err = undo.Apply(ctxT(t), w.undoConn(), sel, undo.Options{}, nil)
		} else {
			plan, err = undo.MakePlan(ctxT(t), w.undoConn(), sel, undo.Options{})
		}
		require.Error(t, err, "%s after %s: plan %+v", mode, ddl, plan)
		var re *undo.RefusedError
		require.True(t, errors.As(err, &re), "%s: want a *undo.RefusedError, got %T: %v", mode, err, err)
		require.ErrorIs(t, err, undo.ErrSchemaChanged, mode)
		msg := err.Error()
		for _, pat := range want {
			require.Regexp(t, regexp.MustCompile(pat), msg, "%s: refusal message", mode)
		}
		t.Logf("%s refused: %s", mode, msg)
		require.Contains(t, msg, "public.t", "%s: the message names the table", mode)
		require.Contains(t, msg, "nothing was changed", mode)
		requireSameTables(t, before, w.all(), mode+": data and log after the refused undo")
	}
}

// TestUndoRefusesDroppedColumn: the session changed t's rows; then column b
// is dropped. The row images hold b, so the rows cannot be put back.
func TestUndoRefusesDroppedColumn(t *testing.T) {
	t.Parallel()
	requireSchemaRefusal(t, `ALTER TABLE t DROP COLUMN b`, `column "?b"? was dropped`)
}

// TestUndoRefusesRetypedColumn: the session changed t's rows; then column c
// changes type (int to bigint).
func TestUndoRefusesRetypedColumn(t *testing.T) {
	t.Parallel()
	requireSchemaRefusal(t, `ALTER TABLE t ALTER COLUMN c TYPE bigint`, `column "?c"? changed type from integer to bigint`)
}

// TestUndoRefusesRetypedUntouchedColumn: the type change is on a column the
// session never changed (a); the images still hold it in the old type.
func TestUndoRefusesRetypedUntouchedColumn(t *testing.T) {
	t.Parallel()
	requireSchemaRefusal(t, `ALTER TABLE t ALTER COLUMN a TYPE varchar(20)`, `column "?a"? changed type from text to character varying\(20\)`)
}

// TestUndoRefusesInheritanceChild: after the session, a table inherits from
// t (track refuses inheritance trees, but one can be made later). The
// undo's statements on t would also reach the child's rows (here rows with
// the keys and values the session left in t), so the undo refuses, naming
// the child.
func TestUndoRefusesInheritanceChild(t *testing.T) {
	t.Parallel()
	requireSchemaRefusal(t, `CREATE TABLE tc () INHERITS (t); INSERT INTO tc VALUES (1, 'a1', 'patched', 101), (11, 'a11', 'b11', 11)`,
		`inheritance`, `public\.tc`, `NO INHERIT`)
}
