package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgundo/pgundo/history"
	"github.com/pgundo/pgundo/internal/timefmt"
	"github.com/pgundo/pgundo/triggers"
)

type statusResult struct {
	Healthy bool                   `json:"healthy"`
	Tables  []triggers.TableStatus `json:"tables"`
	// Problems lists every reason capture is broken, one object each, with
	// the command that repairs it.
	Problems []statusProblem `json:"problems"`
	// EventTriggers: pgundo_ddl and pgundo_drop are there and enabled
	// (capture on partitions created later; dropped tables leave the
	// tracked list).
	EventTriggers bool `json:"event_triggers"`
	// ReclassTrigger: pgundo_reclass is there and enabled ALWAYS (capture
	// checks only the output settings a table's columns depend on).
	ReclassTrigger bool `json:"reclass_trigger"`
	// EventTriggerStates: each event trigger's pg_event_trigger.evtenabled
	// (O, A, R or D), "" when absent.
	EventTriggerStates map[string]string `json:"event_trigger_states"`
	// EventTriggerWarnings: what the missing or disabled ones cost, and
	// what restores them.
	EventTriggerWarnings []string         `json:"event_trigger_warnings"`
	Log                  history.LogStats `json:"log"`
}

// statusProblem is one capture problem and the command that repairs it.
type statusProblem struct {
	triggers.Problem
	Fix string `json:"fix"`
}

// repairCommands returns the commands that repair every problem of tables:
// track for broken triggers, untrack for dropped tables.
func repairCommands(tables []triggers.TableStatus) (track, untrack []string) {
	for _, t := range tables {
		switch {
		case t.Dropped:
			untrack = append(untrack, shellQuote(t.Qualified()))
		case !t.Healthy():
			track = append(track, shellQuote(t.Qualified()))
		}
	}
	return track, untrack
}

// brokenErr is status's exit 4: which tables, and what repairs them.
func brokenErr(tables []triggers.TableStatus) error {
	var names []string
	for _, t := range tables {
		if !t.Healthy() {
			names = append(names, t.Qualified())
		}
	}
	plural := "s"
	if len(names) == 1 {
		plural = ""
	}
	var fixes []string
	track, untrack := repairCommands(tables)
	if len(track) > 0 {
		fixes = append(fixes, "pgundo track "+strings.Join(track, " "))
	}
	if len(untrack) > 0 {
		fixes = append(fixes, "pgundo untrack "+strings.Join(untrack, " "))
	}
	return &exitError{code: ExitBroken, err: fmt.Errorf("capture is broken on %d tracked table%s (%s): changes to them are not all logged; repair: %s",
		len(names), plural, strings.Join(names, ", "), strings.Join(fixes, "; "))}
}

func newStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Tracked tables, capture health, log size and age",
		Long: `List the tracked tables and flag any whose capture is not whole: a capture
trigger missing, disabled, or not set to fire ALWAYS (ENABLE or ENABLE
REPLICA) on the table or on one of its partitions (for example a partition
created while pgundo's event trigger was absent), a capture trigger that is
stale (it checks fewer output settings than the table's columns depend on: a
column was added or retyped while event trigger pgundo_reclass was disabled,
so a value could be logged as the writer's DateStyle or TimeZone prints it),
or a tracked table that was dropped. It warns about a tracked table without a primary key (history and
asof cannot find its rows; undo matches whole rows, planned row by row).
Then the log's size and oldest entry.

pgundo track on a flagged table repairs its capture (pgundo untrack for a
dropped one); status names the exact command. With --json, "problems" lists
each problem as an object: table, relation (the table or the partition),
partition, trigger, state (missing, disabled, enable_origin, enable_replica,
stale or table_dropped), problem (in words) and fix (the command that repairs it);
each table has primary_key and warnings.

Missing or disabled event triggers are reported with their consequence:
without pgundo_ddl, partitions created later are not captured (status
flags them when they appear); without pgundo_reclass, capture checks every
output setting on every table. pgundo install, run as a superuser, adds
missing ones. With --json: event_triggers (pgundo_ddl and pgundo_drop there
and enabled), reclass_trigger (pgundo_reclass enabled ALWAYS),
event_trigger_states and event_trigger_warnings.

Exit codes: 0 capture is whole; 4 capture is broken (the report is still
printed in full, with --json too, and the error on stderr names the tables
and the repair); 1 error. Absent event triggers alone do not make status
fail.`,
		Example: `  pgundo status
  pgundo status --json | jq .problems
  pgundo status --json > status.json; [ $? -eq 4 ] && echo "capture broken"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, err := g.connectInstalled(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			// Catalog joins and estimates: on a big log the planner's
			// estimates pass jit_above_cost, and compiling took 1.6 s of a
			// 2 ms query (see the console, which does the same).
			if _, err := conn.Exec(ctx, "SET jit = off"); err != nil {
				return err
			}
			var res statusResult
			if res.Tables, err = triggers.Status(ctx, conn); err != nil {
				return err
			}
			if res.Log, err = history.Stats(ctx, conn); err != nil {
				return err
			}
			if res.EventTriggerStates, err = triggers.EventTriggerStates(ctx, conn); err != nil {
				return err
			}
			st := res.EventTriggerStates
			res.EventTriggers = st["pgundo_ddl"] != "" && st["pgundo_ddl"] != "D" && st["pgundo_drop"] != "" && st["pgundo_drop"] != "D"
			res.ReclassTrigger = st["pgundo_reclass"] == "A"
			res.EventTriggerWarnings = triggers.EventTriggerWarnings(st)
			res.Healthy = true
			res.Problems = []statusProblem{}
			for _, t := range res.Tables {
				res.Healthy = res.Healthy && t.Healthy()
				fix := "pgundo track " + shellQuote(t.Qualified())
				if t.Dropped {
					fix = "pgundo untrack " + shellQuote(t.Qualified())
				}
				for _, p := range t.Broken {
					res.Problems = append(res.Problems, statusProblem{Problem: p, Fix: fix})
				}
			}
			outErr := g.output(res, func(w io.Writer) error { return renderStatus(w, res) })
			if !res.Healthy {
				// Exit 4 even when the report could not be written (a
				// closed pipe): monitoring reads the exit code.
				if outErr != nil {
					fmt.Fprintf(g.stderr, "pgundo: status: write the report: %v\n", outErr)
				}
				return brokenErr(res.Tables)
			}
			return outErr
		},
	}
}

func renderStatus(w io.Writer, res statusResult) error {
	if len(res.Tables) == 0 {
		fmt.Fprintln(w, "no tables are tracked; start with: pgundo track SCHEMA.TABLE ...")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tPARTITIONS\tCAPTURE")
		for _, t := range res.Tables {
			parts := "-"
			if t.Partitioned {
				parts = fmt.Sprint(t.Partitions)
			}
			state := "ok"
			switch {
			case t.Dropped:
				state = "TABLE DROPPED (pgundo untrack it)"
			case len(t.Problems) == 1:
				state = "BROKEN: 1 problem"
			case len(t.Problems) > 0:
				state = fmt.Sprintf("BROKEN: %d problems", len(t.Problems))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Qualified(), parts, state)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, t := range res.Tables {
			for _, p := range t.Problems {
				fmt.Fprintf(w, "  %s: %s\n", t.Qualified(), p)
			}
		}
		track, untrack := repairCommands(res.Tables)
		if len(track) > 0 {
			fmt.Fprintf(w, "to repair capture: pgundo track %s\n", strings.Join(track, " "))
		}
		if len(untrack) > 0 {
			fmt.Fprintf(w, "to stop tracking dropped tables: pgundo untrack %s\n", strings.Join(untrack, " "))
		}
		for _, t := range res.Tables {
			for _, warning := range t.Warnings {
				fmt.Fprintf(w, "warning: %s: %s\n", t.Qualified(), warning)
			}
		}
	}
	for _, l := range res.EventTriggerWarnings {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintf(w, "log: %s, %d sessions, %s%d statements, about %d row changes", humanBytes(res.Log.Bytes), res.Log.Sessions, map[bool]string{true: "about "}[res.Log.StatementsEstimated], res.Log.Statements, res.Log.Changes)
	if res.Log.Oldest != nil {
		fmt.Fprintf(w, ", oldest %s, newest %s", timefmt.Format(*res.Log.Oldest), timefmt.Format(*res.Log.Newest))
	}
	fmt.Fprintln(w)
	return nil
}

// joinOr renders a list or a dash.
func joinOr(list []string, sep string) string {
	if len(list) == 0 {
		return "-"
	}
	return strings.Join(list, sep)
}
