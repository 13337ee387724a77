package undo_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
	"github.com/pgundo/pgundo/undo"
)

// lendingDB loads the suite's own lending fixture (pgtest.LendingSQL) into a
// fresh database (pgundo installed), tracks every table in public, and
// returns the database name and settings. Nothing is connected to it on
// return, so it can serve as a template. Unlike pagila, the fixture is in
// the repository: these tests run on every checkout.
func lendingDB(t *testing.T) (string, *pgx.ConnConfig) {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.NewDB(t))
	require.NoError(t, err)
	conn, err := pgx.ConnectConfig(ctxT(t), cfg)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	pgtest.LoadLending(t, conn)
	names, err := triggers.SchemaTables(ctxT(t), conn, "public")
	require.NoError(t, err)
	require.Equal(t, pgtest.LendingTables, names)
	_, err = triggers.Track(ctxT(t), conn, names)
	require.NoError(t, err)
	return cfg.Database, cfg
}

// lendingJob is a careless maintenance job on the lending database: updates
// through stamping, tsvector and generated columns; a branch key change
// cascading to members; category key changes cascading to tools and to
// child categories; a category deleted (its children's parent set to
// NULL); tool keys changed (cascading to tags and loans); loans moved
// between partitions, then open loans closed; tools and members deleted
// with their tags and loans (ON DELETE CASCADE); rows of the keyless ledger
// deleted, updated and inserted twice over; new rows everywhere.
const lendingJob = `
	UPDATE tool SET daily_fee = daily_fee * 1.1, condition = 'worn', keywords = keywords || '{sale}' WHERE tool_id % 4 = 0;
	UPDATE member SET email = lower(email), phones = array_remove(phones, 'ext. "front desk"'), photo = NULL WHERE member_id % 3 = 0;
	UPDATE branch SET code = 'NO', name = 'North (new site)' WHERE code = 'N';
	UPDATE category SET category_id = 110 WHERE category_id = 10;
	UPDATE category SET category_id = 20 WHERE category_id = 2;
	DELETE FROM category WHERE category_id = 1;
	UPDATE tool SET tool_id = tool_id + 1000 WHERE tool_id IN (5, 6);
	UPDATE loan SET out_at = out_at + interval '1 year' WHERE loan_id % 25 = 0;
	UPDATE loan SET back_at = out_at + interval '7 days', charged = 3.50, condition_back = 'good' WHERE back_at IS NULL AND out_at >= '2024-01-01';
	DELETE FROM tool WHERE tool_id IN (7, 8);
	DELETE FROM member WHERE member_id IN (10, 11);
	DELETE FROM ledger WHERE memo = 'late fee' AND amount < 2;
	UPDATE ledger SET amount = amount + 1 WHERE member_id % 7 = 0 AND memo = 'repair';
	INSERT INTO ledger (member_id, amount, memo, booked) VALUES (1, 5.00, 'deposit', '2024-01-02'), (1, 5.00, 'deposit', '2024-01-02');
	INSERT INTO member (member_id, branch_code, full_name, email, phones, photo, active, joined, updated)
	VALUES (901, 'E', 'Zoë New', 'zoe@example.org', '{}', '\xdeadbeef', true, '2025-01-01', '2025-01-01 00:00+00');
	INSERT INTO tool (tool_id, category_id, name, description, keywords, condition, deposit, daily_fee, manual, updated)
	VALUES (901, 7, 'Tile cutter', 'Cuts tiles, not fingers', '{tile,cutter}', 'new', 40, 4.5, '\x00', '2025-01-01 00:00+00');
	INSERT INTO tool_tag (tool_id, tag) VALUES (901, 'new');
	INSERT INTO loan (loan_id, tool_id, member_id, out_at)
	VALUES (9001, 901, 901, '2024-06-01 10:00+00'), (9002, 1, 2, '2026-01-01 10:00+00');`

// lendingClerk is a clerk's work after the job, on rows the job did not
// touch: a new loan, a loan moved to the next year's partition, a returned
// loan corrected, a member's phones and a tool's condition changed (both
// stamped), duplicate ledger rows deleted, and a ledger row inserted that
// equals the two the job inserted.
var lendingClerk = []string{
	`INSERT INTO loan (loan_id, tool_id, member_id, out_at) VALUES (9100, 1, 1, '2024-11-05 09:00+00')`,
	`UPDATE loan SET out_at = out_at + interval '1 year' WHERE loan_id = 1001`,
	`UPDATE loan SET back_at = back_at + interval '1 day', charged = charged + 1.50 WHERE loan_id = 2`,
	`UPDATE member SET phones = phones || '{"+44 7700 900123"}' WHERE member_id = 2`,
	`UPDATE tool SET condition = 'broken' WHERE tool_id = 3`,
	`DELETE FROM ledger WHERE member_id = 3`,
	`INSERT INTO ledger (member_id, amount, memo, booked) VALUES (1, 5.00, 'deposit', '2024-01-02')`,
}

// TestUndoLendingMaintenanceJob: the maintenance job of lendingJob touches
// every table of the lending fixture; then a clerk works on other rows.
// Undoing the job must give exactly the database where only the clerk
// worked, on every table and partition; undoing that undo must give back
// the database as the job and the clerk left it.
func TestUndoLendingMaintenanceJob(t *testing.T) {
	t.Parallel()
	src, base := lendingDB(t)
	sc := scenario{
		Track: []string{}, // tracked in the template
		Apps:  []string{"maintenance-job", "clerk"},
		Steps: seq(on(0, lendingJob), on(1, lendingClerk...)),
	}
	a := newWorld(t, sc, cloneDB(t, src, base, "_a"))
	b := newWorld(t, sc, cloneDB(t, src, base, "_b"))
	a.run(sc.Steps, nil)
	b.run(sc.Steps, func(s step) bool { return s.S == 0 })
	post := a.tables()

	// The job really did all of that.
	jobTables := queryStrings(t, a.Conn, `SELECT DISTINCT table_name::text FROM pgundo.stmt WHERE session_id = $1 ORDER BY 1`, a.IDs[0])
	require.Equal(t, []string{"branch", "category", "ledger", "loan", "member", "tool", "tool_tag"}, jobTables)
	moved := queryOne[int64](t, a.Conn, `
		SELECT count(*) FROM (
		  SELECT c.old, c.new FROM pgundo.stmt s JOIN pgundo.change c ON c.stmt_id = s.id
		   WHERE s.session_id = $1 AND s.table_name = 'loan' AND s.op = 'U' OFFSET 0) x
		 WHERE (x.old::loan).out_at < '2024-01-01' AND (x.new::loan).out_at >= '2024-01-01'`, a.IDs[0])
	require.Positive(t, moved, "loans moved from loan_2023 to loan_2024")
	// The cascades and the stamping triggers fired: member rows of branch
	// N now say NO, each stamped one second later.
	require.Equal(t, int64(60), queryOne[int64](t, a.Conn, `
		WITH x AS MATERIALIZED (SELECT c.old FROM pgundo.change c JOIN pgundo.stmt s ON s.id = c.stmt_id
		                         WHERE s.table_name = 'member' AND s.op = 'U')
		SELECT count(*) FROM member m JOIN x c ON (c.old::member).member_id = m.member_id
		 WHERE m.branch_code = 'NO' AND (c.old::member).branch_code = 'N' AND m.updated = (c.old::member).updated + interval '1 second'`))

	sel := undo.Selection{Sessions: a.IDs[:1]}
	dry, err := undo.MakePlan(ctxT(t), a.undoConn(), sel, undo.Options{})
	require.NoError(t, err)
	plan, err := undo.Apply(ctxT(t), a.undoConn(), sel, undo.Options{}, nil)
	require.NoError(t, err)
	require.True(t, plan.Applied)
	require.Empty(t, plan.Conflicts)
	require.Equal(t, dry.Tables, plan.Tables, "the undo's plan vs the dry run's")
	// The undo's own capture logs exactly the rows it wrote: a stamping
	// trigger, the tsvector trigger or a cascade firing during the undo
	// would log more.
	require.Equal(t, plan.RowsChanged, queryOne[int64](t, a.Conn,
		`SELECT coalesce(sum(rows), 0)::bigint FROM pgundo.stmt WHERE session_id = $1`, plan.UndoSession))
	require.Empty(t, tablePlan(t, plan, "public.ledger").KeyColumns, "ledger has no key")
	require.Equal(t, counts{Reinsert: 1, Delete: 1}, countsOf(tablePlan(t, plan, "public.branch")))
	requireSameTables(t, b.tables(), a.tables(), "lending: job undone vs clerk only")

	// Undoing the undo brings back the database as the job and the clerk
	// left it, partitions included.
	_, err = undo.Apply(ctxT(t), a.undoConn(), undo.Selection{Sessions: []string{plan.UndoSession}}, undo.Options{AlwaysPlan: true}, nil)
	require.NoError(t, err, "redo: undo of the undo %s", plan.UndoSession)
	requireSameTables(t, post, a.tables(), "lending: after the redo vs after job and clerk")
}
