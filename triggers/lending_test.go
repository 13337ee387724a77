package triggers_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
)

// TestLendingWorkloadIsFullyLogged runs a mixed workload on the suite's own
// lending database (pgtest.LendingSQL, always present, unlike pagila) with
// every table tracked, from sessions with hostile output settings, and
// checks that the log accounts for every changed row exactly: for each
// table, its rows before, minus every old image logged for it, plus every
// new image, are its rows after; and that each table and partition logged
// exactly the statements and rows the workload made.
func TestLendingWorkloadIsFullyLogged(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	check := pgtest.Connect(t, dsn)
	pgtest.LoadLending(t, check)
	execAll(t, check, captureSettings...) // so row texts compare with logged images byte for byte

	tables, err := triggers.SchemaTables(ctxT(t), check, "public")
	require.NoError(t, err)
	require.Equal(t, pgtest.LendingTables, tables)
	track(t, check, tables...)
	health, err := triggers.Status(ctxT(t), check)
	require.NoError(t, err)
	require.Len(t, health, len(tables))
	for _, s := range health {
		require.True(t, s.Healthy(), "%s: %v", s.Qualified(), s.Problems)
	}

	snapshot := func() map[string][]string {
		out := map[string][]string{}
		for _, tbl := range tables {
			out[tbl] = queryStrings(t, check, `SELECT t::text FROM `+tbl+` t`)
		}
		return out
	}
	before := snapshot()
	truncated := queryOne[int](t, check, `SELECT count(*) FROM loan_other`)
	require.Equal(t, 1283, truncated)

	writer := pgtest.Connect(t, withParams(t, dsn, "application_name", "lending-job"))
	execAll(t, writer, hostileSettings...)
	execAll(t, writer, `SET pgundo.tag = 'maintenance'`)
	// One transaction: stamping, tsvector and generated columns; key
	// changes cascading (ON UPDATE CASCADE, one self-referencing) and a
	// delete setting children's parent to NULL; loans moved between
	// partitions; deletes cascading to tags and loans; the keyless ledger
	// deleted from, updated and given duplicate rows.
	tx, err := writer.Begin(ctxT(t))
	require.NoError(t, err)
	for _, s := range []struct {
		sql  string
		rows int64
	}{
		{`UPDATE tool SET daily_fee = daily_fee * 1.1, condition = 'worn', keywords = keywords || '{sale}' WHERE tool_id % 4 = 0`, 40},
		{`UPDATE member SET email = lower(email), phones = array_remove(phones, 'ext. "front desk"'), photo = NULL WHERE member_id % 3 = 0`, 80},
		{`UPDATE branch SET code = 'NO', name = 'North (new site)' WHERE code = 'N'`, 1},
		{`UPDATE category SET category_id = 110 WHERE category_id = 10`, 1},
		{`UPDATE category SET category_id = 20 WHERE category_id = 2`, 1},
		{`DELETE FROM category WHERE category_id = 1`, 1},
		{`UPDATE tool SET tool_id = tool_id + 1000 WHERE tool_id IN (5, 6)`, 2},
		{`UPDATE loan SET out_at = out_at + interval '1 year' WHERE loan_id % 25 = 0`, 120},
		{`UPDATE loan SET back_at = out_at + interval '7 days', charged = 3.50, condition_back = 'good' WHERE back_at IS NULL AND out_at >= '2024-01-01'`, 151},
		{`DELETE FROM tool WHERE tool_id IN (7, 8)`, 2},
		{`DELETE FROM member WHERE member_id IN (10, 11)`, 2},
		{`DELETE FROM ledger WHERE memo = 'late fee' AND amount < 2`, 60},
		{`UPDATE ledger SET amount = amount + 1 WHERE member_id % 7 = 0 AND memo = 'repair'`, 30},
		{`INSERT INTO ledger (member_id, amount, memo, booked) VALUES (1, 5.00, 'deposit', '2024-01-02'), (1, 5.00, 'deposit', '2024-01-02')`, 2},
		{`INSERT INTO member (member_id, branch_code, full_name, email, phones, photo, active, joined, updated)
		  VALUES (901, 'E', 'Zoë New', 'zoe@example.org', '{}', '\xdeadbeef', true, '2025-01-01', '2025-01-01 00:00+00')`, 1},
		{`INSERT INTO tool (tool_id, category_id, name, description, keywords, condition, deposit, daily_fee, manual, updated)
		  VALUES (901, 7, 'Tile cutter', 'Cuts tiles, not fingers', '{tile,cutter}', 'new', 40, 4.5, '\x00', '2025-01-01 00:00+00')`, 1},
		{`INSERT INTO tool_tag (tool_id, tag) VALUES (901, 'new')`, 1},
		{`INSERT INTO loan (loan_id, tool_id, member_id, out_at) VALUES (9001, 901, 901, '2024-06-01 10:00+00'), (9002, 1, 2, '2026-01-01 10:00+00')`, 2},
	} {
		require.Equal(t, s.rows, pgtest.Exec(t, tx, s.sql).RowsAffected(), s.sql)
	}
	require.NoError(t, tx.Commit(ctxT(t)))

	// A rolled-back transaction leaves nothing; a second session truncates
	// a loan partition directly (nothing references loan).
	other := pgtest.Connect(t, withParams(t, dsn, "application_name", "lending-other"))
	tx, err = other.Begin(ctxT(t))
	require.NoError(t, err)
	pgtest.Exec(t, tx, `DELETE FROM tool_tag`)
	pgtest.Exec(t, tx, `UPDATE member SET active = NOT active`)
	require.NoError(t, tx.Rollback(ctxT(t)))
	pgtest.Exec(t, other, `TRUNCATE loan_other`)

	after := snapshot()
	for _, tbl := range tables {
		requireReplays(t, tbl, before[tbl], after[tbl], loggedImages(t, check, tbl))
	}

	type opCount struct {
		Table, Op   string
		Stmts, Rows int
	}
	rows, err := check.Query(ctxT(t), `
		SELECT s.relid::regclass::text, s.op::text, count(*)::int, sum(s.rows)::int FROM pgundo.stmt s
		 GROUP BY 1, 2 ORDER BY 1, 2`)
	require.NoError(t, err)
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[opCount])
	require.NoError(t, err)
	// A statement is logged once per table and operation, its cascades
	// included (2 -> 20 and the children it cascaded to are one statement).
	// Rows by hand from the fixture's formulas: category U is 110, 20, the
	// cascade to 20's children 6-8 and 1's children 4-5 set to NULL; loan D
	// is the loans of tools 7, 8 (19 each) and members 10 (12), 11 (13);
	// loan U is 120 moved, 151 closed and the 38 loans of tools 5, 6;
	// member U is 80 plus branch N's 60; tool U is 40, 2 and category 10's 20.
	require.Equal(t, []opCount{
		{"branch", "U", 1, 1},
		{"category", "D", 1, 1},
		{"category", "U", 3, 7},
		{"ledger", "D", 1, 60},
		{"ledger", "I", 1, 2},
		{"ledger", "U", 1, 30},
		{"loan", "D", 2, 63},
		{"loan", "I", 1, 2},
		{"loan", "U", 3, 309},
		{"loan_other", "T", 1, 1283},
		{"member", "D", 1, 2},
		{"member", "I", 1, 1},
		{"member", "U", 2, 140},
		{"tool", "D", 1, 2},
		{"tool", "I", 1, 1},
		{"tool", "U", 3, 62},
		{"tool_tag", "D", 1, 2},
		{"tool_tag", "I", 1, 1},
		{"tool_tag", "U", 1, 2},
	}, counts)

	// Attribution: the job's transaction, tagged, then the other session's
	// TRUNCATE; the rolled-back transaction left nothing.
	require.Equal(t, []string{"lending-job maintenance 26", "lending-other  1"}, queryStrings(t, check, `
		SELECT application_name || ' ' || coalesce(tag, '') || ' ' || count(*) FROM pgundo.stmt
		 GROUP BY xid, application_name, tag ORDER BY min(id)`))
}
