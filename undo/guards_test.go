package undo_test

import (
	"errors"
	"fmt"
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
	_, err := undo.Apply(ctxT(t), w.undoConn(), undo.Selection{Sessions: []string{w.IDs[sc.Target]}}, sc.Opts, nil)
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

// TestUndoRefusesOrphanedChildrenOfPartition: the foreign key references
// one partition of the undone table, not the partitioned table: deleting a
// row of that partition must not orphan a child written since.
func TestUndoRefusesOrphanedChildrenOfPartition(t *testing.T) {
	t.Parallel()
	for _, opts := range []undo.Options{{}, {AlwaysPlan: true}} {
		refused(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE site (id int, region text, name text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE site_eu PARTITION OF site FOR VALUES IN ('eu');
				CREATE TABLE site_us PARTITION OF site FOR VALUES IN ('us');
				CREATE TABLE visit (id int PRIMARY KEY, site_id int, region text,
					CONSTRAINT visit_site_eu_fk FOREIGN KEY (site_id, region) REFERENCES site_eu (id, region));
				INSERT INTO site VALUES (1, 'eu', 'a'), (1, 'us', 'b');`,
			Track: []string{"site", "visit"},
			Steps: seq(
				on(0, `INSERT INTO site VALUES (10, 'eu', 'new')`, `UPDATE site SET name = 'c' WHERE id = 1`),
				on(1, `INSERT INTO visit VALUES (1, 10, 'eu')`),
			),
		}, undo.ErrForeignKey, "foreign key visit_site_eu_fk", "public.visit", "public.site_eu", "nothing was changed")
	}
}

// TestUndoRefusesMissingParentOfPartition: the foreign key is declared on
// one partition of the undone table only (a plain one, or one partitioned
// itself, whose rows live in the leaves below it): a row put back into that
// partition must find its parent.
func TestUndoRefusesMissingParentOfPartition(t *testing.T) {
	t.Parallel()
	for name, eu := range map[string]string{
		"partition": `CREATE TABLE orders_eu PARTITION OF orders (CONSTRAINT orders_eu_customer_fk FOREIGN KEY (customer_id) REFERENCES customer_eu) FOR VALUES IN ('eu');`,
		"sub-partitioned": `CREATE TABLE orders_eu PARTITION OF orders (CONSTRAINT orders_eu_customer_fk FOREIGN KEY (customer_id) REFERENCES customer_eu)
			FOR VALUES IN ('eu') PARTITION BY RANGE (id);
			CREATE TABLE orders_eu_low PARTITION OF orders_eu FOR VALUES FROM (0) TO (100);`,
	} {
		for _, opts := range []undo.Options{{}, {AlwaysPlan: true}} {
			t.Run(fmt.Sprintf("%s/planned=%v", name, opts.AlwaysPlan), func(t *testing.T) {
				t.Parallel()
				refused(t, scenario{
					Opts: opts,
					Setup: `
						CREATE TABLE customer_eu (id int PRIMARY KEY);
						CREATE TABLE orders (id int, region text, customer_id int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
						` + eu + `
						CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
						INSERT INTO customer_eu VALUES (7), (8);
						INSERT INTO orders VALUES (1, 'eu', 7), (2, 'eu', 8), (3, 'us', 7);`,
					Track: []string{"orders", "customer_eu"},
					Steps: seq(
						on(0, `DELETE FROM orders WHERE id IN (1, 3)`),
						on(1, `DELETE FROM customer_eu WHERE id = 7`),
					),
				}, undo.ErrForeignKey, "foreign key orders_eu_customer_fk", "public.orders_eu", "customer_id=7", "nothing was changed")
			})
		}
	}
}

// TestUndoPartitionForeignKeysKept: where the keys declared on partitions
// still hold, the undo goes ahead (on both paths) and equals the database
// where the session never ran.
func TestUndoPartitionForeignKeysKept(t *testing.T) {
	t.Parallel()
	for _, opts := range []undo.Options{{}, {AlwaysPlan: true}} {
		checkUndo(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE customer_eu (id int PRIMARY KEY);
				CREATE TABLE orders (id int, region text, customer_id int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE orders_eu PARTITION OF orders (CONSTRAINT orders_eu_customer_fk FOREIGN KEY (customer_id) REFERENCES customer_eu) FOR VALUES IN ('eu');
				CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
				CREATE TABLE note (id int PRIMARY KEY, order_id int, region text,
					CONSTRAINT note_orders_eu_fk FOREIGN KEY (order_id, region) REFERENCES orders_eu (id, region));
				INSERT INTO customer_eu VALUES (7), (8), (9);
				INSERT INTO orders VALUES (1, 'eu', 7), (2, 'eu', 8), (3, 'us', 9);
				INSERT INTO note VALUES (1, 2, 'eu');`,
			Track: []string{"orders", "customer_eu", "note"},
			Steps: seq(
				on(0, `DELETE FROM orders WHERE id IN (1, 3)`, `UPDATE orders SET customer_id = 9 WHERE id = 2`, `INSERT INTO orders VALUES (4, 'eu', 8)`),
				on(1, `DELETE FROM customer_eu WHERE id = 8 AND NOT EXISTS (SELECT FROM orders WHERE customer_id = 8)`, `INSERT INTO note VALUES (2, 2, 'eu')`),
			),
		})
	}
}
