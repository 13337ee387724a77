package triggers_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
)

// loadPagila loads the pagila schema and data into the database dsn with
// the psql client (the files are psql scripts: COPY ... FROM stdin).
func loadPagila(t *testing.T, dsn string) {
	t.Helper()
	dir := pgtest.PagilaDir(t)
	psql := "psql"
	if d := pgtest.BinDir(); d != "" {
		psql = filepath.Join(d, "psql")
	}
	if _, err := exec.LookPath(psql); err != nil {
		t.Fatalf("the psql client is needed to load the pagila fixture: %v", err)
	}
	for _, f := range pgtest.PagilaFiles {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", filepath.Join(dir, f))
		cmd.Env = append(os.Environ(), "PGOPTIONS=", "PGAPPNAME=pgundo-test-fixture")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			tail := string(out)
			if len(tail) > 4000 {
				tail = "..." + tail[len(tail)-4000:]
			}
			t.Fatalf("load %s with %s: %v\n%s", f, psql, err, tail)
		}
	}
}

// relImages is the log for one tracked table, its partitions included,
// with every image in the tracked table's own row format.
type relImages struct {
	olds, news []string
}

// loggedImages reads every image logged for root or any of its partitions,
// converting partition-format images to root's row format.
func loggedImages(t *testing.T, db triggers.DBTX, root string) relImages {
	t.Helper()
	// The root (under the name the caller gave) and its partitions, if any
	// (pg_partition_tree is empty for a table that is not partitioned).
	rels := queryStrings(t, db, `SELECT CASE WHEN relid = $1::text::regclass THEN $1 ELSE relid::regclass::text END
		FROM (SELECT relid FROM pg_partition_tree($1::text::regclass) UNION SELECT $1::text::regclass) p
		WHERE relid IN (SELECT relid FROM pgundo.stmt)`, root)
	cols := queryStrings(t, db, `SELECT quote_ident(attname) FROM pg_attribute
		WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, root)
	var out relImages
	for _, rel := range rels {
		conv := func(img string) string {
			if rel == root {
				return img
			}
			var fields []string
			for _, c := range cols {
				fields = append(fields, fmt.Sprintf("(%s::%s).%s", img, rel, c))
			}
			return "CASE WHEN " + img + " IS NOT NULL THEN ROW(" + strings.Join(fields, ", ") + ")::" + root + " END"
		}
		// The images must parse back as the logging relation's row type and
		// print exactly as logged.
		rows, err := db.Query(ctxT(t), fmt.Sprintf(`
			WITH x AS MATERIALIZED (
			  SELECT c.old, c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id WHERE s.relid = $1::text::regclass)
			SELECT (%s)::text, (%s)::text,
			       (x.old::%s)::text IS NOT DISTINCT FROM x.old AND (x.new::%s)::text IS NOT DISTINCT FROM x.new
			  FROM x`, conv("x.old"), conv("x.new"), rel, rel), rel)
		require.NoError(t, err)
		for rows.Next() {
			var o, n *string
			var exact bool
			require.NoError(t, rows.Scan(&o, &n, &exact))
			require.True(t, exact, "%s: image does not print back as logged: %v -> %v", rel, o, n)
			if o != nil {
				out.olds = append(out.olds, *o)
			}
			if n != nil {
				out.news = append(out.news, *n)
			}
		}
		require.NoError(t, rows.Err())
	}
	return out
}

// requireReplays checks before - olds + news = after, as multisets of row
// texts.
func requireReplays(t *testing.T, table string, before, after []string, log relImages) {
	t.Helper()
	count := map[string]int{}
	for _, r := range before {
		count[r]++
	}
	for _, r := range log.olds {
		count[r]--
	}
	for _, r := range log.news {
		count[r]++
	}
	for _, r := range after {
		count[r]--
	}
	var bad []string
	for r, n := range count {
		switch {
		case n > 0:
			bad = append(bad, fmt.Sprintf("%d× missing from the table (or logged as removed too rarely): %s", n, r))
		case n < 0:
			bad = append(bad, fmt.Sprintf("%d× in the table but not accounted for by the log: %s", -n, r))
		}
	}
	slices.Sort(bad)
	if len(bad) > 20 {
		bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
	}
	require.Empty(t, bad, "%s: before - logged old + logged new != after", table)
}

// TestPagilaWorkloadIsFullyLogged runs a mixed workload on the pagila sample
// database with every table tracked, and checks that the log accounts for
// every changed row exactly: for each table, its rows before, minus every
// old image logged for it, plus every new image, are its rows after.
func TestPagilaWorkloadIsFullyLogged(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	loadPagila(t, dsn)
	check := pgtest.Connect(t, dsn)
	execAll(t, check, captureSettings...) // so row texts compare with logged images byte for byte

	tables, err := triggers.SchemaTables(ctxT(t), check, "public")
	require.NoError(t, err)
	var want []string
	for _, n := range []string{"actor", "address", "category", "city", "country", "customer", "film", "film_actor",
		"film_category", "inventory", "language", "payment", "rental", "staff", "store"} {
		want = append(want, pgx.Identifier{"public", n}.Sanitize())
	}
	require.Equal(t, want, tables)
	track(t, check, tables...)
	health, err := triggers.Status(ctxT(t), check)
	require.NoError(t, err)
	require.Len(t, health, len(tables))
	for _, s := range health {
		require.True(t, s.Healthy(), "%s: %v", s.Qualified(), s.Problems)
	}
	require.Equal(t, 8, health[slices.IndexFunc(health, func(s triggers.TableStatus) bool { return s.Name == "payment" })].Partitions)

	snapshot := func() map[string][]string {
		out := map[string][]string{}
		for _, tbl := range tables {
			out[tbl] = queryStrings(t, check, `SELECT t::text FROM `+tbl+` t`)
		}
		return out
	}
	before := snapshot()

	// Figures to check the log against, computed independently.
	cat16 := sortedStrings(t, check, `SELECT film_id::text FROM film_category WHERE category_id = 16 ORDER BY film_id`)
	require.Len(t, cat16, 57)
	movedIDs := sortedStrings(t, check, `SELECT payment_id::text FROM payment WHERE payment_id % 40 = 0 ORDER BY payment_id`)
	partBefore := queryStrings(t, check, `SELECT payment_id || ' ' || tableoid::regclass::text FROM payment WHERE payment_id % 40 = 0 ORDER BY payment_id`)
	actor1Films := queryOne[int](t, check, `SELECT count(*) FROM film_actor WHERE actor_id = 1`)
	rentalGone := queryOne[int](t, check, `SELECT count(*) FROM rental WHERE rental_id % 500 = 0`)
	paymentGone := queryOne[int](t, check, `SELECT count(*) FROM payment WHERE rental_id % 500 = 0`)
	require.NotZero(t, actor1Films)
	require.NotZero(t, rentalGone)

	writer := pgtest.Connect(t, withParams(t, dsn, "application_name", "pagila-workload"))
	execAll(t, writer, `SET TimeZone = 'America/Los_Angeles'`, `SET DateStyle = 'German'`, `SET pgundo.tag = 'pagila'`)

	// Transaction 1: updates stamped by pagila's BEFORE UPDATE triggers,
	// an ON UPDATE CASCADE, and payments moved between partitions.
	tx, err := writer.Begin(ctxT(t))
	require.NoError(t, err)
	tx1 := queryOne[string](t, tx, `SELECT pg_current_xact_id()::text`)
	stamp := queryOne[time.Time](t, tx, `SELECT localtimestamp`)
	require.EqualValues(t, 20, pgtest.Exec(t, tx, `UPDATE actor SET first_name = lower(first_name) WHERE actor_id <= 20`).RowsAffected())
	require.EqualValues(t, 1, pgtest.Exec(t, tx, `UPDATE category SET category_id = 116 WHERE category_id = 16`).RowsAffected())
	require.EqualValues(t, len(movedIDs), pgtest.Exec(t, tx,
		`UPDATE payment SET payment_date = payment_date + interval '1 month' WHERE payment_id % 40 = 0`).RowsAffected())
	pgtest.Exec(t, tx, `UPDATE customer SET activebool = false WHERE customer_id % 100 = 0`)
	pgtest.Exec(t, tx, `UPDATE film SET rental_rate = rental_rate + 1, description = description || ' (remastered)' WHERE film_id <= 10`)
	require.NoError(t, tx.Commit(ctxT(t)))

	// Transaction 2: deletes and inserts (film's full-text trigger, a
	// generated column, defaults from sequences).
	tx, err = writer.Begin(ctxT(t))
	require.NoError(t, err)
	pgtest.Exec(t, tx, `DELETE FROM film_actor WHERE actor_id = 1`)
	pgtest.Exec(t, tx, `DELETE FROM payment WHERE rental_id % 500 = 0`)
	pgtest.Exec(t, tx, `DELETE FROM rental WHERE rental_id % 500 = 0`)
	actorID := queryOne[int](t, tx, `INSERT INTO actor (first_name, last_name) VALUES ('ZED', 'O''ZEBRA') RETURNING actor_id`)
	filmID := queryOne[int](t, tx, `
		INSERT INTO film (title, description, release_year, language_id, rental_duration, rental_rate, length, replacement_cost, rating, special_features)
		VALUES ('UNDO THE PATCH', 'A "hasty" script, a console, and a day of stress', 2024, 1, 5, 2.99, 93, 14.99, 'PG-13',
		        '{"Behind the Scenes","Deleted Scenes"}')
		RETURNING film_id`)
	pgtest.Exec(t, tx, `INSERT INTO film_actor (actor_id, film_id) VALUES ($1, $2)`, actorID, filmID)
	pgtest.Exec(t, tx, `INSERT INTO film_category (film_id, category_id) VALUES ($1, 116)`, filmID)
	require.NoError(t, tx.Commit(ctxT(t)))

	// A rolled-back transaction leaves nothing, and a second session
	// truncates a payment partition directly (nothing references payment).
	other := pgtest.Connect(t, withParams(t, dsn, "application_name", "pagila-other"))
	tx, err = other.Begin(ctxT(t))
	require.NoError(t, err)
	pgtest.Exec(t, tx, `DELETE FROM film_category`)
	require.NoError(t, tx.Rollback(ctxT(t)))
	truncated := queryOne[int](t, other, `SELECT count(*) FROM payment_p2007_07_max`)
	require.NotZero(t, truncated)
	pgtest.Exec(t, other, `TRUNCATE payment_p2007_07_max`)

	after := snapshot()

	// The log accounts for every row of every table, exactly.
	for _, tbl := range tables {
		requireReplays(t, tbl, before[tbl], after[tbl], loggedImages(t, check, tbl))
	}

	// And it holds what we know independently.
	type opCount struct {
		Table, Op string
		Changes   int
	}
	rows, err := check.Query(ctxT(t), `
		SELECT s.relid::regclass::text, s.op::text, sum(s.rows)::int FROM pgundo.stmt s
		 GROUP BY 1, 2 ORDER BY 1, 2`)
	require.NoError(t, err)
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[opCount])
	require.NoError(t, err)
	require.Equal(t, []opCount{
		{"actor", "I", 1},
		{"actor", "U", 20},
		{"category", "U", 1},
		{"customer", "U", 5},
		{"film", "I", 1},
		{"film", "U", 10},
		{"film_actor", "D", actor1Films},
		{"film_actor", "I", 1},
		{"film_category", "I", 1},
		{"film_category", "U", len(cat16)},
		{"payment", "D", paymentGone},
		{"payment", "U", len(movedIDs)},
		{"payment_p2007_07_max", "T", truncated},
		{"rental", "D", rentalGone},
	}, counts)

	// The cascade: each of category 16's films moved to 116, nothing else,
	// stamped by film_category's own last_update trigger.
	require.Equal(t, cat16, sortedStrings(t, check, `
		WITH x AS MATERIALIZED (SELECT c.old, c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
		                         WHERE s.relid = 'film_category'::regclass AND s.op = 'U')
		SELECT (x.old::film_category).film_id::text FROM x
		 WHERE (x.old::film_category).category_id = 16 AND (x.new::film_category).category_id = 116
		   AND (x.old::film_category).film_id = (x.new::film_category).film_id
		   AND (x.new::film_category).last_update = $1
		 ORDER BY (x.old::film_category).film_id`, stamp))

	// The moves: one update change per payment, same id, a month later,
	// most of them now in another partition.
	require.Equal(t, movedIDs, sortedStrings(t, check, `
		WITH x AS MATERIALIZED (SELECT c.old, c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
		                         WHERE s.relid = 'payment'::regclass AND s.op = 'U')
		SELECT (x.old::payment).payment_id::text FROM x
		 WHERE (x.new::payment).payment_id = (x.old::payment).payment_id
		   AND (x.new::payment).payment_date = (x.old::payment).payment_date + interval '1 month'
		   AND ROW((x.new::payment).customer_id, (x.new::payment).amount) = ROW((x.old::payment).customer_id, (x.old::payment).amount)
		 ORDER BY (x.old::payment).payment_id`))
	partAfter := queryStrings(t, check, `SELECT payment_id || ' ' || tableoid::regclass::text FROM payment
		WHERE payment_id::text = ANY ($1::text[]) ORDER BY payment_id`, movedIDs)
	moved := 0
	for _, p := range partAfter {
		if !slices.Contains(partBefore, p) {
			moved++
		}
	}
	require.Greater(t, moved, len(movedIDs)/2, "payments that changed partition")

	// The actors: stamped by pagila's trigger with the writer's clock.
	require.Equal(t, 20, queryOne[int](t, check, `
		WITH x AS MATERIALIZED (SELECT c.old, c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
		                         WHERE s.relid = 'actor'::regclass AND s.op = 'U')
		SELECT count(*) FROM x
		 WHERE (x.new::actor).first_name = lower((x.old::actor).first_name)
		   AND (x.new::actor).last_update = $1 AND (x.old::actor).last_update <> $1`, stamp))

	// The inserted film: full text and generated column as stored.
	require.Equal(t, queryStrings(t, check, `SELECT f::text FROM film f WHERE film_id = $1`, filmID),
		queryStrings(t, check, `SELECT c.new FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
			WHERE s.relid = 'film'::regclass AND s.op = 'I'`))

	// Attribution: two transactions of the writer's session, tagged, and
	// the other session's TRUNCATE.
	type who struct {
		Xid, App string
		Tag      *string
		Stmts    int
	}
	rows, err = check.Query(ctxT(t), `
		SELECT s.xid::text, s.application_name, s.tag, count(*)::int FROM pgundo.stmt s
		 GROUP BY 1, 2, 3 ORDER BY min(s.id)`)
	require.NoError(t, err)
	byTx, err := pgx.CollectRows(rows, pgx.RowToStructByPos[who])
	require.NoError(t, err)
	require.Len(t, byTx, 3)
	require.Equal(t, who{tx1, "pagila-workload", ptr("pagila"), 6}, byTx[0])
	require.Equal(t, "pagila-workload", byTx[1].App)
	require.Equal(t, who{byTx[2].Xid, "pagila-other", nil, 1}, byTx[2])
	require.Equal(t, []string{"pagila-workload", "pagila-other"},
		queryStrings(t, check, `SELECT application_name FROM pgundo.session ORDER BY first_change_at`))
}
