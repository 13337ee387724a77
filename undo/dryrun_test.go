package undo_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/undo"
)

// A dry run (MakePlan) runs every check Apply runs, foreign keys included,
// in a transaction it rolls back: it refuses exactly when and as Apply
// does, says nothing was applied before refusing, and leaves every table
// (data, log chunks, pgundo.undo and pgundo.undone) as it was.

// fullState returns every table's rows as text, sorted bytewise, per
// table: every plain table and partition of every schema but the system
// ones, pgundo's log chunks included (snapshot reads the partitioned log
// tables with ONLY, which holds no rows).
func fullState(t *testing.T, conn *pgx.Conn) map[string][]string {
	t.Helper()
	_, err := conn.Exec(ctxT(t), `SET datestyle = 'ISO, YMD'; SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; SET intervalstyle = 'postgres'`)
	require.NoError(t, err)
	names := queryStrings(t, conn, `
		SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
		 ORDER BY 1`)
	out := map[string][]string{}
	for _, n := range names {
		rows := queryStrings(t, conn, fmt.Sprintf(`SELECT x::text FROM ONLY %s x`, n))
		slices.Sort(rows)
		if rows == nil {
			rows = []string{}
		}
		out[n] = rows
	}
	return out
}

// writeLine matches a progress line that says rows were written: none may
// come before a refusal.
var writeLine = regexp.MustCompile(`(?i)^(applied|undone|restored)\b|\d+ restored|rows written`)

// refusedAlike runs sc, then a dry run and an apply of the undo of the
// target session. Both must refuse with a *undo.RefusedError of kind want
// and the same message, containing every part parts(w) returns and none of
// absent; both must give the same progress lines, none of them saying rows
// were written; and every table must hold exactly what it held before,
// after each. It returns the message.
func refusedAlike(t *testing.T, sc scenario, want error, parts func(w *world) []string, absent ...string) string {
	t.Helper()
	w := newWorld(t, sc, nil)
	w.run(sc.Steps, nil)
	before := fullState(t, w.Conn)
	sel := undo.Selection{Sessions: []string{w.IDs[sc.Target]}}
	var msgs [2]string
	var lines [2][]string
	for i, mode := range []string{"dry run", "apply"} {
		opts := sc.Opts
		opts.Progress = func(m string) { lines[i] = append(lines[i], m) }
		var plan *undo.Plan
		var err error
		if mode == "apply" {
			plan, err = undo.Apply(ctxT(t), w.undoConn(), sel, opts, nil)
		} else {
			plan, err = undo.MakePlan(ctxT(t), w.undoConn(), sel, opts)
		}
		require.Error(t, err, "%s: plan %+v", mode, plan)
		var re *undo.RefusedError
		require.True(t, errors.As(err, &re), "%s: want a refusal, got %T: %v", mode, err, err)
		require.ErrorIs(t, err, want, mode)
		msgs[i] = err.Error()
		for _, p := range parts(w) {
			require.Contains(t, msgs[i], p, mode)
		}
		for _, a := range absent {
			require.NotContains(t, msgs[i], a, mode)
		}
		for _, l := range lines[i] {
			require.NotRegexp(t, writeLine, l, "%s: a progress line before the refusal says rows were written", mode)
		}
		requireSameTables(t, before, fullState(t, w.Conn), mode+": every table after the refused undo")
	}
	require.Equal(t, msgs[0], msgs[1], "the dry run's refusal vs the apply's")
	require.Equal(t, lines[0], lines[1], "the dry run's progress vs the apply's")
	t.Logf("refused: %s", msgs[0])
	return msgs[0]
}

// bothPaths runs f with the fast path allowed and with AlwaysPlan.
func bothPaths(t *testing.T, f func(t *testing.T, opts undo.Options)) {
	for _, opts := range []undo.Options{{}, {AlwaysPlan: true}} {
		t.Run(fmt.Sprintf("planned=%v", opts.AlwaysPlan), func(t *testing.T) {
			t.Parallel()
			f(t, opts)
		})
	}
}

// TestDryRunRefusesOrphanedChild: session 0 inserts a parent row, session 1
// a child row referencing it. Undoing session 0 would delete the parent:
// the dry run refuses as the apply does, naming the parent's key, the
// child row and the session that wrote it, and the command to undo it.
func TestDryRunRefusesOrphanedChild(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE parent (id int PRIMARY KEY, v text);
				CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent, note text);
				INSERT INTO parent VALUES (1, 'a');
				INSERT INTO child VALUES (1, 1, 'old');`,
			Steps: seq(
				on(0, `INSERT INTO parent VALUES (10, 'new')`, `UPDATE parent SET v = 'b' WHERE id = 1`),
				on(1, `INSERT INTO child VALUES (2, 10, 'later')`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.parent id=10", "public.child id=2", "foreign key child_parent_fk",
				"written by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		})
	})
}

// TestDryRunRefusesMissingParent: session 0 deletes a child row, session 1
// then deletes its parent. Putting the child back would reference a parent
// that is gone: the dry run refuses as the apply does, naming the session
// that deleted the parent.
func TestDryRunRefusesMissingParent(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE parent (id int PRIMARY KEY);
				CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
				INSERT INTO parent VALUES (1), (2);
				INSERT INTO child VALUES (1, 1), (2, 2);`,
			Steps: seq(
				on(0, `DELETE FROM child WHERE id = 2`),
				on(1, `DELETE FROM parent WHERE id = 2`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.child id=2", "parent_id=2", "public.parent", "foreign key child_parent_fk",
				"deleted by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		})
	})
}

// TestDryRunRefusesOrphanedChildWithoutKeys: the parent has no primary key
// (a UNIQUE column is referenced), nor has the child: the undo of the
// parent's insert goes the planned path, matching rows by whole value.
func TestDryRunRefusesOrphanedChildWithoutKeys(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE parent (code text UNIQUE, v text);
				CREATE TABLE child (code text CONSTRAINT child_code_fk REFERENCES parent (code), n int);
				INSERT INTO parent VALUES ('a', 'x');`,
			Steps: seq(
				on(0, `INSERT INTO parent VALUES ('new', 'y')`, `UPDATE parent SET v = 'z' WHERE code = 'a'`),
				on(1, `INSERT INTO child VALUES ('new', 7)`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.parent code=new", "public.child row (new,7)", "foreign key child_code_fk",
				"written by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		})
	})
}

// TestDryRunRefusesMissingParentWithoutKey: the child has no primary key;
// session 0 deleted one of its rows, session 1 the row's parent.
func TestDryRunRefusesMissingParentWithoutKey(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE parent (id int PRIMARY KEY);
				CREATE TABLE child (parent_id int CONSTRAINT child_parent_fk REFERENCES parent, note text);
				INSERT INTO parent VALUES (1), (2);
				INSERT INTO child VALUES (1, 'a'), (2, 'b');`,
			Steps: seq(
				on(0, `DELETE FROM child WHERE parent_id = 2`),
				on(1, `DELETE FROM parent WHERE id = 2`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.child row (2,b)", "parent_id=2", "public.parent", "foreign key child_parent_fk",
				"deleted by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		})
	})
}

// TestDryRunRefusesOrphanedPartitionedChild: the referencing table is
// partitioned; the refusal names it, not the partition the row is in.
func TestDryRunRefusesOrphanedPartitionedChild(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE account (id int PRIMARY KEY, name text);
				CREATE TABLE event (id int, region text, account_id int CONSTRAINT event_account_fk REFERENCES account, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE event_eu PARTITION OF event FOR VALUES IN ('eu');
				CREATE TABLE event_us PARTITION OF event FOR VALUES IN ('us');
				INSERT INTO account VALUES (1, 'a');
				INSERT INTO event VALUES (1, 'us', 1);`,
			Track: []string{"account", "event"},
			Steps: seq(
				on(0, `INSERT INTO account VALUES (10, 'new')`),
				on(1, `INSERT INTO event VALUES (2, 'eu', 10)`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.account id=10", "public.event id=2, region=eu", "foreign key event_account_fk",
				"written by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		}, "event_eu")
	})
}

// TestDryRunRefusesOrphanedChildOfPartitionedParent: the undone table is
// partitioned and referenced as a whole; the refusal names it, not the
// partition its row is in.
func TestDryRunRefusesOrphanedChildOfPartitionedParent(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE site (id int, region text, name text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE site_eu PARTITION OF site FOR VALUES IN ('eu');
				CREATE TABLE site_us PARTITION OF site FOR VALUES IN ('us');
				CREATE TABLE visit (id int PRIMARY KEY, site_id int, region text,
					CONSTRAINT visit_site_fk FOREIGN KEY (site_id, region) REFERENCES site (id, region));
				INSERT INTO site VALUES (1, 'eu', 'a'), (1, 'us', 'b');`,
			Track: []string{"site", "visit"},
			Steps: seq(
				on(0, `INSERT INTO site VALUES (10, 'eu', 'new')`, `UPDATE site SET name = 'c' WHERE id = 1`),
				on(1, `INSERT INTO visit VALUES (1, 10, 'eu')`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.site id=10, region=eu", "public.visit id=1", "foreign key visit_site_fk",
				"written by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		}, "site_eu")
	})
}

// TestDryRunRefusesMissingParentOfPartitionedChild: the undone table is
// partitioned (the key declared on it as a whole); the row it would put
// back is named by the partitioned table.
func TestDryRunRefusesMissingParentOfPartitionedChild(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		refusedAlike(t, scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE customer (id int PRIMARY KEY);
				CREATE TABLE orders (id int, region text, customer_id int CONSTRAINT orders_customer_fk REFERENCES customer, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
				CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
				CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
				INSERT INTO customer VALUES (7), (8);
				INSERT INTO orders VALUES (1, 'eu', 7), (2, 'us', 8);`,
			Track: []string{"customer", "orders"},
			Steps: seq(
				on(0, `DELETE FROM orders WHERE id = 1`),
				on(1, `DELETE FROM customer WHERE id = 7`),
			),
		}, undo.ErrForeignKey, func(w *world) []string {
			return []string{"public.orders id=1, region=eu", "customer_id=7", "public.customer", "foreign key orders_customer_fk",
				"deleted by session " + w.IDs[1], "pgundo undo " + w.IDs[1], "nothing was changed"}
		}, "orders_eu")
	})
}

// TestDryRunChangesNothingWhenItPasses: a dry run that passes every check
// wrote the rows and checked them in a transaction it rolled back: every
// table (log chunks, pgundo.undo and pgundo.undone included) is as before,
// the plan is the one Apply then carries out, and it says nothing was
// applied.
func TestDryRunChangesNothingWhenItPasses(t *testing.T) {
	t.Parallel()
	bothPaths(t, func(t *testing.T, opts undo.Options) {
		sc := scenario{
			Opts: opts,
			Setup: `
				CREATE TABLE parent (id int PRIMARY KEY, v text);
				CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);
				INSERT INTO parent VALUES (1, 'a'), (2, 'b');
				INSERT INTO child VALUES (1, 1);`,
			Steps: seq(
				on(0, `INSERT INTO parent VALUES (10, 'new')`, `INSERT INTO child VALUES (10, 10)`, `UPDATE parent SET v = 'c' WHERE id = 1`, `DELETE FROM parent WHERE id = 2`),
				on(1, `INSERT INTO child VALUES (2, 1)`),
			),
		}
		w := newWorld(t, sc, nil)
		pre := w.tables()
		w.run(sc.Steps, nil)
		before := fullState(t, w.Conn)
		sel := undo.Selection{Sessions: w.IDs[:1]}
		var lines []string
		opts.Progress = func(m string) { lines = append(lines, m) }
		plan, err := undo.MakePlan(ctxT(t), w.undoConn(), sel, opts)
		require.NoError(t, err)
		require.False(t, plan.Applied)
		require.Empty(t, plan.UndoSession)
		require.Zero(t, plan.RowsChanged)
		for _, l := range lines {
			require.NotRegexp(t, writeLine, l, "a dry run's progress says rows were written")
		}
		requireSameTables(t, before, fullState(t, w.Conn), "every table after the dry run")

		opts.Progress = nil
		applied, err := undo.Apply(ctxT(t), w.undoConn(), sel, opts, plan)
		require.NoError(t, err)
		require.Equal(t, plan.Tables, applied.Tables)
		require.EqualValues(t, 4, applied.RowsChanged)
		expect := pre
		expect["public.child"] = append(slices.Clone(pre["public.child"]), "(2,1)")
		slices.Sort(expect["public.child"])
		requireSameTables(t, expect, w.tables(), "after the apply")
	})
}
