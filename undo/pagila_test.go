package undo_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// pagilaDB loads pagila into a fresh database (pgundo installed), makes its
// last_update trigger deterministic, tracks every table in public, and
// returns the database name and settings. Nothing is connected to it on
// return, so it can serve as a template.
func pagilaDB(t *testing.T) (string, *pgx.ConnConfig) {
	t.Helper()
	dsn := pgtest.NewDB(t)
	psql := filepath.Join(pgtest.BinDir(), "psql")
	dir := pgtest.PagilaDir(t)
	for _, f := range pgtest.PagilaFiles {
		cmd := exec.CommandContext(ctxT(t), psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", filepath.Join(dir, f))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Run(), "psql -f %s: %s", f, stderr.String())
	}
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	// Pagila stamps last_update with now() (CURRENT_TIMESTAMP). Database A
	// and database B run the clerk's changes at different times, so with
	// now() their rows could never compare equal. Both databases are cloned
	// from this one, so both get this deterministic stamp instead: still a
	// BEFORE UPDATE trigger that changes the row (what undo must not let
	// fire again), just not time-dependent.
	_, err = conn.Exec(ctxT(t), `
		CREATE OR REPLACE FUNCTION public.last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			NEW.last_update := OLD.last_update + interval '1 second';
			RETURN NEW;
		END $$`)
	require.NoError(t, err)
	names, err := triggers.SchemaTables(ctxT(t), conn, "public")
	require.NoError(t, err)
	require.Contains(t, names, `"public"."payment"`)
	_, err = triggers.Track(ctxT(t), conn, names)
	require.NoError(t, err)
	return cfg.Database, cfg
}

// cloneDB creates a copy of database src (no one may be connected to it)
// and drops it when the test ends.
func cloneDB(t *testing.T, src string, base *pgx.ConnConfig, suffix string) *pgx.ConnConfig {
	t.Helper()
	admin, err := pgx.Connect(ctxT(t), pgtest.AdminConnString())
	require.NoError(t, err)
	defer admin.Close(context.Background())
	name := src + suffix
	strategy := ""
	if queryOne[int](t, admin, `SELECT current_setting('server_version_num')::int`) >= 150000 {
		strategy = " STRATEGY FILE_COPY"
	}
	_, err = admin.Exec(ctxT(t), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{src}.Sanitize()+strategy)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, pgtest.AdminConnString()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	cfg := base.Copy()
	cfg.Database = name
	return cfg
}

// TestUndoPagilaMaintenanceJob: a careless maintenance job touches most of
// pagila's tables (updates through triggers and generated columns, deletes
// with their dependents, open rentals closed, payments changed and moved
// between partitions, a category key change cascading to film_category,
// film_actor rows deleted, rows inserted); then a clerk works on other
// rows. Undoing the job must give exactly the database where only the
// clerk worked, on every table and partition.
func TestUndoPagilaMaintenanceJob(t *testing.T) {
	t.Parallel()
	src, base := pagilaDB(t)
	job := `
		UPDATE film SET rental_rate = rental_rate + 1, description = description || ' Now remastered.' WHERE film_id % 3 = 0;
		UPDATE customer SET activebool = NOT activebool, email = lower(email) WHERE customer_id % 4 = 0;
		UPDATE address SET phone = '', address2 = NULL WHERE address_id BETWEEN 100 AND 300;
		DELETE FROM payment WHERE rental_id IN (SELECT rental_id FROM rental WHERE inventory_id IN (10, 11));
		DELETE FROM rental WHERE inventory_id IN (10, 11);
		DELETE FROM inventory WHERE inventory_id IN (10, 11) OR inventory_id NOT IN (SELECT inventory_id FROM rental);
		UPDATE rental SET rental_period = tsrange(lower(rental_period), '2030-01-01') WHERE upper_inf(rental_period);
		UPDATE payment SET amount = amount + 1 WHERE payment_id % 10 = 0;
		UPDATE payment SET payment_date = payment_date + interval '1 month' WHERE payment_id % 50 = 1;
		UPDATE category SET category_id = 17, name = 'Sci-Fi & Fantasy' WHERE category_id = 16;
		DELETE FROM film_actor WHERE actor_id = 1;
		INSERT INTO actor (actor_id, first_name, last_name, last_update)
		VALUES (201, 'NEW', 'ACTOR', '2030-01-01'), (202, 'OTHER', 'ACTOR', '2030-01-01');
		INSERT INTO film_actor (actor_id, film_id, last_update)
		VALUES (201, 1, '2030-01-01'), (201, 2, '2030-01-01'), (202, 3, '2030-01-01');
		INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, payment_date)
		VALUES (40001, 1, 1, 1, 9.99, '2007-03-15 10:00');`
	clerk := []string{
		`INSERT INTO rental (rental_id, inventory_id, customer_id, staff_id, last_update, rental_period)
		 VALUES (17000, 20, 1, 1, '2030-02-01', tsrange('2030-02-01 10:00', NULL))`,
		`INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, payment_date)
		 VALUES (40002, 1, 1, 17000, 3.99, '2007-04-20 12:00')`,
		`UPDATE customer SET email = 'clerk.updated@example.com' WHERE customer_id = 1`,
		`UPDATE address SET phone = '555-0100' WHERE address_id = 1`,
		`UPDATE rental SET staff_id = 2 WHERE rental_id = 3`,
		`UPDATE payment SET amount = amount + 0.5 WHERE payment_id = 2`,
		`UPDATE film SET length = length + 1 WHERE film_id = 1`,
	}
	sc := scenario{
		Track: []string{}, // tracked in the template
		Apps:  []string{"maintenance-job", "clerk"},
		Steps: seq(on(0, job), on(1, clerk...)),
	}
	a := newWorld(t, sc, cloneDB(t, src, base, "_a"))
	b := newWorld(t, sc, cloneDB(t, src, base, "_b"))
	a.run(sc.Steps, nil)
	b.run(sc.Steps, func(s step) bool { return s.S == 0 })

	// The job really did all of that, and the clerk's changes are logged.
	moved := queryOne[int64](t, a.Conn, `
		SELECT count(*) FROM (
		  SELECT c.old, c.new FROM pgundo.stmt s JOIN pgundo.change c ON c.stmt_id = s.id
		   WHERE s.session_id = $1 AND s.table_name = 'payment' AND s.op = 'U' OFFSET 0) x
		 WHERE (x.old::payment).payment_date < '2007-01-01' AND (x.new::payment).payment_date >= '2007-01-01'`, a.IDs[0])
	require.Positive(t, moved, "rows moved from the default partition to payment_p2007_01")
	jobTables := queryStrings(t, a.Conn, `SELECT DISTINCT table_name::text FROM pgundo.stmt WHERE session_id = $1 ORDER BY 1`, a.IDs[0])
	require.Equal(t, []string{"actor", "address", "category", "customer", "film", "film_actor", "film_category", "inventory", "payment", "rental"}, jobTables)

	plan, err := undoSession(t, a, 0)
	require.NoError(t, err)
	require.True(t, plan.Applied)
	require.Empty(t, tablePlan(t, plan, "public.payment").KeyColumns, "payment has no primary key at the parent")
	require.Equal(t, counts{Reinsert: 1, Delete: 1}, countsOf(tablePlan(t, plan, "public.category")))
	requireSameTables(t, b.tables(), a.tables(), "pagila: job undone vs clerk only")
}

// TestUndoPagilaPaymentSkipMerge: payment has no primary key (it is
// partitioned by date). A job raises a range of payments; a clerk corrects
// one of them (514) since. Merge refuses and changes nothing; skip puts every
// other payment back and leaves exactly one payment 514, the clerk's: never
// the restored one beside it (money counted twice).
func TestUndoPagilaPaymentSkipMerge(t *testing.T) {
	t.Parallel()
	src, base := pagilaDB(t)
	sc := scenario{Track: []string{}, Apps: []string{"job", "clerk"}, Steps: seq(
		on(0, `UPDATE payment SET amount = amount + 1 WHERE payment_id BETWEEN 510 AND 520`),
		on(1, `UPDATE payment SET amount = 0 WHERE payment_id = 514`),
	)}
	a := newWorld(t, sc, cloneDB(t, src, base, "_a"))
	original := queryStrings(t, a.Conn, `SELECT p::text FROM payment p WHERE payment_id BETWEEN 500 AND 530 ORDER BY payment_id`)
	require.Len(t, original, 31)
	a.run(sc.Steps, nil)
	clerks := queryOne[string](t, a.Conn, `SELECT p::text FROM payment p WHERE payment_id = 514`)

	before := a.all()
	_, err := undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: a.IDs[:1]}, undo.Options{OnConflict: undo.Merge}, nil)
	require.ErrorIs(t, err, undo.ErrNoKeyToMerge)
	require.Contains(t, err.Error(), "public.payment has no primary key")
	requireSameTables(t, before, a.all(), "pagila: after a refused merge")

	plan, err := undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: a.IDs[:1]}, undo.Options{OnConflict: undo.Skip}, nil)
	require.NoError(t, err)
	require.Equal(t, counts{Reinsert: 10, Delete: 10, Skipped: 1}, countsOf(tablePlan(t, plan, "public.payment")))
	want := slices.Clone(original)
	want[14] = clerks // payment 514
	require.Equal(t, want, queryStrings(t, a.Conn, `SELECT p::text FROM payment p WHERE payment_id BETWEEN 500 AND 530 ORDER BY payment_id`))
	require.Equal(t, int64(1), queryOne[int64](t, a.Conn, `SELECT count(*) FROM payment WHERE payment_id = 514`))
}
