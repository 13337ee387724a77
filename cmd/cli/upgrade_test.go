package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/internal/pgtest"
	pgsql "github.com/pgundo/pgundo/sql"
)

// TestUpgradeKeepsTheLog: a log captured by schema version 4 (the capture
// before the hot-path rework of version 5), 6 (before the journal of
// version 7), 10 (before the capture triggers named the output settings
// their table's rows depend on, version 11), 11 (before the journal kept
// the tag as read, version 12) or 12 (before floats had a class of their
// own, version 13) still shows, undoes, verifies and answers
// history, asof and log after pgundo install upgrades it, and a connection
// that wrote before the upgrade stays one session after it.
func TestUpgradeKeepsTheLog(t *testing.T) {
	t.Parallel()
	for _, from := range []int32{4, 6, 10, 11, 12} {
		t.Run(fmt.Sprintf("from=%d", from), func(t *testing.T) {
			t.Parallel()
			testUpgradeKeepsTheLog(t, from)
		})
	}
}

func testUpgradeKeepsTheLog(t *testing.T, from int32) {
	ctx := context.Background()
	url, conn := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric, seen timestamptz);
		INSERT INTO acct VALUES (1, 'ann', 10.50, '2024-01-01 10:00+00'), (2, 'bob', 20, NULL), (3, 'cy', 0.000, '2024-06-01 12:00:00.123456+02');
		CREATE TABLE ledger (acct int, amount numeric, note text);
		INSERT INTO ledger VALUES (1, 5, 'a'), (1, 5, 'a'), (2, 7, NULL);
		CREATE TABLE gauge (id int PRIMARY KEY, v float8);
		INSERT INTO gauge VALUES (1, 0.1::float8 + 0.2::float8), (2, 1 / 3.0::float8)`)
	_, err := pgsql.MigrateTo(ctx, conn, from)
	require.NoError(t, err)
	// The CLI refuses an outdated schema; track as that version did.
	pgtest.Exec(t, conn, "SELECT pgundo.track('acct'), pgundo.track('ledger'), pgundo.track('gauge')")
	beforeAcct, beforeLedger, beforeGauge := tableText(t, conn, "acct"), tableText(t, conn, "ledger"), tableText(t, conn, "gauge")
	var beforePatch string
	require.NoError(t, conn.QueryRow(ctx, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").Scan(&beforePatch))

	patch := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, patch, "SET TimeZone = 'America/New_York'")
	pgtest.Exec(t, patch, "SET extra_float_digits = -15")
	pgtest.Exec(t, patch, "UPDATE acct SET balance = balance * 2, seen = '2025-03-01 09:00-05'")
	pgtest.Exec(t, patch, "DELETE FROM acct WHERE id = 2")
	pgtest.Exec(t, patch, "DELETE FROM ledger WHERE acct = 1")
	pgtest.Exec(t, patch, "UPDATE gauge SET v = v / 3")
	const logged = `SELECT format('%s %s %s %s %s %s', stmt_id, op, table_name, session_id, old, new) FROM pgundo.changes ORDER BY stmt_id, old, new`
	logBefore := queryTexts(t, conn, logged)
	require.Len(t, logBefore, 3+1+2+2)

	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	var version int32
	require.NoError(t, conn.QueryRow(ctx, "SELECT max(version) FROM pgundo.schema_version").Scan(&version))
	require.Equal(t, pgsql.Latest(), version)
	// The upgrade re-attached the capture triggers with the settings each
	// table's rows depend on: acct has a timestamptz, gauge a float8 (class
	// five since version 13), ledger none.
	time3 := "'DateStyle', 'IntervalStyle', 'TimeZone'"
	five := time3 + ", 'extra_float_digits', 'bytea_output'"
	require.Equal(t, []string{
		"acct pgundo_capture_delete " + time3, "acct pgundo_capture_insert " + time3,
		"acct pgundo_capture_truncate ", "acct pgundo_capture_update " + time3,
		"gauge pgundo_capture_delete " + five, "gauge pgundo_capture_insert " + five,
		"gauge pgundo_capture_truncate ", "gauge pgundo_capture_update " + five,
		"ledger pgundo_capture_delete 'none'", "ledger pgundo_capture_insert 'none'",
		"ledger pgundo_capture_truncate ", "ledger pgundo_capture_update 'none'",
	}, queryTexts(t, conn, `SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || substring(pg_get_triggerdef(oid) from 'EXECUTE FUNCTION pgundo\.\w+\((.*)\)$')
		FROM pg_trigger WHERE tgname LIKE 'pgundo%' ORDER BY 1`))

	// The log reads the same after the upgrade, in SQL and in pgundo log.
	require.Equal(t, logBefore, queryTexts(t, conn, logged))
	r = run(t, url, "log", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var entries []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &entries), r.stdout)
	require.Len(t, entries, len(logBefore))

	// The same connection after the upgrade: the same session.
	pgtest.Exec(t, patch, "INSERT INTO acct VALUES (4, 'dee', 1, now())")
	pgtest.Exec(t, patch, "UPDATE ledger SET note = 'patched'")
	pgtest.Exec(t, patch, "UPDATE gauge SET v = v * 3 WHERE id = 2") // extra_float_digits -15: pinned
	other := pgtest.Connect(t, withApp(url, "other"))
	pgtest.Exec(t, other, "INSERT INTO ledger VALUES (9, 9, 'other')")

	r = run(t, url, "sessions", "--json", "--app", "patch")
	require.Equal(t, 0, r.code, r.stderr)
	var ss []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 1, "one session for the patch connection, before and after the upgrade: %s", r.stdout)
	require.EqualValues(t, 3+1+2+2+1+1+1, ss[0]["changes"])
	id := ss[0]["id"].(string)

	r = run(t, url, "show", id)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "UPDATE public.acct id=2")
	require.Contains(t, r.stdout, "    owner: dee\n")
	r = run(t, url, "history", "acct", "1", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var h map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	require.Len(t, h["versions"], 1, "acct 1: the patch's update: %s", r.stdout)
	r = run(t, url, "history", "acct", "4", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &h))
	require.Len(t, h["versions"], 1, "acct 4: inserted after the upgrade: %s", r.stdout)
	r = run(t, url, "asof", "acct", "--at", beforePatch, "--format", "csv")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "id,owner,balance,seen\n1,ann,10.50,2024-01-01 10:00:00+00\n2,bob,20,\n3,cy,0.000,2024-06-01 10:00:00.123456+00\n", r.stdout)

	r = run(t, url, "undo", id, "--yes")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Equal(t, beforeAcct, tableText(t, conn, "acct"))
	require.Equal(t, append(beforeLedger, "(9,9,other)"), tableText(t, conn, "ledger"))
	require.Equal(t, beforeGauge, tableText(t, conn, "gauge"))

	r = run(t, url, "verify")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
}

// TestUpgradeFrom13LocalTimes: a table whose date and time columns print the
// same whatever TimeZone (a timestamp, a date) was tracked by schema 13 with
// three arguments, TimeZone among them; the upgrade re-attaches it with two
// (class local, schema 14). What a writer outside UTC with a non-ISO
// DateStyle wrote before and after the upgrade reads back in pgundo's
// settings (a timestamp in the writer's daylight-saving gap included), and
// undoing the session gives the table back as it was.
func TestUpgradeFrom13LocalTimes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn := setup(t, `CREATE TABLE visit (id int PRIMARY KEY, at timestamp, d date);
		INSERT INTO visit VALUES (1, '2024-01-01 10:00', '2024-01-01'), (2, NULL, '2024-02-29')`)
	_, err := pgsql.MigrateTo(ctx, conn, 13)
	require.NoError(t, err)
	pgtest.Exec(t, conn, "SELECT pgundo.track('visit')")
	args := func() []string {
		return queryTexts(t, conn, `SELECT tgname || ' ' || substring(pg_get_triggerdef(oid) from 'EXECUTE FUNCTION pgundo\.\w+\((.*)\)$')
			FROM pg_trigger WHERE tgrelid = 'visit'::regclass AND tgname <> 'pgundo_capture_truncate' ORDER BY 1`)
	}
	each := func(a string) []string {
		return []string{"pgundo_capture_delete " + a, "pgundo_capture_insert " + a, "pgundo_capture_update " + a}
	}
	require.Equal(t, each("'DateStyle', 'IntervalStyle', 'TimeZone'"), args())
	before := tableText(t, conn, "visit")

	w := pgtest.Connect(t, withApp(url, "patch"))
	pgtest.Exec(t, w, "SET TimeZone = 'Europe/Berlin'")
	pgtest.Exec(t, w, "SET DateStyle = 'SQL, DMY'")
	pgtest.Exec(t, w, "UPDATE visit SET at = at + interval '1 day' WHERE id = 1")
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, each("'DateStyle', 'IntervalStyle'"), args())
	pgtest.Exec(t, w, "UPDATE visit SET d = d + 1, at = '30/03/2025 02:30' WHERE id = 2")
	pgtest.Exec(t, w, "INSERT INTO visit VALUES (3, '01/01/2025 00:00:00.5', '01/01/2025')")
	pgtest.Exec(t, w, "RESET DateStyle")
	pgtest.Exec(t, w, "UPDATE visit SET d = d - 1 WHERE id = 3") // only TimeZone differs: nothing pinned
	require.Equal(t, []string{
		`UPDATE (1,"2024-01-01 10:00:00",2024-01-01) (1,"2024-01-02 10:00:00",2024-01-01)`,
		`UPDATE (2,,2024-02-29) (2,"2025-03-30 02:30:00",2024-03-01)`,
		`INSERT  (3,"2025-01-01 00:00:00.5",2025-01-01)`,
		`UPDATE (3,"2025-01-01 00:00:00.5",2025-01-01) (3,"2025-01-01 00:00:00.5",2024-12-31)`,
	}, queryTexts(t, conn, `SELECT op || ' ' || coalesce(old, '') || ' ' || coalesce(new, '') FROM pgundo.changes ORDER BY stmt_id`))

	r = run(t, url, "sessions", "--json", "--app", "patch")
	require.Equal(t, 0, r.code, r.stderr)
	var ss []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ss))
	require.Len(t, ss, 1, r.stdout)
	r = run(t, url, "undo", ss[0]["id"].(string), "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, before, tableText(t, conn, "visit"))
}
