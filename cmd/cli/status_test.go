package cli_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/cmd/cli"
	"github.com/pgundo/pgundo/internal/pgtest"
	"github.com/pgundo/pgundo/triggers"
)

// statusProblem is one entry of status --json's "problems".
type statusProblem struct {
	Table     string `json:"table"`
	Relation  string `json:"relation"`
	Partition bool   `json:"partition"`
	Trigger   string `json:"trigger"`
	State     string `json:"state"`
	Problem   string `json:"problem"`
	Fix       string `json:"fix"`
}

// keyless is status's warnings for the tables without a primary key of
// TestStatusAndTrackRepairCapture.
const keyless = "warning: public.nopk: " + triggers.NoPrimaryKeyWarning + "\n" +
	"warning: public.parts: " + triggers.NoPrimaryKeyWarning + "\n"

// statusUntilLog returns status's text output up to its last line (the log
// size, which varies).
func statusUntilLog(t *testing.T, out string) string {
	t.Helper()
	i := strings.LastIndex(out, "log: ")
	require.GreaterOrEqual(t, i, 0, out)
	return out[:i]
}

// logSummary is every logged change as "OP table old -> new", in log order.
func logSummary(t *testing.T, url string) []string {
	t.Helper()
	r := run(t, url, "log", "--format", "ndjson")
	require.Equal(t, 0, r.code, r.stderr)
	var out []string
	for _, v := range ndjsonLines(t, r.stdout) {
		str := func(k string) string {
			if s, ok := v[k].(string); ok {
				return s
			}
			return "NULL"
		}
		out = append(out, fmt.Sprintf("%s %s %s -> %s", v["op"], v["table"], str("old"), str("new")))
	}
	return out
}

// TestStatusAndTrackRepairCapture breaks capture in each way status flags,
// on a table with a primary key, one without, and a partitioned table (on
// the parent and on one of its partitions); status exits 4 and lists each
// problem; track repairs it and says so; then every kind of write is logged
// again.
func TestStatusAndTrackRepairCapture(t *testing.T) {
	t.Parallel()
	type breakage struct {
		name  string
		sql   func(rel, tn string) string
		state string
		text  string // status's description, after "trigger NAME "
		was   string // track's description, after "NAME was "
	}
	notAlways := "does not fire ALWAYS (it would miss changes made under session_replication_role = replica)"
	var cases []struct {
		breakage
		trigger string
	}
	for _, tn := range []string{"pgundo_capture_delete", "pgundo_capture_insert", "pgundo_capture_truncate", "pgundo_capture_update"} {
		cases = append(cases, struct {
			breakage
			trigger string
		}{breakage{"disabled", func(rel, tn string) string { return "ALTER TABLE " + rel + " DISABLE TRIGGER " + tn },
			"disabled", "is disabled", "disabled"}, tn})
	}
	for _, b := range []breakage{
		{"dropped", func(rel, tn string) string { return "DROP TRIGGER " + tn + " ON " + rel }, "missing", "is missing", "missing"},
		{"replica", func(rel, tn string) string { return "ALTER TABLE " + rel + " ENABLE REPLICA TRIGGER " + tn }, "enable_replica",
			"fires only under session_replication_role = replica (ENABLE REPLICA), so ordinary changes are not captured", "ENABLE REPLICA"},
		{"origin", func(rel, tn string) string { return "ALTER TABLE " + rel + " ENABLE TRIGGER " + tn }, "enable_origin",
			notAlways, "ENABLE, not ENABLE ALWAYS"},
	} {
		tn := "pgundo_capture_delete"
		if b.name == "replica" {
			tn = "pgundo_capture_update"
		}
		cases = append(cases, struct {
			breakage
			trigger string
		}{b, tn})
	}
	for _, c := range cases {
		t.Run(c.name+"/"+c.trigger, func(t *testing.T) {
			t.Parallel()
			url, conn := setup(t, `
				CREATE TABLE pk (id int PRIMARY KEY, v text);
				CREATE TABLE nopk (id int, v text);
				CREATE TABLE parts (id int, k int, v text) PARTITION BY LIST (k);
				CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);
				CREATE TABLE parts_2 PARTITION OF parts FOR VALUES IN (2);
				INSERT INTO pk VALUES (1, 'a'), (2, 'b');
				INSERT INTO nopk VALUES (1, 'a'), (2, 'b');
				INSERT INTO parts VALUES (1, 1, 'a'), (2, 2, 'b')`)
			r := run(t, url, "install")
			require.Equal(t, 0, r.code, r.stderr)
			r = run(t, url, "track", "pk", "nopk", "parts")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "tracking public.pk\ntracking public.nopk\ntracking public.parts\n", r.stdout)
			r = run(t, url, "status")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "TABLE         PARTITIONS  CAPTURE\npublic.nopk   -           ok\npublic.parts  2           ok\npublic.pk     -           ok\n"+keyless,
				statusUntilLog(t, r.stdout))

			for _, rel := range []string{"pk", "nopk", "parts", "parts_2"} {
				pgtest.Exec(t, conn, c.sql(rel, c.trigger))
			}
			problem := func(table, rel string, partition bool) statusProblem {
				prefix := ""
				if partition {
					prefix = "partition " + rel + ": "
				}
				return statusProblem{Table: table, Relation: rel, Partition: partition, Trigger: c.trigger, State: c.state,
					Problem: prefix + "trigger " + c.trigger + " " + c.text, Fix: "pgundo track " + table}
			}
			want := []statusProblem{
				problem("public.nopk", "public.nopk", false),
				problem("public.parts", "public.parts", false),
				problem("public.parts", "public.parts_2", true),
				problem("public.pk", "public.pk", false),
			}
			r = run(t, url, "status", "--json")
			require.Equal(t, cli.ExitBroken, r.code, r.stderr)
			require.Equal(t, "pgundo: capture is broken on 3 tracked tables (public.nopk, public.parts, public.pk): changes to them are not all logged; repair: pgundo track public.nopk public.parts public.pk\n", r.stderr)
			var res struct {
				Healthy  bool            `json:"healthy"`
				Problems []statusProblem `json:"problems"`
				Tables   []struct {
					QualifiedName string   `json:"qualified_name"`
					Problems      []string `json:"problems"`
				} `json:"tables"`
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
			require.False(t, res.Healthy)
			require.Equal(t, want, res.Problems)
			require.Equal(t, []string{want[1].Problem, want[2].Problem}, res.Tables[1].Problems)

			r = run(t, url, "status")
			require.Equal(t, cli.ExitBroken, r.code, r.stderr)
			require.Equal(t, "TABLE         PARTITIONS  CAPTURE\n"+
				"public.nopk   -           BROKEN: 1 problem\n"+
				"public.parts  2           BROKEN: 2 problems\n"+
				"public.pk     -           BROKEN: 1 problem\n"+
				"  public.nopk: "+want[0].Problem+"\n"+
				"  public.parts: "+want[1].Problem+"\n"+
				"  public.parts: "+want[2].Problem+"\n"+
				"  public.pk: "+want[3].Problem+"\n"+
				"to repair capture: pgundo track public.nopk public.parts public.pk\n"+keyless,
				statusUntilLog(t, r.stdout))

			r = run(t, url, "track", "parts", "--json")
			require.Equal(t, 0, r.code, r.stderr)
			repaired := func(p statusProblem) string {
				return fmt.Sprintf(`{"table": %q, "relation": %q, "partition": %t, "trigger": %q, "state": %q, "problem": %q}`,
					p.Table, p.Relation, p.Partition, p.Trigger, p.State, p.Problem)
			}
			require.JSONEq(t, `{"tables": [{"oid": `+oidOf(t, conn, "parts")+`, "schema": "public", "name": "parts", "qualified_name": "public.parts",
				"already_tracked": true, "dropped": false, "repaired": [`+repaired(want[1])+`, `+repaired(want[2])+`]}]}`, r.stdout)
			r = run(t, url, "track", "pk", "nopk", "parts")
			require.Equal(t, 0, r.code, r.stderr)
			was := c.trigger + " was " + c.was
			require.Equal(t, "public.pk: already tracked; repaired: "+was+"\n"+
				"public.nopk: already tracked; repaired: "+was+"\n"+
				"public.parts: already tracked; capture is whole, nothing to repair\n", r.stdout)
			r = run(t, url, "track", "pk", "nopk")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "public.pk: already tracked; capture is whole, nothing to repair\npublic.nopk: already tracked; capture is whole, nothing to repair\n", r.stdout)
			// Both repair messages at once, on a partition too.
			pgtest.Exec(t, conn, c.sql("parts", c.trigger)+"; "+c.sql("parts_2", c.trigger))
			r = run(t, url, "track", "parts")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "public.parts: already tracked; repaired: "+was+", partition public.parts_2: "+was+"\n", r.stdout)
			r = run(t, url, "track", "pk", "parts", "--json")
			require.Equal(t, 0, r.code, r.stderr)
			require.JSONEq(t, `{"tables": [
				{"oid": `+oidOf(t, conn, "pk")+`, "schema": "public", "name": "pk", "qualified_name": "public.pk", "already_tracked": true, "dropped": false, "repaired": []},
				{"oid": `+oidOf(t, conn, "parts")+`, "schema": "public", "name": "parts", "qualified_name": "public.parts", "already_tracked": true, "dropped": false, "repaired": []}]}`, r.stdout)
			r = run(t, url, "track", "pk")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "public.pk: already tracked; capture is whole, nothing to repair\n", r.stdout)
			r = run(t, url, "status")
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, "TABLE         PARTITIONS  CAPTURE\npublic.nopk   -           ok\npublic.parts  2           ok\npublic.pk     -           ok\n"+keyless,
				statusUntilLog(t, r.stdout))
			// The repaired triggers are the ones track creates: same
			// definitions, all ENABLE ALWAYS.
			require.Equal(t, []string{
				"nopk pgundo_capture_delete A CREATE TRIGGER pgundo_capture_delete AFTER DELETE ON public.nopk REFERENCING OLD TABLE AS pgundo_old FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_delete('none')",
				"nopk pgundo_capture_insert A CREATE TRIGGER pgundo_capture_insert AFTER INSERT ON public.nopk REFERENCING NEW TABLE AS pgundo_new FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_insert('none')",
				"nopk pgundo_capture_truncate A CREATE TRIGGER pgundo_capture_truncate BEFORE TRUNCATE ON public.nopk FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_truncate()",
				"nopk pgundo_capture_update A CREATE TRIGGER pgundo_capture_update AFTER UPDATE ON public.nopk REFERENCING OLD TABLE AS pgundo_old NEW TABLE AS pgundo_new FOR EACH STATEMENT EXECUTE FUNCTION pgundo.capture_update('none')",
			}, queryTexts(t, conn, `SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text || ' ' || pg_get_triggerdef(oid)
				FROM pg_trigger WHERE tgname LIKE 'pgundo%' AND tgrelid = 'nopk'::regclass ORDER BY 1`))
			var n int
			require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgundo%' AND tgenabled = 'A'
				AND tgrelid IN ('pk'::regclass, 'nopk'::regclass, 'parts'::regclass, 'parts_1'::regclass, 'parts_2'::regclass)`).Scan(&n))
			require.Equal(t, 20, n)

			// Every kind of write is logged again, through the parent and
			// to the repaired partition directly.
			for _, q := range []string{
				"INSERT INTO pk VALUES (3, 'c')", "UPDATE pk SET v = 'B' WHERE id = 2", "DELETE FROM pk WHERE id = 1", "TRUNCATE pk",
				"INSERT INTO nopk VALUES (3, 'c')", "UPDATE nopk SET v = 'B' WHERE id = 2", "DELETE FROM nopk WHERE id = 1", "TRUNCATE nopk",
				"INSERT INTO parts VALUES (3, 2, 'c')", "UPDATE parts SET v = 'B' WHERE id = 2", "DELETE FROM parts WHERE id = 1",
				"INSERT INTO parts_2 VALUES (4, 2, 'd')", "UPDATE parts_2 SET v = 'D' WHERE id = 4", "DELETE FROM parts_2 WHERE id = 3",
				"TRUNCATE parts_2",
			} {
				pgtest.Exec(t, conn, q)
			}
			require.Equal(t, []string{
				"INSERT public.pk NULL -> (3,c)",
				"UPDATE public.pk (2,b) -> (2,B)",
				"DELETE public.pk (1,a) -> NULL",
				"TRUNCATE public.pk (3,c) -> NULL", // heap order: the update wrote (2,B) after (3,c)
				"TRUNCATE public.pk (2,B) -> NULL",
				"INSERT public.nopk NULL -> (3,c)",
				"UPDATE public.nopk (2,b) -> (2,B)",
				"DELETE public.nopk (1,a) -> NULL",
				"TRUNCATE public.nopk (3,c) -> NULL", // heap order: the update wrote (2,B) after (3,c)
				"TRUNCATE public.nopk (2,B) -> NULL",
				"INSERT public.parts NULL -> (3,2,c)",
				"UPDATE public.parts (2,2,b) -> (2,2,B)",
				"DELETE public.parts (1,1,a) -> NULL",
				"INSERT public.parts_2 NULL -> (4,2,d)",
				"UPDATE public.parts_2 (4,2,d) -> (4,2,D)",
				"DELETE public.parts_2 (3,2,c) -> NULL",
				"TRUNCATE public.parts_2 (2,2,B) -> NULL",
				"TRUNCATE public.parts_2 (4,2,D) -> NULL",
			}, logSummary(t, url))
		})
	}
}

// queryTexts returns the one text column of query's rows.
func queryTexts(t *testing.T, conn *pgx.Conn, query string) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), query)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// oidOf returns the oid of a relation, as JSON prints it.
func oidOf(t *testing.T, conn *pgx.Conn, rel string) string {
	t.Helper()
	var oid uint32
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT $1::regclass::oid", rel).Scan(&oid))
	return fmt.Sprint(oid)
}

// TestStatusDroppedTable: without pgundo's event triggers a dropped tracked
// table stays in the tracked list; status exits 4 and names the untrack
// that clears it, and that untrack works on the name the table had.
func TestStatusDroppedTable(t *testing.T) {
	t.Parallel()
	url, conn := setup(t, `CREATE SCHEMA "Ops"; CREATE TABLE "Ops"."Gone Soon" (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY)`)
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, 0, run(t, url, "track", `"Ops"."Gone Soon"`, "kept").code)
	pgtest.Exec(t, conn, `DROP EVENT TRIGGER pgundo_drop; DROP TABLE "Ops"."Gone Soon"`)

	r = run(t, url, "status", "--json")
	require.Equal(t, cli.ExitBroken, r.code, r.stderr)
	require.Equal(t, `pgundo: capture is broken on 1 tracked table ("Ops"."Gone Soon"): changes to them are not all logged; repair: pgundo untrack '"Ops"."Gone Soon"'`+"\n", r.stderr)
	var res struct {
		Problems []statusProblem `json:"problems"`
	}
	const noEventTriggers = "event triggers absent (pgundo_drop): a dropped tracked table stays in the tracked list until pgundo untrack; pgundo install run as a superuser creates them\n"
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.Equal(t, []statusProblem{{Table: `"Ops"."Gone Soon"`, Relation: `"Ops"."Gone Soon"`, State: "table_dropped", Problem: "table dropped",
		Fix: `pgundo untrack '"Ops"."Gone Soon"'`}}, res.Problems)
	r = run(t, url, "status")
	require.Equal(t, cli.ExitBroken, r.code, r.stderr)
	require.Equal(t, "TABLE              PARTITIONS  CAPTURE\n"+
		`"Ops"."Gone Soon"  -           TABLE DROPPED (pgundo untrack it)`+"\n"+
		"public.kept        -           ok\n"+
		`to stop tracking dropped tables: pgundo untrack '"Ops"."Gone Soon"'`+"\n"+noEventTriggers, statusUntilLog(t, r.stdout))

	r = run(t, url, "untrack", `"Ops"."Gone Soon"`)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, `no longer tracking "Ops"."Gone Soon" (it was dropped; its log is kept)`+"\n", r.stdout)
	r = run(t, url, "status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "TABLE        PARTITIONS  CAPTURE\npublic.kept  -           ok\n"+noEventTriggers, statusUntilLog(t, r.stdout))
}

// TestStatusWarnsWithoutPrimaryKey: a tracked table without a primary key
// (or a partitioned one whose partitions do not all share one) gets a
// warning saying what that costs, in text and --json; capture is still
// whole, so status exits 0.
func TestStatusWarnsWithoutPrimaryKey(t *testing.T) {
	t.Parallel()
	url, _ := setup(t, `CREATE TABLE keyed (id int PRIMARY KEY);
		CREATE TABLE ledger (acct int, amount numeric);
		CREATE TABLE leafkeyed (id int, k int) PARTITION BY LIST (k);
		CREATE TABLE leafkeyed_1 PARTITION OF leafkeyed (PRIMARY KEY (id)) FOR VALUES IN (1);
		CREATE TABLE leafkeyed_2 PARTITION OF leafkeyed (PRIMARY KEY (id)) FOR VALUES IN (2);
		CREATE TABLE mixed (id int, k int) PARTITION BY LIST (k);
		CREATE TABLE mixed_1 PARTITION OF mixed (PRIMARY KEY (id)) FOR VALUES IN (1);
		CREATE TABLE mixed_2 PARTITION OF mixed FOR VALUES IN (2)`)
	r := run(t, url, "install")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, url, "track", "keyed", "ledger", "leafkeyed", "mixed")
	require.Equal(t, 0, r.code, r.stderr)

	r = run(t, url, "status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "TABLE             PARTITIONS  CAPTURE\n"+
		"public.keyed      -           ok\n"+
		"public.leafkeyed  2           ok\n"+
		"public.ledger     -           ok\n"+
		"public.mixed      2           ok\n"+
		"warning: public.ledger: "+triggers.NoPrimaryKeyWarning+"\n"+
		"warning: public.mixed: "+triggers.NoPrimaryKeyWarning+"\n", statusUntilLog(t, r.stdout))

	r = run(t, url, "status", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res struct {
		Healthy bool `json:"healthy"`
		Tables  []struct {
			Name       string   `json:"name"`
			PrimaryKey bool     `json:"primary_key"`
			Warnings   []string `json:"warnings"`
		} `json:"tables"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	require.True(t, res.Healthy)
	got := map[string][]string{}
	for _, tb := range res.Tables {
		require.Equal(t, len(tb.Warnings) == 0, tb.PrimaryKey, tb.Name)
		got[tb.Name] = tb.Warnings
	}
	require.Equal(t, map[string][]string{"keyed": {}, "leafkeyed": {}, "ledger": {triggers.NoPrimaryKeyWarning}, "mixed": {triggers.NoPrimaryKeyWarning}}, got)
}
